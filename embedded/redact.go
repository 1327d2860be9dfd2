package embedded

import (
	"net/url"
	"strings"
)

// stripUserinfo removes user:password@ from each of comma-separated URLs.
func stripUserinfo(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = nil
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

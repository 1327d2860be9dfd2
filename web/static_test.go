package web

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// The files must run under the CSP of /ui and load nothing from elsewhere.
func TestFilesObeyTheContentSecurityPolicy(t *testing.T) {
	read := func(name string) string {
		b, err := fs.ReadFile(Files, "static/"+name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	names, err := fs.Glob(Files, "static/*")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, " ") != "static/app.css static/app.js static/index.html" {
		t.Errorf("files %v", names)
	}

	html := read("index.html")
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		if m := bad.FindString(html); m != "" {
			t.Errorf("index.html: %q", m)
		}
	}
	for _, tag := range regexp.MustCompile(`(?is)<script[^>]*>.*?</script>`).FindAllString(html, -1) {
		if !regexp.MustCompile(`(?i)^<script src="[^"]+"[^>]*></script>$`).MatchString(tag) {
			t.Errorf("index.html: inline script %q", tag)
		}
	}
	refs := regexp.MustCompile(`(?i)\s(?:src|href|action|poster)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(html, -1)
	if len(refs) != 3 {
		t.Errorf("index.html references %v", refs)
	}
	for _, r := range refs {
		if !strings.HasPrefix(r[1], "/ui/assets/") && r[1] != "data:," {
			t.Errorf("index.html loads %q", r[1])
		}
	}

	js := read("app.js")
	for _, bad := range []string{"eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
		"localStorage", "sessionStorage", "document.cookie", "indexedDB", "http://", "https://", "//cdn", "import(", "setTimeout('", "setInterval('"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %q", bad)
		}
	}
	css := read("app.css")
	for _, bad := range []string{"@import", "url(", "http://", "https://", "@font-face"} {
		if strings.Contains(css, bad) {
			t.Errorf("app.css uses %q", bad)
		}
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// fuzzRoutes are the API's routes that read a JSON body, each as a method,
// a path ({id}, {key} and {hook} stand for ids of the fixture, {seg} for
// the fuzzer's path segment) and the credential it is called with.
var fuzzRoutes = []struct {
	method, path string
	widget       bool
}{
	{"POST", "/organizations/org_1/api_keys", false},
	{"POST", "/organizations/org_1/api_keys", true},
	{"DELETE", "/api_keys/{key}", false},
	{"DELETE", "/api_keys/{key}", true},
	{"POST", "/api_keys/validations", false},
	{"PUT", "/api_key_permissions", false},
	{"POST", "/webhook_endpoints", false},
	{"PATCH", "/webhook_endpoints/{hook}", false},
	{"POST", "/webhook_endpoints/{hook}/recover", false},
	{"POST", "/widgets/token", false},
	{"POST", "/organizations/{seg}/api_keys", false},
	{"DELETE", "/api_keys/{seg}", true},
	{"PATCH", "/webhook_endpoints/{seg}", false},
	{"POST", "/webhook_endpoints/{seg}/recover", false},
	{"GET", "/api_keys/{seg}", false},
}

// reachesOut reports whether a body holds a webhook URL the server would
// resolve or deliver to outside loopback: the fuzzer must not make the
// test reach the network. (Same reading as the API's: encoding/json,
// case-insensitive names, the last of duplicate fields.)
func reachesOut(body []byte) bool {
	var v struct {
		URL *string `json:"url"`
	}
	if json.Unmarshal(body, &v) != nil || v.URL == nil {
		return false
	}
	u, err := url.Parse(*v.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return false
	}
	ip, err := netip.ParseAddr(u.Hostname())
	return err != nil || !ip.IsLoopback()
}

// FuzzAPIRequests sends any body, Idempotency-Key and path segment to every
// route of the real server (keyledger serve: ledger, projection, webhook
// engine) that reads JSON: create key (admin and widget token), revoke,
// validate, catalogue, webhook endpoint create, update and recover, widget
// token mint. Every answer is JSON: a success, or a 4xx {code, message};
// never a 5xx. A widget token is minted only for an expires_in from 1 to
// 3600 s (or none: 10 min), and lives that long. Webhook endpoints it creates are deleted again, and it only sends
// loopback webhook URLs.
func FuzzAPIRequests(f *testing.F) {
	s := startServer(f, f.TempDir())
	setCatalogue(f, s.url, "projects:read", "projects:write", "tasks:read")
	target := createKey(f, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "target", UserID: "user_ada", Permissions: []string{"projects:read"}})
	var tok schemas.WidgetToken
	if st, raw := call(f, "POST", s.url+"/widgets/token", schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada",
		Permissions: []string{domain.PermManageOwnUserKeys}, UserPermissions: []string{"projects:read"}, ExpiresIn: 3600}, &tok); st != 201 {
		f.Fatalf("mint: %d %s", st, raw)
	}
	var hook schemas.WebhookEndpoint
	if st, raw := call(f, "POST", s.url+"/webhook_endpoints", `{"url":"http://127.0.0.1:9/hook","events":["webhook_endpoint.deleted"]}`, &hook); st != 201 {
		f.Fatalf("webhook endpoint: %d %s", st, raw)
	}
	// Seeds: each route's own bodies, a few generic ones, and path
	// segments for the routes that take one (every pair would make the
	// baseline run too long for CI's few seconds).
	generic := []string{``, `null`, `{}`, `[]`, `{"a":` + strings.Repeat("[", 5000) + `}`, "{\"name\":\"\xff\"}", `{"name":"a"} {}`}
	perRoute := map[int][]string{
		0: {`{"name":"ci","permissions":["projects:read"]}`, `{"name":"` + strings.Repeat("a", 201) + `","permissions":[]}`, `{"name":"\u0000","permissions":[]}`,
			`{"name":"a","permissions":[],"expires_at":"9999-12-31T23:59:59-23:59"}`, `{"name":"a","permissions":[],"expires_at":"0000-01-01T00:00:00+23:59"}`},
		1: {`{"name":"mine","permissions":["projects:read"],"user_id":"user_ada","expires_at":"2099-01-01T00:00:00Z"}`,
			`{"name":"x","permissions":["projects:write"],"user_id":"user_ada"}`, `{"name":"x","permissions":[],"user_id":"user_bob"}`},
		2: {`{"reason":"leaked"}`, `{"reason":"owner_removed"}`},
		3: {`{"reason":"rotated"}`},
		4: {`{"value":"sk_live_x"}`, `{"value":"` + *target.Value + `"}`, `{"value":"\u0073k_live_x"}`},
		5: {`{"permissions":["projects:read","projects:write","tasks:read"]}`, `{"permissions":["widgets:api-keys:manage"]}`, `{"permissions":null}`},
		6: {`{"url":"http://127.0.0.1:9/x","events":["api_key.created"]}`, `{"url":"http://[::1]:9/","events":[]}`, `{"url":"ftp://127.0.0.1/","events":["nope"]}`},
		7: {`{"status":"disabled"}`, `{"status":"enabled","events":["webhook_endpoint.deleted"]}`, `{"url":"http://127.0.0.1:9/y"}`},
		8: {`{"range_start":"2026-01-01T00:00:00Z","range_end":"2026-01-02T00:00:00Z"}`, `{"range_start":"2026-01-02T00:00:00Z","range_end":"2026-01-01T00:00:00Z"}`},
		9: {`{"organization_id":"org_1","user_id":"user_ada","permissions":["widgets:user-api-keys:manage-self"],"expires_in":3600}`,
			`{"organization_id":"org_1","user_id":"user_ada","permissions":[],"expires_in":18446744074}`,
			`{"organization_id":"org_1","user_id":"user_ada","permissions":[],"expires_in":9223372037}`,
			`{"organization_id":"org_1","user_id":"user_ada","permissions":[],"expires_in":-9223372036}`,
			`{"organization_id":"org_1","user_id":"user_ada","permissions":[],"user_permissions":null}`},
	}
	for i, bodies := range perRoute {
		for _, b := range bodies {
			f.Add(uint8(i), []byte(b), "", "")
		}
	}
	for _, i := range []int{0, 4, 9} {
		for _, b := range generic {
			f.Add(uint8(i), []byte(b), "idem-1", "")
		}
	}
	for i := 10; i < len(fuzzRoutes); i++ {
		for _, seg := range []string{"..", "../../etc/passwd", "%2e%2e", "api_key_01J00000000000000000000000", target.ID, hook.ID, "a\x00b", strings.Repeat("x", 300)} {
			f.Add(uint8(i), []byte(`{}`), "", seg)
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	f.Fuzz(func(t *testing.T, route uint8, body []byte, idem, seg string) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		if strings.Contains(r.path, "webhook_endpoints") && reachesOut(body) {
			return
		}
		path := strings.NewReplacer("{key}", target.ID, "{hook}", hook.ID, "{seg}", url.PathEscape(seg)).Replace(r.path)
		req, err := http.NewRequest(r.method, s.url+path, bytes.NewReader(body))
		if err != nil {
			return // not a URL a client can send
		}
		auth := testAdminKey
		if r.widget {
			auth = tok.Token
		}
		req.Header.Set("Authorization", "Bearer "+auth)
		if idem != "" && !strings.ContainsFunc(idem, func(c rune) bool { return c < 0x20 || c == 0x7f || c > 0xff }) {
			req.Header.Set(schemas.HeaderIdempotencyKey, idem)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, path, err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: read: %v", r.method, path, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s %q: %d with content type %q: %s", r.method, path, body, resp.StatusCode, ct, raw)
		}
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, path, body, resp.StatusCode, raw)
		}
		if resp.StatusCode >= 400 {
			var e schemas.Error
			if json.Unmarshal(raw, &e) != nil || e.Code == "" || e.Message == "" {
				t.Fatalf("%s %s %q: %d is not {code, message}: %s", r.method, path, body, resp.StatusCode, raw)
			}
			return
		}
		if !json.Valid(raw) || !bytes.HasPrefix(raw, []byte("{")) {
			t.Fatalf("%s %s %q: %d with a body that is not a JSON object: %s", r.method, path, body, resp.StatusCode, raw)
		}
		switch {
		case r.path == "/widgets/token":
			var w schemas.WidgetToken
			if err := json.Unmarshal(raw, &w); err != nil {
				t.Fatal(err)
			}
			var asked schemas.WidgetTokenRequest
			if err := json.Unmarshal(body, &asked); err != nil {
				t.Fatalf("minted from %q, which does not decode: %v", body, err)
			}
			ttl := 10 * time.Minute
			if asked.ExpiresIn != 0 {
				if asked.ExpiresIn < 1 || asked.ExpiresIn > 3600 {
					t.Fatalf("minted with expires_in %d (from 1 to 3600 only): %s", asked.ExpiresIn, raw)
				}
				ttl = time.Duration(asked.ExpiresIn) * time.Second
			}
			// The answer took some time, and expires_at is in milliseconds.
			if left := time.Until(w.ExpiresAt); left > ttl || left < ttl-5*time.Second {
				t.Fatalf("minted from %q a token that expires in %v, want %v: %s", body, left, ttl, raw)
			}
		case r.method == "POST" && r.path == "/webhook_endpoints":
			var e schemas.WebhookEndpoint
			if err := json.Unmarshal(raw, &e); err != nil || e.ID == "" {
				t.Fatalf("created endpoint: %s", raw)
			}
			if st, raw := call(t, "DELETE", s.url+"/webhook_endpoints/"+e.ID, nil, nil); st != 200 {
				t.Fatalf("delete the endpoint made: %d %s", st, raw)
			}
		}
	})
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/schemas"
)

// Hostile requests beyond TestBadRequests (which covers the create route's
// basic refusals): every JSON route gets huge, deep, mistyped, unknown-field
// and non-UTF-8 bodies; headers try to inject; ids try to traverse; and
// slow clients are cut off. Each gets a clear 4xx (or, for slow clients, a
// closed connection), and after each the server still answers /healthz
// and a normal validation.

// jsonRoutes are the routes that read a JSON body, with a body each accepts
// as to its shape, so that a case can spoil one thing at a time.
func jsonRoutes(keyID, hookID string) []struct{ method, path, good string } {
	return []struct{ method, path, good string }{
		{"POST", "/organizations/org_1/api_keys", `{"name":"a","permissions":[]}`},
		{"DELETE", "/api_keys/" + keyID, `{"reason":"leaked"}`},
		{"POST", "/api_keys/validations", `{"value":"sk_live_x"}`},
		{"PUT", "/api_key_permissions", `{"permissions":["projects:read"]}`},
		{"POST", "/webhook_endpoints", `{"url":"http://127.0.0.1:9/","events":["api_key.created"]}`},
		{"PATCH", "/webhook_endpoints/" + hookID, `{"events":["api_key.created"]}`},
		{"POST", "/webhook_endpoints/" + hookID + "/recover", `{"range_start":"2026-01-01T00:00:00Z","range_end":"2026-01-02T00:00:00Z"}`},
		{"POST", "/widgets/token", `{"organization_id":"org_1","user_id":"user_ada","permissions":[]}`},
	}
}

// healthy checks the server still answers its health check and validates
// a key.
func healthy(t *testing.T, s *testServer, value string) {
	t.Helper()
	resp, err := http.Get(s.url + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	if v := validate(t, s.url, value); v.APIKey == nil {
		t.Fatalf("a good key no longer validates: %+v", v)
	}
}

// rawExchange writes req on a fresh TCP connection and reads one answer.
func rawExchange(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read the answer to %.80q: %v", req, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

func TestHostileBodies(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	good := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "good", Permissions: []string{"projects:read"}})
	victim := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "victim", Permissions: []string{"projects:read"}})
	var hook schemas.WebhookEndpoint
	if st, raw := call(t, "POST", s.url+"/webhook_endpoints", `{"url":"http://127.0.0.1:9/","events":["webhook_endpoint.deleted"]}`, &hook); st != 201 {
		t.Fatalf("endpoint: %d %s", st, raw)
	}
	deep := func(open, close string, n int) string { return strings.Repeat(open, n) + strings.Repeat(close, n) }
	for _, r := range jsonRoutes(victim.ID, hook.ID) {
		first, _, _ := strings.Cut(strings.TrimPrefix(r.good, `{"`), `"`)
		cases := map[string]struct {
			body string
			code string
		}{
			"huge":                  {`{"` + first + `":"` + strings.Repeat("a", 1<<20) + `"}`, "body_too_large"},
			"huge white space":      {strings.Repeat(" ", 65<<10) + r.good, "body_too_large"},
			"deep arrays":           {`{"` + first + `":` + deep("[", "]", 40000) + `}`, "body_too_large"},
			"deep within the bound": {`{"` + first + `":` + deep("[", "]", 11000) + `}`, "invalid_json"},
			"deep objects":          {`{"` + first + `":` + strings.Repeat(`{"a":`, 10001) + `1` + strings.Repeat("}", 10001) + `}`, "invalid_json"},
			"deep unknown field":    {`{"x":` + deep("[", "]", 11000) + `}`, "invalid_json"},
			"unknown field":         {strings.TrimSuffix(r.good, "}") + `,"admin":true}`, "invalid_json"},
			"unknown nested field":  {`{"` + first + `":{"admin":true}}`, "invalid_json"},
			"wrong type: number":    {`{"` + first + `":12}`, "invalid_json"},
			"wrong type: object":    {`{"` + first + `":{}}`, "invalid_json"},
			"wrong type: bool":      {`{"` + first + `":true}`, "invalid_json"},
			"huge number":           {`{"` + first + `":1e999999}`, "invalid_json"},
			"not an object":         {`"` + r.good + `"`, "invalid_json"},
			"invalid UTF-8 value":   {`{"` + first + `":"\xc3\x28"}`, "invalid_json"},
			"invalid UTF-8 key":     {"{\"\xff\xfe\":1}", "invalid_json"},
			"overlong UTF-8":        {`{"` + first + `":"\xc0\xaf"}`, "invalid_json"},
			"surrogate in UTF-8":    {`{"` + first + `":"\xed\xa0\x80"}`, "invalid_json"},
			"NUL byte":              {"{\"" + first + "\":\"a\x00\"}", "invalid_json"},
			"byte order mark":       {"\xef\xbb\xbf" + r.good, "invalid_json"},
			"trailing data":         {r.good + r.good, "invalid_json"},
			"comment":               {`/* x */` + r.good, "invalid_json"},
			"single quotes":         {strings.ReplaceAll(r.good, `"`, `'`), "invalid_json"},
		}
		for name, c := range cases {
			t.Run(r.method+" "+r.path+"/"+name, func(t *testing.T) {
				st, raw := call(t, r.method, s.url+r.path, c.body, nil)
				if st != 400 || errCode(t, raw) != c.code {
					t.Fatalf("%d %.300s, want 400 %s", st, raw, c.code)
				}
				healthy(t, s, *good.Value)
			})
		}
	}
	// None of it changed anything: the victim is not revoked, the
	// catalogue is as set, the endpoint is as made.
	if v := validate(t, s.url, *victim.Value); v.APIKey == nil {
		t.Fatalf("the victim key was revoked: %+v", v)
	}
	var cat schemas.PermissionsBody
	if call(t, "GET", s.url+"/api_key_permissions", nil, &cat); len(cat.Permissions) != 1 || cat.Permissions[0] != "projects:read" {
		t.Fatalf("catalogue %v", cat.Permissions)
	}
	var we schemas.WebhookEndpoint
	if call(t, "GET", s.url+"/webhook_endpoints/"+hook.ID, nil, &we); len(we.Events) != 1 || we.Events[0] != "webhook_endpoint.deleted" {
		t.Fatalf("endpoint %+v", we)
	}
	var list schemas.WebhookEndpointList
	if call(t, "GET", s.url+"/webhook_endpoints", nil, &list); len(list.Data) != 1 {
		t.Fatalf("%d endpoints, want 1", len(list.Data))
	}

	// A body far larger than announced or than the bound is cut off after
	// the bound: the server answers 400 without waiting for the rest.
	addr := s.main.Addr()
	head := "POST /api_keys/validations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testAdminKey + "\r\nContent-Length: 104857600\r\n\r\n"
	resp, body := rawExchange(t, addr, head+`{"value":"`+strings.Repeat("a", 70<<10))
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte("body_too_large")) {
		t.Fatalf("100 MB announced: %d %s", resp.StatusCode, body)
	}
	chunked := "POST /organizations/org_1/api_keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testAdminKey + "\r\nTransfer-Encoding: chunked\r\n\r\n"
	for i := 0; i < 80; i++ {
		chunked += fmt.Sprintf("%x\r\n%s\r\n", 1024, strings.Repeat("a", 1024))
	}
	resp, body = rawExchange(t, addr, chunked)
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte("body_too_large")) {
		t.Fatalf("chunked 80 KB: %d %s", resp.StatusCode, body)
	}
	healthy(t, s, *good.Value)
}

func TestHostileHeadersAndPaths(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	good := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "good", Permissions: []string{"projects:read"}})
	addr := s.main.Addr()
	auth := "Authorization: Bearer " + testAdminKey + "\r\n"
	create := func(extra string) string {
		body := `{"name":"h","permissions":[]}`
		return "POST /organizations/org_1/api_keys HTTP/1.1\r\nHost: x\r\n" + auth + extra + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	}

	// Header injection and malformed header blocks are refused by the
	// HTTP server before any handler with a 4xx, except where HTTP/1.1
	// (RFC 9112) prescribes otherwise, which Go's server follows: a bare LF
	// may end a line (§2.2: the "injected" header is just the client's own
	// second header), an obsolete line folding is replaced by a space
	// (§5.2: the value is one header), an unknown transfer coding is 501
	// (§6.1), an unknown major version 505. No case yields a header it
	// did not send, and only those two create anything.
	for _, c := range []struct {
		name, req string
		status    int // 0: any 4xx
	}{
		{"bare LF in a value", create("Idempotency-Key: lf\nX-Injected: 1\r\n"), 201},
		{"obsolete line folding", create("Idempotency-Key: fold\r\n X-Injected: 1\r\n"), 201},
		{"bare CR in a value", create("Idempotency-Key: a\rX-Injected: 1\r\n"), 0},
		{"NUL in a value", create("Idempotency-Key: a\x00b\r\n"), 0},
		{"space before the colon", create("Idempotency-Key : a\r\n"), 0},
		{"no colon", create("Idempotency-Key\r\n"), 0},
		{"control in a name", create("Idem\x01potency-Key: a\r\n"), 0},
		{"two Content-Lengths", "POST /api_keys/validations HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n{\"a\":1}", 0},
		{"length and chunked", "POST /api_keys/validations HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0},
		{"negative length", "POST /api_keys/validations HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: -1\r\n\r\n", 0},
		{"no Host", "POST /api_keys/validations HTTP/1.1\r\n" + auth + "Content-Length: 2\r\n\r\n{}", 0},
		{"64 KB of headers", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
		{"10000 headers", "GET /healthz HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 10000) + "\r\n", 431},
		{"garbage request line", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 0},
		{"unknown transfer coding", "POST /api_keys/validations HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"absurd version", "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 505},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := rawExchange(t, addr, c.req)
			if c.status == 0 && (resp.StatusCode < 400 || resp.StatusCode >= 500) || c.status != 0 && resp.StatusCode != c.status {
				t.Fatalf("%d %s, want %d (0: a 4xx)", resp.StatusCode, body, c.status)
			}
			if resp.Header.Get("X-Injected") != "" {
				t.Fatal("an injected header came back")
			}
			healthy(t, s, *good.Value)
		})
	}
	var keys schemas.APIKeyList
	call(t, "GET", s.url+"/organizations/org_1/api_keys", nil, &keys)
	if len(keys.Data) != 3 {
		t.Fatalf("%d keys after the header cases, want 3 (the good one, bare LF, folding)", len(keys.Data))
	}

	// Request input never becomes a response header: a path and a query
	// holding CR LF come back in the JSON body only, escaped.
	for _, path := range []string{"/nope%0d%0aSet-Cookie:%20a=1", "/organizations/org_1/api_keys?limit=1%0d%0aSet-Cookie:%20a=1"} {
		req, _ := http.NewRequest("GET", s.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || resp.Header.Get("Set-Cookie") != "" || !json.Valid(raw) {
			t.Fatalf("%s: %d %v %s", path, resp.StatusCode, resp.Header, raw)
		}
	}
	// Over-long Idempotency-Key.
	if st, raw := call(t, "POST", s.url+"/organizations/org_1/api_keys", `{"name":"a","permissions":[]}`, nil, "Idempotency-Key", strings.Repeat("k", 256)); st != 400 || errCode(t, raw) != "invalid_idempotency_key" {
		t.Fatalf("long Idempotency-Key: %d %s", st, raw)
	}
	// Authorization headers that are almost right.
	for _, a := range []string{"Bearer  " + testAdminKey + "x", "Bearer " + testAdminKey + "\t", "bearer " + strings.ToUpper(testAdminKey), "Bearer " + testAdminKey[:len(testAdminKey)-1],
		"Bearer " + testAdminKey + "\x00", "Bearer " + strings.Repeat("k", 30<<10)} {
		req, _ := http.NewRequest("GET", s.url+"/api_key_permissions", nil)
		req.Header["Authorization"] = []string{a}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // the client refuses to send it: fine
		}
		resp.Body.Close()
		if resp.StatusCode != 401 && !(a == "Bearer "+testAdminKey+"\t" && resp.StatusCode == 200) {
			t.Errorf("Authorization %.40q: %d, want 401", a, resp.StatusCode)
		}
	}

	// Ids that try to leave their place: 4xx JSON, never a file, never
	// another key.
	for _, path := range []string{
		"/api_keys/%2e%2e", "/api_keys/%2e%2e%2f%2e%2e%2fgo.mod", "/api_keys/" + good.ID + "%00", "/api_keys/" + good.ID + "%2f..",
		"/api_keys/" + strings.ToLower(good.ID), "/api_keys/" + good.ID + "/..%2f" + good.ID, "/api_keys/%20" + good.ID,
		"/api_keys/" + strings.Repeat("A", 8000),
		"/organizations/..%2forg_1/api_keys", "/organizations/org_1%2f..%2forg_2/api_keys", "/organizations/org_1%00/api_keys",
		"/organizations/%ff/api_keys", "/organizations/org_1/api_keys?user_id=..%2fuser", "/organizations/org_1/api_keys?after=..%2f" + good.ID,
		"/webhook_endpoints/..%2f..%2f", "/webhook_endpoints/%2e%2e/recover", "/webhook_endpoints/we_%2e%2e/attempts",
		"/ui/assets/..%2f..%2fgo.mod", "/ui/assets/%2e%2e%2fserve.go", "/ui/assets/..%5c..%5cgo.mod", "/ui/assets/%252e%252e%252fgo.mod",
		"/ui/api-keys/../../../go.mod", "/../../../../etc/passwd", "/ui/assets/../../../etc/passwd",
	} {
		for _, method := range []string{"GET", "DELETE", "PATCH"} {
			req, err := http.NewRequest(method, s.url+path, strings.NewReader(`{}`))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			req.Header.Set("Authorization", "Bearer "+testAdminKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Errorf("%s %s: %d %.200s, want a 4xx", method, path, resp.StatusCode, raw)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" && resp.StatusCode != 405 {
				t.Errorf("%s %s: content type %q", method, path, ct)
			}
			if bytes.Contains(raw, []byte("module github.com")) || bytes.Contains(raw, []byte("root:")) || bytes.Contains(raw, []byte("package main")) {
				t.Fatalf("%s %s served a file: %.200s", method, path, raw)
			}
		}
	}
	if v := validate(t, s.url, *good.Value); v.APIKey == nil {
		t.Fatal("a traversal attempt revoked the key")
	}
	healthy(t, s, *good.Value)
}

// Slow clients are cut off by the server's own timeouts
// (api.NewHTTPServer: ReadHeaderTimeout 5 s, ReadTimeout 15 s), and do not
// slow anyone else meanwhile. Slow-header clients (a byte every 300 ms,
// forever) are closed after about 5 s; slow-body clients (headers at once,
// then a byte every 300 ms) after about 15 s, with 400 invalid_body or
// a closed connection. Meanwhile other clients' health checks and
// validations are answered quickly throughout.
func TestSlowClientsAreCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 16 s")
	}
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	good := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "good", Permissions: []string{"projects:read"}})
	addr := s.main.Addr()

	type result struct {
		kind   string
		after  time.Duration
		answer string
		err    error
	}
	results := make(chan result, 64)
	drip := func(kind, head, drip string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			results <- result{kind: kind, err: err}
			return
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetDeadline(start.Add(25 * time.Second))
		if _, err := io.WriteString(c, head); err != nil {
			results <- result{kind: kind, err: err}
			return
		}
		// The server's answer, or its closing, ends the drip.
		closed := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(c)
			closed <- string(b)
		}()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case ans := <-closed:
				results <- result{kind: kind, after: time.Since(start), answer: ans}
				return
			case <-tick.C:
				// Write errors are expected once the server has closed.
				_, _ = c.Write([]byte{drip[i%len(drip)]})
			}
		}
	}
	const slowHeaders, slowBodies = 12, 4
	var wg sync.WaitGroup
	for i := 0; i < slowHeaders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drip("headers", "POST /api_keys/validations HTTP/1.1\r\nHost: x\r\n", "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
		}()
	}
	for i := 0; i < slowBodies; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drip("body", "POST /api_keys/validations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testAdminKey+"\r\nContent-Length: 1000\r\n\r\n", `{"value":"aaaaaaaaaaaaaaa`)
		}()
	}
	// Everyone else, meanwhile.
	stop := make(chan struct{})
	var served int
	var slowest time.Duration
	go func() {
		wg.Wait()
		close(stop)
	}()
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		case <-time.After(200 * time.Millisecond):
			start := time.Now()
			healthy(t, s, *good.Value)
			slowest = max(slowest, time.Since(start))
			served++
		}
	}
	close(results)
	for r := range results {
		if r.err != nil {
			t.Fatalf("%s: %v", r.kind, r.err)
		}
		first, _, _ := strings.Cut(r.answer, "\r\n")
		t.Logf("slow %s: cut off after %v, answer %q", r.kind, r.after.Round(100*time.Millisecond), first)
		switch r.kind {
		case "headers":
			if r.after < 4*time.Second || r.after > 8*time.Second {
				t.Errorf("a slow-header client was cut off after %v, want about 5 s", r.after)
			}
			if r.answer != "" && !strings.HasPrefix(r.answer, "HTTP/1.1 4") {
				t.Errorf("a slow-header client got %q", r.answer)
			}
		case "body":
			if r.after < 14*time.Second || r.after > 19*time.Second {
				t.Errorf("a slow-body client was cut off after %v, want about 15 s", r.after)
			}
			if r.answer != "" && (!strings.HasPrefix(r.answer, "HTTP/1.1 400") || !strings.Contains(r.answer, "invalid_body")) {
				t.Errorf("a slow-body client got %q", r.answer)
			}
		}
	}
	t.Logf("meanwhile: %d health checks and validations, slowest %v", served, slowest)
	if served < 30 || slowest > 2*time.Second {
		t.Fatalf("other clients: %d served, slowest %v, while slow clients were held", served, slowest)
	}
	healthy(t, s, *good.Value)
}

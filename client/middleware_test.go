package client_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/client"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

func TestMiddlewareOverHTTP(t *testing.T) {
	srv := ledgertest.Start(t)
	c := newClient(t, srv.URL(), client.WithRetries(0, 0))
	ctx := context.Background()
	if _, err := c.SetPermissions(ctx, []string{"projects:read", "projects:write"}); err != nil {
		t.Fatal(err)
	}
	mk := func(req schemas.CreateAPIKeyRequest) *schemas.APIKey {
		t.Helper()
		k, err := c.CreateKey(ctx, org, req, "")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	reader := mk(schemas.CreateAPIKeyRequest{Name: "reader", Permissions: []string{"projects:read"}, UserID: "user_ada"})
	revoked := mk(schemas.CreateAPIKeyRequest{Name: "gone", Permissions: []string{"projects:read"}})
	if _, err := c.RevokeKey(ctx, revoked.ID, ""); err != nil {
		t.Fatal(err)
	}
	expiring := mk(schemas.CreateAPIKeyRequest{Name: "soon", Permissions: []string{"projects:read"}, ExpiresAt: ptr(time.Now().Add(1500 * time.Millisecond))})

	// A well-formed key keyledger never issued.
	unknown, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Validate(ctx, unknown); err != nil || res.Reason != schemas.ReasonNotFound {
		t.Fatalf("unknown key: %+v, %v", res, err)
	}
	logs := &ledgertest.SyncBuffer{}
	mw := client.NewMiddleware(c, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	seen := make(chan *schemas.APIKey, 1)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, _ := client.KeyFromContext(r.Context())
		seen <- k
		w.WriteHeader(http.StatusOK)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /projects", mw.Protect("projects:read", ok))
	mux.Handle("POST /projects", mw.Authenticate(client.RequirePermission("projects:write")(ok)))
	mux.Handle("GET /unguarded", client.RequirePermission("projects:read")(ok))
	app := httptest.NewServer(mux)
	defer app.Close()

	do := func(method, path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, app.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return 200, ""
		}
		var e schemas.Error
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Code == "" || e.Message == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s %s: %d without a JSON error (%v)", method, path, resp.StatusCode, err)
		}
		return resp.StatusCode, e.Code
	}
	bearer := func(v string) string { return "Bearer " + v }

	if s, _ := do("GET", "/projects", bearer(*reader.Value)); s != 200 {
		t.Fatalf("reader GET /projects: %d", s)
	}
	got := <-seen
	if got.ID != reader.ID || got.OrganizationID != org || got.UserID == nil || *got.UserID != "user_ada" || !slices.Equal(got.Permissions, []string{"projects:read"}) {
		t.Fatalf("key in the context: %+v", got)
	}
	for _, tc := range []struct {
		name, method, path, auth string
		status                   int
		code                     string
	}{
		{"no header", "GET", "/projects", "", 401, client.CodeAPIKeyRequired},
		{"basic auth", "GET", "/projects", "Basic dXNlcjpwYXNz", 401, client.CodeAPIKeyRequired},
		{"empty bearer", "GET", "/projects", "Bearer ", 401, client.CodeAPIKeyRequired},
		{"malformed", "GET", "/projects", bearer("sk_live_not-a-key"), 401, client.CodeInvalidAPIKey},
		{"unknown", "GET", "/projects", bearer(unknown), 401, client.CodeInvalidAPIKey},
		{"revoked", "GET", "/projects", bearer(*revoked.Value), 401, client.CodeInvalidAPIKey},
		{"no permission", "POST", "/projects", bearer(*reader.Value), 403, client.CodePermissionDenied},
		{"not authenticated first", "GET", "/unguarded", bearer(*reader.Value), 401, client.CodeAPIKeyRequired},
	} {
		if s, code := do(tc.method, tc.path, tc.auth); s != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, s, code, tc.status, tc.code)
		}
	}
	if s, _ := do("GET", "/projects", bearer(*expiring.Value)); s != 200 {
		t.Fatalf("expiring key before expiry: %d", s)
	}
	<-seen
	time.Sleep(time.Until(*expiring.ExpiresAt) + 100*time.Millisecond)
	if s, code := do("GET", "/projects", bearer(*expiring.Value)); s != 401 || code != client.CodeInvalidAPIKey {
		t.Fatalf("expired key: %d %s, want 401", s, code)
	}

	// Validations through the middleware show as last use in admin views.
	if k, err := c.GetKey(ctx, reader.ID); err != nil || k.LastUsedAt == nil {
		t.Fatalf("last_used_at after use over HTTP: %+v, %v", k, err)
	}

	// keyledger gone: fail closed with 503, and the key is not in the log.
	srv.Stop()
	if s, code := do("GET", "/projects", bearer(*reader.Value)); s != 503 || code != client.CodeValidationUnavailable {
		t.Fatalf("keyledger down: %d %s, want 503", s, code)
	}
	if !strings.Contains(logs.String(), "cannot validate") {
		t.Fatalf("the failure was not logged: %q", logs.String())
	}
	for _, v := range []string{*reader.Value, *revoked.Value, *expiring.Value} {
		if strings.Contains(logs.String(), v) {
			t.Fatal("a key value reached the log")
		}
	}
}

func ptr[T any](v T) *T { return &v }

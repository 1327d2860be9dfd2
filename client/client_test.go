package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyledger/keyledger/client"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

func TestMain(m *testing.M) { os.Exit(ledgertest.Main(m)) }

const org = "org_runway"

func newClient(t *testing.T, base string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(base, ledgertest.AdminKey, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientCoversTheAPI(t *testing.T) {
	srv := ledgertest.Start(t)
	c := newClient(t, srv.URL())
	ctx := context.Background()

	perms, err := c.SetPermissions(ctx, []string{"projects:read", "projects:write", "tasks:read"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Permissions(ctx); err != nil || !slices.Equal(got, perms) || len(got) != 3 {
		t.Fatalf("Permissions = %v, %v; want %v", got, err, perms)
	}

	k, err := c.CreateKey(ctx, org, schemas.CreateAPIKeyRequest{Name: "ci", Permissions: []string{"projects:read"}}, "")
	if err != nil || k.Value == nil || k.ID == "" || k.OrganizationID != org {
		t.Fatalf("CreateKey = %+v, %v", k, err)
	}
	// The same idempotency key is one create, and the value comes back.
	a, err := c.CreateKey(ctx, org, schemas.CreateAPIKeyRequest{Name: "retried", Permissions: []string{"tasks:read"}}, "idem-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateKey(ctx, org, schemas.CreateAPIKeyRequest{Name: "retried", Permissions: []string{"tasks:read"}}, "idem-1")
	if err != nil || b.ID != a.ID || b.Value == nil || *b.Value != *a.Value {
		t.Fatalf("repeated create = %+v, %v; want key %s again with its value", b, err, a.ID)
	}

	got, err := c.GetKey(ctx, k.ID)
	if err != nil || got.ID != k.ID || got.Value != nil || got.ObfuscatedValue == "" {
		t.Fatalf("GetKey = %+v, %v", got, err)
	}
	if _, err := c.GetKey(ctx, "api_key_01J00000000000000000000000"); !client.IsNotFound(err) {
		t.Fatalf("GetKey of an unknown key: %v, want not_found", err)
	}
	var apiErr *client.Error
	if _, err := c.CreateKey(ctx, org, schemas.CreateAPIKeyRequest{Name: "x", Permissions: []string{"billing:write"}}, ""); !errors.As(err, &apiErr) || apiErr.Status != 422 || apiErr.Code != "permission_not_allowed" {
		t.Fatalf("create outside the catalogue: %v, want 422 permission_not_allowed", err)
	}

	res, err := c.Validate(ctx, *k.Value)
	if err != nil || res.APIKey == nil || res.APIKey.ID != k.ID || !slices.Equal(res.APIKey.Permissions, []string{"projects:read"}) {
		t.Fatalf("Validate = %+v, %v", res, err)
	}
	if res, err := c.Validate(ctx, "sk_live_nope"); err != nil || res.APIKey != nil || res.Reason != schemas.ReasonMalformed {
		t.Fatalf("Validate(garbage) = %+v, %v", res, err)
	}

	// Paging: 2 + 7 keys, 3 to a page, every one seen once.
	for range 7 {
		if _, err := c.CreateKey(ctx, org, schemas.CreateAPIKeyRequest{Name: "page", Permissions: []string{}}, ""); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.ListKeys(ctx, org, client.ListQuery{Limit: 3})
	if err != nil || len(page.Data) != 3 || page.ListMetadata.After == nil {
		t.Fatalf("ListKeys = %+v, %v", page, err)
	}
	seen := map[string]bool{}
	for key, err := range c.AllKeys(ctx, org, client.ListQuery{Limit: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		if seen[key.ID] {
			t.Fatalf("key %s listed twice", key.ID)
		}
		seen[key.ID] = true
	}
	if len(seen) != 9 {
		t.Fatalf("AllKeys listed %d keys, want 9", len(seen))
	}

	// Revoke is in force when it returns, and revoking again is harmless.
	for range 2 {
		r, err := c.RevokeKey(ctx, k.ID, "leaked")
		if err != nil || r.Status != "revoked" {
			t.Fatalf("RevokeKey = %+v, %v", r, err)
		}
	}
	if res, err := c.Validate(ctx, *k.Value); err != nil || res.APIKey != nil || res.Reason != schemas.ReasonRevoked {
		t.Fatalf("Validate after revoke = %+v, %v", res, err)
	}

	// Member removal revokes the user's keys, and only theirs.
	u, err := c.CreateKey(ctx, org, schemas.CreateAPIKeyRequest{Name: "mine", Permissions: []string{"projects:read"}, UserID: "user_ada"}, "")
	if err != nil {
		t.Fatal(err)
	}
	rm, err := c.RemoveMember(ctx, org, "user_ada")
	if err != nil || !slices.Equal(rm.RevokedAPIKeyIDs, []string{u.ID}) {
		t.Fatalf("RemoveMember = %+v, %v", rm, err)
	}
	if active, err := c.ListKeys(ctx, org, client.ListQuery{Status: "active", Limit: 100}); err != nil || len(active.Data) != 8 {
		t.Fatalf("active keys after removal: %v, %v; want 8", active, err)
	}

	// The events feed, paged by its cursor: every event once, in order.
	var seq uint64
	events, after := 0, ""
	for {
		page, err := c.Events(ctx, client.EventsQuery{After: after, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) == 0 {
			break
		}
		for _, e := range page.Data {
			if e.Context.LedgerSequence <= seq {
				t.Fatalf("event %s at %d after %d", e.ID, e.Context.LedgerSequence, seq)
			}
			seq = e.Context.LedgerSequence
			events++
		}
		after = *page.ListMetadata.After
	}
	// The catalogue, 10 creates (the replay appends nothing), 1 revoke (the
	// second appends nothing), 1 removal and the removal's revoke.
	if events != 14 {
		t.Fatalf("the feed holds %d events, want 14", events)
	}
	revoked, err := c.Events(ctx, client.EventsQuery{Types: []string{schemas.EventAPIKeyRevoked}, OrganizationID: org, Limit: 100})
	if err != nil || len(revoked.Data) != 2 {
		t.Fatalf("revocations: %+v, %v", revoked, err)
	}

	wrong, err := client.New(srv.URL(), "kl_admin_wrong_wrong_wrong_wrong")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Permissions(ctx); client.ErrorCode(err) != client.CodeUnauthorized {
		t.Fatalf("wrong admin key: %v, want unauthorized", err)
	}
}

// flaky fronts the real server with a proxy that answers 503 to the first
// n requests.
func flaky(t *testing.T, target string, n int64) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var calls atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= n {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"code":"ledger_unavailable","message":"try again"}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s, &calls
}

func TestClientRetriesOnlyWhatMayBeRetried(t *testing.T) {
	srv := ledgertest.Start(t)
	ctx := context.Background()

	front, calls := flaky(t, srv.URL(), 2)
	c := newClient(t, front.URL, client.WithRetries(3, time.Millisecond))
	if _, err := c.SetPermissions(ctx, []string{"projects:read"}); err != nil {
		t.Fatalf("SetPermissions through two 503s: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	// A create retried after a lost answer is one key.
	front2, calls2 := flaky(t, srv.URL(), 1)
	c2 := newClient(t, front2.URL, client.WithRetries(3, time.Millisecond))
	k, err := c2.CreateKey(ctx, org, schemas.CreateAPIKeyRequest{Name: "once", Permissions: []string{}}, "")
	if err != nil || k.Value == nil || calls2.Load() != 2 {
		t.Fatalf("create through a 503: %+v, %v, %d attempts", k, err, calls2.Load())
	}

	// A 4xx is an answer, not a failure: no retry.
	front3, calls3 := flaky(t, srv.URL(), 0)
	c3 := newClient(t, front3.URL, client.WithRetries(3, time.Millisecond))
	if _, err := c3.GetKey(ctx, "api_key_01J00000000000000000000000"); !client.IsNotFound(err) || calls3.Load() != 1 {
		t.Fatalf("404: %v after %d attempts, want not_found after 1", err, calls3.Load())
	}
	// Retries give up at the limit with the last error.
	front4, calls4 := flaky(t, srv.URL(), 100)
	c4 := newClient(t, front4.URL, client.WithRetries(2, time.Millisecond))
	var apiErr *client.Error
	if _, err := c4.Permissions(ctx); !errors.As(err, &apiErr) || apiErr.Status != 503 || calls4.Load() != 3 {
		t.Fatalf("always 503: %v after %d attempts, want 503 after 3", err, calls4.Load())
	}
	// A cancelled context ends the retries.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c4.Permissions(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keyledger/keyledger/schemas"
)

func setCatalogue(t testing.TB, base string, perms ...string) {
	t.Helper()
	if st, raw := call(t, "PUT", base+"/api_key_permissions", schemas.PermissionsBody{Permissions: perms}, nil); st != 200 {
		t.Fatalf("set catalogue: %d %s", st, raw)
	}
}

func createKey(t testing.TB, base, org string, req schemas.CreateAPIKeyRequest, hdr ...string) schemas.APIKey {
	t.Helper()
	var k schemas.APIKey
	st, raw := call(t, "POST", base+"/organizations/"+org+"/api_keys", req, &k, hdr...)
	if st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, raw)
	}
	return k
}

func validate(t testing.TB, base, value string) schemas.ValidateResponse {
	t.Helper()
	var v schemas.ValidateResponse
	if st, raw := call(t, "POST", base+"/api_keys/validations", schemas.ValidateRequest{Value: value}, &v); st != 200 {
		t.Fatalf("validate: %d %s", st, raw)
	}
	return v
}

// The walkthrough: create a projects:read key, validate it, refuse a
// permission outside the catalogue, revoke, validate at once, restart, and
// find the same state.
func TestCreateValidateRevokeRestart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	setCatalogue(t, s.url, "projects:read", "projects:write", "tasks:read", "tasks:write")

	k := createKey(t, s.url, "org_runway", schemas.CreateAPIKeyRequest{Name: "CI pipeline", Permissions: []string{"projects:read"}})
	if k.Object != "api_key" || !strings.HasPrefix(k.ID, "api_key_") || k.Value == nil || !strings.HasPrefix(*k.Value, "sk_live_") {
		t.Fatalf("create answer: %+v", k)
	}
	if k.Owner.Type != "organization" || k.Owner.ID != "org_runway" || k.UserID != nil {
		t.Fatalf("owner: %+v", k)
	}
	if strings.Contains(k.ObfuscatedValue, (*k.Value)[8:30]) || !strings.HasSuffix(*k.Value, k.ObfuscatedValue[len(k.ObfuscatedValue)-4:]) {
		t.Fatalf("obfuscated value %q reveals too much of the key", k.ObfuscatedValue)
	}
	value := *k.Value

	v := validate(t, s.url, value)
	if v.APIKey == nil || v.APIKey.ID != k.ID || !slices.Equal(v.APIKey.Permissions, []string{"projects:read"}) || v.APIKey.OrganizationID != "org_runway" {
		t.Fatalf("validate: %+v", v)
	}
	if v.APIKey.Value != nil {
		t.Fatal("validation must never return the value")
	}

	st, raw := call(t, "POST", s.url+"/organizations/org_runway/api_keys", schemas.CreateAPIKeyRequest{Name: "x", Permissions: []string{"billing:write"}}, nil)
	if st != 422 || errCode(t, raw) != "permission_not_allowed" {
		t.Fatalf("outside the catalogue: %d %s", st, raw)
	}

	var revoked schemas.APIKey
	if st, raw := call(t, "DELETE", s.url+"/api_keys/"+k.ID, nil, &revoked); st != 200 || revoked.Status != "revoked" || revoked.RevokeReason != "requested" {
		t.Fatalf("revoke: %d %s", st, raw)
	}
	// No window: the very next validation refuses it.
	if v := validate(t, s.url, value); v.APIKey != nil || v.Reason != "revoked" {
		t.Fatalf("validate after revoke: %+v", v)
	}
	// Revoking again changes nothing.
	if st, _ := call(t, "DELETE", s.url+"/api_keys/"+k.ID, nil, nil); st != 200 {
		t.Fatalf("second revoke: %d", st)
	}

	u := createKey(t, s.url, "org_runway", schemas.CreateAPIKeyRequest{Name: "mine", UserID: "user_ada", Permissions: []string{"tasks:read", "projects:read", "tasks:read"}})
	if u.Owner.Type != "user" || u.UserID == nil || *u.UserID != "user_ada" || !slices.Equal(u.Permissions, []string{"projects:read", "tasks:read"}) {
		t.Fatalf("user key: %+v", u)
	}

	var before schemas.APIKeyList
	call(t, "GET", s.url+"/organizations/org_runway/api_keys", nil, &before)

	s.stop()
	s = startServer(t, dir)

	if v := validate(t, s.url, value); v.APIKey != nil || v.Reason != "revoked" {
		t.Fatalf("after restart the revoked key validates: %+v", v)
	}
	if v := validate(t, s.url, *u.Value); v.APIKey == nil || v.APIKey.ID != u.ID {
		t.Fatalf("after restart the user key does not validate: %+v", v)
	}
	var after schemas.APIKeyList
	call(t, "GET", s.url+"/organizations/org_runway/api_keys", nil, &after)
	if len(after.Data) != 2 || len(before.Data) != 2 {
		t.Fatalf("lists: before %d keys, after %d", len(before.Data), len(after.Data))
	}
	for i := range after.Data {
		a, b := after.Data[i], before.Data[i]
		if a.ID != b.ID || a.Status != b.Status || !slices.Equal(a.Permissions, b.Permissions) || !a.CreatedAt.Equal(b.CreatedAt) {
			t.Fatalf("key %d differs after restart: %+v vs %+v", i, a, b)
		}
	}
	var got schemas.APIKey
	if st, _ := call(t, "GET", s.url+"/api_keys/"+k.ID, nil, &got); st != 200 || got.Status != "revoked" {
		t.Fatalf("get revoked key: %d %+v", st, got)
	}
}

func TestIdempotentCreate(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	req := schemas.CreateAPIKeyRequest{Name: "retry me", Permissions: []string{"projects:read"}}
	a := createKey(t, s.url, "org_1", req, "Idempotency-Key", "req-42")
	var b schemas.APIKey
	st, raw := call(t, "POST", s.url+"/organizations/org_1/api_keys", req, &b, "Idempotency-Key", "req-42")
	if st != 201 || b.ID != a.ID || b.Value == nil || *b.Value != *a.Value {
		t.Fatalf("retried create: %d %s (first id %s)", st, raw, a.ID)
	}
	var list schemas.APIKeyList
	call(t, "GET", s.url+"/organizations/org_1/api_keys", nil, &list)
	if len(list.Data) != 1 {
		t.Fatalf("a retried create appended a second key: %d keys", len(list.Data))
	}
	req.Name = "something else"
	st, raw = call(t, "POST", s.url+"/organizations/org_1/api_keys", req, nil, "Idempotency-Key", "req-42")
	if st != 422 || errCode(t, raw) != "idempotency_key_reused" {
		t.Fatalf("reused key for another request: %d %s", st, raw)
	}
	// The same Idempotency-Key in another organization is another command.
	c := createKey(t, s.url, "org_2", schemas.CreateAPIKeyRequest{Name: "retry me", Permissions: []string{"projects:read"}}, "Idempotency-Key", "req-42")
	if c.ID == a.ID {
		t.Fatal("idempotency keys must be scoped to the organization")
	}
}

func TestRemoveMemberRevokesTheirKeys(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "tasks:read")
	var ada []schemas.APIKey
	for i := 0; i < 5; i++ {
		ada = append(ada, createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: fmt.Sprint("ada ", i), UserID: "user_ada", Permissions: []string{"tasks:read"}}))
	}
	other := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "bob", UserID: "user_bob", Permissions: []string{"tasks:read"}})
	orgKey := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "shared", Permissions: []string{"tasks:read"}})
	elsewhere := createKey(t, s.url, "org_2", schemas.CreateAPIKeyRequest{Name: "ada elsewhere", UserID: "user_ada", Permissions: []string{"tasks:read"}})

	var res schemas.MemberRemoval
	if st, raw := call(t, "DELETE", s.url+"/organizations/org_1/members/user_ada", nil, &res); st != 200 {
		t.Fatalf("remove member: %d %s", st, raw)
	}
	if len(res.RevokedAPIKeyIDs) != 5 {
		t.Fatalf("revoked %v, want ada's 5 keys", res.RevokedAPIKeyIDs)
	}
	for _, k := range ada {
		if v := validate(t, s.url, *k.Value); v.APIKey != nil || v.Reason != "revoked" {
			t.Fatalf("ada's key %s still validates", k.ID)
		}
		var got schemas.APIKey
		call(t, "GET", s.url+"/api_keys/"+k.ID, nil, &got)
		if got.RevokeReason != "owner_removed" {
			t.Fatalf("reason %q, want owner_removed", got.RevokeReason)
		}
	}
	for _, k := range []schemas.APIKey{other, orgKey, elsewhere} {
		if v := validate(t, s.url, *k.Value); v.APIKey == nil {
			t.Fatalf("key %s (%s) was revoked with ada", k.ID, k.Name)
		}
	}
}

func TestListPagingAndFilters(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "tasks:read")
	var ids []string
	for i := 0; i < 7; i++ {
		req := schemas.CreateAPIKeyRequest{Name: fmt.Sprint("k", i), Permissions: []string{"tasks:read"}}
		if i%2 == 0 {
			req.UserID = "user_ada"
		}
		ids = append(ids, createKey(t, s.url, "org_1", req).ID)
	}
	// Newest first by default: walk forward with after, then back with before.
	var seen []string
	after := ""
	var last schemas.APIKeyList
	for {
		url := s.url + "/organizations/org_1/api_keys?limit=3"
		if after != "" {
			url += "&after=" + after
		}
		var page schemas.APIKeyList
		if st, raw := call(t, "GET", url, nil, &page); st != 200 {
			t.Fatalf("list: %d %s", st, raw)
		}
		for _, k := range page.Data {
			seen = append(seen, k.ID)
		}
		last = page
		if page.ListMetadata.After == nil {
			break
		}
		after = *page.ListMetadata.After
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("paged ids %v, want %v", seen, want)
	}
	if last.ListMetadata.Before == nil {
		t.Fatal("the last page has no before cursor")
	}
	var prev schemas.APIKeyList
	call(t, "GET", s.url+"/organizations/org_1/api_keys?limit=3&before="+*last.ListMetadata.Before, nil, &prev)
	if len(prev.Data) != 3 || prev.Data[0].ID != want[3] || prev.Data[2].ID != want[5] {
		t.Fatalf("before page: %v", prev.Data)
	}
	var asc schemas.APIKeyList
	call(t, "GET", s.url+"/organizations/org_1/api_keys?order=asc&limit=100&user_id=user_ada", nil, &asc)
	if len(asc.Data) != 4 || asc.Data[0].ID != ids[0] || asc.Data[3].ID != ids[6] {
		t.Fatalf("user filter asc: %d keys", len(asc.Data))
	}
	call(t, "DELETE", s.url+"/api_keys/"+ids[1], nil, nil)
	var active, revoked schemas.APIKeyList
	call(t, "GET", s.url+"/organizations/org_1/api_keys?status=active&limit=100", nil, &active)
	call(t, "GET", s.url+"/organizations/org_1/api_keys?status=revoked&limit=100", nil, &revoked)
	if len(active.Data) != 6 || len(revoked.Data) != 1 || revoked.Data[0].ID != ids[1] {
		t.Fatalf("status filters: %d active, %d revoked", len(active.Data), len(revoked.Data))
	}
	var other schemas.APIKeyList
	call(t, "GET", s.url+"/organizations/org_2/api_keys", nil, &other)
	if len(other.Data) != 0 {
		t.Fatal("another organization's list shows keys")
	}
}

// Bad input gets a clear 4xx with a machine-readable code, never a 500.
func TestBadRequests(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	good := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "k", Permissions: []string{"projects:read"}})
	keys := s.url + "/organizations/org_1/api_keys"
	cases := []struct {
		name, method, url string
		body              any
		status            int
		code              string
	}{
		{"unknown field", "POST", keys, `{"name":"a","permissions":[],"admin":true}`, 400, "invalid_json"},
		{"wrong type", "POST", keys, `{"name":5,"permissions":[]}`, 400, "invalid_json"},
		{"not an object", "POST", keys, `[1,2]`, 400, "invalid_json"},
		{"trailing data", "POST", keys, `{"name":"a","permissions":[]} {}`, 400, "invalid_json"},
		{"truncated", "POST", keys, `{"name":"a",`, 400, "invalid_json"},
		{"empty body", "POST", keys, ``, 400, "invalid_json"},
		{"invalid utf-8", "POST", keys, []byte("{\"name\":\"\xff\xfe\",\"permissions\":[]}"), 400, "invalid_json"},
		{"oversized", "POST", keys, `{"name":"` + strings.Repeat("a", 70<<10) + `","permissions":[]}`, 400, "body_too_large"},
		{"long name", "POST", keys, `{"name":"` + strings.Repeat("a", 201) + `","permissions":[]}`, 400, "invalid_name"},
		{"no name", "POST", keys, `{"permissions":[]}`, 400, "invalid_name"},
		{"bad permission", "POST", keys, `{"name":"a","permissions":["Projects Read"]}`, 400, "invalid_permission"},
		{"past expiry", "POST", keys, `{"name":"a","permissions":[],"expires_at":"2001-01-01T00:00:00Z"}`, 400, "invalid_expires_at"},
		{"bad user id", "POST", keys, `{"name":"a","permissions":[],"user_id":"a.b"}`, 400, "invalid_user_id"},
		{"bad org id", "POST", s.url + "/organizations/org.*/api_keys", `{"name":"a","permissions":[]}`, 400, "invalid_organization_id"},
		{"bad key id", "GET", s.url + "/api_keys/..%2f..%2fetc", nil, 404, "not_found"},
		{"unknown key", "GET", s.url + "/api_keys/api_key_01J00000000000000000000000", nil, 404, "not_found"},
		{"revoke unknown", "DELETE", s.url + "/api_keys/api_key_01J00000000000000000000000", nil, 404, "not_found"},
		{"bad reason", "DELETE", s.url + "/api_keys/" + good.ID, `{"reason":"owner_removed"}`, 400, "invalid_reason"},
		{"bad limit", "GET", keys + "?limit=1000", nil, 400, "invalid_limit"},
		{"bad order", "GET", keys + "?order=sideways", nil, 400, "invalid_order"},
		{"bad cursor", "GET", keys + "?after=nope", nil, 400, "invalid_cursor"},
		{"bad status", "GET", keys + "?status=zombie", nil, 400, "invalid_status"},
		{"catalogue without list", "PUT", s.url + "/api_key_permissions", `{}`, 400, "invalid_permissions"},
		{"reserved permission", "PUT", s.url + "/api_key_permissions", `{"permissions":["widgets:api-keys:manage"]}`, 422, "reserved_permission"},
		{"unknown route", "GET", s.url + "/nope", nil, 404, "route_not_found"},
		{"validate wrong type", "POST", s.url + "/api_keys/validations", `{"value":1}`, 400, "invalid_json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, raw := call(t, c.method, c.url, c.body, nil)
			if st != c.status || errCode(t, raw) != c.code {
				t.Fatalf("%s %s: got %d %s, want %d %s", c.method, c.url, st, raw, c.status, c.code)
			}
		})
	}
	// Malformed and unknown keys are answers, not errors.
	for value, reason := range map[string]string{
		"":                  "malformed",
		"sk_live_short":     "malformed",
		*good.Value + "x":   "malformed",
		"Bearer sk_live_xx": "malformed",
	} {
		if v := validate(t, s.url, value); v.APIKey != nil || v.Reason != reason {
			t.Fatalf("validate %q: %+v, want %s", value, v, reason)
		}
	}
	flipped := []byte(*good.Value)
	flipped[10] ^= 1
	if v := validate(t, s.url, string(flipped)); v.APIKey != nil || v.Reason != "malformed" {
		t.Fatalf("a mistyped key passes its checksum: %+v", v)
	}
	// The server is still healthy.
	if resp, err := http.Get(s.url + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after bad requests: %v", err)
	}
}

func TestAuthentication(t *testing.T) {
	s := startServer(t, t.TempDir())
	for _, auth := range []string{"", "Bearer", "Bearer wrong-key", "Basic " + testAdminKey, testAdminKey} {
		req, _ := http.NewRequest("GET", s.url+"/organizations/org_1/api_keys", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("Authorization %q: %d, want 401", auth, resp.StatusCode)
		}
	}
	if resp, err := http.Get(s.url + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatal("healthz needs no key")
	}
}

// Concurrent revokes of one key: all answer 200, one event is appended.
func TestConcurrentRevoke(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "tasks:read")
	k := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "k", Permissions: []string{"tasks:read"}})
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _ = call(t, "DELETE", s.url+"/api_keys/"+k.ID, nil, nil)
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		if st != 200 {
			t.Fatalf("revoke %d: %d", i, st)
		}
	}
	// catalogue + create + exactly one revoke.
	if last, err := s.main.ledgerLastSeq(); err != nil || last != 3 {
		t.Fatalf("ledger holds %d events (err %v), want 3", last, err)
	}
}

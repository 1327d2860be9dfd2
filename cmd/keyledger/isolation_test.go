package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// isoActor is a caller of the isolation matrix: a widget token (or the
// admin key when token is "").
type isoActor struct {
	name  string
	org   string
	user  string
	perms []string
	token string
}

// canSee is the expected visibility of a key to an actor, spelled out
// from the design (not from domain.CanSee): the admin sees everything; a
// user of another organization nothing; org keys need
// widgets:api-keys:manage; user keys need manage-all, or manage-self for
// one's own.
func (a isoActor) canSee(k schemas.APIKey) bool {
	if a.token == "" {
		return true
	}
	if a.org != k.OrganizationID {
		return false
	}
	has := func(p string) bool { return slices.Contains(a.perms, p) }
	if k.Owner.Type == "organization" {
		return has(domain.PermManageOrgKeys)
	}
	return has(domain.PermManageAllUserKeys) || (k.Owner.ID == a.user && has(domain.PermManageOwnUserKeys))
}

// mayCreate is the expected status of a create by an actor in org for
// owner ("" for an organization key, else a user id).
func (a isoActor) mayCreate(org, owner string) int {
	if a.token == "" {
		return 201
	}
	if a.org != org {
		return 404
	}
	has := func(p string) bool { return slices.Contains(a.perms, p) }
	switch {
	case owner == "" && has(domain.PermManageOrgKeys):
		return 201
	case owner == a.user && (has(domain.PermManageOwnUserKeys) || has(domain.PermManageAllUserKeys)):
		return 201
	}
	return 403
}

func (a isoActor) do(t *testing.T, method, url string, body any, out any) (int, []byte) {
	t.Helper()
	if a.token == "" {
		return call(t, method, url, body, out)
	}
	return call(t, method, url, body, out, "Authorization", "Bearer "+a.token)
}

// isoKeys makes the keys of the matrix: in each of org_1 and org_2 an
// organization key, a key of user_ada (a member of both) and a key of
// another user.
func isoKeys(t *testing.T, base, label string) []schemas.APIKey {
	t.Helper()
	var keys []schemas.APIKey
	for _, org := range []string{"org_1", "org_2"} {
		for _, user := range []string{"", "user_ada", "user_bob"} {
			keys = append(keys, createKey(t, base, org, schemas.CreateAPIKeyRequest{Name: label + " " + org + " " + user, UserID: user, Permissions: []string{"projects:read"}}))
		}
	}
	return keys
}

func keyLabel(k schemas.APIKey) string {
	return k.OrganizationID + "/" + k.Owner.Type + ":" + k.Owner.ID
}

// Every key route, for every kind of caller, on keys of its own
// organization and of another: a key the caller may not manage does not
// exist for it (404 on read and revoke, absent from lists, and a revoke
// attempt leaves it valid); creating is allowed exactly by the manage
// permissions, and another organization is 404.
func TestIsolationMatrix(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read", "projects:write", "tasks:read")
	actors := []isoActor{
		{name: "admin"},
		{name: "manage-self", org: "org_1", user: "user_ada", perms: []string{domain.PermManageOwnUserKeys}},
		{name: "manage-all", org: "org_1", user: "user_carol", perms: []string{domain.PermManageAllUserKeys}},
		{name: "org-manage", org: "org_1", user: "user_dan", perms: []string{domain.PermManageOrgKeys}},
		{name: "none", org: "org_1", user: "user_ada", perms: []string{}},
		{name: "everything", org: "org_1", user: "user_ada", perms: []string{domain.PermManageOwnUserKeys, domain.PermManageAllUserKeys, domain.PermManageOrgKeys}},
	}
	for i, a := range actors {
		if a.name != "admin" {
			actors[i].token = mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: a.org, UserID: a.user, Permissions: a.perms, ExpiresIn: 3600})
		}
	}
	keys := isoKeys(t, s.url, "matrix")
	values := map[string]string{}
	for _, k := range keys {
		values[k.ID] = *k.Value
	}

	for _, a := range actors {
		t.Run(a.name, func(t *testing.T) {
			// Read.
			for _, k := range keys {
				var got schemas.APIKey
				st, raw := a.do(t, "GET", s.url+"/api_keys/"+k.ID, nil, &got)
				switch {
				case a.canSee(k) && (st != 200 || got.ID != k.ID || got.Value != nil):
					t.Errorf("GET %s: %d %s, want 200 without its value", keyLabel(k), st, raw)
				case !a.canSee(k) && (st != 404 || errCode(t, raw) != "not_found"):
					t.Errorf("GET %s: %d %s, want 404 not_found", keyLabel(k), st, raw)
				}
			}
			// List, in each organization, with every owner filter.
			for _, org := range []string{"org_1", "org_2"} {
				for _, q := range []string{"", "?owner_type=user", "?owner_type=organization", "?user_id=user_ada", "?user_id=user_bob", "?status=active&order=asc"} {
					var list schemas.APIKeyList
					st, raw := a.do(t, "GET", s.url+"/organizations/"+org+"/api_keys"+q, nil, &list)
					if st == 404 && a.org != org && a.token != "" {
						continue // another organization: may not exist at all
					}
					if st != 200 {
						t.Errorf("list %s%s: %d %s", org, q, st, raw)
						continue
					}
					for _, got := range list.Data {
						i := slices.IndexFunc(keys, func(k schemas.APIKey) bool { return k.ID == got.ID })
						if i < 0 || !a.canSee(keys[i]) || got.OrganizationID != org || got.Value != nil {
							t.Errorf("list %s%s shows %s/%s:%s", org, q, got.OrganizationID, got.Owner.Type, got.Owner.ID)
						}
					}
					if q == "" {
						want := 0
						for _, k := range keys {
							if k.OrganizationID == org && a.canSee(k) {
								want++
							}
						}
						if len(list.Data) != want {
							t.Errorf("list %s: %d keys, want %d", org, len(list.Data), want)
						}
					}
				}
			}
			// Revoke what it may not see: 404, and the key stays valid.
			if a.token != "" {
				for _, k := range keys {
					if a.canSee(k) {
						continue
					}
					for _, body := range []any{nil, `{"reason":"leaked"}`} {
						if st, raw := a.do(t, "DELETE", s.url+"/api_keys/"+k.ID, body, nil); st != 404 || errCode(t, raw) != "not_found" {
							t.Errorf("DELETE %s: %d %s, want 404", keyLabel(k), st, raw)
						}
					}
					if v := validate(t, s.url, values[k.ID]); v.APIKey == nil {
						t.Errorf("%s was revoked by a caller that may not see it: %+v", keyLabel(k), v)
					}
				}
			}
		})
	}

	// Create, once every read and list is done (creates add keys): an
	// organization key, one's own key and another user's key, in one's
	// organization and in another.
	for _, a := range actors {
		owners := []string{"", "user_bob"}
		if a.user != "" && a.user != "user_bob" {
			owners = append(owners, a.user)
		}
		for _, org := range []string{"org_1", "org_2"} {
			for _, owner := range owners {
				req := schemas.CreateAPIKeyRequest{Name: "by " + a.name, UserID: owner, Permissions: []string{"projects:read"}}
				var got schemas.APIKey
				st, raw := a.do(t, "POST", s.url+"/organizations/"+org+"/api_keys", req, &got)
				if want := a.mayCreate(org, owner); st != want {
					t.Errorf("%s: create in %s for %q: %d %s, want %d", a.name, org, owner, st, raw, want)
					continue
				}
				if st == 201 && (got.OrganizationID != org || (owner != "" && (got.UserID == nil || *got.UserID != owner))) {
					t.Errorf("%s: create in %s for %q made %s", a.name, org, owner, raw)
				}
			}
		}
	}

	// Revoke what one may see: each actor on keys made for it, so that
	// the order of the matrix does not matter.
	for _, a := range actors[1:] {
		fresh := isoKeys(t, s.url, "revoke by "+a.name)
		for _, k := range fresh {
			st, raw := a.do(t, "DELETE", s.url+"/api_keys/"+k.ID, `{"reason":"leaked"}`, nil)
			want := 404
			if a.canSee(k) {
				want = 200
			}
			if st != want {
				t.Errorf("%s DELETE %s: %d %s, want %d", a.name, keyLabel(k), st, raw, want)
			}
			v := validate(t, s.url, *k.Value)
			if revoked := v.APIKey == nil; revoked != (want == 200) {
				t.Errorf("%s DELETE %s answered %d, yet the key's validation is %+v", a.name, keyLabel(k), st, v)
			}
		}
	}
}

// A key's permissions never exceed the catalogue, whoever asks, nor, for
// a user key made through a widget token that carries the user's
// permissions, what the user holds; an organization key is bounded by
// the catalogue only. When the catalogue narrows, no new key can carry
// what it dropped.
func TestPermissionCeilings(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read", "projects:write", "tasks:read")
	everything := []string{domain.PermManageOwnUserKeys, domain.PermManageAllUserKeys, domain.PermManageOrgKeys}
	bounded := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada", Permissions: everything,
		UserPermissions: []string{"projects:read", "tasks:read", "billing:read"}, ExpiresIn: 3600})
	// A user who holds no API permission: "user_permissions": [] on the
	// wire. (schemas.WidgetTokenRequest would drop an empty list:
	// omitempty; sent that way the token is bounded by the catalogue only.)
	var emptyTok schemas.WidgetToken
	if st, raw := call(t, "POST", s.url+"/widgets/token", `{"organization_id":"org_1","user_id":"user_ada","permissions":["`+strings.Join(everything, `","`)+`"],"user_permissions":[],"expires_in":3600}`, &emptyTok); st != 201 {
		t.Fatalf("mint: %d %s", st, raw)
	}
	empty := emptyTok.Token
	unbounded := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada", Permissions: everything, ExpiresIn: 3600})
	keys := s.url + "/organizations/org_1/api_keys"
	for _, c := range []struct {
		name, token, user string
		perms             []string
		status            int
		code              string
	}{
		{"admin, outside the catalogue", "", "", []string{"billing:read"}, 422, "permission_not_allowed"},
		{"admin, user key outside the catalogue", "", "user_ada", []string{"projects:read", "admin:all"}, 422, "permission_not_allowed"},
		{"admin, a manage permission", "", "", []string{domain.PermManageOrgKeys}, 422, "permission_not_allowed"},
		{"user's own, within both", bounded, "user_ada", []string{"projects:read", "tasks:read"}, 201, ""},
		{"user's own, beyond the user", bounded, "user_ada", []string{"projects:write"}, 422, "permission_exceeds_user"},
		{"user's own, the user's but not the catalogue's", bounded, "user_ada", []string{"billing:read"}, 422, "permission_not_allowed"},
		{"user's own, user holds nothing", empty, "user_ada", []string{"projects:read"}, 422, "permission_exceeds_user"},
		{"user's own, user holds nothing, no permissions", empty, "user_ada", []string{}, 201, ""},
		{"user's own, no user permissions in the token: the catalogue", unbounded, "user_ada", []string{"projects:write"}, 201, ""},
		{"user's own, no user permissions in the token, outside the catalogue", unbounded, "user_ada", []string{"billing:read"}, 422, "permission_not_allowed"},
		{"organization key: the catalogue, not the user", bounded, "", []string{"projects:write"}, 201, ""},
		{"organization key outside the catalogue", bounded, "", []string{"billing:read"}, 422, "permission_not_allowed"},
		{"a manage permission on a key", bounded, "user_ada", []string{domain.PermManageAllUserKeys}, 422, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := []string{}
			if c.token != "" {
				hdr = []string{"Authorization", "Bearer " + c.token}
			}
			var got schemas.APIKey
			st, raw := call(t, "POST", keys, schemas.CreateAPIKeyRequest{Name: "ceiling", UserID: c.user, Permissions: c.perms}, &got, hdr...)
			if st != c.status || (c.code != "" && errCode(t, raw) != c.code) {
				t.Fatalf("%d %s, want %d %s", st, raw, c.status, c.code)
			}
			if st == 201 {
				v := validate(t, s.url, *got.Value)
				if v.APIKey == nil || !slices.Equal(v.APIKey.Permissions, got.Permissions) {
					t.Fatalf("validation %+v, created with %v", v, got.Permissions)
				}
			}
		})
	}

	// The catalogue narrows after a key carrying projects:write exists.
	old := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "before", Permissions: []string{"projects:read", "projects:write"}})
	setCatalogue(t, s.url, "projects:read", "tasks:read")
	for _, tok := range []string{"", unbounded} {
		hdr := []string{}
		if tok != "" {
			hdr = []string{"Authorization", "Bearer " + tok}
		}
		for _, user := range []string{"", "user_ada"} {
			st, raw := call(t, "POST", keys, schemas.CreateAPIKeyRequest{Name: "after", UserID: user, Permissions: []string{"projects:write"}}, nil, hdr...)
			if st != 422 || errCode(t, raw) != "permission_not_allowed" {
				t.Errorf("a key with a permission the catalogue dropped: %d %s", st, raw)
			}
		}
	}
	var cat schemas.PermissionsBody
	call(t, "GET", s.url+"/api_key_permissions", nil, &cat)
	if slices.Contains(cat.Permissions, "projects:write") {
		t.Fatalf("catalogue %v", cat.Permissions)
	}
	// The catalogue is a ceiling over the keys made before too: from the
	// moment the narrowing is answered, the key validates and reads
	// without what the catalogue dropped (domain.Catalogue.Ceiling).
	narrowed := []string{"projects:read"}
	v := validate(t, s.url, *old.Value)
	if v.APIKey == nil || !slices.Equal(v.APIKey.Permissions, narrowed) {
		t.Fatalf("after the catalogue dropped projects:write, an existing key validates as %+v", v)
	}
	var got schemas.APIKey
	if st, raw := call(t, "GET", s.url+"/api_keys/"+old.ID, nil, &got); st != 200 || !slices.Equal(got.Permissions, narrowed) {
		t.Fatalf("after the narrowing, GET shows %d %s", st, raw)
	}
	var page struct {
		Data []schemas.APIKey `json:"data"`
	}
	call(t, "GET", keys+"?limit=100", nil, &page)
	for _, k := range page.Data {
		if slices.Contains(k.Permissions, "projects:write") {
			t.Errorf("the list shows %s with %v after the narrowing", k.ID, k.Permissions)
		}
	}
	// Allowed again, the permission works again on the keys granted it.
	setCatalogue(t, s.url, "projects:read", "projects:write", "tasks:read")
	if v := validate(t, s.url, *old.Value); v.APIKey == nil || !slices.Equal(v.APIKey.Permissions, []string{"projects:read", "projects:write"}) {
		t.Fatalf("after the catalogue allowed projects:write again, the key validates as %+v", v)
	}
}

// tamperClaims re-encodes a widget token's claims after edit, keeping its
// signature: what someone holding a token could try.
func tamperClaims(t *testing.T, token string, edit func(map[string]any)) string {
	t.Helper()
	payload, sig, ok := strings.Cut(strings.TrimPrefix(token, schemas.WidgetTokenPrefix), ".")
	if !ok {
		t.Fatalf("token %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	raw, _ = json.Marshal(c)
	return schemas.WidgetTokenPrefix + base64.RawURLEncoding.EncodeToString(raw) + "." + sig
}

// Widget tokens on every route they open: an expired one is refused
// everywhere (no replay), and so is every alteration of a valid one:
// claims rewritten to another organization, user, more permissions or a
// later expiry, a signature borrowed from another token, or a token
// minted by another server's key. Each refusal leaves the keys as they
// were.
func TestWidgetTokensCannotBeReplayedOrAltered(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	mine := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "ada's", UserID: "user_ada", Permissions: []string{"projects:read"}})
	theirs := createKey(t, s.url, "org_2", schemas.CreateAPIKeyRequest{Name: "org 2", Permissions: []string{"projects:read"}})
	self := []string{domain.PermManageOwnUserKeys}
	short := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada", Permissions: self, ExpiresIn: 1})
	good := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada", Permissions: self, ExpiresIn: 3600})
	other := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_2", UserID: "user_eve", Permissions: []string{domain.PermManageOrgKeys}, ExpiresIn: 3600})
	ceiled := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada", Permissions: self, UserPermissions: []string{"projects:read"}, ExpiresIn: 3600})

	routes := []struct{ method, path, body string }{
		{"GET", "/widgets/session", ""},
		{"GET", "/organizations/org_1/api_keys", ""},
		{"GET", "/organizations/org_2/api_keys", ""},
		{"POST", "/organizations/org_1/api_keys", `{"name":"x","permissions":[],"user_id":"user_ada"}`},
		{"POST", "/organizations/org_2/api_keys", `{"name":"x","permissions":[]}`},
		{"GET", "/api_keys/" + mine.ID, ""},
		{"GET", "/api_keys/" + theirs.ID, ""},
		{"DELETE", "/api_keys/" + mine.ID, ""},
		{"DELETE", "/api_keys/" + theirs.ID, ""},
	}
	// The short token works while it lives.
	if st, raw := asWidget(t, short, "GET", s.url+"/api_keys/"+mine.ID, nil, nil); st != 200 {
		t.Fatalf("a fresh token: %d %s", st, raw)
	}
	deadline := time.Now().Add(1100 * time.Millisecond)

	far := time.Now().Add(24 * time.Hour).UnixMilli()
	altered := map[string]string{
		"another organization": tamperClaims(t, good, func(c map[string]any) { c["org"] = "org_2" }),
		"another user":         tamperClaims(t, good, func(c map[string]any) { c["sub"] = "user_bob" }),
		"more permissions": tamperClaims(t, good, func(c map[string]any) {
			c["perms"] = []string{domain.PermManageOrgKeys, domain.PermManageAllUserKeys, domain.PermManageOwnUserKeys}
		}),
		"later expiry":     tamperClaims(t, short, func(c map[string]any) { c["exp"] = far }),
		"user ceiling off": tamperClaims(t, ceiled, func(c map[string]any) { delete(c, "uperms"); delete(c, "has_uperms") }),
		"borrowed signature": func() string {
			p, _, _ := strings.Cut(good, ".")
			_, sig, _ := strings.Cut(other, ".")
			return p + "." + sig
		}(),
		"no signature":     strings.SplitN(good, ".", 2)[0] + ".",
		"signature only":   schemas.WidgetTokenPrefix + "." + strings.SplitN(good, ".", 2)[1],
		"other prefix":     "kwx_" + strings.TrimPrefix(good, schemas.WidgetTokenPrefix),
		"lowercased":       strings.ToLower(good),
		"trailing garbage": good + ".x",
	}
	for name, tok := range altered {
		if tok == good {
			t.Fatalf("%s: the tampering changed nothing", name)
		}
		for _, r := range routes {
			var body any
			if r.body != "" {
				body = r.body
			}
			st, raw := asWidget(t, tok, r.method, s.url+r.path, body, nil)
			if st != 401 {
				t.Errorf("%s: %s %s: %d %s, want 401", name, r.method, r.path, st, raw)
			}
		}
	}
	// A token signed with another server's widget key.
	s2 := startServerWith(t, t.TempDir(), func(c *Config) {
		c.WidgetKey = base64.StdEncoding.EncodeToString([]byte("another server's widget key, 32B"))
	})
	foreign := mintToken(t, s2.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada", Permissions: self, ExpiresIn: 3600})
	for _, r := range routes {
		if st, raw := asWidget(t, foreign, r.method, s.url+r.path, nil, nil); st != 401 || errCode(t, raw) != "invalid_widget_token" {
			t.Errorf("another server's token: %s %s: %d %s", r.method, r.path, st, raw)
		}
	}

	// After expiry, the short token is refused on every route.
	time.Sleep(time.Until(deadline))
	for _, r := range routes {
		var body any
		if r.body != "" {
			body = r.body
		}
		st, raw := asWidget(t, short, r.method, s.url+r.path, body, nil)
		if st != 401 || errCode(t, raw) != "widget_token_expired" {
			t.Errorf("expired: %s %s: %d %s, want 401 widget_token_expired", r.method, r.path, st, raw)
		}
	}
	// Nothing was revoked or created by any of it.
	for _, k := range []schemas.APIKey{mine, theirs} {
		if v := validate(t, s.url, *k.Value); v.APIKey == nil {
			t.Errorf("%s was revoked: %+v", k.ID, v)
		}
	}
	for _, org := range []string{"org_1", "org_2"} {
		var list schemas.APIKeyList
		call(t, "GET", s.url+"/organizations/"+org+"/api_keys", nil, &list)
		if len(list.Data) != 1 {
			t.Errorf("%s has %d keys, want 1", org, len(list.Data))
		}
	}
	// The untouched token still works: the refusals were about the
	// alterations.
	if st, raw := asWidget(t, good, "GET", s.url+"/api_keys/"+mine.ID, nil, nil); st != 200 {
		t.Errorf("the good token: %d %s", st, raw)
	}
}

// Every route that is not a widget route refuses a valid widget token,
// whatever it carries: the admin key is the only way in.
func TestWidgetTokensReachOnlyWidgetRoutes(t *testing.T) {
	s := startServer(t, t.TempDir())
	all := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada",
		Permissions: []string{domain.PermManageOwnUserKeys, domain.PermManageAllUserKeys, domain.PermManageOrgKeys}, ExpiresIn: 3600})
	we := "we_01J00000000000000000000000"
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/api_keys/validations", `{"value":"sk_live_x"}`},
		{"GET", "/api_key_permissions", ``},
		{"PUT", "/api_key_permissions", `{"permissions":[]}`},
		{"DELETE", "/organizations/org_1/members/user_bob", ``},
		{"GET", "/events", ``},
		{"POST", "/widgets/token", `{"organization_id":"org_1","user_id":"user_ada","permissions":[]}`},
		{"POST", "/webhook_endpoints", `{"url":"http://127.0.0.1:9/","events":[]}`},
		{"GET", "/webhook_endpoints", ``},
		{"GET", "/webhook_endpoints/" + we, ``},
		{"PATCH", "/webhook_endpoints/" + we, `{"status":"disabled"}`},
		{"DELETE", "/webhook_endpoints/" + we, ``},
		{"POST", "/webhook_endpoints/" + we + "/rotate_secret", ``},
		{"GET", "/webhook_endpoints/" + we + "/attempts", ``},
		{"POST", "/webhook_endpoints/" + we + "/recover", `{"range_start":"2026-01-01T00:00:00Z","range_end":"2026-01-02T00:00:00Z"}`},
	} {
		var body any
		if r.body != "" {
			body = r.body
		}
		st, raw := asWidget(t, all, r.method, s.url+r.path, body, nil)
		if st != http.StatusUnauthorized {
			t.Errorf("%s %s with a widget token: %d %s, want 401", r.method, r.path, st, raw)
		}
	}
}

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

func mintToken(t *testing.T, base string, req schemas.WidgetTokenRequest) string {
	t.Helper()
	var tok schemas.WidgetToken
	if status, raw := call(t, "POST", base+"/widgets/token", req, &tok); status != 201 || !strings.HasPrefix(tok.Token, schemas.WidgetTokenPrefix) {
		t.Fatalf("mint: %d %s", status, raw)
	}
	return tok.Token
}

// asWidget is call with a widget token instead of the admin key.
func asWidget(t *testing.T, token, method, url string, body any, out any) (int, []byte) {
	t.Helper()
	return call(t, method, url, body, out, "Authorization", "Bearer "+token)
}

func TestWidgetTokens(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read", "projects:write", "tasks:read")
	self := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada",
		Permissions: []string{domain.PermManageOwnUserKeys}, UserPermissions: []string{"projects:read", "tasks:read"}})

	var sess schemas.WidgetSession
	if status, raw := asWidget(t, self, "GET", s.url+"/widgets/session", nil, &sess); status != 200 || sess.UserID != "user_ada" || len(sess.Catalogue) != 3 || len(sess.UserPermissions) != 2 || sess.StaleAfterDays != 90 {
		t.Fatalf("session: %d %s", status, raw)
	}
	// A user key for oneself, within one's own permissions.
	var mine schemas.APIKey
	if status, raw := asWidget(t, self, "POST", s.url+"/organizations/org_1/api_keys", `{"name":"laptop","permissions":["projects:read"],"user_id":"user_ada"}`, &mine); status != 201 || mine.Value == nil {
		t.Fatalf("create own key: %d %s", status, raw)
	}
	for body, want := range map[string]int{
		`{"name":"more","permissions":["projects:write"],"user_id":"user_ada"}`: 422, // beyond the user's permissions
		`{"name":"theirs","permissions":[],"user_id":"user_bob"}`:               403, // someone else's key
		`{"name":"org key","permissions":[]}`:                                   403, // no widgets:api-keys:manage
	} {
		if status, raw := asWidget(t, self, "POST", s.url+"/organizations/org_1/api_keys", body, nil); status != want {
			t.Errorf("%s: %d %s, want %d", body, status, raw, want)
		}
	}
	// Another organization's keys do not exist for it.
	if status, _ := asWidget(t, self, "POST", s.url+"/organizations/org_2/api_keys", `{"name":"x","permissions":[],"user_id":"user_ada"}`, nil); status != 404 {
		t.Errorf("create in another org: %d, want 404", status)
	}
	bobs := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "bob's", UserID: "user_bob", Permissions: []string{"projects:read"}})
	other := createKey(t, s.url, "org_2", schemas.CreateAPIKeyRequest{Name: "elsewhere", UserID: "user_ada", Permissions: []string{"projects:read"}})
	var list schemas.APIKeyList
	asWidget(t, self, "GET", s.url+"/organizations/org_1/api_keys?owner_type=user", nil, &list)
	if len(list.Data) != 1 || list.Data[0].ID != mine.ID {
		t.Fatalf("manage-self sees %+v, want only its own key", list.Data)
	}
	for _, id := range []string{bobs.ID, other.ID} {
		if status, _ := asWidget(t, self, "GET", s.url+"/api_keys/"+id, nil, nil); status != 404 {
			t.Errorf("GET %s as manage-self: %d, want 404", id, status)
		}
		if status, _ := asWidget(t, self, "DELETE", s.url+"/api_keys/"+id, nil, nil); status != 404 {
			t.Errorf("DELETE %s as manage-self: %d, want 404", id, status)
		}
	}

	// manage-all sees and revokes every user key of its organization.
	all := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_admin", Permissions: []string{domain.PermManageAllUserKeys}})
	list = schemas.APIKeyList{}
	asWidget(t, all, "GET", s.url+"/organizations/org_1/api_keys?owner_type=user", nil, &list)
	if len(list.Data) != 2 {
		t.Fatalf("manage-all sees %d keys, want 2", len(list.Data))
	}
	if status, raw := asWidget(t, all, "DELETE", s.url+"/api_keys/"+bobs.ID, nil, nil); status != 200 {
		t.Fatalf("manage-all revokes bob's key: %d %s", status, raw)
	}

	// A token reaches nothing else.
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/api_keys/validations", `{"value":"` + *mine.Value + `"}`},
		{"PUT", "/api_key_permissions", `{"permissions":[]}`},
		{"DELETE", "/organizations/org_1/members/user_bob", ``},
		{"GET", "/events", ``},
		{"GET", "/webhook_endpoints", ``},
		{"POST", "/widgets/token", `{"organization_id":"org_1","user_id":"user_ada","permissions":[]}`},
	} {
		if status, _ := asWidget(t, self, r.method, s.url+r.path, r.body, nil); status != 401 {
			t.Errorf("%s %s with a widget token: %d, want 401", r.method, r.path, status)
		}
	}

	// Tampered, expired, and unknown permissions.
	tampered := self[:len(self)-3] + flip(self[len(self)-3:len(self)-2]) + self[len(self)-2:]
	payloadTampered := strings.Replace(self, self[4:10], flip(self[4:5])+self[5:10], 1)
	for _, bad := range []string{tampered, payloadTampered, self + "x", "kwt_", "kwt_a.b"} {
		status, raw := asWidget(t, bad, "GET", s.url+"/widgets/session", nil, nil)
		if status != 401 || errCode(t, raw) != "invalid_widget_token" {
			t.Errorf("tampered token: %d %s", status, raw)
		}
	}
	short := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada", Permissions: []string{domain.PermManageOwnUserKeys}, ExpiresIn: 1})
	time.Sleep(1100 * time.Millisecond)
	if status, raw := asWidget(t, short, "GET", s.url+"/organizations/org_1/api_keys", nil, nil); status != 401 || errCode(t, raw) != "widget_token_expired" {
		t.Errorf("expired token: %d %s", status, raw)
	}
	for body, code := range map[string]string{
		`{"organization_id":"org_1","user_id":"user_ada","permissions":["admin"]}`:                     "invalid_permissions",
		`{"organization_id":"org_1","user_id":"user_ada","permissions":[],"expires_in":86400}`:         "invalid_expires_in",
		`{"organization_id":"org.1","user_id":"user_ada","permissions":[]}`:                            "invalid_organization_id",
		`{"organization_id":"org_1","permissions":[]}`:                                                 "invalid_user_id",
		`{"organization_id":"org_1","user_id":"user_ada","permissions":[],"user_permissions":["A B"]}`: "invalid_permission",
	} {
		if status, raw := call(t, "POST", s.url+"/widgets/token", body, nil); status != 400 || errCode(t, raw) != code {
			t.Errorf("mint %s: %d %s, want 400 %s", body, status, raw, code)
		}
	}
	if status, _ := call(t, "POST", s.url+"/widgets/token", `{"organization_id":"org_1","user_id":"user_ada","permissions":[]}`, nil, "Authorization", "Bearer "+self); status != 401 {
		t.Errorf("a widget token minted a token: %d", status)
	}

	// A user removed from the organization loses their token at once; a
	// token minted after the removal works (they may have been added back).
	if status, raw := call(t, "DELETE", s.url+"/organizations/org_1/members/user_ada", nil, nil); status != 200 {
		t.Fatalf("remove member: %d %s", status, raw)
	}
	if status, raw := asWidget(t, self, "POST", s.url+"/organizations/org_1/api_keys", `{"name":"after removal","permissions":[],"user_id":"user_ada"}`, nil); status != 401 || errCode(t, raw) != "widget_token_revoked" {
		t.Errorf("token of a removed member: %d %s, want 401 widget_token_revoked", status, raw)
	}
	time.Sleep(2 * time.Millisecond)
	again := mintToken(t, s.url, schemas.WidgetTokenRequest{OrganizationID: "org_1", UserID: "user_ada", Permissions: []string{domain.PermManageOwnUserKeys}})
	if status, raw := asWidget(t, again, "GET", s.url+"/widgets/session", nil, nil); status != 200 {
		t.Errorf("a token minted after the removal: %d %s", status, raw)
	}
}

func flip(c string) string {
	if c == "A" {
		return "B"
	}
	return "A"
}

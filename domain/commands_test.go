package domain

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	decideNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	testCat   = &Catalogue{Permissions: []string{"orders:read", "orders:write", "widgets:read"}, Version: 2}
)

func TestDecideCreate(t *testing.T) {
	justAfter := decideNow.Add(time.Nanosecond)
	past := decideNow.Add(-time.Second)
	now := decideNow
	limited := userSelf
	limited.UserPermissions = []string{"orders:read"}
	noPerms := userSelf
	noPerms.UserPermissions = []string{}
	limitedOrgManager := orgManager
	limitedOrgManager.UserPermissions = []string{"orders:read"}

	type want struct {
		kind  Kind
		code  string
		owner Owner
		perms []string
	}
	ok := func(owner Owner, perms ...string) want {
		if perms == nil {
			perms = []string{}
		}
		return want{owner: owner, perms: perms}
	}
	fail := func(kind Kind, code string) want { return want{kind: kind, code: code} }
	orgOwner := Owner{OwnerOrganization, "org_1"}
	ownerA := Owner{OwnerUser, "user_a"}

	type tc struct {
		name  string
		actor Actor
		cmd   CreateKey
		want  want
	}
	cases := []tc{
		{"admin creates an org key", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci", Permissions: []string{"orders:read"}}, ok(orgOwner, "orders:read")},
		{"admin creates a user key", Admin(), CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "ci", Permissions: []string{"orders:read"}}, ok(ownerA, "orders:read")},
		{"admin creates a key without permissions", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci"}, ok(orgOwner)},
		{"permissions are sorted and deduplicated", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci", Permissions: []string{"widgets:read", "orders:write", "widgets:read", "orders:read"}}, ok(orgOwner, "orders:read", "orders:write", "widgets:read")},
		{"permission outside the catalogue", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci", Permissions: []string{"orders:read", "orders:delete"}}, fail(KindUnprocessable, "permission_not_allowed")},
		{"manage permission is not a key permission", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci", Permissions: []string{PermManageOrgKeys}}, fail(KindUnprocessable, "permission_not_allowed")},
		{"malformed permission", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci", Permissions: []string{"Orders:Read"}}, fail(KindInvalid, "invalid_permission")},
		{"too many permissions", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci", Permissions: slices.Repeat([]string{"orders:read"}, MaxPermissions+1)}, fail(KindInvalid, "too_many_permissions")},
		{"empty name", Admin(), CreateKey{OrganizationID: "org_1", Name: ""}, fail(KindInvalid, "invalid_name")},
		{"name of 200 bytes", Admin(), CreateKey{OrganizationID: "org_1", Name: strings.Repeat("n", 200)}, ok(orgOwner)},
		{"name of 201 bytes", Admin(), CreateKey{OrganizationID: "org_1", Name: strings.Repeat("n", 201)}, fail(KindInvalid, "invalid_name")},
		{"name of 100 two-byte runes", Admin(), CreateKey{OrganizationID: "org_1", Name: strings.Repeat("é", 100)}, ok(orgOwner)},
		{"name of 101 two-byte runes is 202 bytes", Admin(), CreateKey{OrganizationID: "org_1", Name: strings.Repeat("é", 101)}, fail(KindInvalid, "invalid_name")},
		{"expires in the past", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci", ExpiresAt: &past}, fail(KindInvalid, "invalid_expires_at")},
		{"expires now", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci", ExpiresAt: &now}, fail(KindInvalid, "invalid_expires_at")},
		{"expires just after now", Admin(), CreateKey{OrganizationID: "org_1", Name: "ci", ExpiresAt: &justAfter}, ok(orgOwner)},
		{"user creates own key", userSelf, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "mine", Permissions: []string{"orders:read"}}, ok(ownerA, "orders:read")},
		{"user creates a key for another user", userSelf, CreateKey{OrganizationID: "org_1", UserID: "user_b", Name: "theirs"}, fail(KindForbidden, "forbidden")},
		{"user creates a key in another org", userSelf, CreateKey{OrganizationID: "org_2", UserID: "user_a", Name: "mine"}, fail(KindNotFound, "not_found")},
		{"another org is not found before the catalogue is checked", userSelf, CreateKey{OrganizationID: "org_2", UserID: "user_a", Name: "mine", Permissions: []string{"secret:perm"}}, fail(KindNotFound, "not_found")},
		{"manage-self does not allow org keys", userSelf, CreateKey{OrganizationID: "org_1", Name: "org"}, fail(KindForbidden, "forbidden")},
		{"no manage permission: not even own key", userNone, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "mine"}, fail(KindForbidden, "forbidden")},
		{"manage-all creates own key", userAll, CreateKey{OrganizationID: "org_1", UserID: "user_m", Name: "mine"}, ok(Owner{OwnerUser, "user_m"})},
		{"manage-all does not act as another user", userAll, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "theirs"}, fail(KindForbidden, "forbidden")},
		{"manage-all does not allow org keys", userAll, CreateKey{OrganizationID: "org_1", Name: "org"}, fail(KindForbidden, "forbidden")},
		{"org manager creates an org key", orgManager, CreateKey{OrganizationID: "org_1", Name: "org", Permissions: []string{"orders:write"}}, ok(orgOwner, "orders:write")},
		{"org manager in another org", orgManager, CreateKey{OrganizationID: "org_2", Name: "org"}, fail(KindNotFound, "not_found")},
		{"org manager cannot create another user's key", orgManager, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "theirs"}, fail(KindForbidden, "forbidden")},
		{"API key actor with manage creates an org key", apiKeyOrg, CreateKey{OrganizationID: "org_1", Name: "org"}, ok(orgOwner)},
		{"API key actor cannot create user keys", Actor{Type: ActorAPIKey, ID: "user_a", OrganizationID: "org_1", ManagePermissions: []string{PermManageOwnUserKeys, PermManageAllUserKeys}}, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "x"}, fail(KindForbidden, "forbidden")},
		{"user permissions bound a user key", limited, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "mine", Permissions: []string{"orders:read"}}, ok(ownerA, "orders:read")},
		{"a permission beyond the user's", limited, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "mine", Permissions: []string{"orders:read", "orders:write"}}, fail(KindUnprocessable, "permission_exceeds_user")},
		{"empty user permissions allow none", noPerms, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "mine", Permissions: []string{"orders:read"}}, fail(KindUnprocessable, "permission_exceeds_user")},
		{"empty user permissions allow a key without permissions", noPerms, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "mine"}, ok(ownerA)},
		{"the catalogue is checked before the user's permissions", limited, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "mine", Permissions: []string{"orders:delete"}}, fail(KindUnprocessable, "permission_not_allowed")},
		{"user permissions bound user keys, not org keys", limitedOrgManager, CreateKey{OrganizationID: "org_1", Name: "org", Permissions: []string{"orders:write"}}, ok(orgOwner, "orders:write")},
	}
	for name, id := range badIDs {
		cases = append(cases,
			tc{"bad organization id: " + name, Admin(), CreateKey{OrganizationID: id, Name: "ci"}, fail(KindInvalid, "invalid_organization_id")},
			tc{"bad user id: " + name, Admin(), CreateKey{OrganizationID: "org_1", UserID: id, Name: "ci"}, fail(KindInvalid, "invalid_user_id")},
		)
	}
	// An empty user id means an org key, so it is not a bad user id.
	cases = slices.DeleteFunc(cases, func(c tc) bool { return c.name == "bad user id: empty" })

	hash := HashKey("sk_live_value")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecideCreate(c.actor, c.cmd, testCat, "api_key_X", hash, "sk_live_…abcd", decideNow)
			if c.want.code != "" {
				wantErr(t, err, c.want.kind, c.want.code)
				if c.want.code == "not_found" && !errors.Is(err, ErrNotFound) {
					t.Fatalf("%v does not match ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecideCreate: %v", err)
			}
			if got.Owner != c.want.owner {
				t.Errorf("owner = %+v, want %+v", got.Owner, c.want.owner)
			}
			if !slices.Equal(got.Permissions, c.want.perms) {
				t.Errorf("permissions = %q, want %q", got.Permissions, c.want.perms)
			}
			if got.KeyID != "api_key_X" || got.Hash != hash || got.Obfuscated != "sk_live_…abcd" || got.Name != c.cmd.Name {
				t.Errorf("event data = %+v", got)
			}
			if !sameTime(got.ExpiresAt, c.cmd.ExpiresAt) {
				t.Errorf("expires_at = %v, want %v", got.ExpiresAt, c.cmd.ExpiresAt)
			}
		})
	}
}

func TestDecideRevoke(t *testing.T) {
	keyA := testKey("key_a", "org_1", Owner{OwnerUser, "user_a"}, StatusActive)
	keyB := testKey("key_b", "org_1", Owner{OwnerUser, "user_b"}, StatusActive)
	revokedA := testKey("revoked_a", "org_1", Owner{OwnerUser, "user_a"}, StatusRevoked)
	revokedB := testKey("revoked_b", "org_1", Owner{OwnerUser, "user_b"}, StatusRevoked)
	otherOrg := testKey("other", "org_2", Owner{OwnerOrganization, "org_2"}, StatusActive)
	orgKey := testKey("org_key", "org_1", Owner{OwnerOrganization, "org_1"}, StatusActive)

	cases := []struct {
		name    string
		actor   Actor
		key     *Key
		reason  RevokeReason
		want    *KeyRevoked
		wantErr error
	}{
		{"admin revokes", Admin(), keyA, ReasonLeaked, &KeyRevoked{KeyID: "key_a", Reason: ReasonLeaked}, nil},
		{"owner revokes own key", userSelf, keyA, ReasonRequested, &KeyRevoked{KeyID: "key_a", Reason: ReasonRequested}, nil},
		{"manage-all revokes another user's key", userAll, keyB, ReasonRotated, &KeyRevoked{KeyID: "key_b", Reason: ReasonRotated}, nil},
		{"org manager revokes org key", orgManager, orgKey, ReasonRequested, &KeyRevoked{KeyID: "org_key", Reason: ReasonRequested}, nil},
		{"another user's key is not found", userSelf, keyB, ReasonRequested, nil, ErrNotFound},
		{"another org's key is not found, even for admin-like permissions", everything, otherOrg, ReasonRequested, nil, ErrNotFound},
		{"org key is not found for manage-all", userAll, orgKey, ReasonRequested, nil, ErrNotFound},
		{"already revoked is nothing to do", userSelf, revokedA, ReasonRequested, nil, nil},
		{"already revoked but invisible is still not found", userSelf, revokedB, ReasonRequested, nil, ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecideRevoke(c.actor, c.key, c.reason)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) || got != nil {
					t.Fatalf("DecideRevoke = %+v, %v; want %v", got, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecideRevoke: %v", err)
			}
			if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
				t.Fatalf("DecideRevoke = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestDecideRemoveMember(t *testing.T) {
	a1 := testKey("a1", "org_1", Owner{OwnerUser, "user_a"}, StatusActive)
	a2 := testKey("a2", "org_1", Owner{OwnerUser, "user_a"}, StatusActive)
	aRevoked := testKey("a_revoked", "org_1", Owner{OwnerUser, "user_a"}, StatusRevoked)
	b1 := testKey("b1", "org_1", Owner{OwnerUser, "user_b"}, StatusActive)
	orgKey := testKey("org_key", "org_1", Owner{OwnerOrganization, "org_1"}, StatusActive)
	// An organization key whose owner id happens to equal the user's id.
	orgKeyNamedA := testKey("org_key_a", "org_1", Owner{OwnerOrganization, "user_a"}, StatusActive)
	otherOrgA := testKey("other_a", "org_2", Owner{OwnerUser, "user_a"}, StatusActive)
	keys := []*Key{a1, orgKey, b1, aRevoked, otherOrgA, orgKeyNamedA, a2}
	cmd := RemoveMember{OrganizationID: "org_1", UserID: "user_a"}

	removed, revs, err := DecideRemoveMember(Admin(), cmd, keys)
	if err != nil {
		t.Fatal(err)
	}
	wantRevs := []KeyRevoked{{KeyID: "a1", Reason: ReasonOwnerRemoved}, {KeyID: "a2", Reason: ReasonOwnerRemoved}}
	if !slices.Equal(revs, wantRevs) {
		t.Fatalf("revocations = %+v, want %+v", revs, wantRevs)
	}
	if removed.UserID != "user_a" || !slices.Equal(removed.RevokedKeyIDs, []string{"a1", "a2"}) {
		t.Fatalf("removed = %+v", removed)
	}
	// The input keys are not changed.
	if a1.Status != StatusActive || a2.Status != StatusActive {
		t.Fatal("DecideRemoveMember changed its input")
	}

	removed, revs, err = DecideRemoveMember(Admin(), cmd, nil)
	if err != nil || len(revs) != 0 {
		t.Fatalf("no keys: %+v, %v", revs, err)
	}
	if removed.RevokedKeyIDs == nil || len(removed.RevokedKeyIDs) != 0 || removed.UserID != "user_a" {
		t.Fatalf("no keys: removed = %#v, want an empty, non-nil list", removed)
	}

	for _, actor := range []Actor{everything, userAll, apiKeyOrg, {Type: ActorSystem, ID: "system"}} {
		_, revs, err := DecideRemoveMember(actor, cmd, keys)
		wantErr(t, err, KindForbidden, "forbidden")
		if revs != nil {
			t.Fatalf("%s got revocations with the error", actor.Type)
		}
	}
	_, _, err = DecideRemoveMember(Admin(), RemoveMember{OrganizationID: "org.1", UserID: "user_a"}, keys)
	wantErr(t, err, KindInvalid, "invalid_organization_id")
	_, _, err = DecideRemoveMember(Admin(), RemoveMember{OrganizationID: "org_1", UserID: "user>a"}, keys)
	wantErr(t, err, KindInvalid, "invalid_user_id")
	_, _, err = DecideRemoveMember(Admin(), RemoveMember{OrganizationID: "org_1"}, keys)
	wantErr(t, err, KindInvalid, "invalid_user_id")
}

func TestDecideRemoveMemberCascadeLimit(t *testing.T) {
	many := func(n int) []*Key {
		ks := make([]*Key, n)
		for i := range ks {
			ks[i] = testKey(fmt.Sprintf("k%04d", i), "org_1", Owner{OwnerUser, "user_a"}, StatusActive)
		}
		return ks
	}
	cmd := RemoveMember{OrganizationID: "org_1", UserID: "user_a"}
	_, revs, err := DecideRemoveMember(Admin(), cmd, many(MaxKeysPerCascade))
	if err != nil || len(revs) != MaxKeysPerCascade {
		t.Fatalf("%d keys: %d revocations, %v", MaxKeysPerCascade, len(revs), err)
	}
	// One atomic batch holds the member event and its revocations.
	if MaxKeysPerCascade+1 > 1000 {
		t.Fatalf("MaxKeysPerCascade %d does not fit a JetStream atomic batch of 1000", MaxKeysPerCascade)
	}
	_, revs, err = DecideRemoveMember(Admin(), cmd, many(MaxKeysPerCascade+1))
	wantErr(t, err, KindUnprocessable, "too_many_keys")
	if revs != nil {
		t.Fatal("revocations returned with the error")
	}
	// Revoked keys do not count towards the limit.
	ks := many(MaxKeysPerCascade + 5)
	for _, k := range ks[:5] {
		k.Status = StatusRevoked
	}
	if _, revs, err := DecideRemoveMember(Admin(), cmd, ks); err != nil || len(revs) != MaxKeysPerCascade {
		t.Fatalf("with 5 revoked: %d revocations, %v", len(revs), err)
	}
}

func TestDecideSetCatalogue(t *testing.T) {
	cur := &Catalogue{Permissions: []string{"old:read"}, Version: 5}
	got, err := DecideSetCatalogue(Admin(), []string{"orders:write", "orders:read", "orders:write"}, cur)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Permissions, []string{"orders:read", "orders:write"}) || !slices.Equal(got.Previous, []string{"old:read"}) {
		t.Fatalf("DecideSetCatalogue = %+v", got)
	}

	got, err = DecideSetCatalogue(Admin(), nil, &Catalogue{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Permissions == nil || len(got.Permissions) != 0 || got.Previous == nil || len(got.Previous) != 0 {
		t.Fatalf("empty catalogue: %#v; want empty, non-nil lists", got)
	}

	for _, actor := range []Actor{everything, apiKeyOrg, {Type: ActorSystem, ID: "system"}, {}} {
		_, err := DecideSetCatalogue(actor, []string{"orders:read"}, cur)
		wantErr(t, err, KindForbidden, "forbidden")
	}
	for _, p := range []string{PermManageOrgKeys, PermManageOwnUserKeys, PermManageAllUserKeys} {
		_, err := DecideSetCatalogue(Admin(), []string{"orders:read", p}, cur)
		wantErr(t, err, KindUnprocessable, "reserved_permission")
	}
	_, err = DecideSetCatalogue(Admin(), []string{"Orders:Read"}, cur)
	wantErr(t, err, KindInvalid, "invalid_permission")
	_, err = DecideSetCatalogue(Admin(), slices.Repeat([]string{"a"}, MaxCatalogueSize+1), cur)
	wantErr(t, err, KindInvalid, "too_many_permissions")

	big := make([]string, MaxCatalogueSize)
	for i := range big {
		big[i] = fmt.Sprintf("p%04d:read", MaxCatalogueSize-i)
	}
	got, err = DecideSetCatalogue(Admin(), big, cur)
	if err != nil || len(got.Permissions) != MaxCatalogueSize || !slices.IsSorted(got.Permissions) {
		t.Fatalf("catalogue of %d: %d permissions, sorted %v, %v", MaxCatalogueSize, len(got.Permissions), slices.IsSorted(got.Permissions), err)
	}
	// A normalized catalogue works with Allows, which relies on sorting.
	c := &Catalogue{}
	c.Apply(Event{Seq: 1, Data: got})
	if _, ok := c.Allows([]string{"p0001:read", "p1000:read"}); !ok {
		t.Fatal("catalogue built from DecideSetCatalogue does not allow its own permissions")
	}
}

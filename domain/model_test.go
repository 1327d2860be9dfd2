package domain

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// wantErr fails the test unless err is a domain error of the given kind and
// code.
func wantErr(t *testing.T, err error, kind Kind, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want kind %v code %q", kind, code)
	}
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("got %T %v, want a *domain.Error", err, err)
	}
	if de.Kind != kind || de.Code != code {
		t.Fatalf("got kind %v code %q (%v), want kind %v code %q", de.Kind, de.Code, err, kind, code)
	}
}

func TestErrorIsMatchesByCode(t *testing.T) {
	wrapped := fmt.Errorf("loading: %w", ErrNotFound)
	if !errors.Is(wrapped, ErrNotFound) {
		t.Error("a wrapped ErrNotFound does not match ErrNotFound")
	}
	if errors.Is(wrapped, ErrConflict) {
		t.Error("ErrNotFound matches ErrConflict")
	}
	if !errors.Is(Errorf(KindNotFound, "not_found", "no key %s", "x"), ErrNotFound) {
		t.Error("an error with code not_found does not match ErrNotFound")
	}
	if errors.Is(errors.New("not_found: not found"), ErrNotFound) {
		t.Error("a plain error matches ErrNotFound")
	}
	if got := ErrConflict.Error(); got != "conflict: the resource changed; retry" {
		t.Errorf("Error() = %q", got)
	}
	e := Errorf(KindInvalid, "bad", "value %d is bad", 7)
	if e.Message != "value 7 is bad" || e.Kind != KindInvalid || e.Code != "bad" {
		t.Errorf("Errorf built %+v", e)
	}
}

func TestErrorKind(t *testing.T) {
	cases := []struct {
		err  error
		want Kind
	}{
		{nil, KindInternal},
		{errors.New("boom"), KindInternal},
		{ErrNotFound, KindNotFound},
		{ErrConflict, KindConflict},
		{ErrUnavailable, KindUnavailable},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", ErrMalformedKey)), KindInvalid},
		{Errorf(KindForbidden, "forbidden", "no"), KindForbidden},
	}
	for _, c := range cases {
		if got := ErrorKind(c.err); got != c.want {
			t.Errorf("ErrorKind(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestParseRevokeReason(t *testing.T) {
	ok := map[string]RevokeReason{
		"":          ReasonRequested,
		"requested": ReasonRequested,
		"leaked":    ReasonLeaked,
		"rotated":   ReasonRotated,
	}
	for in, want := range ok {
		got, err := ParseRevokeReason(in)
		if err != nil || got != want {
			t.Errorf("ParseRevokeReason(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"owner_removed", "expired", "junk", "Requested", "LEAKED", " leaked", "leaked ", "requested\n"} {
		got, err := ParseRevokeReason(in)
		if got != "" {
			t.Errorf("ParseRevokeReason(%q) = %q, want empty", in, got)
		}
		wantErr(t, err, KindInvalid, "invalid_reason")
	}
}

func TestParseOwnerType(t *testing.T) {
	for _, in := range []string{"user", "organization"} {
		got, err := ParseOwnerType(in)
		if err != nil || string(got) != in {
			t.Errorf("ParseOwnerType(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "org", "User", "admin", "api_key"} {
		_, err := ParseOwnerType(in)
		wantErr(t, err, KindInvalid, "invalid_owner_type")
	}
}

// badIDs are organization and user ids that must be refused: they would not
// be safe NATS subject tokens, or are out of bounds.
var badIDs = map[string]string{
	"empty":            "",
	"dot":              "org.1",
	"star":             "org*",
	"only star":        "*",
	"greater-than":     "org>",
	"only gt":          ">",
	"space":            "org 1",
	"tab":              "org\t1",
	"trailing newline": "org1\n",
	"leading _":        "_org",
	"leading -":        "-org",
	"slash":            "org/1",
	"NUL":              "org\x00",
	"non-ASCII":        "orgé",
	"129 characters":   strings.Repeat("a", 129),
}

func TestValidateIDs(t *testing.T) {
	good := []string{"a", "0", "org_01J5", "Org-1_x", "user_2", strings.Repeat("a", 128), "a" + strings.Repeat("_", 127)}
	for _, id := range good {
		if err := ValidateOrganizationID(id); err != nil {
			t.Errorf("ValidateOrganizationID(%q) = %v", id, err)
		}
		if err := ValidateUserID(id); err != nil {
			t.Errorf("ValidateUserID(%q) = %v", id, err)
		}
	}
	for name, id := range badIDs {
		t.Run(name, func(t *testing.T) {
			wantErr(t, ValidateOrganizationID(id), KindInvalid, "invalid_organization_id")
			wantErr(t, ValidateUserID(id), KindInvalid, "invalid_user_id")
		})
	}
}

func TestValidateKeyID(t *testing.T) {
	good := []string{"api_key_01J5Z8Q3M6V7W8X9Y0ABCDEFGH", "api_key_" + strings.Repeat("0", 26), "api_key_" + strings.Repeat("Z", 26)}
	for _, id := range good {
		if err := ValidateKeyID(id); err != nil {
			t.Errorf("ValidateKeyID(%q) = %v", id, err)
		}
	}
	bad := []string{
		"",
		"api_key_",
		"api_key_01J5Z8Q3M6V7W8X9Y0ABCDEFG",   // 25
		"api_key_01J5Z8Q3M6V7W8X9Y0ABCDEFGHJ", // 27
		"api_key_01j5z8q3m6v7w8x9y0abcdefgh",  // lower case
		"api_key_01J5Z8Q3M6V7W8X9Y0ABCDEFGI",  // I is not Crockford
		"api_key_01J5Z8Q3M6V7W8X9Y0ABCDEFGU",  // U is not Crockford
		"key_01J5Z8Q3M6V7W8X9Y0ABCDEFGH",
		"api_key_01J5Z8Q3M6V7W8X9Y0ABCDEF.H",
		"api_key_01J5Z8Q3M6V7W8X9Y0ABCDEFGH\n",
	}
	for _, id := range bad {
		err := ValidateKeyID(id)
		wantErr(t, err, KindNotFound, "not_found")
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("ValidateKeyID(%q) does not match ErrNotFound", id)
		}
	}
}

func TestNormalizePermissions(t *testing.T) {
	got, err := NormalizePermissions([]string{"widgets:write", "a.b:read", "widgets:write", "a.b:read", "z"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.b:read", "widgets:write", "z"}; !slices.Equal(got, want) {
		t.Fatalf("NormalizePermissions = %q, want %q", got, want)
	}
	got, err = NormalizePermissions(nil, 10)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("NormalizePermissions(nil) = %#v, %v; want an empty, non-nil list", got, err)
	}
	// The input is not reordered in place.
	in := []string{"b", "a"}
	if _, err := NormalizePermissions(in, 10); err != nil || in[0] != "b" {
		t.Fatalf("NormalizePermissions changed its input to %q (%v)", in, err)
	}
	if _, err := NormalizePermissions([]string{"a", "a", "a"}, 2); err == nil {
		t.Fatal("three permissions accepted with max 2 (the limit applies before dedupe)")
	} else {
		wantErr(t, err, KindInvalid, "too_many_permissions")
	}
	if _, err := NormalizePermissions([]string{strings.Repeat("a", MaxPermissionLen)}, 1); err != nil {
		t.Fatalf("a permission of %d characters was refused: %v", MaxPermissionLen, err)
	}
	for _, p := range []string{"", "Widgets:read", "widgets read", ":read", ".read", "-read", "widgets:read*", "widgets/read", "é", strings.Repeat("a", MaxPermissionLen+1), "a\n"} {
		_, err := NormalizePermissions([]string{"ok", p}, 10)
		wantErr(t, err, KindInvalid, "invalid_permission")
	}
}

func TestKeyApplyCreatedThenRevoked(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := t0.Add(24 * time.Hour)
	h := HashKey("v")
	k := &Key{}
	k.Apply(Event{
		ID: "event_1", OrganizationID: "org_1", AggregateID: "api_key_1", CreatedAt: t0, Seq: 3,
		Data: KeyCreated{KeyID: "api_key_1", Name: "ci", Owner: Owner{OwnerUser, "user_a"}, Permissions: []string{"a", "b"}, Hash: h, Obfuscated: "sk_live_…abcd", ExpiresAt: &exp},
	})
	want := Key{
		ID: "api_key_1", OrganizationID: "org_1", Owner: Owner{OwnerUser, "user_a"}, Name: "ci", Permissions: []string{"a", "b"},
		Hash: h, Obfuscated: "sk_live_…abcd", CreatedAt: t0, UpdatedAt: t0, ExpiresAt: &exp, Status: StatusActive, Version: 3,
	}
	assertKey(t, k, &want)

	t1 := t0.Add(time.Hour)
	k.Apply(Event{ID: "event_2", OrganizationID: "org_1", AggregateID: "api_key_1", CreatedAt: t1, Seq: 9,
		Data: KeyRevoked{KeyID: "api_key_1", Reason: ReasonLeaked}})
	want.Status, want.RevokedAt, want.RevokeReason, want.UpdatedAt, want.Version = StatusRevoked, &t1, ReasonLeaked, t1, 9
	assertKey(t, k, &want)
	if ok, reason := k.Validity(t0); ok || reason != InvalidRevoked {
		t.Fatalf("revoked key: Validity = %v, %q", ok, reason)
	}

	// An event the key does not know only moves its version.
	k.Apply(Event{Seq: 12, Data: MemberRemoved{UserID: "user_a"}})
	want.Version = 12
	assertKey(t, k, &want)
}

func assertKey(t *testing.T, got, want *Key) {
	t.Helper()
	if got.ID != want.ID || got.OrganizationID != want.OrganizationID || got.Owner != want.Owner || got.Name != want.Name ||
		!slices.Equal(got.Permissions, want.Permissions) || got.Hash != want.Hash || got.Obfuscated != want.Obfuscated ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) || !sameTime(got.ExpiresAt, want.ExpiresAt) ||
		got.Status != want.Status || !sameTime(got.RevokedAt, want.RevokedAt) || got.RevokeReason != want.RevokeReason ||
		got.Version != want.Version {
		t.Fatalf("key = %+v\nwant  %+v", *got, *want)
	}
}

func TestKeyValidity(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	cases := []struct {
		name    string
		key     Key
		ok      bool
		reasons ValidationReason
	}{
		{"active, no expiry", Key{Status: StatusActive}, true, ""},
		{"active, expires later", Key{Status: StatusActive, ExpiresAt: at(time.Nanosecond)}, true, ""},
		{"expires exactly now", Key{Status: StatusActive, ExpiresAt: at(0)}, false, InvalidExpired},
		{"expired", Key{Status: StatusActive, ExpiresAt: at(-time.Hour)}, false, InvalidExpired},
		{"revoked", Key{Status: StatusRevoked}, false, InvalidRevoked},
		{"revoked and expired", Key{Status: StatusRevoked, ExpiresAt: at(-time.Hour)}, false, InvalidRevoked},
		{"revoked, expires later", Key{Status: StatusRevoked, ExpiresAt: at(time.Hour)}, false, InvalidRevoked},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, reason := c.key.Validity(now)
			if ok != c.ok || reason != c.reasons {
				t.Fatalf("Validity = %v, %q; want %v, %q", ok, reason, c.ok, c.reasons)
			}
		})
	}
	// Expiry does not depend on the time zone of now.
	k := Key{Status: StatusActive, ExpiresAt: at(0)}
	if ok, _ := k.Validity(now.In(time.FixedZone("x", 3600))); ok {
		t.Fatal("expiry compares wall clocks instead of instants")
	}
}

func TestCatalogue(t *testing.T) {
	c := &Catalogue{}
	if missing, ok := c.Allows(nil); !ok || missing != "" {
		t.Fatalf("empty catalogue refuses no permissions: %q", missing)
	}
	if missing, ok := c.Allows([]string{"a"}); ok || missing != "a" {
		t.Fatalf("empty catalogue allows %q", "a")
	}
	c.Apply(Event{Seq: 4, Data: CataloguePermissionsSet{Permissions: []string{"a:read", "b:write", "c:read"}}})
	if c.Version != 4 || !slices.Equal(c.Permissions, []string{"a:read", "b:write", "c:read"}) {
		t.Fatalf("catalogue after Apply = %+v", c)
	}
	if _, ok := c.Allows([]string{"a:read", "c:read"}); !ok {
		t.Fatal("catalogue refuses permissions it holds")
	}
	if missing, ok := c.Allows([]string{"a:read", "b:read", "c:read"}); ok || missing != "b:read" {
		t.Fatalf("Allows = %q, %v; want b:read missing", missing, ok)
	}
	c.Apply(Event{Seq: 8, Data: CataloguePermissionsSet{Permissions: []string{"z"}}})
	if _, ok := c.Allows([]string{"a:read"}); ok || c.Version != 8 {
		t.Fatal("the second catalogue event did not replace the first")
	}
}

// Actors and keys shared by the policy tests.
var (
	userSelf   = Actor{Type: ActorUser, ID: "user_a", OrganizationID: "org_1", ManagePermissions: []string{PermManageOwnUserKeys}}
	userAll    = Actor{Type: ActorUser, ID: "user_m", OrganizationID: "org_1", ManagePermissions: []string{PermManageAllUserKeys}}
	orgManager = Actor{Type: ActorUser, ID: "user_o", OrganizationID: "org_1", ManagePermissions: []string{PermManageOrgKeys}}
	userNone   = Actor{Type: ActorUser, ID: "user_a", OrganizationID: "org_1"}
	everything = Actor{Type: ActorUser, ID: "user_x", OrganizationID: "org_1", ManagePermissions: []string{PermManageOrgKeys, PermManageAllUserKeys, PermManageOwnUserKeys}}
	apiKeyOrg  = Actor{Type: ActorAPIKey, ID: "api_key_1", OrganizationID: "org_1", ManagePermissions: []string{PermManageOrgKeys}}
)

func testKey(id, org string, owner Owner, status KeyStatus) *Key {
	return &Key{ID: id, OrganizationID: org, Owner: owner, Name: id, Status: status, Version: 1}
}

func TestCanSee(t *testing.T) {
	orgKey := testKey("org_key", "org_1", Owner{OwnerOrganization, "org_1"}, StatusActive)
	keyA := testKey("key_a", "org_1", Owner{OwnerUser, "user_a"}, StatusActive)
	keyB := testKey("key_b", "org_1", Owner{OwnerUser, "user_b"}, StatusActive)
	revokedA := testKey("revoked_a", "org_1", Owner{OwnerUser, "user_a"}, StatusRevoked)
	otherOrgKey := testKey("other_org", "org_2", Owner{OwnerOrganization, "org_2"}, StatusActive)
	otherOrgA := testKey("other_a", "org_2", Owner{OwnerUser, "user_a"}, StatusActive)
	odd := testKey("odd", "org_1", Owner{"robot", "user_a"}, StatusActive)
	all := []*Key{orgKey, keyA, keyB, revokedA, otherOrgKey, otherOrgA, odd}

	selfOtherOrg := userSelf
	selfOtherOrg.OrganizationID = "org_2"
	apiKeyAll := Actor{Type: ActorAPIKey, ID: "user_a", OrganizationID: "org_1", ManagePermissions: []string{PermManageOwnUserKeys}}
	noOrg := Actor{Type: ActorUser, ID: "user_a", ManagePermissions: []string{PermManageOrgKeys, PermManageAllUserKeys, PermManageOwnUserKeys}}

	cases := []struct {
		name  string
		actor Actor
		sees  []*Key
	}{
		{"admin sees every key of every org", Admin(), all},
		{"manage-self sees only own user keys", userSelf, []*Key{keyA, revokedA}},
		{"manage-self in another org sees own keys there only", selfOtherOrg, []*Key{otherOrgA}},
		{"manage-all sees every user key of the org, no org keys", userAll, []*Key{keyA, keyB, revokedA}},
		{"org manager sees org keys only", orgManager, []*Key{orgKey}},
		{"no manage permission sees nothing, not even own keys", userNone, nil},
		{"every manage permission sees the whole org", everything, []*Key{orgKey, keyA, keyB, revokedA}},
		{"manage-self is for users, not API keys with the same id", apiKeyAll, nil},
		{"an actor without organization sees nothing", noOrg, nil},
		{"an API key actor with manage sees org keys", apiKeyOrg, []*Key{orgKey}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range all {
				want := slices.Contains(c.sees, k)
				if got := CanSee(c.actor, k); got != want {
					t.Errorf("CanSee(%s) = %v, want %v", k.ID, got, want)
				}
			}
		})
	}
}

func TestCatalogueCeiling(t *testing.T) {
	cat := &Catalogue{Permissions: []string{"a:read", "b:read", "c:write"}, Version: 7}
	for _, c := range []struct {
		in, want []string
	}{
		{nil, nil},
		{[]string{}, []string{}},
		{[]string{"a:read", "c:write"}, []string{"a:read", "c:write"}},
		{[]string{"a:read", "b:write", "c:write"}, []string{"a:read", "c:write"}},
		{[]string{"z:all"}, []string{}},
	} {
		got := cat.Ceiling(c.in)
		if !slices.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("Ceiling(%v) = %#v, want %#v", c.in, got, c.want)
		}
	}
	// Nothing dropped: the same slice, no copy.
	in := []string{"a:read", "b:read"}
	if got := cat.Ceiling(in); &got[0] != &in[0] {
		t.Error("Ceiling copied a list it did not narrow")
	}
	// Never set, or none at all: no ceiling.
	for _, none := range []*Catalogue{nil, {Permissions: []string{}}} {
		if got := none.Ceiling(in); !slices.Equal(got, in) {
			t.Errorf("%+v.Ceiling(%v) = %v", none, in, got)
		}
	}
	// Set to nothing: every permission goes.
	if got := (&Catalogue{Permissions: []string{}, Version: 3}).Ceiling(in); len(got) != 0 {
		t.Errorf("an empty catalogue left %v", got)
	}
}

package projections

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

func TestActiveUserKeyIDs(t *testing.T) {
	ctx := context.Background()
	ev := scenario(fixedValue).events
	p, _ := openMem(t)
	get := func(org, user string) []string {
		t.Helper()
		got, err := p.ActiveUserKeyIDs(ctx, org, user)
		if err != nil {
			t.Fatalf("ActiveUserKeyIDs(%s, %s): %v", org, user, err)
		}
		return nilIfEmpty(got)
	}
	if got := get("org_a", "bob"); got != nil {
		t.Fatalf("empty projection: %v", got)
	}
	apply(t, p, ev[:9]) // up to key 7 (bob's second key), before bob's removal
	mustEqual(t, "bob in org_a before removal", get("org_a", "bob"), []string{keyID(3), keyID(7)})
	apply(t, p, ev[9:])
	mustEqual(t, "bob in org_a after removal", get("org_a", "bob"), nil)
	mustEqual(t, "alice in org_a", get("org_a", "alice"), []string{keyID(2)})
	mustEqual(t, "alice in org_b", get("org_b", "alice"), []string{keyID(4)})
	mustEqual(t, "carol in org_b", get("org_b", "carol"), []string{keyID(5)})
	mustEqual(t, "carol in org_a", get("org_a", "carol"), nil)
	mustEqual(t, "a prefix of a user id", get("org_a", "ali"), nil)
	// Organization keys are nobody's user keys, even under the org's id.
	mustEqual(t, "org id as a user", get("org_a", "org_a"), nil)

	// Active means not revoked in the ledger: an expired key is still listed,
	// so that a member removal revokes it too (as DecideRemoveMember does).
	l := &ledger{events: ev}
	l.create(keySpec{n: 20, org: "org_a", user: "alice", value: fixedValue(20), expires: tp(fixedNow.Add(-time.Hour))})
	apply(t, p, l.events[len(ev):])
	mustEqual(t, "alice in org_a with an expired key", get("org_a", "alice"), []string{keyID(2), keyID(20)})
}

func TestKey(t *testing.T) {
	ctx := context.Background()
	p, _ := openMem(t)
	if _, err := p.Key(ctx, keyID(4)); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("Key on an empty projection = %v, want ErrNotFound", err)
	}
	apply(t, p, scenario(fixedValue).events)
	for n, want := range map[int]string{1: "org_a", 3: "org_a", 4: "org_b", 6: "org_b", 8: "org_a"} {
		k, err := p.Key(ctx, keyID(n))
		got := ""
		if k != nil {
			got = k.OrganizationID
		}
		if err != nil || got != want {
			t.Errorf("Key(key %d) = (%q, %v), want %q", n, got, err, want)
		}
	}
	for _, id := range []string{keyID(99), "", "api_key_", "nonsense/../k"} {
		if _, err := p.Key(ctx, id); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("Key(%q) = %v, want ErrNotFound", id, err)
		}
		if _, err := p.Key(ctx, id); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
	k, err := p.Key(ctx, keyID(3))
	if err != nil {
		t.Fatal(err)
	}
	want := &domain.Key{
		ID: keyID(3), OrganizationID: "org_a", Owner: domain.Owner{Type: domain.OwnerUser, ID: "bob"}, Name: "key 3",
		Permissions: []string{"keys:read"}, Hash: domain.HashKey(fixedValue(3)), Obfuscated: "sk_live_…0003",
		CreatedAt: t0.Add(3 * time.Minute), UpdatedAt: t0.Add(10 * time.Minute), Status: domain.StatusRevoked,
		RevokedAt: tp(t0.Add(10 * time.Minute)), RevokeReason: domain.ReasonOwnerRemoved, Version: 11,
	}
	if err := sameKey(k, want); err != nil {
		t.Fatal(err)
	}
}

func TestCatalogue(t *testing.T) {
	ctx := context.Background()
	ev := scenario(fixedValue).events
	p, _ := openMem(t)
	got, err := p.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Permissions == nil || len(got.Permissions) != 0 || got.Version != 0 {
		t.Fatalf("Catalogue before any update = %#v, want an empty, non-nil list", got)
	}
	apply(t, p, ev[:12])
	got, err = p.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "catalogue after the first update", got.Permissions, []string{"keys:read", "orders:read", "orders:write"})
	if got.Version == 0 {
		t.Fatal("the catalogue has no version: a create could not detect a stale view")
	}
	apply(t, p, ev[12:])
	got, err = p.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "catalogue after the second update", got.Permissions, []string{"keys:read", "keys:write", "orders:read"})
}

package projections

import (
	"context"
	"slices"
	"testing"

	"github.com/keyledger/keyledger/domain"
)

// The catalogue is a ceiling over every key: when it drops a permission,
// validation and the admin views stop showing it on keys granted it, from
// the moment the catalogue event is applied, through restarts and rebuilds;
// when it allows it again, the keys granted it get it back.
func TestCatalogueIsACeiling(t *testing.T) {
	both, onlyWrite, other := newValue(t), newValue(t), newValue(t)
	l := &ledger{}
	l.catalogue([]string{"projects:read", "projects:write", "tasks:read"}, nil)
	l.create(keySpec{n: 1, org: "org_a", perms: []string{"projects:read", "projects:write"}, value: both})
	l.create(keySpec{n: 2, org: "org_a", user: "ada", perms: []string{"projects:write"}, value: onlyWrite})
	l.create(keySpec{n: 3, org: "org_a", perms: []string{"tasks:read"}, value: other})
	fs := memFS()
	p := openAt(t, "p", fs)
	apply(t, p, l.events)

	check := func(p *Projection, when string, want map[string][]string) {
		t.Helper()
		for _, c := range []struct {
			value, id string
		}{{both, keyID(1)}, {onlyWrite, keyID(2)}, {other, keyID(3)}} {
			v, reason := p.Validate(c.value)
			if reason != "" {
				t.Fatalf("%s: %s does not validate: %s", when, c.id, reason)
			}
			if !slices.Equal(v.Permissions, want[c.id]) {
				t.Errorf("%s: validation of %s gives %v, want %v", when, c.id, v.Permissions, want[c.id])
			}
			k, err := p.Key(context.Background(), c.id)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(k.Permissions, want[c.id]) {
				t.Errorf("%s: the view of %s gives %v, want %v", when, c.id, k.Permissions, want[c.id])
			}
		}
		page, err := p.List(context.Background(), domain.KeyListQuery{OrganizationID: "org_a", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Keys) != 3 {
			t.Fatalf("%s: listed %d keys", when, len(page.Keys))
		}
		for _, k := range page.Keys {
			if !slices.Equal(k.Permissions, want[k.ID]) {
				t.Errorf("%s: the list shows %s with %v, want %v", when, k.ID, k.Permissions, want[k.ID])
			}
		}
	}
	granted := map[string][]string{
		keyID(1): {"projects:read", "projects:write"},
		keyID(2): {"projects:write"},
		keyID(3): {"tasks:read"},
	}
	check(p, "before narrowing", granted)
	// The validation answers share the granted set until a narrowing.
	before, _ := p.Validate(both)

	narrowed := map[string][]string{
		keyID(1): {"projects:read"},
		keyID(2): {},
		keyID(3): {"tasks:read"},
	}
	apply(t, p, []domain.Event{l.catalogue([]string{"projects:read", "tasks:read"}, []string{"projects:read", "projects:write", "tasks:read"})})
	check(p, "after narrowing", narrowed)
	if !slices.Equal(before.Permissions, granted[keyID(1)]) {
		t.Fatalf("an answer given before the narrowing changed under its holder: %v", before.Permissions)
	}

	// A key created in the same run as a later narrowing is held under it
	// too: the index takes the run's catalogue before the run's keys.
	fourth := newValue(t)
	run := []domain.Event{
		l.catalogue([]string{"projects:read", "projects:write", "tasks:read"}, []string{"projects:read", "tasks:read"}),
		l.create(keySpec{n: 4, org: "org_b", perms: []string{"projects:write", "tasks:read"}, value: fourth}),
		l.catalogue([]string{"projects:read", "tasks:read"}, []string{"projects:read", "projects:write", "tasks:read"}),
	}
	apply(t, p, run)
	check(p, "after a run that widened and narrowed again", narrowed)
	if v, _ := p.Validate(fourth); !slices.Equal(v.Permissions, []string{"tasks:read"}) {
		t.Fatalf("a key created before a narrowing in the same run validates with %v", v.Permissions)
	}

	// The ceiling is rebuilt from the catalogue on open, not kept apart.
	live := dump(t, p)
	closeProj(t, p)
	p = openAt(t, "p", fs)
	check(p, "after a restart", narrowed)
	rebuilt := openAt(t, "r", fs)
	apply(t, rebuilt, l.events)
	check(rebuilt, "rebuilt from the ledger", narrowed)
	mustEqual(t, "dump after a rebuild", dump(t, rebuilt), live)

	// Allowed again: the keys granted it have it again.
	apply(t, p, []domain.Event{l.catalogue([]string{"projects:read", "projects:write", "tasks:read"}, []string{"projects:read", "tasks:read"})})
	check(p, "after widening again", granted)
}

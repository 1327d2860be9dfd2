package domain

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// staleView answers from a snapshot taken earlier: a view that is behind the
// ledger, as a projection is for a moment after another node's command.
type staleView struct {
	*fakeView
	keys map[string]*Key
	cat  *Catalogue
}

func (v *staleView) Key(_ context.Context, id string) (*Key, error) {
	k, ok := v.keys[id]
	if !ok {
		return nil, ErrNotFound
	}
	c := *k
	return &c, nil
}

func (v *staleView) Catalogue(context.Context) (*Catalogue, error) { return v.cat, nil }

// Commands decide from the view first; when the view is behind, the
// ledger refuses the append as a conflict and the command decides again
// from the ledger: the stale view can never make a command act on old state.
func TestCommandsFallBackToTheLedgerWhenTheViewIsBehind(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := Admin()
	created, err := f.svc.CreateKey(ctx, admin, CreateKey{OrganizationID: "org_a", Name: "k", Permissions: []string{"orders:read"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := f.view.Catalogue(ctx)
	stale := &staleView{fakeView: f.view, keys: f.ledger.keys(), cat: cat}

	// Another writer revokes the key; the stale view still shows it active.
	if _, err := f.svc.RevokeKey(ctx, admin, RevokeKey{KeyID: created.Key.ID, Reason: ReasonLeaked}); err != nil {
		t.Fatal(err)
	}
	// Its own ids: the fixture's generator would repeat the first service's
	// message ids, which the ledger would take for retries.
	n := 1000
	ids := func(prefix string) string { n++; return fmt.Sprintf("%s%026d", prefix, n) }
	svc := NewService(ServiceConfig{Ledger: f.ledger, View: stale, KeyPrefix: PrefixTest, NewID: ids, Now: f.clock.Now, ReplayWindow: time.Minute})
	before := len(f.ledger.events)
	k, err := svc.RevokeKey(ctx, admin, RevokeKey{KeyID: created.Key.ID, Reason: ReasonRequested})
	if err != nil {
		t.Fatal(err)
	}
	if k.Status != StatusRevoked || k.RevokeReason != ReasonLeaked {
		t.Fatalf("revoke through a stale view answered %s/%s, want the ledger's revoked/leaked", k.Status, k.RevokeReason)
	}
	if len(f.ledger.events) != before {
		t.Fatal("a revoke decided on a stale view appended a second revocation")
	}

	// The catalogue narrows; a setter reading the stale view conflicts and
	// retries on the ledger's version.
	if _, err := f.svc.SetCatalogue(ctx, admin, []string{"orders:read"}); err != nil {
		t.Fatal(err)
	}
	got, err := svc.SetCatalogue(ctx, admin, []string{"orders:read", "widgets:read"})
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := f.ledger.LoadCatalogue(ctx); cur.Version != got.Version || len(cur.Permissions) != 2 {
		t.Fatalf("catalogue %+v after a stale setter, want version %d with 2 permissions", cur, got.Version)
	}
}

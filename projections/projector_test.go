package projections

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// TestApplyExactlyOnce: repeating a run, or overlapping runs, apply each
// event once: the projection equals the one fed 1..n exactly once.
func TestApplyExactlyOnce(t *testing.T) {
	ev := scenario(fixedValue).events
	once, _ := openMem(t)
	apply(t, once, ev[:7])
	want := dump(t, once)

	t.Run("same run twice", func(t *testing.T) {
		p, _ := openMem(t)
		apply(t, p, ev[:7])
		apply(t, p, ev[:7])
		if got := dump(t, p); got != want {
			t.Fatalf("Dump after applying 1..7 twice differs from applying it once:\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("overlapping runs", func(t *testing.T) {
		p, _ := openMem(t)
		apply(t, p, ev[:5])  // 1..5
		apply(t, p, ev[2:7]) // 3..7
		if p.Applied() != 7 {
			t.Fatalf("Applied() = %d, want 7", p.Applied())
		}
		if got := dump(t, p); got != want {
			t.Fatalf("Dump after 1..5 then 3..7 differs from 1..7:\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("old run only", func(t *testing.T) {
		p, _ := openMem(t)
		apply(t, p, ev[:7])
		apply(t, p, ev[1:4]) // entirely at or below the checkpoint
		apply(t, p, nil)
		if got := dump(t, p); got != want {
			t.Fatalf("Dump after a stale run differs:\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("revoke applied twice keeps the first revocation", func(t *testing.T) {
		// Seq 8 revokes key 1; re-delivering it must not move revoked_at or
		// the version.
		p, _ := openMem(t)
		apply(t, p, ev[:8])
		before := dump(t, p)
		apply(t, p, ev[7:8])
		if got := dump(t, p); got != before {
			t.Fatalf("re-applying a revocation changed the projection")
		}
	})
}

// TestApplyGap: a run that skips a sequence is refused as a whole and
// changes nothing, neither in Pebble nor in the validation index.
func TestApplyGap(t *testing.T) {
	values := map[int]string{}
	value := func(n int) string {
		if values[n] == "" {
			values[n] = newValue(t)
		}
		return values[n]
	}
	l := scenario(value)
	ev := l.events // 14 events
	p, _ := openMem(t)
	apply(t, p, ev[:7])
	before := dump(t, p)

	cases := map[string][]domain.Event{
		"seq 9 after 7":               {ev[8]},
		"8 then 10":                   {ev[7], ev[9]},
		"repeat then gap":             {ev[5], ev[6], ev[8]},
		"revocation of key 1 skipped": {ev[8], ev[9]},
	}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			err := p.Apply(run)
			if err == nil || !isCorrupt(err) {
				t.Fatalf("Apply = %v, want an errCorrupt gap error", err)
			}
			if p.Applied() != 7 {
				t.Fatalf("Applied() = %d after a refused run, want 7", p.Applied())
			}
			if got := dump(t, p); got != before {
				t.Fatalf("a refused run changed the projection:\n%s\nwant\n%s", got, before)
			}
		})
	}
	// Key 1 is revoked at seq 8, which was part of a refused run: the index
	// must still find it active, and key 7 (created at seq 9) unknown.
	if _, reason := p.Validate(value(1)); reason != "" {
		t.Fatalf("key 1 after refused runs: %s, want valid", reason)
	}
	if _, reason := p.Validate(value(7)); reason != domain.InvalidNotFound {
		t.Fatalf("key 7 after refused runs: %q, want not_found", reason)
	}
	// The projection still continues from where it was.
	apply(t, p, ev[7:])
	if p.Applied() != uint64(len(ev)) {
		t.Fatalf("Applied() = %d, want %d", p.Applied(), len(ev))
	}
}

// TestApplyRevokeOfUnknownKey: a revocation of a key the projection has
// never seen means ledger and projection disagree; it is refused.
func TestApplyRevokeOfUnknownKey(t *testing.T) {
	p, _ := openMem(t)
	l := &ledger{}
	l.create(keySpec{n: 1, org: "org_a", value: fixedValue(1)})
	l.revoke("org_a", 2, domain.ReasonRequested)
	err := p.Apply(l.events)
	if !isCorrupt(err) {
		t.Fatalf("Apply = %v, want errCorrupt", err)
	}
	if p.Applied() != 0 || dump(t, p) != "" {
		t.Fatalf("a refused run left state behind: applied %d\n%s", p.Applied(), dump(t, p))
	}
}

// TestApplyCreateAndRevokeInOneRun: a key created and revoked in the same
// run is stored and indexed as revoked.
func TestApplyCreateAndRevokeInOneRun(t *testing.T) {
	v := newValue(t)
	l := &ledger{}
	l.create(keySpec{n: 1, org: "org_a", value: v})
	l.revoke("org_a", 1, domain.ReasonRotated)
	p, _ := openMem(t)
	apply(t, p, l.events)
	if _, reason := p.Validate(v); reason != domain.InvalidRevoked {
		t.Fatalf("Validate = %q, want revoked", reason)
	}
	k, err := p.Key(context.Background(), keyID(1))
	if err != nil {
		t.Fatal(err)
	}
	if k.Status != domain.StatusRevoked || k.RevokeReason != domain.ReasonRotated || k.Version != 2 {
		t.Fatalf("stored key = %+v, want revoked (rotated) at version 2", *k)
	}
}

// TestRestart: a projection on disk reopens at its checkpoint with the same
// state, and the validation index is rebuilt from Pebble.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	values := map[int]string{}
	value := func(n int) string {
		if values[n] == "" {
			values[n] = newValue(t)
		}
		return values[n]
	}
	ev := scenario(value).events

	p := openAt(t, dir, nil)
	apply(t, p, ev[:9])
	apply(t, p, ev[9:])
	wantDump := dump(t, p)
	wantKeys := map[int]domain.ValidKey{}
	wantReasons := map[int]domain.ValidationReason{}
	for n := 1; n <= 8; n++ {
		wantKeys[n], wantReasons[n] = p.Validate(value(n))
	}
	closeProj(t, p)

	q := openAt(t, dir, nil)
	if got, want := q.Applied(), uint64(len(ev)); got != want {
		t.Fatalf("Applied() after reopen = %d, want %d", got, want)
	}
	if got := dump(t, q); got != wantDump {
		t.Fatalf("Dump after reopen differs:\n%s\nwant\n%s", got, wantDump)
	}
	// Sanity: the scenario has valid, revoked and expired keys.
	mustEqual(t, "reasons", wantReasons, map[int]domain.ValidationReason{
		1: domain.InvalidRevoked, 2: "", 3: domain.InvalidRevoked, 4: "", 5: "", 6: "", 7: domain.InvalidRevoked, 8: domain.InvalidExpired,
	})
	for n := 1; n <= 8; n++ {
		k, reason := q.Validate(value(n))
		if reason != wantReasons[n] {
			t.Errorf("key %d: Validate after reopen = %q, want %q", n, reason, wantReasons[n])
		}
		if !reflect.DeepEqual(k, wantKeys[n]) {
			err := fmt.Errorf("got %+v, want %+v", k, wantKeys[n])
			t.Errorf("key %d after reopen: %v", n, err)
		}
	}
	// And it resumes: the next event applies, a repeat does not.
	l := &ledger{events: ev}
	l.revoke("org_b", 4, domain.ReasonRequested)
	apply(t, q, l.events[len(ev)-3:])
	if q.Applied() != uint64(len(ev)+1) {
		t.Fatalf("Applied() = %d, want %d", q.Applied(), len(ev)+1)
	}
	if _, reason := q.Validate(value(4)); reason != domain.InvalidRevoked {
		t.Fatalf("key 4 after a revocation applied after reopen: %q, want revoked", reason)
	}
}

// randomLedger builds a ledger of at least n events with keys in three
// organizations (some expiring), revocations, member removals with their
// cascades, and catalogue updates.
func randomLedger(r *rand.Rand, n int) *ledger {
	l := &ledger{}
	orgs := []string{"org_a", "org_b", "org_c"}
	users := []string{"alice", "bob", "carol", ""}
	type live struct {
		n         int
		org, user string
	}
	var active []live
	next := 1
	l.catalogue([]string{"a:read", "b:read"}, []string{})
	for len(l.events) < n {
		switch x := r.IntN(10); {
		case x < 6 || len(active) == 0:
			org, user := orgs[r.IntN(len(orgs))], users[r.IntN(len(users))]
			s := keySpec{n: next, org: org, user: user, perms: []string{"a:read"}, value: fixedValue(next)}
			if r.IntN(4) == 0 {
				s.expires = tp(fixedNow.Add(time.Duration(r.IntN(48)-24) * time.Hour))
			}
			l.create(s)
			active = append(active, live{next, org, user})
			next++
		case x < 8:
			i := r.IntN(len(active))
			l.revoke(active[i].org, active[i].n, domain.ReasonRequested)
			active = append(active[:i], active[i+1:]...)
		case x < 9:
			org, user := orgs[r.IntN(len(orgs))], users[r.IntN(3)]
			var ns []int
			var rest []live
			for _, k := range active {
				if k.org == org && k.user == user {
					ns = append(ns, k.n)
				} else {
					rest = append(rest, k)
				}
			}
			active = rest
			l.removeMember(org, user, ns...)
		default:
			l.catalogue([]string{"a:read", fmt.Sprintf("c%d:read", len(l.events))}, nil)
		}
	}
	return l
}

// TestRebuildEquality: a projection fed in runs of random sizes equals one
// rebuilt from sequence 1 by CatchUp.
func TestRebuildEquality(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			ev := randomLedger(r, 1200).events
			kinds := map[string]int{}
			for _, e := range ev {
				kinds[fmt.Sprintf("%T", e.Data)]++
			}
			if len(kinds) != 4 {
				t.Fatalf("the random ledger lacks some event types: %v", kinds)
			}

			a, _ := openMem(t)
			for i := 0; i < len(ev); {
				// Random runs, sometimes overlapping what was applied.
				start := max(0, i-r.IntN(3))
				end := min(len(ev), i+1+r.IntN(40))
				apply(t, a, ev[start:end])
				i = end
			}

			b, _ := openMem(t)
			src := &memSource{events: ev, runs: func() int { return 1 + r.IntN(100) }}
			if seed == 3 {
				src.runs = nil // runs of the projector's own size
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			target := ev[len(ev)-1].Seq
			if err := b.CatchUp(ctx, src, target); err != nil {
				t.Fatalf("CatchUp: %v", err)
			}
			if a.Applied() != target || b.Applied() != target {
				t.Fatalf("Applied: A %d, B %d, want %d", a.Applied(), b.Applied(), target)
			}
			da, db := dump(t, a), dump(t, b)
			if da != db {
				t.Fatalf("rebuilt projection differs from the incremental one (%d vs %d bytes)", len(da), len(db))
			}
			mustEqual(t, "Follow calls", src.froms(), []uint64{1})
		})
	}
}

// TestCatchUp: it stops once the target is applied (even though the reader
// would go on), resumes from the checkpoint, returns at once when already
// there, and passes on a reader's error.
func TestCatchUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev := scenario(fixedValue).events
	p, _ := openMem(t)
	src := &memSource{events: ev, runs: func() int { return 3 }}
	if err := p.CatchUp(ctx, src, 5); err != nil {
		t.Fatal(err)
	}
	if got := p.Applied(); got != 6 {
		t.Fatalf("Applied() after CatchUp(5) in runs of 3 = %d, want 6", got)
	}
	if err := p.CatchUp(ctx, src, 14); err != nil {
		t.Fatal(err)
	}
	if p.Applied() != 14 {
		t.Fatalf("Applied() = %d, want 14", p.Applied())
	}
	mustEqual(t, "Follow calls", src.froms(), []uint64{1, 7})
	// Already there: no read at all.
	if err := p.CatchUp(ctx, src, 10); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "Follow calls", src.froms(), []uint64{1, 7})

	boom := errors.New("ledger down")
	q, _ := openMem(t)
	bad := &memSource{events: ev, failFirst: 2, failErr: boom}
	if err := q.CatchUp(ctx, bad, 14); !errors.Is(err, boom) {
		t.Fatalf("CatchUp with a failing reader = %v, want %v", err, boom)
	}
	if q.Applied() != 2 {
		t.Fatalf("Applied() = %d, want the 2 events delivered before the failure", q.Applied())
	}
	// A context that ends before the target is reached.
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if err := q.CatchUp(short, &memSource{events: ev[:5]}, 14); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CatchUp on a ledger that stops at 5 = %v, want the context's error", err)
	}
}

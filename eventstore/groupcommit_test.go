package eventstore_test

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

// Concurrent single-event appends are gathered into atomic batches; every
// caller still gets its own event's sequence, and the events are all there.
func TestGroupCommitGivesEachAppendItsOwnSequence(t *testing.T) {
	st, _ := mustOpenStore(t)
	ctx := ctxT(t)
	const n = 200
	seqs := make([]uint64, n)
	events := make([]domain.Event, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		events[i] = newKeyCreated(t, "org_g", orgOwner("org_g"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := st.Append(ctx, []domain.Append{{Event: events[i], Expected: 0, MsgID: events[i].ID}})
			if err != nil || res.Duplicate {
				t.Errorf("append %d: %+v %v", i, res, err)
				return
			}
			seqs[i] = res.Seq
		}()
	}
	wg.Wait()
	if got := lastSeq(t, st); got != n {
		t.Fatalf("ledger holds %d events, want %d", got, n)
	}
	sorted := slices.Clone(seqs)
	slices.Sort(sorted)
	for i, s := range sorted {
		if s != uint64(i+1) {
			t.Fatalf("sequences %v are not 1..%d, each once", sorted, n)
		}
	}
	if batches, gathered := st.GroupCommits(); batches == 0 || gathered < 2*batches {
		t.Fatalf("%d concurrent appends made %d batches of %d events: nothing was gathered", n, batches, gathered)
	} else {
		t.Logf("%d appends: %d batches holding %d events", n, batches, gathered)
	}
	for i, e := range events {
		got, err := st.EventAt(ctx, seqs[i])
		if err != nil || got.ID != e.ID {
			t.Fatalf("append %d was answered seq %d, which holds %s (%v)", i, seqs[i], got.ID, err)
		}
	}
}

// A conflict or a repeated message id inside a gathered batch refuses the
// batch; each append then goes on its own and gets its own answer: the
// stale one a conflict, the retry a duplicate, the others success.
func TestGroupCommitIsolatesAConflictingAppend(t *testing.T) {
	st, _ := mustOpenStore(t)
	ctx := ctxT(t)
	keyID, version := createKey(t, st, "org_g", orgOwner("org_g"))
	retried := newKeyCreated(t, "org_g", orgOwner("org_g"))
	first := appendOne(t, st, retried, 0)

	for round := 0; round < 20; round++ {
		type outcome struct {
			res domain.AppendResult
			err error
		}
		var wg sync.WaitGroup
		results := make([]outcome, 12)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var a domain.Append
				switch i {
				case 0: // stale: the key is at version, not version-1
					e := revokeEvent("org_g", keyID, domain.ReasonRequested)
					a = domain.Append{Event: e, Expected: version - 1, MsgID: e.ID}
				case 1: // a retry of an append that landed
					a = domain.Append{Event: retried, Expected: 0, MsgID: retried.ID}
				default:
					e := newKeyCreated(t, "org_g", orgOwner("org_g"))
					a = domain.Append{Event: e, Expected: 0, MsgID: e.ID}
				}
				res, err := st.Append(ctx, []domain.Append{a})
				results[i] = outcome{res, err}
			}()
		}
		wg.Wait()
		if !errors.Is(results[0].err, domain.ErrConflict) {
			t.Fatalf("round %d: stale append: %+v %v, want a conflict", round, results[0].res, results[0].err)
		}
		if results[1].err != nil || !results[1].res.Duplicate || results[1].res.Seq != first.Seq {
			t.Fatalf("round %d: retried append: %+v %v, want a duplicate of seq %d", round, results[1].res, results[1].err, first.Seq)
		}
		for i, r := range results[2:] {
			if r.err != nil || r.res.Duplicate {
				t.Fatalf("round %d: append %d: %+v %v", round, i+2, r.res, r.err)
			}
		}
	}
	if k := mustLoadKey(t, st, "org_g", keyID); k.Status != domain.StatusActive {
		t.Fatal("the stale revoke landed")
	}
}

// With group commit off, appends go one by one: the same answers.
func TestWithoutGroupCommit(t *testing.T) {
	_, env := mustOpenStore(t)
	st := env.open(t, eventstore.Config{NoGroupCommit: true})
	e := newKeyCreated(t, "org_g", orgOwner("org_g"))
	if res := appendOne(t, st, e, 0); res.Seq == 0 || res.Duplicate {
		t.Fatalf("append: %+v", res)
	}
}

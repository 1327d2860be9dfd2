package domain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// aggregate identifies an aggregate the way the ledger's subjects do:
// keyledger.events.<org>.<aggregate>.>.
type aggregate struct{ org, id string }

// fakeLedger is an in-memory Ledger with the guarantees the service relies
// on: an expected version per aggregate (ErrConflict on a mismatch, checked
// after message-id dedupe, as JetStream does), message-id dedupe that answers
// with the original sequence, and batches that append all events or none.
type fakeLedger struct {
	mu        sync.Mutex
	events    []Event // events[i].Seq == i+1
	versions  map[aggregate]uint64
	msgIDs    map[string]uint64 // message id -> sequence of its batch's last event
	catalogue []string          // catalogue before any catalogue event
	batches   [][]Append        // every batch that was appended
	calls     int               // Append calls, appended or not

	// conflicts makes the next n Append calls fail with ErrConflict
	// without appending.
	conflicts int
	// beforeAppend, when set, runs at the start of every Append, without the
	// lock held (so it may append itself); an error it returns is returned.
	beforeAppend func(call int, batch []Append) error
}

func newFakeLedger(catalogue ...string) *fakeLedger {
	slices.Sort(catalogue)
	return &fakeLedger{versions: map[aggregate]uint64{}, msgIDs: map[string]uint64{}, catalogue: catalogue}
}

func (l *fakeLedger) Append(ctx context.Context, batch []Append) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, err
	}
	if len(batch) == 0 {
		return AppendResult{}, errors.New("fake ledger: empty batch")
	}
	l.mu.Lock()
	l.calls++
	call, hook := l.calls, l.beforeAppend
	l.mu.Unlock()
	if hook != nil {
		if err := hook(call, batch); err != nil {
			return AppendResult{}, err
		}
	}
	return l.append(batch)
}

func (l *fakeLedger) append(batch []Append) (AppendResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conflicts > 0 {
		l.conflicts--
		return AppendResult{}, ErrConflict
	}
	seen := 0
	for _, a := range batch {
		if a.MsgID == "" {
			return AppendResult{}, errors.New("fake ledger: empty message id")
		}
		if _, ok := l.msgIDs[a.MsgID]; ok {
			seen++
		}
	}
	switch {
	case seen == len(batch):
		return AppendResult{Seq: l.msgIDs[batch[len(batch)-1].MsgID], Duplicate: true}, nil
	case seen > 0:
		return AppendResult{}, errors.New("fake ledger: batch partly a duplicate")
	}
	inBatch := map[aggregate]bool{}
	for _, a := range batch {
		agg := aggregate{a.Event.OrganizationID, a.Event.AggregateID}
		if inBatch[agg] {
			return AppendResult{}, fmt.Errorf("fake ledger: aggregate %v twice in one batch", agg)
		}
		inBatch[agg] = true
		if l.versions[agg] != a.Expected {
			return AppendResult{}, ErrConflict
		}
	}
	// Every check passed: append all of them.
	last := uint64(len(l.events) + len(batch))
	for _, a := range batch {
		e := a.Event
		e.Seq = uint64(len(l.events) + 1)
		l.events = append(l.events, e)
		l.versions[aggregate{e.OrganizationID, e.AggregateID}] = e.Seq
		l.msgIDs[a.MsgID] = last
	}
	l.batches = append(l.batches, slices.Clone(batch))
	return AppendResult{Seq: last}, nil
}

func (l *fakeLedger) LoadKey(ctx context.Context, org, keyID string) (*Key, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := &Key{}
	found := false
	for _, e := range l.events {
		if e.OrganizationID == org && e.AggregateID == keyID {
			k.Apply(e)
			found = true
		}
	}
	if !found {
		return nil, ErrNotFound
	}
	return k, nil
}

func (l *fakeLedger) LoadCatalogue(ctx context.Context) (*Catalogue, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &Catalogue{Permissions: slices.Clone(l.catalogue)}
	for _, e := range l.events {
		if e.AggregateID == CatalogueAggregateID && e.OrganizationID == "" {
			c.Apply(e)
		}
	}
	return c, nil
}

func (l *fakeLedger) MemberVersion(ctx context.Context, org, userID string) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.versions[aggregate{org, userID}], nil
}

func (l *fakeLedger) EventAt(ctx context.Context, seq uint64) (Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq == 0 || seq > uint64(len(l.events)) {
		return Event{}, ErrNotFound
	}
	return l.events[seq-1], nil
}

// keys rebuilds every key of the ledger.
func (l *fakeLedger) keys() map[string]*Key {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]*Key{}
	for _, e := range l.events {
		switch e.Data.(type) {
		case KeyCreated, KeyRevoked:
			k := out[e.AggregateID]
			if k == nil {
				k = &Key{}
				out[e.AggregateID] = k
			}
			k.Apply(e)
		}
	}
	return out
}

func (l *fakeLedger) lastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.events))
}

func (l *fakeLedger) allEvents() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *fakeLedger) appendedBatches() [][]Append {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.batches)
}

func (l *fakeLedger) appendCalls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

func (l *fakeLedger) injectConflicts(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conflicts = n
}

// countEvents counts the ledger's events whose data has the type of sample.
func countEvents[T EventData](l *fakeLedger) int {
	n := 0
	for _, e := range l.allEvents() {
		if _, ok := e.Data.(T); ok {
			n++
		}
	}
	return n
}

// seedKey appends a key straight to the ledger, as another node would.
func (l *fakeLedger) seedKey(t *testing.T, id, org string, owner Owner, perms ...string) *Key {
	t.Helper()
	_, err := l.append([]Append{{
		Event: Event{ID: "event_seed_" + id, OrganizationID: org, AggregateID: id, Actor: Admin(), CreatedAt: time.Unix(1, 0).UTC(),
			Data: KeyCreated{KeyID: id, Name: "seed " + id, Owner: owner, Permissions: perms, Obfuscated: "sk_test_…seed"}},
		MsgID: "seed." + id,
	}})
	if err != nil {
		t.Fatalf("seed key %s: %v", id, err)
	}
	k, err := l.LoadKey(context.Background(), org, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// seedRevoke revokes a key straight in the ledger, as another node would.
func (l *fakeLedger) seedRevoke(t *testing.T, org, id string, reason RevokeReason) {
	t.Helper()
	k, err := l.LoadKey(context.Background(), org, id)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.append([]Append{{
		Event: Event{ID: "event_seed_revoke_" + id, OrganizationID: org, AggregateID: id, Actor: Admin(), CreatedAt: time.Unix(2, 0).UTC(),
			Data: KeyRevoked{KeyID: id, Reason: reason}},
		Expected: k.Version, MsgID: "seed.revoke." + id,
	}})
	if err != nil {
		t.Fatalf("seed revoke %s: %v", id, err)
	}
}

// fakeView is a projection that is always caught up with the fake ledger. It
// records every WaitApplied and refuses to wait for a sequence the ledger
// has not reached, which would hang a real projection.
type fakeView struct {
	l *fakeLedger

	mu      sync.Mutex
	waits   []uint64
	waitErr func(seq uint64) error // when set, its error is returned by WaitApplied
	onWait  func(seq uint64)       // when set, runs after a successful wait
}

func (v *fakeView) WaitApplied(ctx context.Context, seq uint64) error {
	v.mu.Lock()
	v.waits = append(v.waits, seq)
	waitErr, onWait := v.waitErr, v.onWait
	v.mu.Unlock()
	if last := v.l.lastSeq(); seq > last {
		return fmt.Errorf("fake view: waiting for sequence %d beyond the ledger's last %d", seq, last)
	}
	if waitErr != nil {
		if err := waitErr(seq); err != nil {
			return err
		}
	}
	if onWait != nil {
		onWait(seq)
	}
	return nil
}

func (v *fakeView) Key(ctx context.Context, keyID string) (*Key, error) {
	k, ok := v.l.keys()[keyID]
	if !ok {
		return nil, ErrNotFound
	}
	return k, nil
}

func (v *fakeView) Catalogue(ctx context.Context) (*Catalogue, error) {
	return v.l.LoadCatalogue(ctx)
}

func (v *fakeView) ActiveUserKeyIDs(ctx context.Context, org, userID string) ([]string, error) {
	var ids []string
	for id, k := range v.l.keys() {
		if k.OrganizationID == org && k.Owner == (Owner{OwnerUser, userID}) && k.Status == StatusActive {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (v *fakeView) waited() []uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.waits)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testIDs returns prefix + a 26-character sortable id; key ids pass
// ValidateKeyID.
func testIDs() func(prefix string) string {
	var n atomic.Uint64
	return func(prefix string) string { return fmt.Sprintf("%s%026d", prefix, n.Add(1)) }
}

type serviceFixture struct {
	svc    *Service
	ledger *fakeLedger
	view   *fakeView
	clock  *fakeClock
}

func newFixture(t *testing.T) *serviceFixture {
	t.Helper()
	l := newFakeLedger("orders:read", "orders:write", "widgets:read")
	v := &fakeView{l: l}
	c := &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))}
	svc := NewService(ServiceConfig{
		Ledger: l, View: v, KeyPrefix: PrefixTest, NewID: testIDs(), Now: c.Now, ReplayWindow: 2 * time.Minute,
	})
	return &serviceFixture{svc: svc, ledger: l, view: v, clock: c}
}

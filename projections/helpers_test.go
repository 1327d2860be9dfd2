package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/keyledger/keyledger/domain"
)

// fixedNow is the clock every test projection validates against.
var fixedNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return fixedNow }

// t0 is the time of the first event of a hand-built ledger; each event is a
// minute after the one before.
var t0 = time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)

// keyID returns a valid key id whose ULID part sorts by n.
func keyID(n int) string { return fmt.Sprintf("api_key_01J%023d", n) }

func tp(t time.Time) *time.Time { return &t }

// openMem opens a projection on a fresh in-memory file system.
func openMem(t *testing.T) (*Projection, vfs.FS) {
	t.Helper()
	fs := vfs.NewMem()
	return openAt(t, "p", fs), fs
}

// openAt opens the projection in dir on fs (nil fs: the real disk) and closes
// it at the end of the test unless closeProj closed it already.
func openAt(t *testing.T, dir string, fs vfs.FS) *Projection {
	t.Helper()
	p, err := Open(Config{Dir: dir, FS: fs, Now: fixedClock})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if _, closed := closedSet.Load(p); !closed {
			p.Close()
		}
	})
	return p
}

var closedSet sync.Map // *Projection → struct{}: closed by closeProj

func closeProj(t *testing.T, p *Projection) {
	t.Helper()
	closedSet.Store(p, struct{}{})
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func dump(t *testing.T, p *Projection) string {
	t.Helper()
	var b bytes.Buffer
	if err := p.Dump(&b); err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return b.String()
}

func apply(t *testing.T, p *Projection, events []domain.Event) {
	t.Helper()
	if err := p.Apply(events); err != nil {
		t.Fatalf("Apply(seq %d..%d): %v", events[0].Seq, events[len(events)-1].Seq, err)
	}
}

// ledger builds a sequence of events with consecutive sequences from 1 and
// times a minute apart.
type ledger struct {
	events []domain.Event
}

func (l *ledger) add(org, aggregate string, data domain.EventData) domain.Event {
	seq := uint64(len(l.events) + 1)
	e := domain.Event{
		ID:             fmt.Sprintf("event_01J%023d", seq),
		OrganizationID: org,
		AggregateID:    aggregate,
		Actor:          domain.Admin(),
		CreatedAt:      t0.Add(time.Duration(seq-1) * time.Minute),
		Data:           data,
		Seq:            seq,
	}
	l.events = append(l.events, e)
	return e
}

type keySpec struct {
	n       int    // key id number
	org     string // organization
	user    string // owner user; empty for an organization key
	name    string
	perms   []string
	value   string // the key value; its hash is what the projection stores
	expires *time.Time
}

func (l *ledger) create(s keySpec) domain.Event {
	owner := domain.Owner{Type: domain.OwnerOrganization, ID: s.org}
	if s.user != "" {
		owner = domain.Owner{Type: domain.OwnerUser, ID: s.user}
	}
	name := s.name
	if name == "" {
		name = fmt.Sprintf("key %d", s.n)
	}
	return l.add(s.org, keyID(s.n), domain.KeyCreated{
		KeyID: keyID(s.n), Name: name, Owner: owner, Permissions: s.perms,
		Hash: domain.HashKey(s.value), Obfuscated: domain.ObfuscateKey(s.value), ExpiresAt: s.expires,
	})
}

func (l *ledger) revoke(org string, n int, reason domain.RevokeReason) domain.Event {
	return l.add(org, keyID(n), domain.KeyRevoked{KeyID: keyID(n), Reason: reason})
}

func (l *ledger) catalogue(perms, previous []string) domain.Event {
	return l.add("", domain.CatalogueAggregateID, domain.CataloguePermissionsSet{Permissions: perms, Previous: previous})
}

// removeMember appends the member removal and the revocation of each key,
// as the service's atomic batch does.
func (l *ledger) removeMember(org, user string, ns ...int) {
	ids := []string{}
	for _, n := range ns {
		ids = append(ids, keyID(n))
	}
	l.add(org, user, domain.MemberRemoved{UserID: user, RevokedKeyIDs: ids})
	for _, n := range ns {
		l.revoke(org, n, domain.ReasonOwnerRemoved)
	}
}

// fixedValue is a deterministic stand-in for a key value; it is not
// well-formed, so only its hash is useful (golden files).
func fixedValue(n int) string { return fmt.Sprintf("sk_live_golden%04d", n) }

func newValue(t *testing.T) string {
	t.Helper()
	v, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// scenario is the ledger of the golden test: a catalogue, organization keys
// and user keys of two users in each of two organizations, a revocation, a
// member removal with its cascade, a catalogue update and keys that expire.
// value gives the value of key n.
func scenario(value func(n int) string) *ledger {
	l := &ledger{}
	l.catalogue([]string{"keys:read", "orders:read", "orders:write"}, []string{})
	l.create(keySpec{n: 1, org: "org_a", name: "billing", perms: []string{"orders:read", "orders:write"}, value: value(1)})
	l.create(keySpec{n: 2, org: "org_a", user: "alice", perms: []string{"orders:read"}, value: value(2)})
	l.create(keySpec{n: 3, org: "org_a", user: "bob", perms: []string{"keys:read"}, value: value(3)})
	l.create(keySpec{n: 4, org: "org_b", user: "alice", perms: []string{"orders:read"}, value: value(4)})
	l.create(keySpec{n: 5, org: "org_b", user: "carol", perms: []string{}, value: value(5)})
	l.create(keySpec{n: 6, org: "org_b", name: "nightly export", perms: []string{"orders:read"}, value: value(6),
		expires: tp(time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC))})
	l.revoke("org_a", 1, domain.ReasonLeaked)
	l.create(keySpec{n: 7, org: "org_a", user: "bob", perms: []string{"orders:read"}, value: value(7)})
	l.removeMember("org_a", "bob", 3, 7)
	l.catalogue([]string{"keys:read", "keys:write", "orders:read"}, []string{"keys:read", "orders:read", "orders:write"})
	l.create(keySpec{n: 8, org: "org_a", perms: []string{"keys:read"}, value: value(8),
		expires: tp(time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC))})
	return l
}

// memSource is the ledger as a Source: Follow delivers the events from
// `from` in runs of at most max (or of the sizes runs gives), then waits for
// ctx like the real reader, which returns only when ctx ends or fn fails.
type memSource struct {
	events []domain.Event
	// failFirst makes the first call deliver that many events and then fail.
	failFirst int
	failErr   error
	runs      func() int // size of the next run; nil: max

	mu    sync.Mutex
	calls []uint64 // the `from` of every call
}

func (s *memSource) Follow(ctx context.Context, from uint64, max int, fn func([]domain.Event) error) error {
	s.mu.Lock()
	s.calls = append(s.calls, from)
	call := len(s.calls)
	s.mu.Unlock()
	if from == 0 {
		from = 1
	}
	i := slices.IndexFunc(s.events, func(e domain.Event) bool { return e.Seq >= from })
	if i < 0 {
		i = len(s.events)
	}
	limit := len(s.events)
	failing := call == 1 && s.failErr != nil
	if failing {
		limit = min(limit, i+s.failFirst)
	}
	for i < limit {
		n := max
		if s.runs != nil {
			n = min(max, s.runs())
		}
		j := min(i+n, limit)
		// Hand fn a copy, as a reader that reuses its buffer would.
		if err := fn(slices.Clone(s.events[i:j])); err != nil {
			return err
		}
		i = j
	}
	if failing {
		return s.failErr
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *memSource) froms() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// sameKey compares two keys field by field (times with Equal).
func sameKey(a, b *domain.Key) error {
	if a == nil || b == nil {
		if a == b {
			return nil
		}
		return fmt.Errorf("one key is nil: %v, %v", a, b)
	}
	eqTime := func(x, y *time.Time) bool {
		if x == nil || y == nil {
			return x == y
		}
		return x.Equal(*y)
	}
	switch {
	case a.ID != b.ID, a.OrganizationID != b.OrganizationID, a.Owner != b.Owner, a.Name != b.Name,
		a.Hash != b.Hash, a.Obfuscated != b.Obfuscated, a.Status != b.Status, a.RevokeReason != b.RevokeReason,
		a.Version != b.Version:
		return fmt.Errorf("keys differ:\n%+v\n%+v", *a, *b)
	case !slices.Equal(a.Permissions, b.Permissions):
		return fmt.Errorf("permissions differ: %q, %q", a.Permissions, b.Permissions)
	case !a.CreatedAt.Equal(b.CreatedAt), !a.UpdatedAt.Equal(b.UpdatedAt), !eqTime(a.ExpiresAt, b.ExpiresAt), !eqTime(a.RevokedAt, b.RevokedAt):
		return fmt.Errorf("times differ:\n%+v\n%+v", *a, *b)
	}
	return nil
}

func ids(keys []*domain.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

func mustEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func isCorrupt(err error) bool { return errors.Is(err, errCorrupt) }

func memFS() vfs.FS { return vfs.NewMem() }

// sameValid checks that a validation answer describes key k (ignoring
// last-used, which validation sets).
func sameValid(got domain.ValidKey, k *domain.Key) error {
	if k == nil {
		if got.ID != "" {
			return fmt.Errorf("validation answered %s, want nothing", got.ID)
		}
		return nil
	}
	want := domain.ValidKey{ID: k.ID, OrganizationID: k.OrganizationID, Owner: k.Owner, Name: k.Name,
		Permissions: k.Permissions, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt}
	if k.ExpiresAt != nil {
		want.ExpiresAt = *k.ExpiresAt
	}
	switch {
	case got.ID != want.ID, got.OrganizationID != want.OrganizationID, got.Owner != want.Owner, got.Name != want.Name:
		return fmt.Errorf("keys differ:\n%+v\n%+v", got, want)
	case !slices.Equal(got.Permissions, want.Permissions):
		return fmt.Errorf("permissions differ: %q, %q", got.Permissions, want.Permissions)
	case !got.CreatedAt.Equal(want.CreatedAt), !got.UpdatedAt.Equal(want.UpdatedAt), !got.ExpiresAt.Equal(want.ExpiresAt):
		return fmt.Errorf("times differ:\n%+v\n%+v", got, want)
	}
	return nil
}

// storedUsage reads the last-used time flushed to Pebble for a key.
func storedUsage(p *Projection, id string) (time.Time, bool) {
	v, closer, err := p.db.Get([]byte(prefixLastUsed + id))
	if err != nil {
		return time.Time{}, false
	}
	defer closer.Close()
	if len(v) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(), true
}

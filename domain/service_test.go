package domain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var ctx = context.Background()

func TestFakeLedgerGuarantees(t *testing.T) {
	// The service tests mean something only if the fake behaves like the
	// ledger: check it first.
	l := newFakeLedger()
	ev := func(id, agg string) Event { return Event{ID: id, OrganizationID: "org_1", AggregateID: agg} }
	res, err := l.Append(ctx, []Append{{Event: ev("e1", "a"), Expected: 0, MsgID: "m1"}})
	if err != nil || res != (AppendResult{Seq: 1}) {
		t.Fatalf("first append: %+v, %v", res, err)
	}
	if _, err := l.Append(ctx, []Append{{Event: ev("e2", "a"), Expected: 0, MsgID: "m2"}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale expected version: %v, want ErrConflict", err)
	}
	res, err = l.Append(ctx, []Append{{Event: ev("e3", "a"), Expected: 0, MsgID: "m1"}})
	if err != nil || res != (AppendResult{Seq: 1, Duplicate: true}) {
		t.Fatalf("repeated message id: %+v, %v; want a duplicate of 1", res, err)
	}
	// A batch with one stale event appends nothing.
	_, err = l.Append(ctx, []Append{
		{Event: ev("e4", "b"), Expected: 0, MsgID: "m4"},
		{Event: ev("e5", "a"), Expected: 0, MsgID: "m5"},
	})
	if !errors.Is(err, ErrConflict) || l.lastSeq() != 1 {
		t.Fatalf("partly stale batch: %v, ledger at %d; want ErrConflict and nothing appended", err, l.lastSeq())
	}
	res, err = l.Append(ctx, []Append{
		{Event: ev("e4", "b"), Expected: 0, MsgID: "m4"},
		{Event: ev("e5", "a"), Expected: 1, MsgID: "m5"},
	})
	if err != nil || res.Seq != 3 || l.versions[aggregate{"org_1", "a"}] != 3 || l.versions[aggregate{"org_1", "b"}] != 2 {
		t.Fatalf("batch: %+v, %v, versions %v", res, err, l.versions)
	}
	// Same aggregate id in another organization is another aggregate.
	if _, err := l.Append(ctx, []Append{{Event: Event{ID: "e6", OrganizationID: "org_2", AggregateID: "a"}, MsgID: "m6"}}); err != nil {
		t.Fatalf("other org: %v", err)
	}
}

func TestServiceCreateKey(t *testing.T) {
	f := newFixture(t)
	created, err := f.svc.CreateKey(ctx, Admin(), CreateKey{
		OrganizationID: "org_1", UserID: "user_a", Name: "ci", Permissions: []string{"orders:write", "orders:read", "orders:write"},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	v, k := created.Value, created.Key
	if created.Replayed {
		t.Error("a first create is marked Replayed")
	}
	if err := CheckKeyFormat(v); err != nil || !strings.HasPrefix(v, PrefixTest+"_") {
		t.Fatalf("value %q: %v; want a well-formed %s key", v, err, PrefixTest)
	}
	if HashKey(v) != k.Hash {
		t.Fatal("the key's hash is not the hash of the returned value")
	}
	if k.Obfuscated != ObfuscateKey(v) {
		t.Errorf("obfuscated = %q, want %q", k.Obfuscated, ObfuscateKey(v))
	}
	if err := ValidateKeyID(k.ID); err != nil {
		t.Errorf("key id %q: %v", k.ID, err)
	}
	if k.OrganizationID != "org_1" || k.Owner != (Owner{OwnerUser, "user_a"}) || k.Name != "ci" || k.Status != StatusActive ||
		!slices.Equal(k.Permissions, []string{"orders:read", "orders:write"}) {
		t.Errorf("key = %+v", k)
	}
	if !k.CreatedAt.Equal(f.clock.Now()) || k.CreatedAt.Location() != time.UTC {
		t.Errorf("created_at = %v, want %v in UTC", k.CreatedAt, f.clock.Now())
	}

	events := f.ledger.allEvents()
	if len(events) != 1 {
		t.Fatalf("ledger holds %d events, want 1", len(events))
	}
	e := events[0]
	d, ok := e.Data.(KeyCreated)
	if !ok || d.KeyID != k.ID || e.AggregateID != k.ID || e.OrganizationID != "org_1" || d.Hash != HashKey(v) || e.Actor.Type != ActorAdmin {
		t.Fatalf("event = %+v", e)
	}
	if strings.Contains(fmt.Sprintf("%+v", e), v) || strings.Contains(fmt.Sprintf("%+v", e), v[8:]) {
		t.Fatal("the ledger event carries the key value")
	}
	if k.Version != e.Seq {
		t.Errorf("key version %d, want the event's sequence %d", k.Version, e.Seq)
	}
	if b := f.ledger.appendedBatches(); len(b) != 1 || len(b[0]) != 1 || b[0][0].Expected != 0 || b[0][0].MsgID == "" {
		t.Fatalf("batches = %+v, want one event expecting version 0", b)
	}
	if w := f.view.waited(); !slices.Equal(w, []uint64{e.Seq}) {
		t.Fatalf("waited for %v, want [%d]", w, e.Seq)
	}

	// Without an idempotency key the same command creates another key.
	again, err := f.svc.CreateKey(ctx, Admin(), CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "ci", Permissions: []string{"orders:read", "orders:write"}}, "")
	if err != nil || again.Replayed || again.Key.ID == k.ID || again.Value == v {
		t.Fatalf("second create without idempotency key: %+v, %v", again, err)
	}
	if n := countEvents[KeyCreated](f.ledger); n != 2 {
		t.Fatalf("%d keys created, want 2", n)
	}
}

func TestServiceCreateKeyRefusedAppendsNothing(t *testing.T) {
	cases := []struct {
		name  string
		actor Actor
		cmd   CreateKey
		kind  Kind
		code  string
	}{
		{"outside the catalogue", Admin(), CreateKey{OrganizationID: "org_1", Name: "x", Permissions: []string{"orders:delete"}}, KindUnprocessable, "permission_not_allowed"},
		{"another org", userSelf, CreateKey{OrganizationID: "org_2", UserID: "user_a", Name: "x"}, KindNotFound, "not_found"},
		{"another user", userSelf, CreateKey{OrganizationID: "org_1", UserID: "user_b", Name: "x"}, KindForbidden, "forbidden"},
		{"bad name", Admin(), CreateKey{OrganizationID: "org_1"}, KindInvalid, "invalid_name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			created, err := f.svc.CreateKey(ctx, c.actor, c.cmd, "idem-1")
			wantErr(t, err, c.kind, c.code)
			if created != nil {
				t.Fatalf("got %+v with the error", created)
			}
			if n := f.ledger.appendCalls(); n != 0 {
				t.Fatalf("%d appends for a refused command", n)
			}
		})
	}
}

func TestServiceCreateKeyLedgerError(t *testing.T) {
	f := newFixture(t)
	f.ledger.beforeAppend = func(int, []Append) error { return ErrUnavailable }
	_, err := f.svc.CreateKey(ctx, Admin(), CreateKey{OrganizationID: "org_1", Name: "x"}, "idem-1")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if w := f.view.waited(); len(w) != 0 {
		t.Fatalf("waited for %v after a failed append", w)
	}
}

func TestServiceCreateKeyIdempotent(t *testing.T) {
	f := newFixture(t)
	exp := f.clock.Now().Add(24 * time.Hour)
	cmd := CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "ci", Permissions: []string{"orders:read"}, ExpiresAt: &exp}
	first, err := f.svc.CreateKey(ctx, userSelf, cmd, "idem-1")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * time.Second)
	// The retry may list permissions in another order and give the same
	// expiry in another zone: it is the same request.
	exp2 := exp.In(time.UTC)
	retry := cmd
	retry.Permissions = []string{"orders:read", "orders:read"}
	retry.ExpiresAt = &exp2
	second, err := f.svc.CreateKey(ctx, userSelf, retry, "idem-1")
	if err != nil {
		t.Fatal(err)
	}
	if first.Replayed || !second.Replayed {
		t.Fatalf("Replayed = %v then %v, want false then true", first.Replayed, second.Replayed)
	}
	if second.Key.ID != first.Key.ID || second.Value != first.Value || second.Key.Hash != first.Key.Hash {
		t.Fatalf("replay returned key %s value %q, want key %s value %q", second.Key.ID, second.Value, first.Key.ID, first.Value)
	}
	assertKey(t, second.Key, first.Key)
	if n := len(f.ledger.allEvents()); n != 1 {
		t.Fatalf("ledger holds %d events, want 1", n)
	}
	seq := first.Key.Version
	if w := f.view.waited(); !slices.Equal(w, []uint64{seq, seq}) {
		t.Fatalf("waited for %v, want [%d %d]", w, seq, seq)
	}
}

func TestServiceCreateKeyIdempotencyKeyReused(t *testing.T) {
	exp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exp2 := exp.Add(time.Second)
	base := CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "ci", Permissions: []string{"orders:read"}, ExpiresAt: &exp}
	change := map[string]func(c *CreateKey){
		"name":              func(c *CreateKey) { c.Name = "other" },
		"permissions":       func(c *CreateKey) { c.Permissions = []string{"orders:read", "orders:write"} },
		"fewer permissions": func(c *CreateKey) { c.Permissions = nil },
		"expiry":            func(c *CreateKey) { c.ExpiresAt = &exp2 },
		"no expiry":         func(c *CreateKey) { c.ExpiresAt = nil },
		"owner":             func(c *CreateKey) { c.UserID = "" },
	}
	for name, mutate := range change {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			if _, err := f.svc.CreateKey(ctx, Admin(), base, "idem-1"); err != nil {
				t.Fatal(err)
			}
			cmd := base
			mutate(&cmd)
			got, err := f.svc.CreateKey(ctx, Admin(), cmd, "idem-1")
			wantErr(t, err, KindUnprocessable, "idempotency_key_reused")
			if got != nil {
				t.Fatalf("got %+v with the error", got)
			}
			if n := len(f.ledger.allEvents()); n != 1 {
				t.Fatalf("ledger holds %d events, want 1", n)
			}
		})
	}
}

func TestServiceCreateKeyIdempotencyKeyScope(t *testing.T) {
	// An idempotency key is scoped to its organization and caller: the same
	// key from another caller or for another org is another command.
	f := newFixture(t)
	mine := userSelf
	other := Actor{Type: ActorUser, ID: "user_b", OrganizationID: "org_1", ManagePermissions: []string{PermManageOwnUserKeys}}
	a, err := f.svc.CreateKey(ctx, mine, CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "k"}, "same")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.svc.CreateKey(ctx, other, CreateKey{OrganizationID: "org_1", UserID: "user_b", Name: "k"}, "same")
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.svc.CreateKey(ctx, Admin(), CreateKey{OrganizationID: "org_2", Name: "k"}, "same")
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.CreateKey(ctx, Admin(), CreateKey{OrganizationID: "org_1", Name: "k"}, "same")
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{a.Key.ID, b.Key.ID, c.Key.ID, d.Key.ID}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != 4 || a.Replayed || b.Replayed || c.Replayed || d.Replayed {
		t.Fatalf("same idempotency key from different callers or orgs was treated as one command: %v", ids)
	}
}

func TestServiceCreateKeyReplayAfterWindow(t *testing.T) {
	f := newFixture(t)
	cmd := CreateKey{OrganizationID: "org_1", Name: "ci"}
	first, err := f.svc.CreateKey(ctx, Admin(), cmd, "idem-1")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2*time.Minute + time.Second)
	// The ledger here still remembers the message id; the service no longer
	// holds the value and must not invent one.
	second, err := f.svc.CreateKey(ctx, Admin(), cmd, "idem-1")
	if err != nil {
		t.Fatal(err)
	}
	if !second.Replayed || second.Key.ID != first.Key.ID || second.Value != "" {
		t.Fatalf("replay after the window: replayed %v key %s value %q; want the same key without its value", second.Replayed, second.Key.ID, second.Value)
	}
}

func TestServiceCreateKeyRetryAfterWaitFailure(t *testing.T) {
	// The key is appended but this node's projection does not confirm it in
	// time: the caller gets an error and retries with the same idempotency
	// key. The retry must hand out the value, or nobody ever gets it.
	f := newFixture(t)
	failed := false
	f.view.waitErr = func(uint64) error {
		if !failed {
			failed = true
			return ErrUnavailable
		}
		return nil
	}
	cmd := CreateKey{OrganizationID: "org_1", Name: "ci"}
	if _, err := f.svc.CreateKey(ctx, Admin(), cmd, "idem-1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first create: %v, want ErrUnavailable", err)
	}
	got, err := f.svc.CreateKey(ctx, Admin(), cmd, "idem-1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Replayed || got.Value == "" || HashKey(got.Value) != got.Key.Hash || CheckKeyFormat(got.Value) != nil {
		t.Fatalf("retry: replayed %v, value %q (hash matches: %v)", got.Replayed, got.Value, HashKey(got.Value) == got.Key.Hash)
	}
	if n := len(f.ledger.allEvents()); n != 1 {
		t.Fatalf("ledger holds %d events, want 1", n)
	}
}

func TestServiceCreateKeyConcurrent(t *testing.T) {
	f := newFixture(t)
	const n = 16
	results := make([]*Created, 2*n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			results[i], errs[i] = f.svc.CreateKey(ctx, Admin(), CreateKey{OrganizationID: "org_1", Name: "k"}, fmt.Sprintf("distinct-%d", i))
		}()
		go func() {
			defer wg.Done()
			results[n+i], errs[n+i] = f.svc.CreateKey(ctx, Admin(), CreateKey{OrganizationID: "org_1", Name: "k"}, "shared")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	shared := results[n].Key.ID
	fresh := 0
	for _, r := range results[n:] {
		if r.Key.ID != shared {
			t.Fatalf("the shared idempotency key made keys %s and %s", shared, r.Key.ID)
		}
		if !r.Replayed {
			fresh++
		}
		// A racing replay may come without the value, never with another one.
		if r.Value != "" && HashKey(r.Value) != r.Key.Hash {
			t.Fatal("a replay returned a value that is not the key's")
		}
	}
	if fresh != 1 {
		t.Fatalf("%d creates with the shared idempotency key were not replays, want 1", fresh)
	}
	if got := countEvents[KeyCreated](f.ledger); got != n+1 {
		t.Fatalf("%d keys created, want %d", got, n+1)
	}
}

// createKey creates a key through the service for the revoke tests.
func createKey(t *testing.T, f *serviceFixture, actor Actor, cmd CreateKey) *Key {
	t.Helper()
	c, err := f.svc.CreateKey(ctx, actor, cmd, "")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return c.Key
}

func TestServiceRevokeKey(t *testing.T) {
	f := newFixture(t)
	k := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_1", UserID: "user_a", Name: "ci"})
	f.clock.Advance(time.Minute)
	got, err := f.svc.RevokeKey(ctx, userSelf, RevokeKey{KeyID: k.ID, Reason: ReasonLeaked})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusRevoked || got.RevokeReason != ReasonLeaked || got.RevokedAt == nil || !got.RevokedAt.Equal(f.clock.Now()) {
		t.Fatalf("revoked key = %+v", got)
	}
	if ok, reason := got.Validity(f.clock.Now()); ok || reason != InvalidRevoked {
		t.Fatalf("Validity = %v, %q", ok, reason)
	}
	b := f.ledger.appendedBatches()
	last := b[len(b)-1]
	if len(last) != 1 || last[0].Expected != k.Version {
		t.Fatalf("revoke batch %+v, want one event expecting version %d", last, k.Version)
	}
	rev, ok := last[0].Event.Data.(KeyRevoked)
	if !ok || rev != (KeyRevoked{KeyID: k.ID, Reason: ReasonLeaked}) || last[0].Event.AggregateID != k.ID || last[0].Event.OrganizationID != "org_1" {
		t.Fatalf("revoke event = %+v", last[0].Event)
	}
	seq := f.ledger.lastSeq()
	if got.Version != seq {
		t.Errorf("version %d, want %d", got.Version, seq)
	}
	if w := f.view.waited(); w[len(w)-1] != seq {
		t.Fatalf("waited for %v, want the revocation's sequence %d last", w, seq)
	}
	stored, _ := f.ledger.LoadKey(ctx, "org_1", k.ID)
	if stored.Status != StatusRevoked || stored.RevokeReason != ReasonLeaked {
		t.Fatalf("ledger key = %+v", stored)
	}
}

func TestServiceRevokeKeyTwiceIsIdempotent(t *testing.T) {
	f := newFixture(t)
	k := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_1", Name: "ci"})
	first, err := f.svc.RevokeKey(ctx, Admin(), RevokeKey{KeyID: k.ID, Reason: ReasonRotated})
	if err != nil {
		t.Fatal(err)
	}
	calls := f.ledger.appendCalls()
	f.clock.Advance(time.Hour)
	second, err := f.svc.RevokeKey(ctx, Admin(), RevokeKey{KeyID: k.ID, Reason: ReasonLeaked})
	if err != nil {
		t.Fatal(err)
	}
	if f.ledger.appendCalls() != calls {
		t.Fatal("revoking a revoked key appended again")
	}
	if n := countEvents[KeyRevoked](f.ledger); n != 1 {
		t.Fatalf("%d revocations in the ledger, want 1", n)
	}
	// The answer is the ledger's state: the first revocation.
	if second.Status != StatusRevoked || second.RevokeReason != ReasonRotated || !second.RevokedAt.Equal(*first.RevokedAt) || second.Version != first.Version {
		t.Fatalf("second revoke = %+v, want %+v", second, first)
	}
	if w := f.view.waited(); w[len(w)-1] != first.Version {
		t.Fatalf("waited for %v, want the revocation's sequence %d last", w, first.Version)
	}
}

func TestServiceRevokeKeyRetriesConflict(t *testing.T) {
	f := newFixture(t)
	k := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_1", Name: "ci"})
	f.ledger.injectConflicts(1)
	calls := f.ledger.appendCalls()
	got, err := f.svc.RevokeKey(ctx, Admin(), RevokeKey{KeyID: k.ID, Reason: ReasonRequested})
	if err != nil {
		t.Fatalf("revoke after one conflict: %v", err)
	}
	if n := f.ledger.appendCalls() - calls; n != 2 {
		t.Fatalf("%d append attempts, want 2", n)
	}
	if got.Status != StatusRevoked || countEvents[KeyRevoked](f.ledger) != 1 {
		t.Fatalf("key %+v, %d revocations", got, countEvents[KeyRevoked](f.ledger))
	}
}

func TestServiceRevokeKeyConcurrentRevoke(t *testing.T) {
	// Another node revokes the key between this node's load and append: the
	// append conflicts, the retry sees the key revoked and answers with the
	// ledger's revocation without appending a second one.
	f := newFixture(t)
	k := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_1", Name: "ci"})
	f.ledger.beforeAppend = func(call int, _ []Append) error {
		f.ledger.beforeAppend = nil // once
		f.ledger.seedRevoke(t, "org_1", k.ID, ReasonRotated)
		return nil
	}
	got, err := f.svc.RevokeKey(ctx, Admin(), RevokeKey{KeyID: k.ID, Reason: ReasonLeaked})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusRevoked || got.RevokeReason != ReasonRotated {
		t.Fatalf("key = %+v, want the concurrent revocation (rotated)", got)
	}
	if n := countEvents[KeyRevoked](f.ledger); n != 1 {
		t.Fatalf("%d revocations in the ledger, want 1", n)
	}
	if w := f.view.waited(); w[len(w)-1] != f.ledger.lastSeq() {
		t.Fatalf("waited for %v, want the concurrent revocation %d", w, f.ledger.lastSeq())
	}
}

func TestServiceRevokeKeyDuplicateOfConcurrentRevoke(t *testing.T) {
	// Another node revoked the key first, under the same message id
	// (revoke.<key id>), so the ledger answers this node's append as a
	// duplicate. The answer must be the ledger's revocation, not the one
	// this node proposed and that was never appended.
	f := newFixture(t)
	k := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_1", Name: "ci"})
	f.ledger.beforeAppend = func(call int, batch []Append) error {
		f.ledger.beforeAppend = nil // once
		if batch[0].MsgID != "revoke."+k.ID {
			t.Errorf("revoke message id = %q, want %q", batch[0].MsgID, "revoke."+k.ID)
		}
		_, err := f.ledger.append([]Append{{
			Event: Event{ID: "event_other_node", OrganizationID: "org_1", AggregateID: k.ID, Actor: Admin(),
				CreatedAt: time.Unix(5, 0).UTC(), Data: KeyRevoked{KeyID: k.ID, Reason: ReasonRotated}},
			Expected: k.Version, MsgID: "revoke." + k.ID,
		}})
		return err
	}
	got, err := f.svc.RevokeKey(ctx, Admin(), RevokeKey{KeyID: k.ID, Reason: ReasonLeaked})
	if err != nil {
		t.Fatal(err)
	}
	if n := countEvents[KeyRevoked](f.ledger); n != 1 {
		t.Fatalf("%d revocations in the ledger, want 1", n)
	}
	if got.RevokeReason != ReasonRotated || !got.RevokedAt.Equal(time.Unix(5, 0)) || got.Version != f.ledger.lastSeq() {
		t.Fatalf("answer = reason %q at %v (version %d); the ledger holds reason rotated at %v (version %d)",
			got.RevokeReason, got.RevokedAt, got.Version, time.Unix(5, 0).UTC(), f.ledger.lastSeq())
	}
}

func TestServiceRevokeKeyGivesUp(t *testing.T) {
	f := newFixture(t)
	k := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_1", Name: "ci"})
	f.ledger.injectConflicts(1000)
	calls := f.ledger.appendCalls()
	_, err := f.svc.RevokeKey(ctx, Admin(), RevokeKey{KeyID: k.ID, Reason: ReasonRequested})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict after the attempts run out", err)
	}
	if n := f.ledger.appendCalls() - calls; n != maxAttempts {
		t.Fatalf("%d attempts, want %d", n, maxAttempts)
	}
}

func TestServiceRevokeKeyNotVisible(t *testing.T) {
	f := newFixture(t)
	orgKey := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_1", Name: "org"})
	keyB := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_1", UserID: "user_b", Name: "b"})
	otherOrg := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_2", UserID: "user_a", Name: "a"})
	calls := f.ledger.appendCalls()
	cases := []struct {
		name  string
		actor Actor
		id    string
	}{
		{"another user's key", userSelf, keyB.ID},
		{"an org key for manage-self", userSelf, orgKey.ID},
		{"another org's key with the same user id", userSelf, otherOrg.ID},
		{"another org's key with every permission", everything, otherOrg.ID},
		{"a key that does not exist", Admin(), "api_key_" + strings.Repeat("9", 26)},
		{"a malformed key id", Admin(), "api_key_nope"},
		{"a subject wildcard as key id", Admin(), "api_key_>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := f.svc.RevokeKey(ctx, c.actor, RevokeKey{KeyID: c.id, Reason: ReasonRequested})
			if !errors.Is(err, ErrNotFound) || ErrorKind(err) != KindNotFound || got != nil {
				t.Fatalf("RevokeKey = %+v, %v; want ErrNotFound", got, err)
			}
		})
	}
	if f.ledger.appendCalls() != calls {
		t.Fatal("a refused revoke appended")
	}
}

func TestServiceRevokeKeyWaitFailure(t *testing.T) {
	f := newFixture(t)
	k := createKey(t, f, Admin(), CreateKey{OrganizationID: "org_1", Name: "ci"})
	f.view.waitErr = func(uint64) error { return ErrUnavailable }
	got, err := f.svc.RevokeKey(ctx, Admin(), RevokeKey{KeyID: k.ID, Reason: ReasonRequested})
	if !errors.Is(err, ErrUnavailable) || got != nil {
		t.Fatalf("RevokeKey = %+v, %v; want no answer before the projection applied it", got, err)
	}
}

// memberFixture seeds user_a's keys in org_1 and some keys that a removal of
// user_a from org_1 must not touch.
func memberFixture(t *testing.T) (f *serviceFixture, active []string, untouched []string) {
	t.Helper()
	f = newFixture(t)
	l := f.ledger
	l.seedKey(t, "api_key_A1", "org_1", Owner{OwnerUser, "user_a"}, "orders:read")
	l.seedKey(t, "api_key_A2", "org_1", Owner{OwnerUser, "user_a"})
	l.seedKey(t, "api_key_A3", "org_1", Owner{OwnerUser, "user_a"})
	l.seedKey(t, "api_key_A4", "org_1", Owner{OwnerUser, "user_a"})
	l.seedRevoke(t, "org_1", "api_key_A4", ReasonRequested)
	l.seedKey(t, "api_key_B1", "org_1", Owner{OwnerUser, "user_b"})
	l.seedKey(t, "api_key_O1", "org_1", Owner{OwnerOrganization, "org_1"})
	l.seedKey(t, "api_key_X1", "org_2", Owner{OwnerUser, "user_a"})
	return f, []string{"api_key_A1", "api_key_A2", "api_key_A3"}, []string{"api_key_B1", "api_key_O1", "api_key_X1"}
}

func assertStatus(t *testing.T, f *serviceFixture, ids []string, status KeyStatus, reason RevokeReason) {
	t.Helper()
	keys := f.ledger.keys()
	for _, id := range ids {
		k := keys[id]
		if k == nil || k.Status != status || k.RevokeReason != reason {
			t.Errorf("key %s = %+v, want status %s reason %q", id, k, status, reason)
		}
	}
}

func TestServiceRemoveMember(t *testing.T) {
	f, active, untouched := memberFixture(t)
	before := len(f.ledger.appendedBatches())
	versions := map[string]uint64{}
	for id, k := range f.ledger.keys() {
		versions[id] = k.Version
	}
	removed, err := f.svc.RemoveMember(ctx, Admin(), RemoveMember{OrganizationID: "org_1", UserID: "user_a"})
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Clone(removed.RevokedKeyIDs)
	slices.Sort(got)
	if removed.UserID != "user_a" || !slices.Equal(got, active) {
		t.Fatalf("removed = %+v, want revoked %v", removed, active)
	}
	batches := f.ledger.appendedBatches()[before:]
	if len(batches) != 1 {
		t.Fatalf("%d batches appended, want 1", len(batches))
	}
	b := batches[0]
	if len(b) != 1+len(active) {
		t.Fatalf("batch of %d events, want 1 member event and %d revocations", len(b), len(active))
	}
	m, ok := b[0].Event.Data.(MemberRemoved)
	if !ok || b[0].Event.AggregateID != "user_a" || b[0].Event.OrganizationID != "org_1" || b[0].Expected != 0 {
		t.Fatalf("first event of the batch = %+v (expected %d), want the member removal expecting 0", b[0].Event, b[0].Expected)
	}
	mIDs := slices.Clone(m.RevokedKeyIDs)
	slices.Sort(mIDs)
	if !slices.Equal(mIDs, active) {
		t.Fatalf("member event lists %v, want %v", m.RevokedKeyIDs, active)
	}
	var revoked []string
	for _, a := range b[1:] {
		r, ok := a.Event.Data.(KeyRevoked)
		if !ok || r.Reason != ReasonOwnerRemoved || a.Event.AggregateID != r.KeyID || a.Event.OrganizationID != "org_1" {
			t.Fatalf("batch event = %+v, want a revocation with reason owner_removed", a.Event)
		}
		if a.Expected != versions[r.KeyID] {
			t.Fatalf("revocation of %s expects version %d, want %d", r.KeyID, a.Expected, versions[r.KeyID])
		}
		revoked = append(revoked, r.KeyID)
	}
	slices.Sort(revoked)
	if !slices.Equal(revoked, active) {
		t.Fatalf("batch revokes %v, want %v", revoked, active)
	}
	assertStatus(t, f, active, StatusRevoked, ReasonOwnerRemoved)
	assertStatus(t, f, []string{"api_key_A4"}, StatusRevoked, ReasonRequested)
	assertStatus(t, f, untouched, StatusActive, "")
	if w := f.view.waited(); len(w) == 0 || w[len(w)-1] != f.ledger.lastSeq() {
		t.Fatalf("waited for %v, want the batch's last sequence %d", w, f.ledger.lastSeq())
	}
}

func TestServiceRemoveMemberWithoutKeys(t *testing.T) {
	f := newFixture(t)
	removed, err := f.svc.RemoveMember(ctx, Admin(), RemoveMember{OrganizationID: "org_1", UserID: "user_z"})
	if err != nil {
		t.Fatal(err)
	}
	if removed.RevokedKeyIDs == nil || len(removed.RevokedKeyIDs) != 0 {
		t.Fatalf("RevokedKeyIDs = %#v, want an empty, non-nil list", removed.RevokedKeyIDs)
	}
	b := f.ledger.appendedBatches()
	if len(b) != 1 || len(b[0]) != 1 {
		t.Fatalf("batches = %+v, want one with the member event only", b)
	}
	if _, ok := b[0][0].Event.Data.(MemberRemoved); !ok {
		t.Fatalf("event = %+v, want a member removal", b[0][0].Event)
	}
	// Removing the user again expects the member's version.
	if _, err := f.svc.RemoveMember(ctx, Admin(), RemoveMember{OrganizationID: "org_1", UserID: "user_z"}); err != nil {
		t.Fatal(err)
	}
	b = f.ledger.appendedBatches()
	if len(b) != 2 || b[1][0].Expected != 1 {
		t.Fatalf("second removal: batches %+v, want one expecting version 1", b)
	}
}

func TestServiceRemoveMemberRefused(t *testing.T) {
	f, active, _ := memberFixture(t)
	calls := f.ledger.appendCalls()
	_, err := f.svc.RemoveMember(ctx, everything, RemoveMember{OrganizationID: "org_1", UserID: "user_a"})
	wantErr(t, err, KindForbidden, "forbidden")
	_, err = f.svc.RemoveMember(ctx, Admin(), RemoveMember{OrganizationID: "org_1", UserID: "user.a"})
	wantErr(t, err, KindInvalid, "invalid_user_id")
	if f.ledger.appendCalls() != calls {
		t.Fatal("a refused removal appended")
	}
	assertStatus(t, f, active, StatusActive, "")
}

func TestServiceRemoveMemberConflictIsAllOrNothing(t *testing.T) {
	// Another node revokes one of the keys between the load and the append:
	// the whole batch conflicts and appends nothing, and the retry revokes
	// the keys that are still active.
	f, active, untouched := memberFixture(t)
	f.ledger.beforeAppend = func(call int, batch []Append) error {
		if call == 1 {
			if len(batch) != 1+len(active) {
				t.Errorf("first batch has %d events, want %d", len(batch), 1+len(active))
			}
			f.ledger.seedRevoke(t, "org_1", "api_key_A2", ReasonLeaked)
		}
		return nil
	}
	before := len(f.ledger.appendedBatches())
	removed, err := f.svc.RemoveMember(ctx, Admin(), RemoveMember{OrganizationID: "org_1", UserID: "user_a"})
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Clone(removed.RevokedKeyIDs)
	slices.Sort(got)
	if want := []string{"api_key_A1", "api_key_A3"}; !slices.Equal(got, want) {
		t.Fatalf("revoked %v, want %v", got, want)
	}
	// The seeded revocation and the service's one retried batch.
	batches := f.ledger.appendedBatches()[before:]
	if len(batches) != 2 || len(batches[1]) != 3 {
		t.Fatalf("batches appended: %d (last of %d events), want the concurrent revoke and one batch of 3", len(batches), len(batches[len(batches)-1]))
	}
	if n := countEvents[MemberRemoved](f.ledger); n != 1 {
		t.Fatalf("%d member events, want 1", n)
	}
	// 1 seeded before, 1 concurrent, 2 by the service.
	if n := countEvents[KeyRevoked](f.ledger); n != 4 {
		t.Fatalf("%d revocations, want 4", n)
	}
	assertStatus(t, f, []string{"api_key_A1", "api_key_A3"}, StatusRevoked, ReasonOwnerRemoved)
	assertStatus(t, f, []string{"api_key_A2"}, StatusRevoked, ReasonLeaked)
	assertStatus(t, f, untouched, StatusActive, "")
}

func TestServiceRemoveMemberRevokesKeyCreatedMeanwhile(t *testing.T) {
	// A key of the user created while the removal runs is revoked by a
	// second batch.
	f, active, _ := memberFixture(t)
	once := false
	f.view.onWait = func(seq uint64) {
		if !once {
			once = true
			f.ledger.seedKey(t, "api_key_A9", "org_1", Owner{OwnerUser, "user_a"})
		}
	}
	before := len(f.ledger.appendedBatches())
	removed, err := f.svc.RemoveMember(ctx, Admin(), RemoveMember{OrganizationID: "org_1", UserID: "user_a"})
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Clone(removed.RevokedKeyIDs)
	slices.Sort(got)
	want := append(slices.Clone(active), "api_key_A9")
	if !slices.Equal(got, want) {
		t.Fatalf("revoked %v, want %v", got, want)
	}
	// The first batch, the new key, the second batch.
	if n := len(f.ledger.appendedBatches()) - before; n != 3 {
		t.Fatalf("%d batches, want 3", n)
	}
	assertStatus(t, f, want, StatusRevoked, ReasonOwnerRemoved)
	if w := f.view.waited(); w[len(w)-1] != f.ledger.lastSeq() {
		t.Fatalf("waited for %v, want the last batch %d", w, f.ledger.lastSeq())
	}
}

func TestServiceSetCatalogue(t *testing.T) {
	f := newFixture(t)
	f.ledger.injectConflicts(1)
	cat, err := f.svc.SetCatalogue(ctx, Admin(), []string{"invoices:read", "orders:read", "invoices:read"})
	if err != nil {
		t.Fatal(err)
	}
	seq := f.ledger.lastSeq()
	if !slices.Equal(cat.Permissions, []string{"invoices:read", "orders:read"}) || cat.Version != seq {
		t.Fatalf("catalogue = %+v", cat)
	}
	if w := f.view.waited(); !slices.Equal(w, []uint64{seq}) {
		t.Fatalf("waited for %v, want [%d]", w, seq)
	}
	e := f.ledger.allEvents()[seq-1]
	d, ok := e.Data.(CataloguePermissionsSet)
	if !ok || e.AggregateID != CatalogueAggregateID || e.OrganizationID != "" ||
		!slices.Equal(d.Previous, []string{"orders:read", "orders:write", "widgets:read"}) {
		t.Fatalf("catalogue event = %+v", e)
	}
	// The new catalogue governs creates.
	if _, err := f.svc.CreateKey(ctx, Admin(), CreateKey{OrganizationID: "org_1", Name: "x", Permissions: []string{"invoices:read"}}, ""); err != nil {
		t.Fatalf("create with a new permission: %v", err)
	}
	_, err = f.svc.CreateKey(ctx, Admin(), CreateKey{OrganizationID: "org_1", Name: "x", Permissions: []string{"orders:write"}}, "")
	wantErr(t, err, KindUnprocessable, "permission_not_allowed")

	// The second change expects the first one's version.
	if _, err := f.svc.SetCatalogue(ctx, Admin(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	b := f.ledger.appendedBatches()
	if last := b[len(b)-1][0]; last.Expected != seq {
		t.Fatalf("second catalogue change expects %d, want %d", last.Expected, seq)
	}

	calls := f.ledger.appendCalls()
	_, err = f.svc.SetCatalogue(ctx, everything, []string{"a"})
	wantErr(t, err, KindForbidden, "forbidden")
	_, err = f.svc.SetCatalogue(ctx, Admin(), []string{PermManageAllUserKeys})
	wantErr(t, err, KindUnprocessable, "reserved_permission")
	if f.ledger.appendCalls() != calls {
		t.Fatal("a refused catalogue change appended")
	}
}

func TestCommandIDIsStableAndUnambiguous(t *testing.T) {
	a := commandID("create", "org_1", "user", "u1", "k")
	if a != commandID("create", "org_1", "user", "u1", "k") {
		t.Fatal("commandID is not stable")
	}
	// Part boundaries matter: "ab"+"c" and "a"+"bc" are different commands.
	if commandID("create", "ab", "c") == commandID("create", "a", "bc") {
		t.Fatal("commandID does not separate its parts")
	}
	if commandID("create", "org_1", "user", "u1", "k") == commandID("create", "org_2", "user", "u1", "k") {
		t.Fatal("commandID ignores the organization")
	}
	if !strings.HasPrefix(a, "create.") || len(a) != len("create.")+32 {
		t.Fatalf("commandID = %q", a)
	}
}

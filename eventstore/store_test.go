package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

func TestStreamConfigAsDesigned(t *testing.T) {
	st, env := mustOpenStore(t)
	if st.StreamName() != schemas.DefaultStreamName {
		t.Errorf("StreamName = %q, want %q", st.StreamName(), schemas.DefaultStreamName)
	}
	info, err := rawStream(t, env.nc, schemas.DefaultStreamName).Info(ctxT(t))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	c := info.Config
	if c.Storage != jetstream.FileStorage {
		t.Errorf("Storage = %v, want file", c.Storage)
	}
	if c.Discard != jetstream.DiscardNew {
		t.Errorf("Discard = %v, want new", c.Discard)
	}
	if !c.DenyDelete || !c.DenyPurge {
		t.Errorf("DenyDelete=%v DenyPurge=%v, want both true", c.DenyDelete, c.DenyPurge)
	}
	if c.MaxAge != 0 {
		t.Errorf("MaxAge = %v, want no age limit", c.MaxAge)
	}
	if c.Duplicates < 2*time.Minute {
		t.Errorf("Duplicates = %v, want at least 2m", c.Duplicates)
	}
	if !c.AllowAtomicPublish {
		t.Error("AllowAtomicPublish is off")
	}
	if !c.AllowDirect {
		t.Error("AllowDirect is off")
	}
	if c.Retention != jetstream.LimitsPolicy {
		t.Errorf("Retention = %v, want limits", c.Retention)
	}
	if c.Replicas != 1 {
		t.Errorf("Replicas = %d, want 1 on an embedded server", c.Replicas)
	}
	if !slices.Equal(c.Subjects, []string{schemas.SubjectRoot + ".>"}) {
		t.Errorf("Subjects = %v", c.Subjects)
	}

	// fsync on every write: the server-wide JetStream setting.
	jsc := env.ns.JetStreamConfig()
	if jsc == nil {
		t.Fatal("JetStream is not enabled on the embedded server")
	}
	if !jsc.SyncAlways {
		t.Error("embedded server does not sync always (sync_interval: always)")
	}
	if jsc.StoreDir == "" || !filepathHasPrefix(jsc.StoreDir, env.dir) {
		t.Errorf("StoreDir = %q, want inside the data folder %q", jsc.StoreDir, env.dir)
	}
}

func filepathHasPrefix(p, dir string) bool { return len(p) >= len(dir) && p[:len(dir)] == dir }

func TestStreamRefusesDeleteAndPurge(t *testing.T) {
	st, env := mustOpenStore(t)
	createKey(t, st, testOrg, orgOwner(testOrg))
	s := rawStream(t, env.nc, st.StreamName())
	if err := s.DeleteMsg(ctxT(t), 1); err == nil {
		t.Error("deleting a ledger message succeeded")
	}
	if err := s.Purge(ctxT(t)); err == nil {
		t.Error("purging the ledger succeeded")
	}
	if got := lastSeq(t, st); got != 1 {
		t.Errorf("LastSeq = %d after refused delete/purge, want 1", got)
	}
	if _, err := st.EventAt(ctxT(t), 1); err != nil {
		t.Errorf("event 1 is gone: %v", err)
	}
}

func TestDedupeWindowHasAFloorOfTwoMinutes(t *testing.T) {
	env := startEnv(t, "")
	st := env.open(t, eventstore.Config{Stream: "LEDGER_SHORT", Dedupe: time.Second})
	info, err := rawStream(t, env.nc, st.StreamName()).Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Duplicates != 2*time.Minute {
		t.Errorf("Duplicates = %v with a 1s request, want the 2m floor", info.Config.Duplicates)
	}
	if info.Config.Name != "LEDGER_SHORT" {
		t.Errorf("Name = %q", info.Config.Name)
	}
}

func TestOpenTwiceAdoptsTheStream(t *testing.T) {
	st, env := mustOpenStore(t)
	keyID, _ := createKey(t, st, testOrg, orgOwner(testOrg))
	before, err := rawStream(t, env.nc, st.StreamName()).Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}

	st2 := env.open(t, eventstore.Config{})
	after, err := rawStream(t, env.nc, st2.StreamName()).Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if !after.Created.Equal(before.Created) {
		t.Errorf("stream was recreated: created %v, then %v", before.Created, after.Created)
	}
	if got := lastSeq(t, st2); got != 1 {
		t.Errorf("LastSeq through the second store = %d, want 1", got)
	}
	if k := mustLoadKey(t, st2, testOrg, keyID); k.Status != domain.StatusActive {
		t.Errorf("key status through the second store = %q", k.Status)
	}
}

func TestLedgerSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	env := startEnv(t, dir)
	st := env.open(t, eventstore.Config{})
	keyID, _ := createKey(t, st, testOrg, orgOwner(testOrg))
	k := mustLoadKey(t, st, testOrg, keyID)
	rev := appendOne(t, st, revokeEvent(testOrg, keyID, domain.ReasonRequested), k.Version)
	env.stop()

	env2 := startEnv(t, dir)
	st2 := env2.open(t, eventstore.Config{})
	if got := lastSeq(t, st2); got != rev.Seq {
		t.Fatalf("LastSeq after restart = %d, want %d", got, rev.Seq)
	}
	k2 := mustLoadKey(t, st2, testOrg, keyID)
	if k2.Status != domain.StatusRevoked || k2.Version != rev.Seq {
		t.Errorf("after restart: status %q version %d, want revoked at %d", k2.Status, k2.Version, rev.Seq)
	}
}

func TestAppendLoadKeyRoundTrip(t *testing.T) {
	st, env := mustOpenStore(t)
	ctx := ctxT(t)

	// Another key in the same organization, so that LoadKey must filter.
	otherID, _ := createKey(t, st, testOrg, orgOwner(testOrg))

	exp := time.Now().Add(90 * 24 * time.Hour).UTC().Truncate(time.Second)
	create := newKeyCreated(t, testOrg, domain.Owner{Type: domain.OwnerUser, ID: "user_1"})
	cd := create.Data.(domain.KeyCreated)
	cd.ExpiresAt = &exp
	cd.Permissions = []string{"projects:read", "projects:write"}
	create.Data = cd
	keyID := create.AggregateID

	cres := appendOne(t, st, create, 0)
	k := mustLoadKey(t, st, testOrg, keyID)
	if k.Version != cres.Seq || k.Status != domain.StatusActive {
		t.Fatalf("after create: version %d status %q, want %d active", k.Version, k.Status, cres.Seq)
	}

	revoke := revokeEvent(testOrg, keyID, domain.ReasonLeaked)
	revoke.CreatedAt = create.CreatedAt.Add(time.Second)
	rres := appendOne(t, st, revoke, k.Version)
	if rres.Seq != cres.Seq+1 {
		t.Errorf("revoke seq = %d, want %d", rres.Seq, cres.Seq+1)
	}

	k = mustLoadKey(t, st, testOrg, keyID)
	if k.Version != rres.Seq {
		t.Errorf("Version = %d, want the seq of the last event %d", k.Version, rres.Seq)
	}
	if k.ID != keyID || k.OrganizationID != testOrg || k.Name != cd.Name || k.Owner != cd.Owner ||
		!slices.Equal(k.Permissions, cd.Permissions) || k.Hash != cd.Hash || k.Obfuscated != cd.Obfuscated {
		t.Errorf("loaded key does not match its creation: %+v", k)
	}
	if k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) {
		t.Errorf("ExpiresAt = %v, want %v", k.ExpiresAt, exp)
	}
	if !k.CreatedAt.Equal(create.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v", k.CreatedAt, create.CreatedAt)
	}
	if k.Status != domain.StatusRevoked || k.RevokeReason != domain.ReasonLeaked ||
		k.RevokedAt == nil || !k.RevokedAt.Equal(revoke.CreatedAt) || !k.UpdatedAt.Equal(revoke.CreatedAt) {
		t.Errorf("revocation not applied: status %q reason %q revoked_at %v updated_at %v",
			k.Status, k.RevokeReason, k.RevokedAt, k.UpdatedAt)
	}

	// The other key is untouched.
	if o := mustLoadKey(t, st, testOrg, otherID); o.Status != domain.StatusActive || o.Version != 1 {
		t.Errorf("other key: status %q version %d", o.Status, o.Version)
	}

	// Subjects and headers as stored.
	s := rawStream(t, env.nc, st.StreamName())
	for _, c := range []struct {
		seq   uint64
		ev    domain.Event
		typ   string
		exp   string
		msgID string
	}{
		{cres.Seq, create, schemas.EventAPIKeyCreated, "0", create.ID},
		{rres.Seq, revoke, schemas.EventAPIKeyRevoked, fmt.Sprint(cres.Seq), revoke.ID},
	} {
		msg, err := s.GetMsg(ctx, c.seq)
		if err != nil {
			t.Fatalf("GetMsg %d: %v", c.seq, err)
		}
		want := "keyledger.events." + testOrg + "." + keyID + "." + c.typ
		if msg.Subject != want {
			t.Errorf("seq %d subject = %q, want %q", c.seq, msg.Subject, want)
		}
		if got := msg.Header.Get(schemas.HeaderMsgID); got != c.msgID {
			t.Errorf("seq %d %s = %q, want %q", c.seq, schemas.HeaderMsgID, got, c.msgID)
		}
		ev, err := st.EventAt(ctx, c.seq)
		if err != nil {
			t.Fatalf("EventAt %d: %v", c.seq, err)
		}
		want2 := c.ev
		want2.Seq = c.seq
		sameEvent(t, ev, want2)
	}

	// Unknown keys, and keys asked for under another organization, do not exist.
	_, err := st.LoadKey(ctx, testOrg, eventstore.NewID("api_key_"))
	wantErrIs(t, err, domain.ErrNotFound, "LoadKey of an unknown key")
	_, err = st.LoadKey(ctx, "org_2", keyID)
	wantErrIs(t, err, domain.ErrNotFound, "LoadKey under another organization")
}

func TestAppendEmptyBatch(t *testing.T) {
	st, _ := mustOpenStore(t)
	if _, err := st.Append(ctxT(t), nil); err == nil {
		t.Fatal("appending an empty batch succeeded")
	}
	if got := lastSeq(t, st); got != 0 {
		t.Errorf("LastSeq = %d", got)
	}
}

func TestConflictOnStaleVersion(t *testing.T) {
	st, _ := mustOpenStore(t)
	ctx := ctxT(t)
	keyID, _ := createKey(t, st, testOrg, orgOwner(testOrg))

	// Two writers load the same version.
	a := mustLoadKey(t, st, testOrg, keyID)
	b := mustLoadKey(t, st, testOrg, keyID)
	revA := revokeEvent(testOrg, keyID, domain.ReasonRequested)
	revB := revokeEvent(testOrg, keyID, domain.ReasonLeaked)
	resA, err := st.Append(ctx, []domain.Append{{Event: revA, Expected: a.Version, MsgID: revA.ID}})
	if err != nil {
		t.Fatalf("first writer: %v", err)
	}
	_, err = st.Append(ctx, []domain.Append{{Event: revB, Expected: b.Version, MsgID: revB.ID}})
	wantErrIs(t, err, domain.ErrConflict, "second writer with a stale version")
	if got := lastSeq(t, st); got != resA.Seq {
		t.Errorf("LastSeq = %d, want %d: the conflicting write must not land", got, resA.Seq)
	}
	if k := mustLoadKey(t, st, testOrg, keyID); k.RevokeReason != domain.ReasonRequested || k.Version != resA.Seq {
		t.Errorf("key: reason %q version %d, want the first writer's", k.RevokeReason, k.Version)
	}

	// Creating an aggregate that already exists conflicts.
	dup := newKeyCreated(t, testOrg, orgOwner(testOrg))
	dup.AggregateID = keyID
	dd := dup.Data.(domain.KeyCreated)
	dd.KeyID = keyID
	dup.Data = dd
	_, err = st.Append(ctx, []domain.Append{{Event: dup, Expected: 0, MsgID: dup.ID}})
	wantErrIs(t, err, domain.ErrConflict, "create on an existing aggregate")

	// Expecting a version of an aggregate that does not exist conflicts too.
	ghost := eventstore.NewID("api_key_")
	gr := revokeEvent(testOrg, ghost, domain.ReasonRequested)
	_, err = st.Append(ctx, []domain.Append{{Event: gr, Expected: resA.Seq, MsgID: gr.ID}})
	wantErrIs(t, err, domain.ErrConflict, "expected version of a missing aggregate")

	if got := lastSeq(t, st); got != resA.Seq {
		t.Errorf("LastSeq = %d after refused appends, want %d", got, resA.Seq)
	}

	// The version is per aggregate: events of other aggregates in between do
	// not make a correct expectation stale.
	k2, _ := createKey(t, st, testOrg, orgOwner(testOrg))
	v2 := mustLoadKey(t, st, testOrg, k2).Version
	createKey(t, st, testOrg, orgOwner(testOrg))
	createKey(t, st, "org_2", orgOwner("org_2"))
	appendOne(t, st, revokeEvent(testOrg, k2, domain.ReasonRequested), v2)
}

func TestConcurrentRevokersExactlyOneWins(t *testing.T) {
	st, _ := mustOpenStore(t)
	keyID, createSeq := createKey(t, st, testOrg, orgOwner(testOrg))

	const writers = 8
	var (
		loaded sync.WaitGroup
		done   sync.WaitGroup
		start  = make(chan struct{})
		mu     sync.Mutex
		wins   []uint64
		errs   []error
	)
	ctx := ctxT(t)
	loaded.Add(writers)
	done.Add(writers)
	for i := range writers {
		go func() {
			defer done.Done()
			k, err := st.LoadKey(ctx, testOrg, keyID)
			loaded.Done()
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("writer %d load: %w", i, err))
				mu.Unlock()
				return
			}
			<-start // every writer has read the same version before anyone writes
			ev := revokeEvent(testOrg, keyID, domain.ReasonRequested)
			res, err := st.Append(ctx, []domain.Append{{Event: ev, Expected: k.Version, MsgID: ev.ID}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			wins = append(wins, res.Seq)
		}()
	}
	loaded.Wait()
	close(start)
	done.Wait()

	if len(wins) != 1 {
		t.Fatalf("%d writers succeeded (%v), want exactly 1; errors: %v", len(wins), wins, errs)
	}
	for _, err := range errs {
		if !errors.Is(err, domain.ErrConflict) {
			t.Errorf("a losing writer got %v, want a conflict", err)
		}
	}
	if len(errs) != writers-1 {
		t.Errorf("%d conflicts, want %d", len(errs), writers-1)
	}
	if got := lastSeq(t, st); got != createSeq+1 {
		t.Errorf("LastSeq = %d, want %d (one revocation)", got, createSeq+1)
	}
	if k := mustLoadKey(t, st, testOrg, keyID); k.Version != wins[0] || k.Status != domain.StatusRevoked {
		t.Errorf("key version %d status %q, want %d revoked", k.Version, k.Status, wins[0])
	}
}

func TestDuplicateMsgIDAppendsOnce(t *testing.T) {
	st, env := mustOpenStore(t)
	ctx := ctxT(t)
	ev := newKeyCreated(t, testOrg, orgOwner(testOrg))
	batch := []domain.Append{{Event: ev, Expected: 0, MsgID: "create.retry-1"}}

	first, err := st.Append(ctx, batch)
	if err != nil || first.Duplicate {
		t.Fatalf("first append: %+v, %v", first, err)
	}
	second, err := st.Append(ctx, batch)
	if err != nil {
		t.Fatalf("retried append: %v (a retry inside the window must be acknowledged, not a conflict)", err)
	}
	if !second.Duplicate || second.Seq != first.Seq {
		t.Errorf("retried append = %+v, want duplicate of seq %d", second, first.Seq)
	}
	if got := lastSeq(t, st); got != 1 {
		t.Errorf("LastSeq = %d, want 1", got)
	}
	info, err := rawStream(t, env.nc, st.StreamName()).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want 1", info.State.Msgs)
	}

	// The same holds for a revocation retried with its expected version.
	rev := revokeEvent(testOrg, ev.AggregateID, domain.ReasonRequested)
	rb := []domain.Append{{Event: rev, Expected: first.Seq, MsgID: "revoke.retry-1"}}
	r1, err := st.Append(ctx, rb)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := st.Append(ctx, rb)
	if err != nil || !r2.Duplicate || r2.Seq != r1.Seq {
		t.Errorf("retried revoke = %+v, %v; want a duplicate of seq %d", r2, err, r1.Seq)
	}

	// Once the aggregate has moved on, a late retry is a conflict (reload
	// and decide again), never a second append.
	createKey(t, st, testOrg, orgOwner(testOrg))
	other := newEvent(testOrg, ev.AggregateID, domain.Admin(), domain.KeyRevoked{KeyID: ev.AggregateID, Reason: domain.ReasonLeaked})
	appendOne(t, st, other, r1.Seq)
	_, err = st.Append(ctx, rb)
	wantErrIs(t, err, domain.ErrConflict, "retry after the aggregate moved on")
	if got := lastSeq(t, st); got != r1.Seq+2 {
		t.Errorf("LastSeq = %d, want %d", got, r1.Seq+2)
	}
}

// TestIdempotencyKeyReplay is the path of a create retried with the same
// Idempotency-Key: the retry decides anew (new key id, new event id) but
// carries the same message id, and must be reported as a duplicate of the
// original, whose event EventAt then returns.
func TestIdempotencyKeyReplay(t *testing.T) {
	st, _ := mustOpenStore(t)
	ctx := ctxT(t)
	createKey(t, st, testOrg, orgOwner(testOrg)) // something before it

	orig := newKeyCreated(t, testOrg, orgOwner(testOrg))
	res, err := st.Append(ctx, []domain.Append{{Event: orig, Expected: 0, MsgID: "create.idem-abc"}})
	if err != nil || res.Duplicate {
		t.Fatalf("original: %+v, %v", res, err)
	}
	createKey(t, st, testOrg, orgOwner(testOrg)) // something after it

	retry := newKeyCreated(t, testOrg, orgOwner(testOrg))
	again, err := st.Append(ctx, []domain.Append{{Event: retry, Expected: 0, MsgID: "create.idem-abc"}})
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !again.Duplicate || again.Seq != res.Seq {
		t.Fatalf("retry = %+v, want duplicate with the original's seq %d", again, res.Seq)
	}
	if got := lastSeq(t, st); got != 3 {
		t.Errorf("LastSeq = %d, want 3: the retry appended something", got)
	}
	_, err = st.LoadKey(ctx, testOrg, retry.AggregateID)
	wantErrIs(t, err, domain.ErrNotFound, "the retry's key id")
	ev, err := st.EventAt(ctx, again.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != orig.ID || ev.AggregateID != orig.AggregateID {
		t.Errorf("EventAt(dup seq) = %s/%s, want the original %s/%s", ev.ID, ev.AggregateID, orig.ID, orig.AggregateID)
	}
}

// cascade builds the batch of a member removal: the member event first, then
// one revocation per key, each expecting the given versions.
func cascade(org, userID string, memberVersion uint64, keys []*domain.Key) []domain.Append {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	m := newEvent(org, userID, domain.Admin(), domain.MemberRemoved{UserID: userID, RevokedKeyIDs: ids})
	batch := []domain.Append{{Event: m, Expected: memberVersion, MsgID: m.ID}}
	for _, k := range keys {
		r := revokeEvent(org, k.ID, domain.ReasonOwnerRemoved)
		batch = append(batch, domain.Append{Event: r, Expected: k.Version, MsgID: r.ID})
	}
	return batch
}

func userKeys(t *testing.T, st *eventstore.Store, org, userID string, n int) []*domain.Key {
	t.Helper()
	keys := make([]*domain.Key, n)
	for i := range keys {
		id, _ := createKey(t, st, org, domain.Owner{Type: domain.OwnerUser, ID: userID})
		keys[i] = mustLoadKey(t, st, org, id)
	}
	return keys
}

func TestAtomicCascadeAppendsAll(t *testing.T) {
	st, _ := mustOpenStore(t)
	ctx := ctxT(t)
	const n = 5
	keys := userKeys(t, st, testOrg, "user_1", n)
	orgKey, _ := createKey(t, st, testOrg, orgOwner(testOrg))

	mv, err := st.MemberVersion(ctx, testOrg, "user_1")
	if err != nil || mv != 0 {
		t.Fatalf("MemberVersion before = %d, %v; want 0", mv, err)
	}
	before := lastSeq(t, st)
	batch := cascade(testOrg, "user_1", mv, keys)
	res, err := st.Append(ctx, batch)
	if err != nil {
		t.Fatalf("cascade: %v", err)
	}
	if res.Duplicate || res.Seq != before+n+1 {
		t.Errorf("result = %+v, want seq %d (the last of the batch)", res, before+n+1)
	}
	if got := lastSeq(t, st); got != before+n+1 {
		t.Errorf("LastSeq = %d, want %d", got, before+n+1)
	}
	// Stored contiguously and in batch order.
	for i, a := range batch {
		ev, err := st.EventAt(ctx, before+1+uint64(i))
		if err != nil {
			t.Fatalf("EventAt: %v", err)
		}
		if ev.ID != a.Event.ID {
			t.Errorf("seq %d holds %s, want %s", before+1+uint64(i), ev.ID, a.Event.ID)
		}
	}
	for i, k := range keys {
		got := mustLoadKey(t, st, testOrg, k.ID)
		if got.Status != domain.StatusRevoked || got.RevokeReason != domain.ReasonOwnerRemoved || got.Version != before+2+uint64(i) {
			t.Errorf("key %d: status %q reason %q version %d", i, got.Status, got.RevokeReason, got.Version)
		}
	}
	if o := mustLoadKey(t, st, testOrg, orgKey); o.Status != domain.StatusActive {
		t.Errorf("organization key was revoked by a member removal")
	}
	mv, err = st.MemberVersion(ctx, testOrg, "user_1")
	if err != nil || mv != before+1 {
		t.Errorf("MemberVersion after = %d, %v; want %d", mv, err, before+1)
	}

	// A removal with no keys is a one-event append, and expects the member's version.
	again := cascade(testOrg, "user_1", mv, nil)
	if _, err := st.Append(ctx, again); err != nil {
		t.Errorf("second removal of the member: %v", err)
	}
}

func TestAtomicCascadeAllOrNothing(t *testing.T) {
	for _, stale := range []string{"member", "first key", "middle key", "last key (commit)"} {
		t.Run(stale, func(t *testing.T) {
			st, _ := mustOpenStore(t)
			ctx := ctxT(t)
			const n = 4
			keys := userKeys(t, st, testOrg, "user_2", n)
			mv, err := st.MemberVersion(ctx, testOrg, "user_2")
			if err != nil {
				t.Fatal(err)
			}

			// Someone else moves one aggregate on after we loaded it.
			var racedKey string
			switch stale {
			case "member":
				m := newEvent(testOrg, "user_2", domain.Admin(), domain.MemberRemoved{UserID: "user_2"})
				appendOne(t, st, m, mv)
			case "first key":
				racedKey = keys[0].ID
			case "middle key":
				racedKey = keys[n/2].ID
			case "last key (commit)":
				racedKey = keys[n-1].ID
			}
			if racedKey != "" {
				cur := mustLoadKey(t, st, testOrg, racedKey)
				appendOne(t, st, revokeEvent(testOrg, racedKey, domain.ReasonLeaked), cur.Version)
			}

			before := lastSeq(t, st)
			_, err = st.Append(ctx, cascade(testOrg, "user_2", mv, keys))
			wantErrIs(t, err, domain.ErrConflict, "cascade with one stale version")
			if got := lastSeq(t, st); got != before {
				t.Fatalf("LastSeq = %d, want %d: part of a refused batch was stored", got, before)
			}
			for _, k := range keys {
				got := mustLoadKey(t, st, testOrg, k.ID)
				if k.ID == racedKey {
					if got.RevokeReason != domain.ReasonLeaked {
						t.Errorf("raced key: reason %q, want the other writer's", got.RevokeReason)
					}
					continue
				}
				if got.Status != domain.StatusActive || got.Version != k.Version {
					t.Errorf("key %s: status %q version %d, want active at %d", k.ID, got.Status, got.Version, k.Version)
				}
			}
			if v, _ := st.MemberVersion(ctx, testOrg, "user_2"); stale != "member" && v != 0 {
				t.Errorf("MemberVersion = %d after a refused batch, want 0", v)
			}

			// Reload and retry: the refused batch left nothing behind on the
			// server that blocks the next one.
			var fresh []*domain.Key
			for _, k := range keys {
				if k.ID != racedKey {
					fresh = append(fresh, mustLoadKey(t, st, testOrg, k.ID))
				}
			}
			mv, err = st.MemberVersion(ctx, testOrg, "user_2")
			if err != nil {
				t.Fatal(err)
			}
			res, err := st.Append(ctx, cascade(testOrg, "user_2", mv, fresh))
			if err != nil {
				t.Fatalf("retry with fresh versions: %v", err)
			}
			if want := before + uint64(len(fresh)) + 1; res.Seq != want || lastSeq(t, st) != want {
				t.Errorf("retry seq %d, LastSeq %d, want %d", res.Seq, lastSeq(t, st), want)
			}
			for _, k := range fresh {
				if got := mustLoadKey(t, st, testOrg, k.ID); got.Status != domain.StatusRevoked {
					t.Errorf("key %s not revoked by the retry", k.ID)
				}
			}
		})
	}
}

func TestAtomicCascadeRetriedWithSameMsgIDsIsDuplicate(t *testing.T) {
	st, _ := mustOpenStore(t)
	ctx := ctxT(t)
	keys := userKeys(t, st, testOrg, "user_3", 3)
	batch := cascade(testOrg, "user_3", 0, keys)
	first, err := st.Append(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Append(ctx, batch)
	if err != nil {
		t.Fatalf("retried batch: %v", err)
	}
	if !res.Duplicate || res.Seq != first.Seq {
		t.Errorf("retried batch = %+v, want a duplicate of seq %d", res, first.Seq)
	}
	if got := lastSeq(t, st); got != first.Seq {
		t.Errorf("LastSeq = %d, want %d: a retried batch appended again", got, first.Seq)
	}

	// A batch that reuses one stored message id but is not a retry of the
	// stored batch appends nothing and is not reported as a duplicate.
	other := userKeys(t, st, testOrg, "user_4", 1)
	mixed := cascade(testOrg, "user_4", 0, other)
	mixed[0].MsgID = batch[0].MsgID
	before := lastSeq(t, st)
	if res, err := st.Append(ctx, mixed); err == nil {
		t.Errorf("batch reusing a stored message id = %+v, want an error", res)
	}
	if got := lastSeq(t, st); got != before {
		t.Errorf("LastSeq = %d, want %d", got, before)
	}
}

func TestFollow(t *testing.T) {
	st, _ := mustOpenStore(t)
	var ids []string
	for range 5 {
		e := newKeyCreated(t, testOrg, orgOwner(testOrg))
		appendOne(t, st, e, 0)
		ids = append(ids, e.ID)
		r := revokeEvent(testOrg, e.AggregateID, domain.ReasonRequested)
		appendOne(t, st, r, lastSeq(t, st))
		ids = append(ids, r.ID)
	}

	// follow collects events from "from" until it holds want, then cancels;
	// it returns the events, the run sizes and Follow's error.
	follow := func(t *testing.T, from uint64, max, want int, during func()) ([]domain.Event, []int, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var (
			got  []domain.Event
			runs []int
		)
		errc := make(chan error, 1)
		go func() {
			errc <- st.Follow(ctx, from, max, func(run []domain.Event) error {
				runs = append(runs, len(run))
				got = append(got, run...) // copy: the run is reused
				if during != nil && len(got) >= want/2 {
					during()
				}
				if len(got) >= want {
					cancel()
				}
				return nil
			})
		}()
		select {
		case err := <-errc:
			return got, runs, err
		case <-time.After(15 * time.Second):
			t.Fatal("Follow did not return after its context was cancelled")
			return nil, nil, nil
		}
	}

	t.Run("from 1", func(t *testing.T) {
		got, runs, err := follow(t, 1, 3, len(ids), nil)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Follow returned %v, want context.Canceled", err)
		}
		if len(got) != len(ids) {
			t.Fatalf("got %d events, want %d", len(got), len(ids))
		}
		for i, e := range got {
			if e.Seq != uint64(i+1) || e.ID != ids[i] {
				t.Errorf("event %d: seq %d id %s, want seq %d id %s", i, e.Seq, e.ID, i+1, ids[i])
			}
		}
		for _, n := range runs {
			if n < 1 || n > 3 {
				t.Errorf("run of %d events with max 3 (runs %v)", n, runs)
			}
		}
		if len(runs) < len(ids)/3 {
			t.Errorf("runs %v: fewer runs than max allows", runs)
		}
	})

	t.Run("from 0 means from 1", func(t *testing.T) {
		got, _, _ := follow(t, 0, 100, len(ids), nil)
		if len(got) == 0 || got[0].Seq != 1 {
			t.Fatalf("first event %v, want seq 1", got)
		}
	})

	t.Run("from k", func(t *testing.T) {
		const k = 4
		got, _, err := follow(t, k, 100, len(ids)-k+1, nil)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Follow returned %v", err)
		}
		if len(got) != len(ids)-k+1 || got[0].Seq != k || got[0].ID != ids[k-1] {
			t.Fatalf("from %d got %d events starting at %v", k, len(got), got)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq != got[i-1].Seq+1 {
				t.Errorf("gap: %d then %d", got[i-1].Seq, got[i].Seq)
			}
		}
	})

	t.Run("live tail", func(t *testing.T) {
		var (
			live     []string
			liveDone = make(chan struct{})
			once     sync.Once
		)
		total := len(ids) + 3
		got, _, err := follow(t, 1, 2, total, func() {
			// Appended while following: delivered after what was there.
			once.Do(func() {
				go func() {
					defer close(liveDone)
					for range 3 {
						e := newKeyCreated(t, testOrg, orgOwner(testOrg))
						if _, err := st.Append(context.Background(), []domain.Append{{Event: e, MsgID: e.ID}}); err != nil {
							t.Errorf("append while following: %v", err)
							return
						}
						live = append(live, e.ID)
					}
				}()
			})
		})
		select {
		case <-liveDone:
		case <-time.After(10 * time.Second):
			t.Fatal("the live appends never ran")
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Follow returned %v", err)
		}
		if len(got) != total {
			t.Fatalf("got %d events, want %d", len(got), total)
		}
		for i, e := range got {
			if e.Seq != uint64(i+1) {
				t.Fatalf("event %d has seq %d", i, e.Seq)
			}
		}
		var tail []string
		for _, e := range got[len(ids):] {
			tail = append(tail, e.ID)
		}
		if !slices.Equal(tail, live) {
			t.Errorf("live events %v, want %v", tail, live)
		}
	})

	t.Run("stops when fn fails", func(t *testing.T) {
		boom := errors.New("boom")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		calls := 0
		err := st.Follow(ctx, 1, 3, func([]domain.Event) error { calls++; return boom })
		if !errors.Is(err, boom) || calls != 1 {
			t.Errorf("Follow = %v after %d calls, want fn's error after 1", err, calls)
		}
	})

	t.Run("returns on cancel while idle", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			errc <- st.Follow(ctx, lastSeq(t, st)+1, 10, func([]domain.Event) error { return nil })
		}()
		time.Sleep(100 * time.Millisecond)
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Follow = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Follow did not return after cancel")
		}
	})
}

func TestLoadCatalogue(t *testing.T) {
	st, env := mustOpenStore(t)
	ctx := ctxT(t)
	c, err := st.LoadCatalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Permissions == nil || len(c.Permissions) != 0 || c.Version != 0 {
		t.Errorf("never-set catalogue = %+v, want empty, version 0", c)
	}

	// Key events do not disturb the catalogue.
	createKey(t, st, testOrg, orgOwner(testOrg))

	set := func(perms, prev []string, expected uint64) uint64 {
		e := newEvent("", domain.CatalogueAggregateID, domain.Admin(), domain.CataloguePermissionsSet{Permissions: perms, Previous: prev})
		return appendOne(t, st, e, expected).Seq
	}
	s1 := set([]string{"a:read", "b:read"}, []string{}, 0)
	c, err = st.LoadCatalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Permissions, []string{"a:read", "b:read"}) || c.Version != s1 {
		t.Errorf("catalogue = %+v, want [a:read b:read] at %d", c, s1)
	}
	createKey(t, st, testOrg, orgOwner(testOrg))
	s2 := set([]string{"c:write"}, c.Permissions, c.Version)
	c, err = st.LoadCatalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Permissions, []string{"c:write"}) || c.Version != s2 {
		t.Errorf("catalogue = %+v, want [c:write] at %d (last set wins)", c, s2)
	}

	// A stale catalogue version conflicts.
	e := newEvent("", domain.CatalogueAggregateID, domain.Admin(), domain.CataloguePermissionsSet{Permissions: []string{}})
	_, err = st.Append(ctx, []domain.Append{{Event: e, Expected: s1, MsgID: e.ID}})
	wantErrIs(t, err, domain.ErrConflict, "catalogue set with a stale version")

	// Setting it to empty is a real state, not "never set".
	s3 := set([]string{}, []string{"c:write"}, s2)
	c, err = st.LoadCatalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Permissions == nil || len(c.Permissions) != 0 || c.Version != s3 {
		t.Errorf("catalogue = %+v, want empty at %d", c, s3)
	}

	msg, err := rawStream(t, env.nc, st.StreamName()).GetMsg(ctx, s3)
	if err != nil {
		t.Fatal(err)
	}
	if want := "keyledger.events._system.api_key_permissions.api_key_permissions.updated"; msg.Subject != want {
		t.Errorf("catalogue subject = %q, want %q", msg.Subject, want)
	}
}

func TestMemberVersion(t *testing.T) {
	st, _ := mustOpenStore(t)
	ctx := ctxT(t)
	v, err := st.MemberVersion(ctx, testOrg, "user_7")
	if err != nil || v != 0 {
		t.Fatalf("MemberVersion of a member with no events = %d, %v", v, err)
	}
	createKey(t, st, testOrg, domain.Owner{Type: domain.OwnerUser, ID: "user_7"}) // a key is not a member event
	m := newEvent(testOrg, "user_7", domain.Admin(), domain.MemberRemoved{UserID: "user_7"})
	res := appendOne(t, st, m, 0)
	if v, err = st.MemberVersion(ctx, testOrg, "user_7"); err != nil || v != res.Seq {
		t.Errorf("MemberVersion = %d, %v; want %d", v, err, res.Seq)
	}
	if v, err = st.MemberVersion(ctx, "org_2", "user_7"); err != nil || v != 0 {
		t.Errorf("MemberVersion in another organization = %d, %v; want 0", v, err)
	}
}

func TestEventAt(t *testing.T) {
	st, _ := mustOpenStore(t)
	ctx := ctxT(t)
	e := newKeyCreated(t, testOrg, orgOwner(testOrg))
	res := appendOne(t, st, e, 0)
	got, err := st.EventAt(ctx, res.Seq)
	if err != nil {
		t.Fatal(err)
	}
	want := e
	want.Seq = res.Seq
	sameEvent(t, got, want)

	_, err = st.EventAt(ctx, res.Seq+1)
	wantErrIs(t, err, domain.ErrNotFound, "EventAt beyond the end")
	_, err = st.EventAt(ctx, 1000)
	wantErrIs(t, err, domain.ErrNotFound, "EventAt far beyond the end")
}

func TestUnavailableAfterServerShutdown(t *testing.T) {
	st, env := mustOpenStore(t)
	keyID, _ := createKey(t, st, testOrg, orgOwner(testOrg))
	k := mustLoadKey(t, st, testOrg, keyID)
	env.ns.Shutdown()
	env.ns.WaitForShutdown()

	const timeout = 500 * time.Millisecond
	within := func(t *testing.T, what string, f func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		err := f(ctx)
		took := time.Since(start)
		wantErrIs(t, err, domain.ErrUnavailable, what)
		if took > timeout+time.Second {
			t.Errorf("%s took %v, beyond its %v deadline", what, took, timeout)
		}
	}
	within(t, "Append", func(ctx context.Context) error {
		e := revokeEvent(testOrg, keyID, domain.ReasonRequested)
		_, err := st.Append(ctx, []domain.Append{{Event: e, Expected: k.Version, MsgID: e.ID}})
		return err
	})
	within(t, "Append batch", func(ctx context.Context) error {
		_, err := st.Append(ctx, cascade(testOrg, "user_1", 0, []*domain.Key{k}))
		return err
	})
	within(t, "LoadKey", func(ctx context.Context) error { _, err := st.LoadKey(ctx, testOrg, keyID); return err })
	within(t, "LastSeq", func(ctx context.Context) error { _, err := st.LastSeq(ctx); return err })
	within(t, "EventAt", func(ctx context.Context) error { _, err := st.EventAt(ctx, 1); return err })
}

// Opening a stream that already is as asked sends no update; one whose
// settings were changed by hand is updated back.
func TestOpenUpdatesOnlyAChangedStream(t *testing.T) {
	st, env := mustOpenStore(t)
	updates := make(chan *nats.Msg, 16)
	sub, err := env.nc.ChanSubscribe("$JS.API.STREAM.UPDATE."+st.StreamName(), updates)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := env.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	env.open(t, eventstore.Config{})
	if err := env.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(updates); n != 0 {
		t.Fatalf("opening a stream as asked sent %d update(s)", n)
	}

	js, err := jetstream.New(env.nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rawStream(t, env.nc, st.StreamName()).CachedInfo().Config
	cfg.MaxMsgSize = 1 << 20
	cfg.Description = "changed by hand"
	if _, err := js.UpdateStream(ctxT(t), cfg); err != nil {
		t.Fatal(err)
	}
	for len(updates) > 0 {
		<-updates // the update by hand
	}
	env.open(t, eventstore.Config{})
	if n := len(updates); n != 1 {
		t.Fatalf("opening a changed stream sent %d update(s), want 1", n)
	}
	info, err := rawStream(t, env.nc, st.StreamName()).Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := eventstore.StreamConfig(eventstore.Config{}); info.Config.MaxMsgSize != want.MaxMsgSize || info.Config.Description != want.Description {
		t.Fatalf("after opening: MaxMsgSize %d, description %q", info.Config.MaxMsgSize, info.Config.Description)
	}
}

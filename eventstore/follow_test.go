package eventstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

// Follow reads ahead of fn: a slow fn still gets every event, in order, in
// runs of at most max, each run its own until fn returns.
func TestFollowReadsAheadOfASlowFn(t *testing.T) {
	st, env := mustOpenStore(t)
	js, err := jetstream.New(env.nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for range n {
		e := newKeyCreated(t, testOrg, orgOwner(testOrg))
		subj, body, err := eventstore.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctxT(t), subj, body); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		next uint64 = 1
		runs int
	)
	err = st.Follow(ctx, 1, 7, func(run []domain.Event) error {
		runs++
		if len(run) == 0 || len(run) > 7 {
			t.Errorf("run of %d events with max 7", len(run))
		}
		first := run[0].Seq
		time.Sleep(time.Millisecond) // the reader goes on meanwhile
		for i, e := range run {
			if e.Seq != next {
				t.Fatalf("got seq %d, want %d", e.Seq, next)
			}
			if e.Seq != first+uint64(i) {
				t.Fatalf("the run changed while fn held it")
			}
			next++
		}
		if next > n {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Follow = %v, want context.Canceled", err)
	}
	if next != n+1 {
		t.Errorf("got events up to %d, want %d", next-1, n)
	}
	if runs < n/7 {
		t.Errorf("%d runs for %d events with max 7", runs, n)
	}
}

// A message that cannot be decoded ends Follow with the decoding error,
// after fn has had the runs before it.
func TestFollowStopsAtAnUndecodableMessage(t *testing.T) {
	st, env := mustOpenStore(t)
	for range 3 {
		appendOne(t, st, newKeyCreated(t, testOrg, orgOwner(testOrg)), 0)
	}
	js, err := jetstream.New(env.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctxT(t), schemas.Subject(testOrg, "api_key_x", schemas.EventAPIKeyCreated), []byte(`{"id":`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []uint64
	err = st.Follow(ctx, 1, 1, func(run []domain.Event) error {
		for _, e := range run {
			got = append(got, e.Seq)
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "decode seq 4") {
		t.Errorf("Follow = %v, want the decoding error of seq 4", err)
	}
	if len(got) != 3 || got[2] != 3 {
		t.Errorf("fn got %v, want 1, 2, 3", got)
	}
}

// A follow whose consumer falls silent while the ledger holds events it
// has not read ends with ErrUnavailable after StallAfter, for its caller to
// follow again on a new consumer; an idle ledger never ends it. The
// consumer is silenced by pausing it on the server. Follow (the
// projector's) and FollowRaw (the sealer's) alike.
func TestFollowEndsWhenItStalls(t *testing.T) {
	type followFunc func(st *eventstore.Store, ctx context.Context, from uint64, got chan<- uint64) error
	for name, follow := range map[string]followFunc{
		"Follow": func(st *eventstore.Store, ctx context.Context, from uint64, got chan<- uint64) error {
			return st.Follow(ctx, from, 16, func(run []domain.Event) error {
				for _, e := range run {
					got <- e.Seq
				}
				return nil
			})
		},
		"FollowRaw": func(st *eventstore.Store, ctx context.Context, from uint64, got chan<- uint64) error {
			return st.FollowRaw(ctx, from, func(run []eventstore.RawMessage) error {
				for _, m := range run {
					got <- m.Seq
				}
				return nil
			})
		},
	} {
		t.Run(name, func(t *testing.T) { testFollowStalls(t, follow) })
	}
}

func testFollowStalls(t *testing.T, followFn func(st *eventstore.Store, ctx context.Context, from uint64, got chan<- uint64) error) {
	env := startEnv(t, "")
	const stallAfter = 300 * time.Millisecond
	st := env.open(t, eventstore.Config{StallAfter: stallAfter})
	createKey(t, st, testOrg, orgOwner(testOrg))
	ctx := ctxT(t)
	follow := func(from uint64) (chan uint64, chan error) {
		got, errc := make(chan uint64, 16), make(chan error, 1)
		go func() { errc <- followFn(st, ctx, from, got) }()
		return got, errc
	}
	got, errc := follow(1)
	if seq := <-got; seq != 1 {
		t.Fatalf("read seq %d first", seq)
	}
	select {
	case err := <-errc:
		t.Fatalf("an idle follow ended: %v", err)
	case <-time.After(5 * stallAfter):
	}

	js, err := jetstream.New(env.nc)
	if err != nil {
		t.Fatal(err)
	}
	names := rawStream(t, env.nc, st.StreamName()).ConsumerNames(ctx)
	var paused int
	for name := range names.Name() {
		if _, err := js.PauseConsumer(ctx, st.StreamName(), name, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		paused++
	}
	if paused != 1 {
		t.Fatalf("paused %d consumers, want the follow's one", paused)
	}
	_, seq := createKey(t, st, testOrg, orgOwner(testOrg))
	select {
	case err := <-errc:
		if !errors.Is(err, domain.ErrUnavailable) || !strings.Contains(err.Error(), "read nothing") {
			t.Fatalf("stalled follow ended with %v", err)
		}
	case s := <-got:
		t.Fatalf("a paused consumer delivered seq %d", s)
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled follow did not end")
	}
	got, _ = follow(seq)
	select {
	case s := <-got:
		if s != seq {
			t.Fatalf("followed again, read seq %d first, want %d", s, seq)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("following again read nothing")
	}
}

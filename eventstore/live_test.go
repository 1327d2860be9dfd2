package eventstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

// followAll follows st from 1 with fn's delay per run until it has n
// events, and checks that they come in sequence order, each once.
func followAll(t *testing.T, st *eventstore.Store, n int, delay time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var next uint64 = 1
	err := st.Follow(ctx, 1, 64, func(run []domain.Event) error {
		for _, e := range run {
			if e.Seq != next {
				t.Fatalf("got seq %d, want %d", e.Seq, next)
			}
			next++
		}
		time.Sleep(delay)
		if next > uint64(n) {
			cancel()
		}
		return nil
	})
	if ctx.Err() == nil || next <= uint64(n) {
		t.Fatalf("Follow = %v with %d of %d events", err, next-1, n)
	}
}

// appendConcurrently appends n new keys from 4 writers.
func appendConcurrently(t *testing.T, st *eventstore.Store, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				e := newKeyCreated(t, testOrg, orgOwner(testOrg))
				if _, err := st.Append(context.Background(), []domain.Append{{Event: e, MsgID: e.ID}}); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// The live feed brings what is appended while Follow runs, after what was
// there before, in order and once.
func TestFollowLive(t *testing.T) {
	st, _ := mustOpenStore(t)
	appendConcurrently(t, st, 5)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(50 * time.Millisecond)
		appendConcurrently(t, st, 200)
	}()
	followAll(t, st, 205, 0)
	<-done
}

// NATS drops feed messages a slow follower does not take: Follow reads
// them from the stream, and nothing is lost, repeated or reordered.
func TestFollowLiveFillsWhatTheFeedDropped(t *testing.T) {
	st, _ := mustOpenStore(t)
	eventstore.SetFeedBuffer(st, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		appendConcurrently(t, st, 300)
	}()
	before := st.FeedGaps()
	followAll(t, st, 300, 5*time.Millisecond)
	<-done
	// The first read of the stream is one; the drops make more.
	if gaps := st.FeedGaps() - before; gaps < 2 {
		t.Fatalf("the feed dropped nothing (%d reads from the stream): the test did not test the gaps", gaps)
	}
}

// With no feed at all (a stream whose republish was removed), Follow still
// brings every event, from the stream, when the feed stays quiet.
func TestFollowLiveWithAQuietFeed(t *testing.T) {
	st, env := mustOpenStore(t)
	js, err := jetstream.New(env.nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctxT(t), st.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.RePublish = nil
	if _, err := js.UpdateStream(ctxT(t), cfg); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10 {
			time.Sleep(30 * time.Millisecond)
			appendConcurrently(t, st, 1)
		}
	}()
	followAll(t, st, 10, 0)
	<-done
}

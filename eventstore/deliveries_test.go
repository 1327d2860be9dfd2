package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

func openDeliveries(t *testing.T, env *testEnv, cfg eventstore.DeliveryConfig) *eventstore.DeliveryQueue {
	t.Helper()
	q, err := eventstore.NewDeliveryQueue(ctxT(t), env.nc, cfg)
	if err != nil {
		t.Fatalf("NewDeliveryQueue: %v", err)
	}
	return q
}

// consumeFor runs Consume in the background with handle; the returned stop
// ends it and waits for it to return.
func consumeFor(t *testing.T, q *eventstore.DeliveryQueue, ep string, limit int,
	handle func(context.Context, uint64, []byte) time.Duration) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Consume(ctx, ep, limit, handle) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Consume: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeliveryStreamAsDesigned(t *testing.T) {
	env := startEnv(t, "")
	q := openDeliveries(t, env, eventstore.DeliveryConfig{Dedupe: time.Second})
	if q.StreamName() != eventstore.DefaultDeliveryStream {
		t.Errorf("StreamName = %q", q.StreamName())
	}
	info, err := rawStream(t, env.nc, eventstore.DefaultDeliveryStream).Info(ctxT(t))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	c := info.Config
	if c.Storage != jetstream.FileStorage {
		t.Errorf("Storage = %v, want file", c.Storage)
	}
	if c.Duplicates < 2*time.Minute {
		t.Errorf("Duplicates = %v, want at least 2m", c.Duplicates)
	}
	if c.MaxAge != 30*24*time.Hour {
		t.Errorf("MaxAge = %v, want 30 days", c.MaxAge)
	}
	if !c.AllowDirect || c.Replicas != 1 || c.Retention != jetstream.LimitsPolicy {
		t.Errorf("AllowDirect=%v Replicas=%d Retention=%v", c.AllowDirect, c.Replicas, c.Retention)
	}
	want := []string{"keyledger.webhooks.deliveries.*", "keyledger.webhooks.attempts.*"}
	if !slices.Equal(c.Subjects, want) {
		t.Errorf("Subjects = %v, want %v", c.Subjects, want)
	}
	// The ledger and the delivery stream live side by side.
	env.open(t, eventstore.Config{})
	// Opening again adopts the stream.
	openDeliveries(t, env, eventstore.DeliveryConfig{})
}

func TestDeliveryPutIsIdempotent(t *testing.T) {
	env := startEnv(t, "")
	q := openDeliveries(t, env, eventstore.DeliveryConfig{})
	ctx := ctxT(t)
	for _, id := range []string{"a/1", "a/1", "b/1", "a/1"} {
		if err := q.Put(ctx, "we_1", id, []byte(id)); err != nil {
			t.Fatalf("Put %s: %v", id, err)
		}
	}
	// The same id for another endpoint is another delivery.
	if err := q.Put(ctx, "we_2", "a/1", []byte("x")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	info, err := rawStream(t, env.nc, eventstore.DefaultDeliveryStream).Info(ctx, jetstream.WithSubjectFilter("keyledger.webhooks.deliveries.>"))
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	got := info.State.Subjects
	if got["keyledger.webhooks.deliveries.we_1"] != 2 || got["keyledger.webhooks.deliveries.we_2"] != 1 {
		t.Errorf("messages per subject = %v, want we_1: 2, we_2: 1", got)
	}
	for _, bad := range []string{"", "we.1", "we_*", "we >", "we_1/x"} {
		if err := q.Put(ctx, bad, "a/1", nil); err == nil {
			t.Errorf("Put to endpoint %q: no error", bad)
		}
	}
}

// A delivery handed back with a delay comes again after it, and does not
// hold back the endpoint's other deliveries meanwhile.
func TestDeliveryDelayDoesNotBlockOthers(t *testing.T) {
	env := startEnv(t, "")
	q := openDeliveries(t, env, eventstore.DeliveryConfig{})
	ctx := ctxT(t)
	for i := range 5 {
		if err := q.Put(ctx, "we_1", fmt.Sprint(i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var order []string
	var firstSeen time.Time
	var againAfter time.Duration
	stop := consumeFor(t, q, "we_1", 1, func(_ context.Context, ref uint64, msg []byte) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, string(msg))
		if string(msg) == "0" {
			if firstSeen.IsZero() {
				firstSeen = time.Now()
				return 300 * time.Millisecond
			}
			againAfter = time.Since(firstSeen)
		}
		return -1
	})
	waitUntil(t, "every delivery is handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 6 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, []string{"0", "1", "2", "3", "4", "0"}) {
		t.Errorf("order = %v, want the delayed one last", order)
	}
	if againAfter < 300*time.Millisecond {
		t.Errorf("the delayed delivery came again after %v, want at least 300ms", againAfter)
	}
}

// Acknowledged deliveries are never handed out again, across a restart of
// the server; the others are.
func TestDeliveryAckSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	env := startEnv(t, dir)
	q := openDeliveries(t, env, eventstore.DeliveryConfig{AckWait: 2 * time.Second})
	ctx := ctxT(t)
	for i := range 6 {
		if err := q.Put(ctx, "we_1", fmt.Sprint(i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	stop := consumeFor(t, q, "we_1", 2, func(_ context.Context, _ uint64, msg []byte) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		seen[string(msg)]++
		if msg[0]%2 == 0 {
			return -1 // done
		}
		return 500 * time.Millisecond // a retry, due after the restart
	})
	waitUntil(t, "every delivery is handled once", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 6 })
	stop()
	env.stop()

	env = startEnv(t, dir)
	q = openDeliveries(t, env, eventstore.DeliveryConfig{AckWait: 2 * time.Second})
	var got []string
	stop = consumeFor(t, q, "we_1", 2, func(_ context.Context, _ uint64, msg []byte) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(msg))
		return -1
	})
	// The delayed ones come back, never the acknowledged ones.
	waitUntil(t, "the unacknowledged deliveries come again", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 3 })
	time.Sleep(200 * time.Millisecond)
	stop()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	if !slices.Equal(got, []string{"1", "3", "5"}) {
		t.Errorf("after the restart got %v, want only the unacknowledged 1, 3, 5", got)
	}
}

func TestDeliveryRecordsNewestFirst(t *testing.T) {
	env := startEnv(t, "")
	q := openDeliveries(t, env, eventstore.DeliveryConfig{})
	ctx := ctxT(t)
	if err := q.Record(ctx, "we_1", []byte("none yet")); err != nil {
		t.Fatal(err)
	}
	if err := q.Records(ctx, "we_2", 0, time.Time{}, func(uint64, time.Time, []byte) bool {
		t.Error("an entry for an endpoint with no log")
		return true
	}); err != nil {
		t.Fatalf("Records of an empty log: %v", err)
	}
	var mid time.Time
	for i := range 6 {
		if i == 3 {
			time.Sleep(20 * time.Millisecond)
			mid = time.Now()
			time.Sleep(20 * time.Millisecond)
		}
		if err := q.Record(ctx, "we_2", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if err := q.Record(ctx, "we_3", []byte("other")); err != nil {
			t.Fatal(err)
		}
	}
	type entry struct {
		ref uint64
		s   string
	}
	read := func(before uint64, until time.Time, n int) []entry {
		var out []entry
		if err := q.Records(ctx, "we_2", before, until, func(ref uint64, stored time.Time, e []byte) bool {
			if stored.IsZero() {
				t.Error("no stored time")
			}
			out = append(out, entry{ref, string(e)})
			return len(out) < n
		}); err != nil {
			t.Fatalf("Records: %v", err)
		}
		return out
	}
	strs := func(es []entry) []string {
		var s []string
		for _, e := range es {
			s = append(s, e.s)
		}
		return s
	}
	all := read(0, time.Time{}, 100)
	if got := strs(all); !slices.Equal(got, []string{"5", "4", "3", "2", "1", "0"}) {
		t.Fatalf("all = %v", got)
	}
	page := read(0, time.Time{}, 2)
	if got := strs(page); !slices.Equal(got, []string{"5", "4"}) {
		t.Errorf("page 1 = %v", got)
	}
	if got := strs(read(page[1].ref, time.Time{}, 2)); !slices.Equal(got, []string{"3", "2"}) {
		t.Errorf("page 2 = %v", got)
	}
	if got := strs(read(all[5].ref, time.Time{}, 2)); len(got) != 0 {
		t.Errorf("before the oldest = %v", got)
	}
	if got := strs(read(0, mid, 100)); !slices.Equal(got, []string{"2", "1", "0"}) {
		t.Errorf("until the middle = %v", got)
	}
	// Attempts are not deliveries.
	if _, err := q.Get(ctx, all[0].ref); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Get of an attempt: %v, want not found", err)
	}
}

func TestDeliveryGetAndForget(t *testing.T) {
	env := startEnv(t, "")
	q := openDeliveries(t, env, eventstore.DeliveryConfig{})
	ctx := ctxT(t)
	if err := q.Put(ctx, "we_1", "a/1", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var handed atomic.Uint64
	stop := consumeFor(t, q, "we_1", 1, func(_ context.Context, r uint64, _ []byte) time.Duration {
		handed.Store(r)
		return time.Hour
	})
	waitUntil(t, "the delivery is handed out", func() bool { return handed.Load() != 0 })
	stop()
	ref := handed.Load()
	got, err := q.Get(ctx, ref)
	if err != nil || string(got) != "hello" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if _, err := q.Get(ctx, ref+100); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Get past the end: %v, want not found", err)
	}
	stream := rawStream(t, env.nc, eventstore.DefaultDeliveryStream)
	if _, err := stream.Consumer(ctx, eventstore.DeliveryConsumer("we_1")); err != nil {
		t.Fatalf("consumer %s: %v", eventstore.DeliveryConsumer("we_1"), err)
	}
	if err := q.Forget(ctx, "we_1"); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if err := q.Forget(ctx, "we_1"); err != nil {
		t.Fatalf("Forget twice: %v", err)
	}
	if _, err := stream.Consumer(ctx, eventstore.DeliveryConsumer("we_1")); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("consumer after Forget: %v", err)
	}
	if _, err := q.Get(ctx, ref); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Get after Forget: %v, want not found", err)
	}
}

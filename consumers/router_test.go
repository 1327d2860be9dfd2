package consumers_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/consumers"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

// ledger is an embedded JetStream server with the ledger stream.
type ledger struct {
	ns    *eventstore.Embedded
	store *eventstore.Store
}

func startLedger(t *testing.T) *ledger {
	t.Helper()
	return startLedgerWith(t, eventstore.EmbeddedConfig{Dir: t.TempDir()})
}

// startLedgerWith starts an embedded server with cfg and opens the ledger.
func startLedgerWith(t *testing.T, cfg eventstore.EmbeddedConfig) *ledger {
	t.Helper()
	ns, err := eventstore.StartEmbedded(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := eventstore.ConnectEmbedded(ns)
	if err != nil {
		t.Fatal(err)
	}
	store, err := eventstore.Open(context.Background(), nc, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return &ledger{ns: ns, store: store}
}

// create appends one api_key.created and returns its event id.
func (l *ledger) create(t *testing.T, org string) string {
	t.Helper()
	v, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		t.Fatal(err)
	}
	id := eventstore.NewID("api_key_")
	e := domain.Event{
		ID: eventstore.NewID("event_"), OrganizationID: org, AggregateID: id, Actor: domain.Admin(), CreatedAt: time.Now().UTC(),
		Data: domain.KeyCreated{KeyID: id, Name: "k", Owner: domain.Owner{Type: domain.OwnerOrganization, ID: org},
			Permissions: []string{}, Hash: domain.HashKey(v), Obfuscated: domain.ObfuscateKey(v)},
	}
	if _, err := l.store.Append(context.Background(), []domain.Append{{Event: e, MsgID: e.ID}}); err != nil {
		t.Fatal(err)
	}
	return e.ID
}

// collector records what a handler saw, failing the first delivery of
// events listed in failOnce.
type collector struct {
	mu       sync.Mutex
	seen     []string
	seqs     []uint64
	failOnce map[string]bool
	got      chan struct{}
}

func (c *collector) handle(_ context.Context, e domain.Event, pub schemas.PublicEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pub.ID != e.ID || pub.Context.LedgerSequence != e.Seq {
		return errors.New("public form does not match the event")
	}
	if c.failOnce[e.ID] {
		delete(c.failOnce, e.ID)
		return errors.New("fail once")
	}
	c.seen = append(c.seen, e.ID)
	c.seqs = append(c.seqs, e.Seq)
	select {
	case c.got <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		c.mu.Lock()
		if len(c.seen) >= n {
			out := append([]string(nil), c.seen...)
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.got:
		case <-deadline:
			t.Fatalf("saw %d events, want %d", len(c.seen), n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func run(t *testing.T, l *ledger, cs ...consumers.Consumer) (stop func()) {
	t.Helper()
	nc, err := eventstore.ConnectEmbedded(l.ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- consumers.Run(ctx, consumers.Config{Conn: nc, Retry: func(uint64) time.Duration { return 10 * time.Millisecond }}, cs)
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		nc.Close()
	}
}

func TestOrderedConsumerDeliversEveryEventInOrderAndResumes(t *testing.T) {
	l := startLedger(t)
	var want []string
	for range 5 {
		want = append(want, l.create(t, "org_a"))
	}
	c := &collector{failOnce: map[string]bool{want[2]: true}, got: make(chan struct{}, 1)}
	stop := run(t, l, consumers.Consumer{Name: "test_ordered", Ordered: true, Handle: c.handle})
	got := c.waitFor(t, 5)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %v, want %v in order (one failure retried in place)", got, want)
		}
	}
	stop()

	// Events appended while it is stopped come after a restart; nothing
	// acknowledged comes again.
	want = append(want, l.create(t, "org_b"), l.create(t, "org_a"))
	stop = run(t, l, consumers.Consumer{Name: "test_ordered", Ordered: true, Handle: c.handle})
	defer stop()
	got = c.waitFor(t, 7)
	time.Sleep(200 * time.Millisecond) // room for a repeat to show
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen) != 7 {
		t.Fatalf("after the restart saw %d events in all, want 7: %v", len(c.seen), c.seen)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %v, want %v", got, want)
		}
	}
}

func TestFilteredConsumer(t *testing.T) {
	l := startLedger(t)
	l.create(t, "org_a")
	b := l.create(t, "org_b")
	c := &collector{got: make(chan struct{}, 1)}
	stop := run(t, l, consumers.Consumer{Name: "test_org_b", Filter: []string{schemas.SubjectRoot + ".org_b.>"}, Handle: c.handle})
	defer stop()
	if got := c.waitFor(t, 1); len(got) != 1 || got[0] != b {
		t.Fatalf("filtered consumer saw %v, want only %s", got, b)
	}
}

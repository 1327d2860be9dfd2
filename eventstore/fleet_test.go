package eventstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

// appliedSource is a projection stand-in for the reporter: an applied
// sequence that a test moves.
type appliedSource struct {
	mu      sync.Mutex
	applied uint64
	moved   chan struct{}
}

func (s *appliedSource) Applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

func (s *appliedSource) set(seq uint64) {
	s.mu.Lock()
	s.applied = seq
	close(s.moved)
	s.moved = make(chan struct{})
	s.mu.Unlock()
}

func (s *appliedSource) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		if s.applied >= seq {
			s.mu.Unlock()
			return nil
		}
		moved := s.moved
		s.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Reports go out when the applied sequence moves and on a timer, carry the
// node's bound, and end with leaving; malformed reports are dropped.
func TestAppliedReports(t *testing.T) {
	nc := startEnv(t, "").nc
	got := make(chan schemas.AppliedReport, 100)
	sub, err := eventstore.SubscribeApplied(nc, discardLog(), func(r schemas.AppliedReport) { got <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, bad := range []string{`{}`, `{"node":""}`, `{"node":"x","applied":-1}`, `{"node":"x","extra":1}`, `{"node":"x"} {}`, `{"node":"x","stale_after_ms":-5}`, `not json`,
		`{"node":"node-y","applied":99}`, // node-y's report on node-x's subject: one node speaking for another
		`{"node":"x*y"}`, `{"node":"x y"}`} {
		if err := nc.Publish(schemas.AppliedSubject("node-x"), []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(schemas.SubjectApplied, []byte(`{"node":"node-x","applied":99}`)); err != nil { // the root subject is nobody's
		t.Fatal(err)
	}
	src := &appliedSource{moved: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		eventstore.ReportApplied(ctx, nc, "node-x", src, time.Hour, discardLog())
	}()
	next := func() schemas.AppliedReport {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("no report")
		}
		return schemas.AppliedReport{}
	}
	if r := next(); r != (schemas.AppliedReport{Node: "node-x", Applied: 0, StaleAfterMs: 3600000}) {
		t.Fatalf("first report %+v (a malformed one got through?)", r)
	}
	src.set(7) // a report at once, not a quarter of an hour later
	if r := next(); r.Applied != 7 || r.Leaving {
		t.Fatalf("report after the projection moved: %+v", r)
	}
	cancel()
	<-done
	if r := next(); !r.Leaving || r.Applied != 7 {
		t.Fatalf("last report %+v, want leaving", r)
	}
}

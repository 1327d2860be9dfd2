package fleet

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestBarrierWithNoOtherNodeReturnsAtOnce(t *testing.T) {
	f := New("a", time.Hour, nil)
	f.Observe(Report{Node: "a", Applied: 1}) // its own echo
	if !f.Announced() {
		t.Fatal("not announced after its own report came back")
	}
	if lagged, err := f.Barrier(context.Background(), 5); err != nil || lagged != nil {
		t.Fatalf("Barrier = %v, %v", lagged, err)
	}
}

func TestBarrierWaitsForEveryNode(t *testing.T) {
	f := New("a", time.Hour, nil)
	f.Observe(Report{Node: "b", Applied: 3})
	f.Observe(Report{Node: "c", Applied: 9})
	done := make(chan []string)
	go func() {
		lagged, err := f.Barrier(context.Background(), 7)
		if err != nil {
			t.Error(err)
		}
		done <- lagged
	}()
	f.Observe(Report{Node: "b", Applied: 6})
	select {
	case <-done:
		t.Fatal("the barrier passed with b at 6 of 7")
	case <-time.After(50 * time.Millisecond):
	}
	f.Observe(Report{Node: "b", Applied: 5}) // a late report: applied never goes back
	f.Observe(Report{Node: "b", Applied: 7})
	if lagged := <-done; lagged != nil {
		t.Fatalf("lagged %v", lagged)
	}
	if f.Waits() != 1 || f.Lagged() != 0 {
		t.Fatalf("waits %d, lagged %d", f.Waits(), f.Lagged())
	}
}

func TestBarrierRunsOutTheBoundAndNamesTheLaggards(t *testing.T) {
	f := New("a", 100*time.Millisecond, nil)
	stop := make(chan struct{})
	defer close(stop)
	report := func() {
		f.Observe(Report{Node: "c", Applied: 1})
		f.Observe(Report{Node: "b", Applied: 1})
		f.Observe(Report{Node: "d", Applied: 9})
	}
	report()
	go func() { // they keep reporting, stuck at 1
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				report()
			}
		}
	}()
	lagged, err := f.Barrier(context.Background(), 2)
	if err != nil || !slices.Equal(lagged, []string{"b", "c"}) {
		t.Fatalf("Barrier = %v, %v; want [b c]", lagged, err)
	}
	if f.Lagged() != 1 {
		t.Fatalf("lagged %d", f.Lagged())
	}
}

func TestLeavingAndSilentNodesAreNotWaitedFor(t *testing.T) {
	f := New("a", 100*time.Millisecond, nil)
	now := time.Now()
	f.now = func() time.Time { return now }
	f.Observe(Report{Node: "b", Applied: 1})
	f.Observe(Report{Node: "c", Applied: 1})
	f.Observe(Report{Node: "b", Applied: 1, Leaving: true})
	if got := f.Nodes(); len(got) != 1 || got["c"] != 1 {
		t.Fatalf("nodes %v, want c only", got)
	}
	now = now.Add(100*time.Millisecond + margin + time.Millisecond) // c is silent past the bound
	if lagged, err := f.Barrier(context.Background(), 2); err != nil || lagged != nil {
		t.Fatalf("Barrier = %v, %v", lagged, err)
	}
	if len(f.Nodes()) != 0 {
		t.Fatalf("nodes %v", f.Nodes())
	}
}

func TestBarrierEndsWithItsContext(t *testing.T) {
	f := New("a", time.Hour, nil)
	f.Observe(Report{Node: "b", Applied: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	lagged, err := f.Barrier(ctx, 2)
	if !errors.Is(err, context.Canceled) || !slices.Equal(lagged, []string{"b"}) {
		t.Fatalf("Barrier = %v, %v", lagged, err)
	}
}

// A node's own, shorter bound is what the barrier waits for it; a longer
// one than the fleet's is waited for too, up to the cap.
func TestBarrierWaitsEachNodesOwnBound(t *testing.T) {
	f := New("a", time.Hour, nil)
	f.Observe(Report{Node: "validator", Applied: 1, StaleAfter: 50 * time.Millisecond})
	lagged, err := f.Barrier(context.Background(), 2)
	if err != nil || !slices.Equal(lagged, []string{"validator"}) {
		t.Fatalf("Barrier = %v, %v", lagged, err)
	}
	f.Observe(Report{Node: "slow", Applied: 1, StaleAfter: 24 * time.Hour})
	f.mu.Lock()
	got := f.nodes["slow"].bound
	f.mu.Unlock()
	if got != MaxBound {
		t.Fatalf("a reported bound of 24h is held as %v, want the %v cap", got, MaxBound)
	}
}

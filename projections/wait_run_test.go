package projections

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

func TestWaitAppliedAlreadyApplied(t *testing.T) {
	p, _ := openMem(t)
	if err := p.WaitApplied(context.Background(), 0); err != nil {
		t.Fatalf("WaitApplied(0) on an empty projection = %v", err)
	}
	apply(t, p, scenario(fixedValue).events[:5])
	// Even a context that has already ended does not matter when there is
	// nothing to wait for.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, seq := range []uint64{1, 3, 5} {
		if err := p.WaitApplied(ctx, seq); err != nil {
			t.Fatalf("WaitApplied(%d) with 5 applied = %v", seq, err)
		}
	}
}

func TestWaitAppliedBlocksUntilApplied(t *testing.T) {
	p, _ := openMem(t)
	ev := scenario(fixedValue).events
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.WaitApplied(ctx, 7) }()

	notYet := func(when string) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("WaitApplied(7) returned %v %s", err, when)
		case <-time.After(30 * time.Millisecond):
		}
	}
	notYet("before anything was applied")

	applied := make(chan error, 1)
	go func() { applied <- p.Apply(ev[:5]) }()
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	notYet("with only 5 applied")

	go func() { applied <- p.Apply(ev[5:9]) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitApplied(7) = %v after 9 were applied", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitApplied(7) still waiting after 9 were applied")
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if p.Applied() < 7 {
		t.Fatalf("WaitApplied returned with Applied() = %d", p.Applied())
	}
}

func TestWaitAppliedContextEnds(t *testing.T) {
	p, _ := openMem(t)
	apply(t, p, scenario(fixedValue).events[:3])

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := p.WaitApplied(ctx, 4)
	if !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("WaitApplied past the deadline = %v, want ErrUnavailable", err)
	}
	if domain.ErrorKind(err) != domain.KindUnavailable {
		t.Fatalf("ErrorKind = %v, want KindUnavailable", domain.ErrorKind(err))
	}

	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if err := p.WaitApplied(ctx, 4); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("WaitApplied with a cancelled context = %v, want ErrUnavailable", err)
	}
}

// TestWaitAppliedTimeout: without a deadline on the context, the configured
// WaitTimeout bounds the wait.
func TestWaitAppliedTimeout(t *testing.T) {
	p, err := Open(Config{Dir: "p", FS: memFS(), Now: fixedClock, WaitTimeout: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	if err := p.WaitApplied(context.Background(), 1); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("WaitApplied = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("WaitApplied took %v with a 30ms timeout", d)
	}
}

// TestRunRetries: a reader that fails (after delivering part of the ledger)
// is followed again from the checkpoint, and everything is applied once.
func TestRunRetries(t *testing.T) {
	ev := scenario(fixedValue).events
	src := &memSource{events: ev, failFirst: 4, failErr: errors.New("connection reset"), runs: func() int { return 3 }}

	want, _ := openMem(t)
	apply(t, want, ev)

	p, _ := openMem(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, src) }()

	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := p.WaitApplied(wctx, ev[len(ev)-1].Seq); err != nil {
		t.Fatalf("Run did not apply the whole ledger: %v (applied %d)", err, p.Applied())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	mustEqual(t, "Follow calls", src.froms(), []uint64{1, 5})
	if dump(t, p) != dump(t, want) {
		t.Fatal("Run's projection differs from applying the ledger directly")
	}
}

// TestRunStopsOnCorruption: a gap in what the reader delivers is not retried
// forever; Run returns the error.
func TestRunStopsOnCorruption(t *testing.T) {
	ev := scenario(fixedValue).events
	holed := append(append([]domain.Event{}, ev[:3]...), ev[4:]...)
	p, _ := openMem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.Run(ctx, &memSource{events: holed, runs: func() int { return 2 }})
	if !isCorrupt(err) {
		t.Fatalf("Run over a ledger with a hole = %v, want errCorrupt", err)
	}
	// Runs of two: 1-2 applies; 3,5 is refused as a whole.
	if p.Applied() != 2 {
		t.Fatalf("Applied() = %d, want 2", p.Applied())
	}
}

// TestRunCancelledWhileFollowing: Run returns nil when ctx ends while the
// reader waits for new events.
func TestRunCancelledWhileFollowing(t *testing.T) {
	p, _ := openMem(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, &memSource{}) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Report is what a node says of itself: the last ledger sequence its
// projection applied; Leaving when it has stopped validating for good.
type Report struct {
	Node    string
	Applied uint64
	Leaving bool
	// StaleAfter is the node's own staleness bound; 0: the fleet's.
	StaleAfter time.Duration
}

// MaxBound caps a node's reported bound: anyone who may report can hold
// commands for that long, no longer; and a command held longer would meet
// the HTTP server's 30-second write timeout.
const MaxBound = 20 * time.Second

// margin covers what the bound does not: the time from a node's proof to
// its report, and the scheduling of the checks.
const margin = 250 * time.Millisecond

// Fleet tracks the other nodes' reports and runs the barrier.
type Fleet struct {
	self  string
	bound time.Duration
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	nodes   map[string]*member
	changed chan struct{} // closed and replaced on every report

	waits, lagged atomic.Uint64
	announced     atomic.Bool // this node's own report came back from NATS
}

type member struct {
	applied uint64
	heard   time.Time
	bound   time.Duration // how long its proofs hold
}

// New returns the fleet as node self sees it. bound is the staleness
// bound every node of the fleet runs with (--stale-after): a node that
// has not proven itself current for that long stops validating.
func New(self string, bound time.Duration, log *slog.Logger) *Fleet {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fleet{self: self, bound: bound, log: log, now: time.Now, nodes: map[string]*member{}, changed: make(chan struct{})}
}

// Self is this node's name.
func (f *Fleet) Self() string { return f.self }

// Observe takes a report from the fleet. Reports of this node itself are
// ignored: its own projection is waited on directly.
func (f *Fleet) Observe(r Report) {
	if r.Node == f.self {
		f.announced.Store(true)
		return
	}
	if r.Node == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Leaving {
		delete(f.nodes, r.Node)
	} else {
		m := f.nodes[r.Node]
		if m == nil {
			m = &member{}
			f.nodes[r.Node] = m
			f.log.Info("fleet: node joined", "node", r.Node)
		}
		// Reports may cross on the wire: the applied sequence only grows.
		m.applied = max(m.applied, r.Applied)
		m.heard = f.now()
		m.bound = f.bound
		if r.StaleAfter > 0 {
			m.bound = min(r.StaleAfter, MaxBound)
		}
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// Barrier waits until every node heard from within the bound has applied
// seq, which this node's projection has applied already. It returns the
// nodes that had not when the bound ran out: by then they cannot prove
// themselves current any more and have stopped validating, so the answer
// holds on them too. The wait is counted from the call, which comes after
// the ledger acknowledged seq. An error means ctx ended first.
func (f *Fleet) Barrier(ctx context.Context, seq uint64) ([]string, error) {
	start := f.now()
	f.waits.Add(1)
	for {
		f.mu.Lock()
		now := f.now()
		var behind []string
		var until time.Time // when the last node behind stops validating
		for id, m := range f.nodes {
			if start.Sub(m.heard) > m.bound+margin {
				// Silent for longer than its proofs hold since before this
				// wait began: not validating.
				delete(f.nodes, id)
				f.log.Warn("fleet: node silent for longer than its staleness bound; no longer waited for", "node", id)
				continue
			}
			if m.applied < seq {
				behind = append(behind, id)
				if d := start.Add(m.bound + margin); d.After(until) {
					until = d
				}
			}
		}
		changed := f.changed
		f.mu.Unlock()
		if len(behind) == 0 {
			return nil, nil
		}
		slices.Sort(behind)
		if !now.Before(until) {
			f.lagged.Add(1)
			f.log.Warn("fleet: answered after the staleness bound; these nodes had not applied the change and have stopped validating until they catch up",
				"seq", seq, "nodes", behind, "waited", now.Sub(start).Round(time.Millisecond))
			return behind, nil
		}
		t := time.NewTimer(min(until.Sub(now), 100*time.Millisecond))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return behind, fmt.Errorf("fleet: waiting for %v to apply %d: %w", behind, seq, ctx.Err())
		}
		t.Stop()
	}
}

// Announced reports whether this node's own report has come back from
// NATS: from then on every other node hears of it, and waits for it. A
// node validates only once announced, or a command answered elsewhere
// just before could miss it.
func (f *Fleet) Announced() bool { return f.announced.Load() }

// Nodes returns the nodes heard from within the bound and what each has
// applied, this node excluded.
func (f *Fleet) Nodes() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]uint64, len(f.nodes))
	now := f.now()
	for id, m := range f.nodes {
		if now.Sub(m.heard) <= m.bound+margin {
			out[id] = m.applied
		}
	}
	return out
}

// Waits is how many barriers ran, and Lagged how many of them ran out the
// bound with a node behind.
func (f *Fleet) Waits() uint64  { return f.waits.Load() }
func (f *Fleet) Lagged() uint64 { return f.lagged.Load() }

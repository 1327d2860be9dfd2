// Package freshness proves that a projection is current: at a fixed pace
// it asks the ledger for its last sequence and waits until the projection
// has applied it; the time it asked is then proven. Whoever answers from
// the projection (the server's validations, an embedded validator) asks
// Current first and fails closed when the last proof is older than the
// bound: the ledger is lost, or the projection stopped.
package freshness

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Ledger tells the ledger's last sequence.
type Ledger interface {
	LastSeq(ctx context.Context) (uint64, error)
}

// View is the projection, which can wait until it has applied a sequence.
type View interface {
	WaitApplied(ctx context.Context, seq uint64) error
}

// Prover keeps proving a projection current.
type Prover struct {
	ledger Ledger
	view   View
	bound  time.Duration
	log    *slog.Logger

	epoch  time.Time    // monotonic reference
	proven atomic.Int64 // nanoseconds since epoch of the last proof, +1; 0: none
}

// New returns a prover whose proofs hold for bound.
func New(l Ledger, v View, bound time.Duration, log *slog.Logger) *Prover {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Prover{ledger: l, view: v, bound: bound, log: log, epoch: time.Now()}
}

// Bound is how long a proof holds.
func (p *Prover) Bound() time.Duration { return p.bound }

// Current reports whether the last proof is younger than the bound. It
// takes no lock and allocates nothing: it sits on every validation.
func (p *Prover) Current() bool {
	v := p.proven.Load()
	return v != 0 && time.Since(p.epoch)-time.Duration(v-1) <= p.bound
}

// Run proves four times per bound until ctx ends.
func (p *Prover) Run(ctx context.Context) {
	every := max(p.bound/4, 10*time.Millisecond)
	for {
		asked := time.Since(p.epoch)
		if err := p.once(ctx, every*2); err != nil {
			if ctx.Err() == nil {
				p.log.Warn("freshness: cannot prove the projection current", "err", err)
			}
		} else {
			p.proven.Store(int64(asked) + 1)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (p *Prover) once(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	last, err := p.ledger.LastSeq(ctx)
	if err != nil {
		return err
	}
	return p.view.WaitApplied(ctx, last)
}

// Wait waits until the projection is proven current, or ctx ends.
func (p *Prover) Wait(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !p.Current() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("freshness: waiting to catch up with the ledger: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

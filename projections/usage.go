package projections

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// usage keeps last-used times: telemetry, not ledger events. Validations
// record into memory; Flush writes them to Pebble in one batch.
type usage struct {
	p       *Projection
	mu      sync.Mutex
	pending map[string]time.Time
	flushMu sync.Mutex
}

func newUsage(p *Projection) *usage { return &usage{p: p, pending: map[string]time.Time{}} }

func (u *usage) record(id string, at time.Time) {
	u.mu.Lock()
	if at.After(u.pending[id]) {
		u.pending[id] = at
	}
	u.mu.Unlock()
}

func (u *usage) flush() error {
	u.flushMu.Lock()
	defer u.flushMu.Unlock()
	u.mu.Lock()
	batch := u.pending
	u.pending = map[string]time.Time{}
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	b := u.p.db.NewBatch()
	defer b.Close()
	for id, at := range batch {
		if prev, ok := u.stored(id); ok && !at.After(prev) {
			continue
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(at.UnixNano()))
		if err := b.Set([]byte(prefixLastUsed+id), v[:], nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

func (u *usage) stored(id string) (time.Time, bool) {
	v, closer, err := u.p.db.Get([]byte(prefixLastUsed + id))
	if err != nil || len(v) != 8 {
		if closer != nil {
			closer.Close()
		}
		return time.Time{}, false
	}
	defer closer.Close()
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(), true
}

// LastUsed returns when a key was last validated on this node, if ever.
func (p *Projection) LastUsed(id string) *time.Time {
	p.usage.mu.Lock()
	t, ok := p.usage.pending[id]
	p.usage.mu.Unlock()
	if ok {
		t = t.UTC()
		return &t
	}
	if t, ok := p.usage.stored(id); ok {
		return &t
	}
	return nil
}

// FlushUsage writes pending last-used times to Pebble.
func (p *Projection) FlushUsage() error { return p.usage.flush() }

// RunUsageFlusher flushes last-used times every interval until ctx ends.
func (p *Projection) RunUsageFlusher(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := p.usage.flush(); err != nil {
				p.log.Warn("projection: flushing last-used times failed", "err", err)
			}
		}
	}
}

// CopyUsageTo copies every stored last-used time into dst (a rebuild keeps
// the telemetry the ledger does not hold).
func (p *Projection) CopyUsageTo(dst *Projection) error {
	if err := p.usage.flush(); err != nil {
		return err
	}
	b := dst.db.NewBatch()
	defer b.Close()
	err := p.scan(prefixLastUsed, func(k, v []byte) error { return b.Set(k, v, nil) })
	if err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

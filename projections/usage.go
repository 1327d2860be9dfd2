package projections

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/keyledger/keyledger/domain"
)

// Last-used times are telemetry, not ledger events: validations write them
// into the index's slots (unix seconds), and FlushUsage writes the ones that
// changed since the last flush to Pebble (l/<key id>), outside the
// checkpoint, so a restart keeps them.

// LastUsed returns when a key was last validated on this node, if ever.
func (p *Projection) LastUsed(id string) *time.Time {
	k, err := p.getRecord(id)
	if err != nil {
		return nil
	}
	return p.LastUsedOf(k)
}

// LastUsedOf is LastUsed for a key already at hand.
func (p *Projection) LastUsedOf(k *domain.Key) *time.Time {
	s := p.idx.lookup(&k.Hash)
	if s == nil {
		return nil
	}
	sec := s.lastUsed.Load()
	if sec == 0 {
		return nil
	}
	t := time.Unix(sec, 0).UTC()
	return &t
}

// FlushUsage writes last-used times that changed since the last flush.
func (p *Projection) FlushUsage() error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	since := p.flushed
	now := p.usageNow()
	b := p.db.NewBatch()
	defer b.Close()
	for n := uint32(0); n < p.idx.count.Load(); n++ {
		s := p.idx.slotAt(n)
		used := s.lastUsed.Load()
		if used == 0 || used < since {
			continue
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(time.Unix(used, 0).UnixNano()))
		if err := b.Set([]byte(prefixLastUsed+s.id()), v[:], nil); err != nil {
			return err
		}
	}
	if b.Empty() {
		p.flushed = now
		return nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	p.flushed = now
	return nil
}

// RunUsageFlusher flushes last-used times every interval until ctx ends.
func (p *Projection) RunUsageFlusher(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := p.FlushUsage(); err != nil {
				p.log.Warn("projection: flushing last-used times failed", "err", err)
			}
		}
	}
}

// CopyUsageTo copies every stored last-used time into dst (a rebuild keeps
// the telemetry the ledger does not hold).
func (p *Projection) CopyUsageTo(dst *Projection) error {
	if err := p.FlushUsage(); err != nil {
		return err
	}
	b := dst.db.NewBatch()
	defer b.Close()
	err := p.scan(prefixLastUsed, func(k, v []byte) error {
		if len(v) != 8 {
			return nil
		}
		if rec, err := dst.getRecord(string(k[len(prefixLastUsed):])); err == nil {
			if s := dst.idx.lookup(&rec.Hash); s != nil {
				s.lastUsed.Store(time.Unix(0, int64(binary.BigEndian.Uint64(v))).Unix())
			}
		}
		return b.Set(k, v, nil)
	})
	if err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

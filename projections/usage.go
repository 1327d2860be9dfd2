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

// usageReportLag is how late (seconds) a usage report may arrive and still
// be flushed.
const usageReportLag = 120

// FlushUsage writes last-used times that changed since the last flush.
func (p *Projection) FlushUsage() error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	// Reports from embedded validators arrive up to a report interval late
	// with times older than the last flush: look back far enough for them.
	since := p.flushed - usageReportLag
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

// UsageSince calls fn with every key validated on this node at or after
// since (unix seconds), and returns the clock's current second, to pass as
// since next time: an embedded validator reports what changed between
// reports this way.
func (p *Projection) UsageSince(since int64, fn func(id string, at time.Time)) int64 {
	now := p.usageNow()
	for n := uint32(0); n < p.idx.count.Load(); n++ {
		s := p.idx.slotAt(n)
		if used := s.lastUsed.Load(); used != 0 && used >= since {
			fn(s.id(), time.Unix(used, 0).UTC())
		}
	}
	return now
}

// RecordUsage records a validation of key id made elsewhere (an embedded
// validator's report). Times only move forward; an unknown key is ignored,
// as the report may come before this node has applied the key's creation.
func (p *Projection) RecordUsage(id string, at time.Time) {
	k, err := p.getRecord(id)
	if err != nil {
		return
	}
	s := p.idx.lookup(&k.Hash)
	if s == nil {
		return
	}
	sec := at.Unix()
	// Not from the future: a wrong clock elsewhere must not pin the time.
	sec = min(sec, p.usageNow()+1)
	for {
		cur := s.lastUsed.Load()
		if cur >= sec || s.lastUsed.CompareAndSwap(cur, sec) {
			return
		}
	}
}

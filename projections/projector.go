package projections

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/keyledger/keyledger/domain"
)

// Source is the ledger as the projector reads it: runs of events in
// sequence order from a starting sequence.
type Source interface {
	Follow(ctx context.Context, from uint64, max int, fn func([]domain.Event) error) error
}

const runSize = 512

// Run follows the ledger from the checkpoint until ctx ends, reconnecting
// after errors. Events that cannot be decoded stop the projection rather
// than be skipped: a projection with a hole would serve wrong answers.
func (p *Projection) Run(ctx context.Context, src Source) error {
	backoff := 100 * time.Millisecond
	for {
		from := p.Applied() + 1
		err := src.Follow(ctx, from, runSize, p.Apply)
		if ctx.Err() != nil {
			return nil
		}
		if p.Applied() >= from {
			backoff = 100 * time.Millisecond // it read on: not the same failure again
		}
		if errors.Is(err, errCorrupt) {
			return err
		}
		p.log.Warn("projection: following the ledger failed; retrying", "err", err, "applied", p.Applied())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

var errCorrupt = errors.New("projections: ledger and projection disagree")

// Apply applies a run of events in one Pebble batch together with the
// sequence of the last one; events at or below the checkpoint are skipped, so
// applying is exactly-once even when the reader repeats itself.
func (p *Projection) Apply(events []domain.Event) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	applied := p.Applied()
	b := p.db.NewBatch()
	defer b.Close()
	// The map is kept from run to run (the projector is single-writer) and
	// emptied whatever happens.
	changed := p.changed
	defer clear(changed)
	defer clear(p.epChanged) // kept only by a run that commits
	p.orgKeys.reset()
	p.userKeys.reset()
	var catalogue *domain.Catalogue
	last := applied
	for i := range events {
		e := &events[i]
		if e.Seq <= last {
			continue
		}
		if e.Seq != last+1 {
			// The stream never deletes, so a gap means a reader bug.
			return fmt.Errorf("%w: expected seq %d, got %d", errCorrupt, last+1, e.Seq)
		}
		if err := p.applyOne(b, changed, &catalogue, e); err != nil {
			return err
		}
		last = e.Seq
	}
	if last == applied {
		return nil
	}
	// The index entries go in after the records, each kind together: key
	// ids are ULIDs, so each kind comes in key order, and Pebble inserts a
	// key next to the one before at little cost. The order of writes to
	// different keys does not change what the batch stores.
	for _, l := range []*keyList{&p.orgKeys, &p.userKeys} {
		if err := l.setAll(b); err != nil {
			return err
		}
	}
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], last)
	if err := b.Set([]byte(keyApplied), seq[:], nil); err != nil {
		return fmt.Errorf("projections: checkpoint: %w", err)
	}
	// NoSync is safe: state and checkpoint commit together, and whatever a
	// crash loses is re-read from the ledger, which is fsynced.
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("projections: commit: %w", err)
	}
	// The index changes before applied advances: whoever waits for this
	// sequence then validates against the new state. A new catalogue goes
	// first, so that no key of this run is ever seen above it.
	if catalogue != nil {
		p.idx.setCeiling(catalogue)
		p.catalogue.Store(catalogue)
	}
	for _, k := range changed {
		p.idx.put(k)
	}
	p.publishEndpoints()
	p.mu.Lock()
	p.applied = last
	close(p.notify)
	p.notify = make(chan struct{})
	p.mu.Unlock()
	return nil
}

// applyOne adds one event's writes to b, or to the index entries Apply
// adds to it at the end of the run. Keys and records are built in p.buf,
// which b copies.
func (p *Projection) applyOne(b *pebble.Batch, changed map[string]*domain.Key, catalogue **domain.Catalogue, e *domain.Event) error {
	switch d := e.Data.(type) {
	case domain.KeyCreated:
		k := &domain.Key{}
		k.Apply(*e)
		changed[k.ID] = k
		if err := p.putRecord(b, k); err != nil {
			return err
		}
		p.orgKeys.add(prefixOrg, k.OrganizationID, "/", k.ID)
		if k.Owner.Type == domain.OwnerUser {
			p.userKeys.add(prefixUser, k.OrganizationID, "/", k.Owner.ID, "/", k.ID)
		}
	case domain.KeyRevoked:
		cur, ok := changed[d.KeyID]
		if !ok {
			var err error
			if cur, err = p.getRecord(d.KeyID); err != nil {
				return fmt.Errorf("%w: revoke of %s at seq %d: %v", errCorrupt, d.KeyID, e.Seq, err)
			}
		}
		k := *cur
		k.Apply(*e)
		changed[k.ID] = &k
		return p.putRecord(b, &k)
	case domain.CataloguePermissionsSet:
		cat := &domain.Catalogue{Permissions: d.Permissions, Version: e.Seq}
		v, err := json.Marshal(catalogueRecord{Permissions: cat.Permissions, Version: cat.Version})
		if err != nil {
			return err
		}
		*catalogue = cat
		return b.Set([]byte(keyCatalogue), v, nil)
	case domain.MemberRemoved:
		// The revocations travel as their own events in the same batch.
	case domain.WebhookEndpointCreated:
		return p.applyEndpoint(b, d.EndpointID, e)
	case domain.WebhookEndpointUpdated:
		return p.applyEndpoint(b, d.EndpointID, e)
	case domain.WebhookSecretRotated:
		return p.applyEndpoint(b, d.EndpointID, e)
	case domain.WebhookEndpointDisabled:
		return p.applyEndpoint(b, d.EndpointID, e)
	case domain.WebhookEndpointEnabled:
		return p.applyEndpoint(b, d.EndpointID, e)
	case domain.WebhookEndpointDeleted:
		return p.applyEndpoint(b, d.EndpointID, e)
	default:
		return fmt.Errorf("%w: unknown event %T at seq %d", errCorrupt, e.Data, e.Seq)
	}
	return nil
}

// putRecord writes k's record: the key into p.buf, the record after it.
func (p *Projection) putRecord(b *pebble.Batch, k *domain.Key) error {
	buf := append(append(p.buf[:0], prefixKey...), k.ID...)
	n := len(buf)
	buf, err := appendRecord(buf, k)
	if err != nil {
		return err
	}
	p.buf = buf
	return b.Set(buf[:n], buf[n:], nil)
}

// CatchUp follows src until the projection has applied target, then returns.
// It is how a rebuild ends.
func (p *Projection) CatchUp(ctx context.Context, src Source, target uint64) error {
	if p.Applied() >= target {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := errors.New("caught up")
	err := src.Follow(ctx, p.Applied()+1, runSize, func(run []domain.Event) error {
		if err := p.Apply(run); err != nil {
			return err
		}
		if p.Applied() >= target {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		return err
	}
	if p.cfg.Bulk {
		// Without a log, what is not flushed is not on disk.
		if err := p.db.Flush(); err != nil {
			return fmt.Errorf("projections: flush: %w", err)
		}
	}
	return nil
}

// keyList is a list of Pebble keys with empty values, kept in one buffer.
type keyList struct {
	buf  []byte
	ends []int
}

func (l *keyList) reset() {
	l.buf, l.ends = l.buf[:0], l.ends[:0]
}

func (l *keyList) add(parts ...string) {
	for _, s := range parts {
		l.buf = append(l.buf, s...)
	}
	l.ends = append(l.ends, len(l.buf))
}

func (l *keyList) setAll(b *pebble.Batch) error {
	start := 0
	for _, end := range l.ends {
		if err := b.Set(l.buf[start:end], nil, nil); err != nil {
			return err
		}
		start = end
	}
	return nil
}

package eventstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Events reads the events feed: public events in ledger order that match
// q, at most q.Limit of them, as they stand in the ledger now. Reading
// after the last sequence returned never skips or repeats an event: the
// ledger only grows, and a sequence is never reused.
func (s *Store) Events(ctx context.Context, q schemas.EventsQuery) ([]schemas.PublicEvent, error) {
	if q.Limit <= 0 {
		return nil, nil
	}
	if q.Descending {
		return s.eventsDescending(ctx, q)
	}
	return s.eventsFrom(ctx, q, q.AfterSeq+1, q.Limit)
}

// eventsDescending reads newest first, before q.AfterSeq (or from the end):
// JetStream reads forwards only, so it reads windows of the ledger that
// grow backwards until it has a page, and returns the page's newest events
// first. Events are never reordered or reused, so paging this way never
// skips or repeats one either.
func (s *Store) eventsDescending(ctx context.Context, q schemas.EventsQuery) ([]schemas.PublicEvent, error) {
	end := q.AfterSeq // exclusive
	if end == 0 {
		last, err := s.LastSeq(ctx)
		if err != nil {
			return nil, err
		}
		end = last + 1
	}
	var found []schemas.PublicEvent // oldest first, all before end
	window := uint64(4 * q.Limit)
	const maxWindow = 4096 // one fetch at most
	for hi := end; hi > 1 && len(found) < q.Limit; window = min(2*window, maxWindow) {
		lo := uint64(1)
		if hi > window {
			lo = hi - window
		}
		part, err := s.eventsFrom(ctx, schemas.EventsQuery{Types: q.Types, OrganizationID: q.OrganizationID,
			RangeStart: q.RangeStart, RangeEnd: q.RangeEnd}, lo, int(hi-lo))
		if err != nil {
			return nil, err
		}
		var in []schemas.PublicEvent
		for _, e := range part {
			if e.Context.LedgerSequence < hi {
				in = append(in, e)
			}
		}
		found = append(in, found...)
		hi = lo
	}
	out := make([]schemas.PublicEvent, 0, q.Limit)
	for i := len(found) - 1; i >= 0 && len(out) < q.Limit; i-- {
		out = append(out, found[i])
	}
	return out, nil
}

// eventsFrom reads up to limit matching events from sequence from on.
//
// A page reads through one ephemeral consumer of its own, deleted when the
// page is read. Not an ordered consumer: nats.go creates that one's first
// server-side consumer when it is made and replaces it on the first fetch,
// deleting the first in the background, so every page left a consumer
// behind for a while and a client paging fast met the server's limit.
func (s *Store) eventsFrom(ctx context.Context, q schemas.EventsQuery, from uint64, limit int) ([]schemas.PublicEvent, error) {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, Replicas: 1,
		// Should the delete below be lost, the server drops it soon anyway.
		InactiveThreshold: time.Minute,
	}
	if subjects := feedSubjects(q); len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	if from <= 1 && !q.RangeStart.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartTimePolicy, 0
		start := q.RangeStart
		cfg.OptStartTime = &start
	}
	cons, err := s.stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return nil, mapErr("events", err)
	}
	defer s.deleteConsumer(cons)
	batch, err := cons.FetchNoWait(limit)
	if err != nil {
		return nil, mapErr("events", err)
	}
	out := make([]schemas.PublicEvent, 0, min(limit, 256))
	done := false
	var delivered uint64
	for msg := range batch.Messages() {
		if done {
			continue // drain the batch
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, mapErr("events", err)
		}
		// Nothing is redelivered without acks: a message lost on the way
		// shows as a gap in the consumer's sequence, and a page with a hole
		// would skip an event for good.
		if delivered++; meta.Sequence.Consumer != delivered {
			return nil, fmt.Errorf("eventstore: events: message %d of the page lost in transit: %w", delivered, domain.ErrUnavailable)
		}
		e, err := Decode(msg.Subject(), msg.Data(), meta.Sequence.Stream)
		if err != nil {
			return nil, err
		}
		if !q.RangeEnd.IsZero() && !e.CreatedAt.Before(q.RangeEnd) {
			done = true
			continue
		}
		if !q.RangeStart.IsZero() && e.CreatedAt.Before(q.RangeStart) {
			continue // stored just before range_start by another clock
		}
		pub, err := Public(e)
		if err != nil {
			return nil, err
		}
		out = append(out, pub)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, mapErr("events", err)
	}
	return out, nil
}

// feedSubjects are the ledger subjects a query reads: per type and
// organization, so that JetStream filters rather than keyledger.
func feedSubjects(q schemas.EventsQuery) []string {
	org := "*"
	if q.OrganizationID != "" {
		org = q.OrganizationID
	}
	if len(q.Types) == 0 {
		return []string{schemas.SubjectRoot + "." + org + ".>"}
	}
	types := slices.Clone(q.Types)
	slices.Sort(types)
	types = slices.Compact(types)
	subjects := make([]string, len(types))
	for i, t := range types {
		subjects[i] = schemas.SubjectRoot + "." + org + ".*." + t
	}
	return subjects
}

// deleteConsumer deletes a consumer the store made for one reader once
// the reader is done, on a context of its own (the caller's may have
// ended). Best effort: a consumer left behind expires on the server after
// its inactivity threshold.
func (s *Store) deleteConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil || info.Name == "" || !s.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(s.cfg.Timeout, 2*time.Second))
	defer cancel()
	_ = s.stream.DeleteConsumer(ctx, info.Name)
}

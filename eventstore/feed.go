package eventstore

import (
	"context"
	"errors"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

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
func (s *Store) eventsFrom(ctx context.Context, q schemas.EventsQuery, from uint64, limit int) ([]schemas.PublicEvent, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: feedSubjects(q), DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from}
	if from <= 1 && !q.RangeStart.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartTimePolicy, 0
		start := q.RangeStart
		cfg.OptStartTime = &start
	}
	cons, err := s.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, mapErr("events", err)
	}
	// A page's consumer is not wanted after the page: left to expire, a
	// client paging quickly would reach the server's consumer limit.
	defer s.deleteConsumer(cons)
	batch, err := cons.FetchNoWait(limit)
	if err != nil {
		return nil, mapErr("events", err)
	}
	out := make([]schemas.PublicEvent, 0, min(limit, 256))
	done := false
	for msg := range batch.Messages() {
		if done {
			continue // drain the batch
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, mapErr("events", err)
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

// deleteConsumer deletes an ordered consumer's current server-side
// consumer, on a context of its own: the caller's may have ended.
func (s *Store) deleteConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil || info.Name == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	_ = s.stream.DeleteConsumer(ctx, info.Name)
}

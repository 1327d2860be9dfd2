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
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: feedSubjects(q), DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: q.AfterSeq + 1}
	if q.AfterSeq == 0 && !q.RangeStart.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartTimePolicy, 0
		start := q.RangeStart
		cfg.OptStartTime = &start
	}
	cons, err := s.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, mapErr("events", err)
	}
	batch, err := cons.FetchNoWait(q.Limit)
	if err != nil {
		return nil, mapErr("events", err)
	}
	out := make([]schemas.PublicEvent, 0, q.Limit)
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

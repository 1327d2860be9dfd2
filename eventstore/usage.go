package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// maxUsagePerReport keeps a report well under NATS's default 1 MB payload.
const maxUsagePerReport = 500

// PublishUsage sends last-used times to keyledger servers on core NATS, in
// reports of at most 500 keys. Delivery is at most once: a report lost
// while no server listens is made good by the next use of the key.
func PublishUsage(nc *nats.Conn, source string, entries []schemas.UsageEntry) error {
	for len(entries) > 0 {
		n := min(len(entries), maxUsagePerReport)
		raw, err := json.Marshal(schemas.UsageReport{Source: source, Keys: entries[:n]})
		if err != nil {
			return fmt.Errorf("eventstore: usage report: %w", err)
		}
		if err := nc.Publish(schemas.SubjectUsage, raw); err != nil {
			return fmt.Errorf("eventstore: publish usage: %w", err)
		}
		entries = entries[n:]
	}
	// Bounded: a validator closing while NATS is away must not hang.
	return nc.FlushTimeout(2 * time.Second)
}

// SubscribeUsage calls fn with each well-formed entry of the usage reports
// published on the connection's NATS. Malformed reports are dropped with a
// warning: anyone who can publish there is trusted with telemetry only.
func SubscribeUsage(nc *nats.Conn, log *slog.Logger, fn func(id string, at time.Time)) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(schemas.SubjectUsage, func(m *nats.Msg) {
		r, err := decodeUsage(m.Data)
		if err != nil {
			log.Warn("eventstore: dropped a malformed usage report", "err", err)
			return
		}
		for _, e := range r.Keys {
			fn(e.ID, e.LastUsedAt)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore: subscribe usage: %w", err)
	}
	return sub, nil
}

// decodeStrict decodes one JSON value with no unknown field and nothing
// after it: reports come from other processes.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

func decodeUsage(raw []byte) (schemas.UsageReport, error) {
	var r schemas.UsageReport
	if err := decodeStrict(raw, &r); err != nil {
		return r, err
	}
	if r.Source == "" || len(r.Keys) > maxUsagePerReport {
		return r, fmt.Errorf("no source, or more than %d keys", maxUsagePerReport)
	}
	for _, e := range r.Keys {
		if err := domain.ValidateKeyID(e.ID); err != nil {
			return r, err
		}
		if e.LastUsedAt.IsZero() {
			return r, fmt.Errorf("key %s: no last_used_at", e.ID)
		}
	}
	return r, nil
}

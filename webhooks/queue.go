package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Queue keeps deliveries and the attempt log durably, per endpoint. It
// deals in opaque bytes (the engine encodes what it stores), so that an
// implementation needs nothing from this package: eventstore.DeliveryQueue
// implements it on JetStream.
//
// Endpoint ids given to a Queue are made of ASCII letters, digits, '_' and
// '-' only (ValidEndpointID).
type Queue interface {
	// Put appends msg to the endpoint's queue and returns once it is stored
	// durably. A Put whose id the queue already holds for that endpoint,
	// within its duplicate window, stores nothing and succeeds.
	Put(ctx context.Context, endpointID, id string, msg []byte) error

	// Consume calls handle with the endpoint's queued messages, at most
	// limit at once, each in its own goroutine, until ctx ends; then it
	// waits for the running handlers and returns. handle gets a context
	// that is not canceled with ctx (it bounds its own work), the message's
	// ref (see Get) and the message. It returns when to see the message
	// again: a negative duration for never (the message is done), zero or
	// more for after that long. A message whose handler never returned (a
	// crash) comes again after a while. Consume returns an error when it
	// cannot go on (the caller retries).
	Consume(ctx context.Context, endpointID string, limit int,
		handle func(ctx context.Context, ref uint64, msg []byte) time.Duration) error

	// Get returns the queued message at ref, domain.ErrNotFound when it is
	// no longer kept.
	Get(ctx context.Context, ref uint64) ([]byte, error)

	// Forget drops the endpoint's queue: its waiting messages and its
	// position. For a deleted endpoint.
	Forget(ctx context.Context, endpointID string) error

	// Record appends entry to the endpoint's attempt log, durably.
	Record(ctx context.Context, endpointID string, entry []byte) error

	// Records calls fn with the endpoint's attempt log, newest first: from
	// the newest entry stored before the entry at ref before (0: from the
	// newest of all) and, when until is not zero, stored at or before
	// until. It stops when fn returns false or the log has no more.
	Records(ctx context.Context, endpointID string, before uint64, until time.Time,
		fn func(ref uint64, stored time.Time, entry []byte) bool) error
}

// ValidEndpointID reports whether id can name an endpoint's queue: 1 to 128
// ASCII letters, digits, '_' or '-' ("we_" + ULID is).
func ValidEndpointID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// delivery is one scheduled attempt of one delivery, as queued. A retry is
// a new message with the next attempt number and a time not to try before,
// so the count survives restarts and no other store is needed.
type delivery struct {
	EndpointID string `json:"endpoint_id"`
	EventID    string `json:"event_id"`
	EventType  string `json:"event_type,omitempty"`
	// ID tells deliveries of the same event to the same endpoint apart: the
	// event id for the first, a new one for each recovery.
	ID         string    `json:"delivery_id"`
	Attempt    int       `json:"attempt"`
	NotBefore  time.Time `json:"not_before,omitzero"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	// Body is the POST body: encoded once, the same bytes on every attempt.
	Body []byte `json:"-"`
}

// msgID is the queue id of this attempt's message: a second Put of the same
// attempt (a retried Enqueue, a retry scheduled twice after a crash) stores
// nothing.
func (d *delivery) msgID() string { return d.ID + "/" + fmt.Sprint(d.Attempt) }

// encode lays a delivery out as one line of JSON metadata, a newline, and
// the body exactly as given.
func (d *delivery) encode() ([]byte, error) {
	meta, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("webhooks: encode delivery: %w", err)
	}
	out := make([]byte, 0, len(meta)+1+len(d.Body))
	out = append(append(append(out, meta...), '\n'), d.Body...)
	return out, nil
}

func decodeDelivery(msg []byte) (delivery, error) {
	var d delivery
	meta, body, ok := bytes.Cut(msg, []byte{'\n'})
	if !ok {
		return d, errors.New("webhooks: queued delivery: no metadata line")
	}
	if err := json.Unmarshal(meta, &d); err != nil {
		return d, fmt.Errorf("webhooks: queued delivery: %w", err)
	}
	if d.EndpointID == "" || d.EventID == "" || d.ID == "" || d.Attempt < 1 {
		return d, errors.New("webhooks: queued delivery: incomplete metadata")
	}
	d.Body = body
	return d, nil
}

// record is an attempt as the attempt log stores it.
type record struct {
	EndpointID   string    `json:"endpoint_id"`
	EventID      string    `json:"event_id"`
	DeliveryID   string    `json:"delivery_id"`
	Attempt      int       `json:"attempt"`
	At           time.Time `json:"at"`
	Status       int       `json:"status,omitempty"`
	LatencyMs    float64   `json:"latency_ms"`
	Error        string    `json:"error,omitempty"`
	Final        bool      `json:"final,omitempty"`
	Delivered    bool      `json:"delivered,omitempty"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	// Ref is where the delivery's message is in the queue (Queue.Get): what
	// Recover sends again.
	Ref uint64 `json:"ref"`
}

func (r record) attempt(ref uint64) Attempt {
	return Attempt{
		EndpointID: r.EndpointID, EventID: r.EventID, Attempt: r.Attempt, At: r.At,
		Status: r.Status, LatencyMs: r.LatencyMs, Error: r.Error, Final: r.Final, Delivered: r.Delivered,
		DeliveryID: r.DeliveryID, FailingSince: r.FailingSince, Cursor: fmt.Sprint(ref),
	}
}

package webhooks

import (
	"context"
	"slices"
	"time"
)

// Endpoint is a webhook endpoint as the engine needs it.
type Endpoint struct {
	ID      string   // "we_" + ULID
	URL     string   // http or https
	Events  []string // event types it subscribed to
	Enabled bool
	// Secrets are the endpoint's signing secrets ("whsec_" + base64 of 32
	// random bytes), newest first; two during a rotation (deliveries are
	// signed with both).
	Secrets []string
}

// Wants reports whether the endpoint subscribed to events of type
// eventType.
func (ep Endpoint) Wants(eventType string) bool { return slices.Contains(ep.Events, eventType) }

// Endpoints is the registry of endpoints (the ledger's projection of them).
type Endpoints interface {
	// Endpoint returns one endpoint; domain.ErrNotFound when it was deleted
	// or is unknown.
	Endpoint(ctx context.Context, id string) (Endpoint, error)
	// Endpoints lists every endpoint, enabled or not.
	Endpoints(ctx context.Context) ([]Endpoint, error)
}

// Reasons for disabling an endpoint.
const (
	DisabledGone    = "gone"    // it answered 410 Gone
	DisabledFailing = "failing" // it failed continuously for Config.DisableAfter
)

// Disabler disables an endpoint through the ledger (a
// webhook_endpoint.disabled event); reason is DisabledGone or
// DisabledFailing.
type Disabler interface {
	DisableEndpoint(ctx context.Context, id, reason string) error
}

// Attempt is one try of one delivery, as the attempt log keeps it. It never
// holds a secret or a signature.
type Attempt struct {
	EndpointID string    `json:"endpoint_id"`
	EventID    string    `json:"event_id"` // also the webhook-id of the request
	Attempt    int       `json:"attempt"`  // from 1, per delivery
	At         time.Time `json:"at"`       // when the request started
	Status     int       `json:"status"`   // the HTTP status; 0 when no response
	LatencyMs  float64   `json:"latency_ms"`
	Error      string    `json:"error,omitempty"` // why it failed, when it did
	// Final marks the delivery's last try: delivered, or given up (the
	// schedule is exhausted, or the endpoint answered 410).
	Final     bool `json:"final"`
	Delivered bool `json:"delivered"`
	// DeliveryID tells deliveries of the same event apart: the event id for
	// the first, another id for each recovery.
	DeliveryID string `json:"delivery_id"`
	// FailingSince is when the endpoint's current run of failures began, as
	// of this attempt; zero when its last attempt succeeded.
	FailingSince time.Time `json:"-"`
	// Cursor is where this attempt is in the log: AttemptQuery.Before takes
	// it to list the attempts before it.
	Cursor string `json:"-"`
}

// AttemptQuery selects a page of the attempt log.
type AttemptQuery struct {
	// Limit is the page size: default 50, at most 1000.
	Limit int
	// Before is the Cursor of the last attempt of the previous page; empty
	// for the newest attempts.
	Before string
	// EventID, when set, keeps only the attempts of that event.
	EventID string
}

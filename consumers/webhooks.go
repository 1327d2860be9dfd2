package consumers

import (
	"context"
	"fmt"
	"slices"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// EndpointSource is the projection of webhook endpoints.
type EndpointSource interface {
	WaitApplied(ctx context.Context, seq uint64) error
	Endpoints(ctx context.Context) ([]*domain.WebhookEndpoint, error)
}

// Enqueuer queues one delivery durably (the webhook engine), and forgets
// a deleted endpoint's queue.
type Enqueuer interface {
	Enqueue(ctx context.Context, endpointID string, ev schemas.PublicEvent) error
	Forget(ctx context.Context, endpointID string) error
}

// WebhookFanOut queues each event for every enabled endpoint that
// subscribed to its type and existed before it. It acknowledges an event
// only once every delivery is queued, so a crash repeats the fan-out
// (deduplicated by the queue) rather than lose a delivery.
func WebhookFanOut(src EndpointSource, q Enqueuer) Consumer {
	return Consumer{Name: "webhooks", Ordered: true, Handle: func(ctx context.Context, e domain.Event, pub schemas.PublicEvent) error {
		// The endpoints as of this event: the projection may trail the
		// consumer, and an endpoint created just before must get it.
		if err := src.WaitApplied(ctx, e.Seq); err != nil {
			return fmt.Errorf("consumers: webhooks: %w", err)
		}
		if d, ok := e.Data.(domain.WebhookEndpointDeleted); ok {
			// Its worker stopped already; its queue and consumer go now.
			if err := q.Forget(ctx, d.EndpointID); err != nil {
				return fmt.Errorf("consumers: webhooks: forget %s: %w", d.EndpointID, err)
			}
		}
		all, err := src.Endpoints(ctx)
		if err != nil {
			return fmt.Errorf("consumers: webhooks: %w", err)
		}
		for _, w := range all {
			if !w.Enabled || w.CreatedSeq >= e.Seq || !slices.Contains(w.Events, pub.Event) {
				continue
			}
			if err := q.Enqueue(ctx, w.ID, pub); err != nil {
				return fmt.Errorf("consumers: webhooks: queue %s for %s: %w", pub.ID, w.ID, err)
			}
		}
		return nil
	}}
}

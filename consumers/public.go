package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// PublicSubjectsName is the name of the PublicSubjects consumer (its
// durable consumer is DurableName(PublicSubjectsName)).
const PublicSubjectsName = "public_subjects"

// publicFlushTimeout bounds the wait for the server to take a published
// event; past it the event is delivered again.
const publicFlushTimeout = 10 * time.Second

// PublicSubjects publishes every ledger event, in its public form (the JSON
// of schemas.PublicEvent: never a key's value or hash), over core NATS on
// schemas.PublicSubject: keyledger.public.<organization_id>.<event type>,
// with schemas.SystemOrganization ("_system") as the organization of
// operator-wide events. Event types hold a dot, so
// keyledger.public.*.api_key.revoked filters by type and
// keyledger.public.org_x.> by organization.
//
// Each message's Nats-Msg-Id header is the event id. Events go out in
// ledger order, one at a time, and each publish is flushed (the server has
// taken it) before the event is acknowledged; a failed publish or flush
// has the event delivered again. Core NATS itself is at most once: a
// subscriber gets each event at least once while it is connected (and not
// a slow consumer the server cut off), and nothing that was published while
// it was away. A subscriber dedupes on Nats-Msg-Id (or the body's id); one
// that cannot miss an event reads the events feed or a webhook instead.
//
// nc is any connection allowed to publish on keyledger.public.> (the
// store's connection will do); it is not the router's own connection.
func PublicSubjects(nc *nats.Conn) Consumer {
	return Consumer{
		Name:    PublicSubjectsName,
		Ordered: true,
		Handle: func(ctx context.Context, e domain.Event, pub schemas.PublicEvent) error {
			body, err := json.Marshal(pub)
			if err != nil {
				return fmt.Errorf("consumers: public subjects: %w", err)
			}
			msg := nats.NewMsg(schemas.PublicSubject(e.OrganizationID, pub.Event))
			msg.Header.Set(schemas.HeaderMsgID, pub.ID)
			msg.Data = body
			if err := nc.PublishMsg(msg); err != nil {
				return fmt.Errorf("consumers: public subjects: publish %s: %w", msg.Subject, err)
			}
			fctx, cancel := context.WithTimeout(ctx, publicFlushTimeout)
			defer cancel()
			if err := nc.FlushWithContext(fctx); err != nil {
				return fmt.Errorf("consumers: public subjects: flush: %w", err)
			}
			return nil
		},
	}
}

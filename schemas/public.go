package schemas

import (
	"encoding/json"
	"time"
)

// PublicEvent is an event as it leaves keyledger: webhook bodies, audit
// sinks, the events feed and the public NATS subjects. Its shape follows
// WorkOS's Events API. It never carries a key's value or hash, nor a
// secret (schema: public/event.json).
type PublicEvent struct {
	Object    string          `json:"object"` // "event"
	ID        string          `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"created_at"`
	Context   EventContext    `json:"context"`
}

// ObjectEvent is the `object` of a PublicEvent.
const ObjectEvent = "event"

// EventContext says where an event comes from: its organization (null for
// operator-wide events), who caused it, and its position in the ledger.
type EventContext struct {
	OrganizationID *string `json:"organization_id"`
	Actor          Actor   `json:"actor"`
	LedgerSequence uint64  `json:"ledger_sequence"`
}

// PublicAPIKeyCreated is the data of a public api_key.created: the API key
// object as the API shows it after creation, without its value.
type PublicAPIKeyCreated struct {
	Object          string     `json:"object"` // "api_key"
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Owner           Owner      `json:"owner"`
	OrganizationID  string     `json:"organization_id"`
	UserID          *string    `json:"user_id"`
	ObfuscatedValue string     `json:"obfuscated_value"`
	Permissions     []string   `json:"permissions"`
	ExpiresAt       *time.Time `json:"expires_at"`
	CreatedAt       time.Time  `json:"created_at"`
}

// PublicAPIKeyRevoked is the data of a public api_key.revoked.
type PublicAPIKeyRevoked struct {
	Object         string    `json:"object"` // "api_key"
	ID             string    `json:"id"`
	OrganizationID string    `json:"organization_id"`
	RevokeReason   string    `json:"revoke_reason"`
	RevokedAt      time.Time `json:"revoked_at"`
}

// PublicMemberRemoved is the data of a public organization_member.removed.
type PublicMemberRemoved struct {
	OrganizationID   string   `json:"organization_id"`
	UserID           string   `json:"user_id"`
	RevokedAPIKeyIDs []string `json:"revoked_api_key_ids"`
}

// PublicPermissionsUpdated is the data of a public
// api_key_permissions.updated.
type PublicPermissionsUpdated struct {
	Permissions         []string `json:"permissions"`
	PreviousPermissions []string `json:"previous_permissions"`
}

// PublicWebhookEndpoint is the data of the public webhook_endpoint.*
// events: never a secret, sealed or not.
type PublicWebhookEndpoint struct {
	Object string   `json:"object"` // "webhook_endpoint"
	ID     string   `json:"id"`
	URL    string   `json:"url,omitempty"`
	Events []string `json:"events,omitempty"`
	Reason string   `json:"reason,omitempty"` // of webhook_endpoint.disabled
}

// ObjectWebhookEndpoint is the `object` of a webhook endpoint.
const ObjectWebhookEndpoint = "webhook_endpoint"

// EventList is a page of the events feed.
type EventList struct {
	Object       string            `json:"object"` // "list"
	Data         []PublicEvent     `json:"data"`
	ListMetadata EventListMetadata `json:"list_metadata"`
}

// EventListMetadata carries the feed's cursor: pass After back to get the
// events that follow the page, including ones appended since.
type EventListMetadata struct {
	After *string `json:"after"`
}

// EventsQuery selects events of the feed (GET /events): by type and
// organization, after a ledger sequence, within a time range.
type EventsQuery struct {
	Types          []string // empty: every type
	OrganizationID string   // empty: every organization and operator-wide events
	AfterSeq       uint64   // only events after this ledger sequence (before it, when Descending)
	Limit          int
	Descending     bool      // newest first
	RangeStart     time.Time // zero: from the beginning
	RangeEnd       time.Time // zero: up to now; exclusive
}

package schemas

import (
	"embed"
	"strings"
)

// Event types. These strings are the ledger's vocabulary: renaming one breaks
// every subscriber and every stored event.
const (
	EventAPIKeyCreated          = "api_key.created"
	EventAPIKeyRevoked          = "api_key.revoked"
	EventMemberRemoved          = "organization_member.removed"
	EventAPIKeyPermissionsSaved = "api_key_permissions.updated"

	EventWebhookEndpointCreated       = "webhook_endpoint.created"
	EventWebhookEndpointUpdated       = "webhook_endpoint.updated"
	EventWebhookEndpointSecretRotated = "webhook_endpoint.secret_rotated"
	EventWebhookEndpointDisabled      = "webhook_endpoint.disabled"
	EventWebhookEndpointEnabled       = "webhook_endpoint.enabled"
	EventWebhookEndpointDeleted       = "webhook_endpoint.deleted"
)

// EventTypes lists every event type, each with a schema in events/.
var EventTypes = []string{
	EventAPIKeyCreated, EventAPIKeyRevoked, EventMemberRemoved, EventAPIKeyPermissionsSaved,
	EventWebhookEndpointCreated, EventWebhookEndpointUpdated, EventWebhookEndpointSecretRotated,
	EventWebhookEndpointDisabled, EventWebhookEndpointEnabled, EventWebhookEndpointDeleted,
}

// EventVersion is the version of every event type's current data schema.
const EventVersion = 1

// The ledger stream and its subjects:
// keyledger.events.<organization_id>.<aggregate_id>.<event type>.
const (
	DefaultStreamName = "KEYLEDGER"
	SubjectRoot       = "keyledger.events"
	// SystemOrganization stands in for the organization token of
	// operator-wide events (the permission catalogue). Organization ids
	// cannot start with '_', so it never collides with one.
	SystemOrganization = "_system"
)

// Subject returns the subject of one event.
func Subject(org, aggregate, eventType string) string {
	if org == "" {
		org = SystemOrganization
	}
	return SubjectRoot + "." + org + "." + aggregate + "." + eventType
}

// AggregateSubjects returns the wildcard covering every event of one aggregate.
func AggregateSubjects(org, aggregate string) string {
	if org == "" {
		org = SystemOrganization
	}
	return SubjectRoot + "." + org + "." + aggregate + ".>"
}

// SubjectPublicRoot is the root of the public NATS subjects,
// keyledger.public.<organization_id>.<event type>, which carry events in
// their public form (PublicEvent) for security teams over core NATS. They
// are outside the ledger stream. Event types hold a dot, so a
// subscriber filters by type with keyledger.public.*.api_key.revoked and by
// organization with keyledger.public.org_x.>.
const SubjectPublicRoot = "keyledger.public"

// PublicSubject returns the public subject of one event; operator-wide
// events (no organization) go under SystemOrganization.
func PublicSubject(org, eventType string) string {
	if org == "" {
		org = SystemOrganization
	}
	return SubjectPublicRoot + "." + org + "." + eventType
}

// SubjectUsage carries last-used reports (UsageReport) from embedded
// validators to keyledger servers over core NATS. Last use is telemetry, not
// a ledger event: the subject is outside the ledger stream.
const SubjectUsage = "keyledger.usage"

// SubjectApplied is the root of the subjects that carry applied reports
// (AppliedReport) from every node that validates, servers and embedded
// validators, to every server, over core NATS: the fleet-wide barrier that
// makes a revoke immediate everywhere. Outside the ledger stream. A node
// publishes on AppliedSubject(its name), and a report is taken only from
// the subject of the node it names, so that a NATS account can let each
// validator's user speak for its own node alone.
const SubjectApplied = "keyledger.applied"

// AppliedSubject is the subject node publishes its applied reports on.
func AppliedSubject(node string) string { return SubjectApplied + "." + node }

// ValidNodeName reports whether name can name a node of the fleet: 1 to 128
// bytes of printable ASCII that form one subject token (no '.', '*', '>'
// or space).
func ValidNodeName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			return false
		}
	}
	return true
}

// NodeName turns s (a host name, say) into a valid node name: every byte
// ValidNodeName refuses becomes '-', and it is cut to 128 bytes.
func NodeName(s string) string {
	b := []byte(s)
	if len(b) > 128 {
		b = b[:128]
	}
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "node"
	}
	return string(b)
}

// SubjectEventType returns the event type at the end of a subject.
func SubjectEventType(subject string) string {
	parts := strings.SplitN(subject, ".", 5)
	if len(parts) != 5 {
		return ""
	}
	return parts[4]
}

// JetStream headers keyledger relies on.
const (
	HeaderMsgID                   = "Nats-Msg-Id"
	HeaderExpectedLastSubjSeq     = "Nats-Expected-Last-Subject-Sequence"
	HeaderExpectedLastSubjSeqSubj = "Nats-Expected-Last-Subject-Sequence-Subject"
	HeaderBatchID                 = "Nats-Batch-Id"
	HeaderBatchSeq                = "Nats-Batch-Sequence"
	HeaderBatchCommit             = "Nats-Batch-Commit"
)

// HTTP headers of the API.
const (
	HeaderIdempotencyKey     = "Idempotency-Key"
	HeaderIdempotentReplayed = "Idempotent-Replayed"
)

// Files holds the JSON Schemas: events/envelope.json, one
// events/<type>.v<version>.json per event type, messages/usage_report.json, messages/applied_report.json,
// and public/event.json (events as they leave keyledger).
//
//go:embed events/*.json messages/*.json public/*.json
var Files embed.FS

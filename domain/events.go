package domain

import "time"

// Event is one fact of the ledger: the envelope every event carries, and its
// typed data. Seq is the ledger sequence, set once the event is appended.
type Event struct {
	ID             string
	OrganizationID string // empty for operator-wide events (the catalogue)
	AggregateID    string
	Actor          Actor
	CreatedAt      time.Time
	Data           EventData
	Seq            uint64
}

// EventData is the typed body of an event. The wire name of each type lives
// in package schemas; the domain knows events only as Go types.
type EventData interface{ isEventData() }

// KeyCreated: api_key.created.
type KeyCreated struct {
	KeyID       string
	Name        string
	Owner       Owner
	Permissions []string
	Hash        KeyHash
	Obfuscated  string
	ExpiresAt   *time.Time
}

// KeyRevoked: api_key.revoked.
type KeyRevoked struct {
	KeyID  string
	Reason RevokeReason
}

// MemberRemoved: organization_member.removed. The user left the
// organization; the keys it lists were revoked in the same atomic batch.
type MemberRemoved struct {
	UserID        string
	RevokedKeyIDs []string
}

// CataloguePermissionsSet: api_key_permissions.updated. The operator changed
// which permissions API keys may carry.
type CataloguePermissionsSet struct {
	Permissions []string
	Previous    []string
}

func (KeyCreated) isEventData()              {}
func (KeyRevoked) isEventData()              {}
func (MemberRemoved) isEventData()           {}
func (CataloguePermissionsSet) isEventData() {}

// CatalogueAggregateID is the aggregate id of the operator-wide catalogue.
const CatalogueAggregateID = "api_key_permissions"

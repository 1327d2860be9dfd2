package schemas

import (
	"encoding/json"
	"time"
)

// Envelope is the JSON of one event in the ledger.
type Envelope struct {
	ID             string          `json:"id"`
	Event          string          `json:"event"`
	Version        int             `json:"version"`
	CreatedAt      time.Time       `json:"created_at"`
	OrganizationID *string         `json:"organization_id"`
	Actor          Actor           `json:"actor"`
	Data           json.RawMessage `json:"data"`
}

// Actor is who issued the command behind an event.
type Actor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Owner is whom a key belongs to.
type Owner struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// APIKeyCreatedData is the data of api_key.created inside the ledger. Hash is
// the hex SHA-256 of the key's value; it never leaves the system.
type APIKeyCreatedData struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Owner           Owner      `json:"owner"`
	Permissions     []string   `json:"permissions"`
	ObfuscatedValue string     `json:"obfuscated_value"`
	Hash            string     `json:"hash"`
	ExpiresAt       *time.Time `json:"expires_at"`
}

// APIKeyRevokedData is the data of api_key.revoked.
type APIKeyRevokedData struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// MemberRemovedData is the data of organization_member.removed.
type MemberRemovedData struct {
	UserID           string   `json:"user_id"`
	RevokedAPIKeyIDs []string `json:"revoked_api_key_ids"`
}

// PermissionsUpdatedData is the data of api_key_permissions.updated.
type PermissionsUpdatedData struct {
	Permissions         []string `json:"permissions"`
	PreviousPermissions []string `json:"previous_permissions"`
}

// WebhookEndpointData is the data of webhook_endpoint.created and
// webhook_endpoint.updated. SealedSecret (created only) is the signing
// secret encrypted with the operator's webhook secret key: the ledger never
// holds it in clear, and the public form never carries it.
type WebhookEndpointData struct {
	ID           string   `json:"id"`
	URL          string   `json:"url"`
	Events       []string `json:"events"`
	SealedSecret string   `json:"sealed_secret,omitempty"`
}

// WebhookSecretRotatedData is the data of webhook_endpoint.secret_rotated:
// the new sealed secret, and until when the previous one still signs.
type WebhookSecretRotatedData struct {
	ID                string    `json:"id"`
	SealedSecret      string    `json:"sealed_secret"`
	PreviousExpiresAt time.Time `json:"previous_expires_at"`
}

// WebhookEndpointStateData is the data of webhook_endpoint.disabled (with
// a reason), .enabled and .deleted.
type WebhookEndpointStateData struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

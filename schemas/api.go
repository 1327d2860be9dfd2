package schemas

import "time"

// APIKey is the API's key object (WorkOS-compatible, with keyledger's
// additions organization_id, user_id, expires_at, status).
type APIKey struct {
	Object          string     `json:"object"`
	ID              string     `json:"id"`
	Owner           Owner      `json:"owner"`
	OrganizationID  string     `json:"organization_id"`
	UserID          *string    `json:"user_id"`
	Name            string     `json:"name"`
	ObfuscatedValue string     `json:"obfuscated_value"`
	Value           *string    `json:"value,omitempty"`
	LastUsedAt      *time.Time `json:"last_used_at"`
	Permissions     []string   `json:"permissions"`
	Status          string     `json:"status"`
	ExpiresAt       *time.Time `json:"expires_at"`
	RevokedAt       *time.Time `json:"revoked_at,omitempty"`
	RevokeReason    string     `json:"revoke_reason,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
}

// ObjectAPIKey and ObjectList are the `object` values of the API.
const (
	ObjectAPIKey = "api_key"
	ObjectList   = "list"
)

// APIKeyList is a page of keys.
type APIKeyList struct {
	Object       string       `json:"object"`
	Data         []APIKey     `json:"data"`
	ListMetadata ListMetadata `json:"list_metadata"`
}

// ListMetadata carries the cursors of a page.
type ListMetadata struct {
	Before *string `json:"before"`
	After  *string `json:"after"`
}

// CreateAPIKeyRequest is the body of POST /organizations/{org}/api_keys.
type CreateAPIKeyRequest struct {
	Name        string     `json:"name"`
	Permissions []string   `json:"permissions"`
	UserID      string     `json:"user_id,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// RevokeAPIKeyRequest is the optional body of DELETE /api_keys/{id}.
type RevokeAPIKeyRequest struct {
	Reason string `json:"reason,omitempty"`
}

// ValidateRequest is the body of POST /api_keys/validations.
type ValidateRequest struct {
	Value string `json:"value"`
}

// ValidateResponse answers a validation; Reason is set when APIKey is nil.
type ValidateResponse struct {
	APIKey *APIKey `json:"api_key"`
	Reason string  `json:"reason,omitempty"`
}

// Reasons of a failed validation (ValidateResponse.Reason): the values of
// domain.ValidationReason, checked equal by a test in package api.
const (
	ReasonNotFound  = "not_found"
	ReasonRevoked   = "revoked"
	ReasonExpired   = "expired"
	ReasonMalformed = "malformed"
)

// PermissionsBody is the body and answer of /api_key_permissions.
type PermissionsBody struct {
	Permissions []string `json:"permissions"`
}

// MemberRemoval answers DELETE /organizations/{org}/members/{user_id}.
type MemberRemoval struct {
	OrganizationID   string   `json:"organization_id"`
	UserID           string   `json:"user_id"`
	RevokedAPIKeyIDs []string `json:"revoked_api_key_ids"`
}

// Error is every error answer of the API.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// UsageReport is a batch of last-used times an embedded validator
// publishes on SubjectUsage (schema: usage_report.json).
type UsageReport struct {
	Source string       `json:"source"`
	Keys   []UsageEntry `json:"keys"`
}

// AppliedReport is what a node publishes on SubjectApplied (schema:
// applied_report.json): the last ledger sequence its projection applied.
type AppliedReport struct {
	Node    string `json:"node"`
	Applied uint64 `json:"applied"`
	Leaving bool   `json:"leaving,omitempty"`
	// StaleAfterMs is the node's staleness bound: how long it validates
	// without a fresh proof that it is current.
	StaleAfterMs int64 `json:"stale_after_ms,omitempty"`
}

// UsageEntry is when one key was last validated by the reporter.
type UsageEntry struct {
	ID         string    `json:"id"`
	LastUsedAt time.Time `json:"last_used_at"`
}

// WebhookEndpoint is the API's webhook endpoint object. Secret is set only
// in the answers of create and rotate_secret.
type WebhookEndpoint struct {
	Object         string    `json:"object"` // "webhook_endpoint"
	ID             string    `json:"id"`
	URL            string    `json:"url"`
	Events         []string  `json:"events"`
	Status         string    `json:"status"` // enabled or disabled
	DisabledReason *string   `json:"disabled_reason"`
	Secret         *string   `json:"secret,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Webhook endpoint statuses.
const (
	WebhookEnabled  = "enabled"
	WebhookDisabled = "disabled"
)

// WebhookEndpointList is every webhook endpoint.
type WebhookEndpointList struct {
	Object       string            `json:"object"`
	Data         []WebhookEndpoint `json:"data"`
	ListMetadata ListMetadata      `json:"list_metadata"`
}

// CreateWebhookEndpointRequest is the body of POST /webhook_endpoints.
type CreateWebhookEndpointRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// UpdateWebhookEndpointRequest is the body of PATCH
// /webhook_endpoints/{id}; absent fields stay as they are.
type UpdateWebhookEndpointRequest struct {
	URL    *string  `json:"url,omitempty"`
	Events []string `json:"events,omitempty"`
	Status *string  `json:"status,omitempty"` // enabled or disabled
}

// DeletedObject answers a delete.
type DeletedObject struct {
	Object  string `json:"object"`
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

// WebhookAttempt is one delivery attempt in an endpoint's log.
type WebhookAttempt struct {
	Object      string    `json:"object"` // "webhook_attempt"
	EndpointID  string    `json:"endpoint_id"`
	EventID     string    `json:"event_id"`
	Attempt     int       `json:"attempt"`
	AttemptedAt time.Time `json:"attempted_at"`
	Status      *int      `json:"status"` // the receiver's HTTP status; null when none came
	LatencyMs   float64   `json:"latency_ms"`
	Error       string    `json:"error,omitempty"`
	Final       bool      `json:"final"`
	Delivered   bool      `json:"delivered"`
}

// WebhookAttemptList is a page of an endpoint's attempt log, newest first.
type WebhookAttemptList struct {
	Object string           `json:"object"`
	Data   []WebhookAttempt `json:"data"`
}

// RecoverRequest is the body of POST /webhook_endpoints/{id}/recover.
type RecoverRequest struct {
	RangeStart time.Time `json:"range_start"`
	RangeEnd   time.Time `json:"range_end"`
}

// RecoverResponse says how many failed deliveries were sent again.
type RecoverResponse struct {
	Recovered int `json:"recovered"`
}

// WidgetTokenRequest is the body of POST /widgets/token: the host app's
// backend asks, with the admin key, for a short-lived token its settings
// page uses for one user of one organization.
type WidgetTokenRequest struct {
	OrganizationID string   `json:"organization_id"`
	UserID         string   `json:"user_id"`
	Permissions    []string `json:"permissions"` // the manage permissions the user holds
	// UserPermissions, when given, are the API permissions the user holds:
	// their own keys may carry only these.
	UserPermissions []string `json:"user_permissions"`     // null: no limit beyond the catalogue
	ExpiresIn       int      `json:"expires_in,omitempty"` // seconds; default and bounds set by the server
}

// WidgetToken answers POST /widgets/token.
type WidgetToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// WidgetSession answers GET /widgets/session: what the token may do, and
// what the page needs to offer it.
type WidgetSession struct {
	OrganizationID  string    `json:"organization_id"`
	UserID          string    `json:"user_id"`
	Permissions     []string  `json:"permissions"`
	UserPermissions []string  `json:"user_permissions"`
	Catalogue       []string  `json:"catalogue"`
	ExpiresAt       time.Time `json:"expires_at"`
	StaleAfterDays  int       `json:"stale_after_days"`
}

// WidgetTokenPrefix starts every widget token.
const WidgetTokenPrefix = "kwt_"

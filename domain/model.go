package domain

import (
	"regexp"
	"slices"
	"time"
)

// OwnerType says whom a key belongs to.
type OwnerType string

const (
	OwnerUser         OwnerType = "user"
	OwnerOrganization OwnerType = "organization"
)

// ParseOwnerType accepts only the two scopes.
func ParseOwnerType(s string) (OwnerType, error) {
	switch OwnerType(s) {
	case OwnerUser, OwnerOrganization:
		return OwnerType(s), nil
	}
	return "", Errorf(KindInvalid, "invalid_owner_type", "owner type must be user or organization")
}

// Owner of a key: a user of the key's organization, or the organization itself.
type Owner struct {
	Type OwnerType
	ID   string
}

// KeyStatus is the ledger state of a key; expiry is computed at validation.
type KeyStatus string

const (
	StatusActive  KeyStatus = "active"
	StatusRevoked KeyStatus = "revoked"
)

// RevokeReason says why a key was revoked.
type RevokeReason string

const (
	ReasonRequested    RevokeReason = "requested"
	ReasonOwnerRemoved RevokeReason = "owner_removed"
	ReasonExpired      RevokeReason = "expired"
	ReasonLeaked       RevokeReason = "leaked"
	ReasonRotated      RevokeReason = "rotated"
)

// ParseRevokeReason accepts the reasons a caller may give; owner_removed is
// reserved for the member-removal cascade and expired for the system.
func ParseRevokeReason(s string) (RevokeReason, error) {
	switch RevokeReason(s) {
	case "":
		return ReasonRequested, nil
	case ReasonRequested, ReasonLeaked, ReasonRotated:
		return RevokeReason(s), nil
	}
	return "", Errorf(KindInvalid, "invalid_reason", "reason must be one of requested, leaked, rotated")
}

// ValidationReason explains a failed validation.
type ValidationReason string

const (
	InvalidNotFound  ValidationReason = "not_found"
	InvalidRevoked   ValidationReason = "revoked"
	InvalidExpired   ValidationReason = "expired"
	InvalidMalformed ValidationReason = "malformed"
)

// Manage permissions: who may create, see and revoke keys.
const (
	PermManageOrgKeys     = "widgets:api-keys:manage"
	PermManageOwnUserKeys = "widgets:user-api-keys:manage-self"
	PermManageAllUserKeys = "widgets:user-api-keys:manage-all"
)

// Limits that keep every input bounded.
const (
	MaxNameLen        = 200
	MaxPermissions    = 100
	MaxPermissionLen  = 128
	MaxCatalogueSize  = 1000
	MaxIDLen          = 128
	MaxKeysPerCascade = 999 // one atomic batch: the member event plus its revocations
)

// External identifiers (organization and user ids) become NATS subject
// tokens, so they are restricted to characters that are safe there.
var (
	idPattern         = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	permissionPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,127}$`)
	keyIDPattern      = regexp.MustCompile(`^api_key_[0-9A-HJKMNP-TV-Z]{26}$`)
)

// ValidateOrganizationID checks an organization id.
func ValidateOrganizationID(id string) error {
	if !idPattern.MatchString(id) {
		return Errorf(KindInvalid, "invalid_organization_id", "organization id must be 1-128 characters of letters, digits, '_' or '-'")
	}
	return nil
}

// ValidateUserID checks a user id.
func ValidateUserID(id string) error {
	if !idPattern.MatchString(id) {
		return Errorf(KindInvalid, "invalid_user_id", "user id must be 1-128 characters of letters, digits, '_' or '-'")
	}
	return nil
}

// ValidateKeyID checks the shape of a key id (api_key_ + ULID).
func ValidateKeyID(id string) error {
	if !keyIDPattern.MatchString(id) {
		return Errorf(KindNotFound, "not_found", "no API key with this id")
	}
	return nil
}

// NormalizePermissions validates a permission list and returns it sorted and
// without duplicates.
func NormalizePermissions(perms []string, max int) ([]string, error) {
	if len(perms) > max {
		return nil, Errorf(KindInvalid, "too_many_permissions", "at most %d permissions", max)
	}
	out := make([]string, 0, len(perms))
	for _, p := range perms {
		if !permissionPattern.MatchString(p) {
			return nil, Errorf(KindInvalid, "invalid_permission", "permission %q is not well-formed (lowercase letters, digits and _ . : -)", truncate(p, MaxPermissionLen))
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// ActorType says who issued a command.
type ActorType string

const (
	ActorAdmin  ActorType = "admin"
	ActorUser   ActorType = "user"
	ActorAPIKey ActorType = "api_key"
	ActorSystem ActorType = "system"
)

// Actor is the authenticated caller of a command. The admin key may do
// everything; a user acts inside one organization with the manage
// permissions the host application granted them, and, when UserPermissions
// is not nil, can only put those permissions on their own keys.
type Actor struct {
	Type              ActorType
	ID                string
	OrganizationID    string
	ManagePermissions []string
	UserPermissions   []string
}

// Admin is the actor of the operator's admin key.
func Admin() Actor { return Actor{Type: ActorAdmin, ID: "admin"} }

func (a Actor) has(perm string) bool { return slices.Contains(a.ManagePermissions, perm) }

// inOrg reports whether the actor can see anything of org at all.
func (a Actor) inOrg(org string) bool {
	return a.Type == ActorAdmin || a.OrganizationID == org
}

// Key is the API key aggregate, rebuilt from its events.
type Key struct {
	ID             string
	OrganizationID string
	Owner          Owner
	Name           string
	Permissions    []string
	Hash           KeyHash
	Obfuscated     string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	ExpiresAt      *time.Time
	Status         KeyStatus
	RevokedAt      *time.Time
	RevokeReason   RevokeReason
	// Version is the ledger sequence of the key's last event: the expected
	// sequence of its next append.
	Version uint64
}

// Apply folds one event of this key into it.
func (k *Key) Apply(e Event) {
	switch d := e.Data.(type) {
	case KeyCreated:
		*k = Key{
			ID: d.KeyID, OrganizationID: e.OrganizationID, Owner: d.Owner, Name: d.Name,
			Permissions: d.Permissions, Hash: d.Hash, Obfuscated: d.Obfuscated,
			CreatedAt: e.CreatedAt, UpdatedAt: e.CreatedAt, ExpiresAt: d.ExpiresAt, Status: StatusActive,
		}
	case KeyRevoked:
		k.Status = StatusRevoked
		t := e.CreatedAt
		k.RevokedAt = &t
		k.RevokeReason = d.Reason
		k.UpdatedAt = e.CreatedAt
	}
	k.Version = e.Seq
}

// Validity says whether the key may be used at now, and why not.
func (k *Key) Validity(now time.Time) (ok bool, reason ValidationReason) {
	if k.Status == StatusRevoked {
		return false, InvalidRevoked
	}
	if k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) {
		return false, InvalidExpired
	}
	return true, ""
}

// CanSee reports whether actor may see (and so manage) key. Keys of another
// organization, and keys the actor may not manage, do not exist for it.
func CanSee(actor Actor, k *Key) bool {
	if actor.Type == ActorAdmin {
		return true
	}
	if !actor.inOrg(k.OrganizationID) {
		return false
	}
	switch k.Owner.Type {
	case OwnerOrganization:
		return actor.has(PermManageOrgKeys)
	case OwnerUser:
		if actor.has(PermManageAllUserKeys) {
			return true
		}
		return actor.Type == ActorUser && actor.ID == k.Owner.ID && actor.has(PermManageOwnUserKeys)
	}
	return false
}

// Catalogue is the operator's list of permissions that API keys may carry.
type Catalogue struct {
	Permissions []string
	Version     uint64
}

// Allows reports whether every permission is in the catalogue.
func (c *Catalogue) Allows(perms []string) (missing string, ok bool) {
	for _, p := range perms {
		if _, found := slices.BinarySearch(c.Permissions, p); !found {
			return p, false
		}
	}
	return "", true
}

// Ceiling is what a key granted perms may use under this catalogue: the
// granted permissions the catalogue still allows, in their order. The
// catalogue is a ceiling over every key, not only over new ones: a
// permission the operator withdraws stops working on every key at once,
// and works again on the keys granted it if the operator allows it again
// (revoke a key to end its grant for good). A catalogue that was never set
// (Version 0) puts no ceiling: no key can carry a permission before one.
// Without anything to drop, perms itself is returned.
func (c *Catalogue) Ceiling(perms []string) []string {
	if c == nil || c.Version == 0 {
		return perms
	}
	n := 0
	for _, p := range perms {
		if _, ok := slices.BinarySearch(c.Permissions, p); ok {
			n++
		}
	}
	if n == len(perms) {
		return perms
	}
	out := make([]string, 0, n)
	for _, p := range perms {
		if _, ok := slices.BinarySearch(c.Permissions, p); ok {
			out = append(out, p)
		}
	}
	return out
}

// Apply folds a catalogue event.
func (c *Catalogue) Apply(e Event) {
	if d, ok := e.Data.(CataloguePermissionsSet); ok {
		c.Permissions = d.Permissions
	}
	c.Version = e.Seq
}

// ValidKey is what a successful validation tells an application: which
// key, whose, and what it may do. It is a value, so answering a validation
// allocates nothing. It has no obfuscated value: whoever validated holds the
// value, and ObfuscateKey(value) gives it.
type ValidKey struct {
	ID             string
	OrganizationID string
	Owner          Owner
	Name           string
	Permissions    []string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	ExpiresAt      time.Time // zero: never
	LastUsedAt     time.Time // zero: never
}

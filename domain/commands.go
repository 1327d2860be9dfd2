package domain

import (
	"slices"
	"strings"
	"time"
	"unicode"
)

// CreateKey asks for a new API key. UserID set makes a user key.
type CreateKey struct {
	OrganizationID string
	UserID         string
	Name           string
	Permissions    []string
	ExpiresAt      *time.Time
}

// RevokeKey asks to revoke one key.
type RevokeKey struct {
	KeyID  string
	Reason RevokeReason
}

// RemoveMember asks to remove a user from an organization, revoking every
// key of theirs there.
type RemoveMember struct {
	OrganizationID string
	UserID         string
}

// DecideCreate checks a create command against the actor's rights and the
// catalogue and returns the event data for a key with the given id, hash and
// obfuscated value. now bounds expires_at.
func DecideCreate(actor Actor, cmd CreateKey, cat *Catalogue, keyID string, hash KeyHash, obfuscated string, now time.Time) (KeyCreated, error) {
	if err := ValidateOrganizationID(cmd.OrganizationID); err != nil {
		return KeyCreated{}, err
	}
	if cmd.Name == "" || len(cmd.Name) > MaxNameLen || strings.ContainsFunc(cmd.Name, unicode.IsControl) {
		return KeyCreated{}, Errorf(KindInvalid, "invalid_name", "name is required, at most %d bytes, without control characters", MaxNameLen)
	}
	perms, err := NormalizePermissions(cmd.Permissions, MaxPermissions)
	if err != nil {
		return KeyCreated{}, err
	}
	if cmd.ExpiresAt != nil && !cmd.ExpiresAt.After(now) {
		return KeyCreated{}, Errorf(KindInvalid, "invalid_expires_at", "expires_at must be in the future")
	}
	owner := Owner{Type: OwnerOrganization, ID: cmd.OrganizationID}
	if cmd.UserID != "" {
		if err := ValidateUserID(cmd.UserID); err != nil {
			return KeyCreated{}, err
		}
		owner = Owner{Type: OwnerUser, ID: cmd.UserID}
	}
	if err := mayCreate(actor, cmd.OrganizationID, owner); err != nil {
		return KeyCreated{}, err
	}
	if p, ok := cat.Allows(perms); !ok {
		return KeyCreated{}, Errorf(KindUnprocessable, "permission_not_allowed", "permission %q is not in the API key permission catalogue", p)
	}
	if owner.Type == OwnerUser && actor.Type == ActorUser && actor.UserPermissions != nil {
		for _, p := range perms {
			if !slices.Contains(actor.UserPermissions, p) {
				return KeyCreated{}, Errorf(KindUnprocessable, "permission_exceeds_user", "permission %q is not one the user holds", p)
			}
		}
	}
	return KeyCreated{
		KeyID: keyID, Name: cmd.Name, Owner: owner, Permissions: perms,
		Hash: hash, Obfuscated: obfuscated, ExpiresAt: cmd.ExpiresAt,
	}, nil
}

func mayCreate(actor Actor, org string, owner Owner) error {
	if actor.Type == ActorAdmin {
		return nil
	}
	if !actor.inOrg(org) {
		return ErrNotFound
	}
	switch owner.Type {
	case OwnerOrganization:
		if actor.has(PermManageOrgKeys) {
			return nil
		}
	case OwnerUser:
		// A user creates keys for themselves only; manage-all lets them see and
		// revoke others' keys, not act as them.
		if actor.Type == ActorUser && actor.ID == owner.ID && (actor.has(PermManageOwnUserKeys) || actor.has(PermManageAllUserKeys)) {
			return nil
		}
	}
	return Errorf(KindForbidden, "forbidden", "the caller may not create this key")
}

// DecideRevoke returns the revocation of k, or nil when k is already revoked
// (revoking is idempotent).
func DecideRevoke(actor Actor, k *Key, reason RevokeReason) (*KeyRevoked, error) {
	if !CanSee(actor, k) {
		return nil, ErrNotFound
	}
	if k.Status == StatusRevoked {
		return nil, nil
	}
	return &KeyRevoked{KeyID: k.ID, Reason: reason}, nil
}

// DecideRemoveMember returns the member removal and the revocation of every
// active key among keys (the user's keys in the organization).
func DecideRemoveMember(actor Actor, cmd RemoveMember, keys []*Key) (MemberRemoved, []KeyRevoked, error) {
	if err := ValidateOrganizationID(cmd.OrganizationID); err != nil {
		return MemberRemoved{}, nil, err
	}
	if err := ValidateUserID(cmd.UserID); err != nil {
		return MemberRemoved{}, nil, err
	}
	if actor.Type != ActorAdmin {
		return MemberRemoved{}, nil, Errorf(KindForbidden, "forbidden", "only the admin key may remove members")
	}
	removed := MemberRemoved{UserID: cmd.UserID, RevokedKeyIDs: []string{}}
	var revs []KeyRevoked
	for _, k := range keys {
		if k.OrganizationID != cmd.OrganizationID || k.Owner.Type != OwnerUser || k.Owner.ID != cmd.UserID {
			continue
		}
		if k.Status != StatusActive {
			continue
		}
		revs = append(revs, KeyRevoked{KeyID: k.ID, Reason: ReasonOwnerRemoved})
		removed.RevokedKeyIDs = append(removed.RevokedKeyIDs, k.ID)
	}
	if len(revs) > MaxKeysPerCascade {
		return MemberRemoved{}, nil, Errorf(KindUnprocessable, "too_many_keys", "the user has %d active keys; at most %d can be revoked in one atomic removal", len(revs), MaxKeysPerCascade)
	}
	return removed, revs, nil
}

// DecideSetCatalogue validates a new permission catalogue.
func DecideSetCatalogue(actor Actor, perms []string, cur *Catalogue) (CataloguePermissionsSet, error) {
	if actor.Type != ActorAdmin {
		return CataloguePermissionsSet{}, Errorf(KindForbidden, "forbidden", "only the admin key may change the permission catalogue")
	}
	norm, err := NormalizePermissions(perms, MaxCatalogueSize)
	if err != nil {
		return CataloguePermissionsSet{}, err
	}
	for _, p := range norm {
		if p == PermManageOrgKeys || p == PermManageOwnUserKeys || p == PermManageAllUserKeys {
			return CataloguePermissionsSet{}, Errorf(KindUnprocessable, "reserved_permission", "%q is a manage permission and cannot be put on API keys", p)
		}
	}
	prev := cur.Permissions
	if prev == nil {
		prev = []string{}
	}
	return CataloguePermissionsSet{Permissions: norm, Previous: prev}, nil
}

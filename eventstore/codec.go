package eventstore

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Encode renders a domain event as its subject and ledger JSON.
func Encode(e domain.Event) (subject string, body []byte, err error) {
	var (
		typ  string
		data any
	)
	switch d := e.Data.(type) {
	case domain.KeyCreated:
		typ = schemas.EventAPIKeyCreated
		data = schemas.APIKeyCreatedData{
			ID: d.KeyID, Name: d.Name, Owner: schemas.Owner{Type: string(d.Owner.Type), ID: d.Owner.ID},
			Permissions: nonNil(d.Permissions), ObfuscatedValue: d.Obfuscated,
			Hash: hex.EncodeToString(d.Hash[:]), ExpiresAt: d.ExpiresAt,
		}
	case domain.KeyRevoked:
		typ = schemas.EventAPIKeyRevoked
		data = schemas.APIKeyRevokedData{ID: d.KeyID, Reason: string(d.Reason)}
	case domain.MemberRemoved:
		typ = schemas.EventMemberRemoved
		data = schemas.MemberRemovedData{UserID: d.UserID, RevokedAPIKeyIDs: nonNil(d.RevokedKeyIDs)}
	case domain.CataloguePermissionsSet:
		typ = schemas.EventAPIKeyPermissionsSaved
		data = schemas.PermissionsUpdatedData{Permissions: nonNil(d.Permissions), PreviousPermissions: nonNil(d.Previous)}
	default:
		return "", nil, fmt.Errorf("eventstore: encode: unknown event data %T", e.Data)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return "", nil, fmt.Errorf("eventstore: encode %s: %w", typ, err)
	}
	env := schemas.Envelope{
		ID: e.ID, Event: typ, Version: schemas.EventVersion, CreatedAt: e.CreatedAt.UTC(),
		Actor: schemas.Actor{Type: string(e.Actor.Type), ID: e.Actor.ID}, Data: raw,
	}
	if e.OrganizationID != "" {
		org := e.OrganizationID
		env.OrganizationID = &org
	}
	body, err = json.Marshal(env)
	if err != nil {
		return "", nil, fmt.Errorf("eventstore: encode %s: %w", typ, err)
	}
	return schemas.Subject(e.OrganizationID, e.AggregateID, typ), body, nil
}

// Decode parses one ledger message. seq is its stream sequence.
func Decode(subject string, body []byte, seq uint64) (domain.Event, error) {
	var env schemas.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d: %w", seq, err)
	}
	if env.Version != schemas.EventVersion {
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d: %s version %d not supported", seq, env.Event, env.Version)
	}
	e := domain.Event{
		ID: env.ID, CreatedAt: env.CreatedAt, Seq: seq,
		Actor: domain.Actor{Type: domain.ActorType(env.Actor.Type), ID: env.Actor.ID},
	}
	if env.OrganizationID != nil {
		e.OrganizationID = *env.OrganizationID
	}
	bad := func(err error) (domain.Event, error) {
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d %s: %w", seq, env.Event, err)
	}
	switch env.Event {
	case schemas.EventAPIKeyCreated:
		var d schemas.APIKeyCreatedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		var h domain.KeyHash
		if len(d.Hash) != hex.EncodedLen(len(h)) {
			return bad(fmt.Errorf("bad hash"))
		}
		if n, err := hex.Decode(h[:], []byte(d.Hash)); err != nil || n != len(h) {
			return bad(fmt.Errorf("bad hash"))
		}
		ot, err := domain.ParseOwnerType(d.Owner.Type)
		if err != nil {
			return bad(err)
		}
		e.AggregateID = d.ID
		e.Data = domain.KeyCreated{KeyID: d.ID, Name: d.Name, Owner: domain.Owner{Type: ot, ID: d.Owner.ID},
			Permissions: nonNil(d.Permissions), Hash: h, Obfuscated: d.ObfuscatedValue, ExpiresAt: d.ExpiresAt}
	case schemas.EventAPIKeyRevoked:
		var d schemas.APIKeyRevokedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		e.AggregateID = d.ID
		e.Data = domain.KeyRevoked{KeyID: d.ID, Reason: domain.RevokeReason(d.Reason)}
	case schemas.EventMemberRemoved:
		var d schemas.MemberRemovedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		e.AggregateID = d.UserID
		e.Data = domain.MemberRemoved{UserID: d.UserID, RevokedKeyIDs: nonNil(d.RevokedAPIKeyIDs)}
	case schemas.EventAPIKeyPermissionsSaved:
		var d schemas.PermissionsUpdatedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return bad(err)
		}
		e.AggregateID = domain.CatalogueAggregateID
		e.Data = domain.CataloguePermissionsSet{Permissions: nonNil(d.Permissions), Previous: nonNil(d.PreviousPermissions)}
	default:
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d: unknown event type %q", seq, env.Event)
	}
	if want := schemas.Subject(e.OrganizationID, e.AggregateID, env.Event); subject != "" && subject != want {
		return domain.Event{}, fmt.Errorf("eventstore: decode seq %d: subject %q does not match its event (%q)", seq, subject, want)
	}
	return e, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

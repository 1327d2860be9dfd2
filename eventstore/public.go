package eventstore

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Public renders a ledger event in the form that leaves keyledger: no key
// hash, no secret, ever. It is the only way out of the ledger's own form.
func Public(e domain.Event) (schemas.PublicEvent, error) {
	var (
		typ  string
		data any
	)
	org := e.OrganizationID
	switch d := e.Data.(type) {
	case domain.KeyCreated:
		typ = schemas.EventAPIKeyCreated
		k := schemas.PublicAPIKeyCreated{
			Object: schemas.ObjectAPIKey, ID: d.KeyID, Name: d.Name,
			Owner:          schemas.Owner{Type: string(d.Owner.Type), ID: d.Owner.ID},
			OrganizationID: org, ObfuscatedValue: d.Obfuscated, Permissions: nonNil(d.Permissions),
			ExpiresAt: d.ExpiresAt, CreatedAt: e.CreatedAt.UTC(),
		}
		if d.Owner.Type == domain.OwnerUser {
			id := d.Owner.ID
			k.UserID = &id
		}
		data = k
	case domain.KeyRevoked:
		typ = schemas.EventAPIKeyRevoked
		data = schemas.PublicAPIKeyRevoked{Object: schemas.ObjectAPIKey, ID: d.KeyID, OrganizationID: org,
			RevokeReason: string(d.Reason), RevokedAt: e.CreatedAt.UTC()}
	case domain.MemberRemoved:
		typ = schemas.EventMemberRemoved
		data = schemas.PublicMemberRemoved{OrganizationID: org, UserID: d.UserID, RevokedAPIKeyIDs: nonNil(d.RevokedKeyIDs)}
	case domain.CataloguePermissionsSet:
		typ = schemas.EventAPIKeyPermissionsSaved
		data = schemas.PublicPermissionsUpdated{Permissions: nonNil(d.Permissions), PreviousPermissions: nonNil(d.Previous)}
	case domain.WebhookEndpointCreated:
		typ = schemas.EventWebhookEndpointCreated
		data = schemas.PublicWebhookEndpoint{Object: schemas.ObjectWebhookEndpoint, ID: d.EndpointID, URL: redactURL(d.URL), Events: nonNil(d.Events)}
	case domain.WebhookEndpointUpdated:
		typ = schemas.EventWebhookEndpointUpdated
		data = schemas.PublicWebhookEndpoint{Object: schemas.ObjectWebhookEndpoint, ID: d.EndpointID, URL: redactURL(d.URL), Events: nonNil(d.Events)}
	case domain.WebhookSecretRotated:
		typ = schemas.EventWebhookEndpointSecretRotated
		data = schemas.PublicWebhookEndpoint{Object: schemas.ObjectWebhookEndpoint, ID: d.EndpointID}
	case domain.WebhookEndpointDisabled:
		typ = schemas.EventWebhookEndpointDisabled
		data = schemas.PublicWebhookEndpoint{Object: schemas.ObjectWebhookEndpoint, ID: d.EndpointID, Reason: d.Reason}
	case domain.WebhookEndpointEnabled:
		typ = schemas.EventWebhookEndpointEnabled
		data = schemas.PublicWebhookEndpoint{Object: schemas.ObjectWebhookEndpoint, ID: d.EndpointID}
	case domain.WebhookEndpointDeleted:
		typ = schemas.EventWebhookEndpointDeleted
		data = schemas.PublicWebhookEndpoint{Object: schemas.ObjectWebhookEndpoint, ID: d.EndpointID}
	default:
		return schemas.PublicEvent{}, fmt.Errorf("eventstore: public: unknown event data %T", e.Data)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return schemas.PublicEvent{}, fmt.Errorf("eventstore: public %s: %w", typ, err)
	}
	out := schemas.PublicEvent{
		Object: schemas.ObjectEvent, ID: e.ID, Event: typ, Data: raw, CreatedAt: e.CreatedAt.UTC(),
		Context: schemas.EventContext{Actor: schemas.Actor{Type: string(e.Actor.Type), ID: e.Actor.ID}, LedgerSequence: e.Seq},
	}
	if org != "" {
		out.Context.OrganizationID = &org
	}
	return out, nil
}

// redactURL keeps a webhook URL's scheme and host: paths and queries often
// carry tokens (chat webhooks do), and the public form reaches audit sinks
// and subscribers. The admin sees the whole URL through the API.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		out += "/…"
	}
	return out
}

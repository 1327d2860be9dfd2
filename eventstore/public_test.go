package eventstore_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

// Every event type has a public form that validates against
// public/event.json and carries no hash, no sealed secret, and no more of a
// webhook URL than its scheme and host.
func TestPublicFormOfEveryEventType(t *testing.T) {
	sch := ledgertest.Schema(t, "public/event.json")

	value, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		t.Fatal(err)
	}
	hash := domain.HashKey(value)
	key := eventstore.NewID("api_key_")
	we := eventstore.NewID("we_")
	const hookURL = "https://hooks.example.com/services/T000/B000/XXXXSECRETTOKEN?sig=abc"
	datas := []domain.EventData{
		domain.KeyCreated{KeyID: key, Name: "k", Owner: domain.Owner{Type: domain.OwnerUser, ID: "user_1"}, Permissions: []string{"a:b"}, Hash: hash, Obfuscated: domain.ObfuscateKey(value)},
		domain.KeyRevoked{KeyID: key, Reason: domain.ReasonLeaked},
		domain.MemberRemoved{UserID: "user_1", RevokedKeyIDs: []string{key}},
		domain.CataloguePermissionsSet{Permissions: []string{"a:b"}},
		domain.WebhookEndpointCreated{EndpointID: we, URL: hookURL, Events: []string{"api_key.created"}, Secret: "v1.sealedsealed"},
		domain.WebhookEndpointUpdated{EndpointID: we, URL: hookURL, Events: []string{"api_key.revoked"}},
		domain.WebhookSecretRotated{EndpointID: we, Secret: "v1.sealedagain", PreviousExpiresAt: time.Now()},
		domain.WebhookEndpointDisabled{EndpointID: we, Reason: domain.DisabledFailing},
		domain.WebhookEndpointEnabled{EndpointID: we},
		domain.WebhookEndpointDeleted{EndpointID: we},
	}
	seen := map[string]bool{}
	for i, d := range datas {
		org := "org_1"
		if _, ok := d.(domain.CataloguePermissionsSet); ok {
			org = ""
		}
		if strings.HasPrefix(fmt.Sprintf("%T", d), "domain.Webhook") {
			org = ""
		}
		e := domain.Event{ID: eventstore.NewID("event_"), OrganizationID: org, Actor: domain.Admin(), CreatedAt: time.Now().UTC(), Data: d, Seq: uint64(i + 1)}
		pub, err := eventstore.Public(e)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(pub)
		v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s: %v\n%s", pub.Event, err, body)
		}
		for _, bad := range []string{hex.EncodeToString(hash[:]), value, "sealed", "SECRETTOKEN", "sig=abc"} {
			if strings.Contains(string(body), bad) {
				t.Errorf("%s carries %q: %s", pub.Event, bad, body)
			}
		}
		seen[pub.Event] = true
	}
	for _, typ := range schemas.EventTypes {
		if !seen[typ] {
			t.Errorf("no public form checked for %s", typ)
		}
	}
}

package eventstore_test

import (
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

func benchCreatedBody(b *testing.B) (string, []byte) {
	v, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		b.Fatal(err)
	}
	id := eventstore.NewID("api_key_")
	subj, body, err := eventstore.Encode(domain.Event{
		ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: id, Actor: domain.Admin(), CreatedAt: time.Now().UTC(),
		Data: domain.KeyCreated{KeyID: id, Name: "bench", Owner: domain.Owner{Type: domain.OwnerOrganization, ID: testOrg},
			Permissions: []string{"projects:read"}, Hash: domain.HashKey(v), Obfuscated: domain.ObfuscateKey(v)},
	})
	if err != nil {
		b.Fatal(err)
	}
	return subj, body
}

// BenchmarkDecodeCreated is the projector's decoding cost per event.
func BenchmarkDecodeCreated(b *testing.B) {
	subj, body := benchCreatedBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := eventstore.Decode(subj, body, 1); err != nil {
			b.Fatal(err)
		}
	}
}

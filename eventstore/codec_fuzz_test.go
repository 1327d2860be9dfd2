package eventstore_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

// webhookSeeds are the configuration events as Encode writes them, with
// their subjects.
func webhookSeeds(t testing.TB) (bodies, subjects []string) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	id := "we_01J00000000000000000000000"
	for _, d := range []domain.EventData{
		domain.WebhookEndpointCreated{EndpointID: id, URL: "https://hooks.example.com/k?x=1&y=<2>", Events: []string{"api_key.created"}, Secret: "sealed:v1:abc"},
		domain.WebhookEndpointUpdated{EndpointID: id, URL: "https://hooks.example.com/other", Events: nil},
		domain.WebhookSecretRotated{EndpointID: id, Secret: "sealed:v1:def", PreviousExpiresAt: at.Add(24 * time.Hour)},
		domain.WebhookEndpointDisabled{EndpointID: id, Reason: "failing"},
		domain.WebhookEndpointEnabled{EndpointID: id},
		domain.WebhookEndpointDeleted{EndpointID: id},
	} {
		subj, body, err := eventstore.Encode(domain.Event{ID: "event_01J00000000000000000000000", AggregateID: id, Actor: domain.Admin(), CreatedAt: at, Data: d})
		if err != nil {
			t.Fatal(err)
		}
		bodies, subjects = append(bodies, string(body)), append(subjects, subj)
	}
	return bodies, subjects
}

// inRange reports whether t can be written as JSON (encoding/json refuses
// years outside 0-9999) once in UTC, as Encode writes it.
func inRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// FuzzDecode is Decode on any subject and body: it never panics; what it
// accepts encoding/json reads the same way (whichever pass took it), has
// the sequence it was given, and survives a round trip: Encode writes it
// back (to the very subject it came with, when one was given), Decode reads
// that back, and the event is the same (its time in UTC, which is how
// Encode writes it). (Encode's output does not always take the single
// pass: webhook configuration events, and strings json.Marshal escapes,
// such as < > & and control characters, go through encoding/json.)
func FuzzDecode(f *testing.F) {
	fast, subjects, slow := fastSeeds(f)
	wb, ws := webhookSeeds(f)
	fast, subjects = append(fast, wb...), append(subjects, ws...)
	for i, b := range fast {
		f.Add(subjects[i], []byte(b))
		f.Add("", []byte(b))
		f.Add(subjects[i]+".x", []byte(b))
	}
	for _, b := range slow {
		f.Add("", []byte(b))
	}
	for _, b := range []string{
		`{"id":"e","event":"api_key.revoked","version":1,"created_at":"0000-01-01T00:30:00+01:00","actor":{"type":"admin","id":"a"},"data":{"id":"k"}}`,
		`{"ID":"e","Event":"api_key.revoked","VERSION":1,"data":{"ID":"k","reason":"\u0000"}}`,
		`{"event":"api_key.created","version":1,"data":{"hash":"` + string(make([]byte, 64)) + `"}}`,
		`{"event":"webhook_endpoint.secret_rotated","version":1,"data":{"previous_expires_at":"9999-12-31T23:59:59-01:00"}}`,
		`null`, `[]`, `{}`, `{"version":1e0}`, `{"data":null,"event":"member.removed","version":1}`,
	} {
		f.Add("", []byte(b))
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		e, err := eventstore.Decode(subject, body, 9)
		if err != nil {
			return
		}
		if e.Seq != 9 {
			t.Fatalf("Decode set seq %d, want 9", e.Seq)
		}
		want, err := eventstore.DecodeJSON(subject, body, 9)
		if err != nil {
			t.Fatalf("Decode accepted what encoding/json refuses (%v): %q", err, body)
		}
		if !reflect.DeepEqual(e, want) {
			t.Fatalf("Decode differs from encoding/json on %q:\n got  %+v\n want %+v", body, e, want)
		}
		if !inRange(e.CreatedAt) {
			return
		}
		if d, ok := e.Data.(domain.WebhookSecretRotated); ok && !inRange(d.PreviousExpiresAt) {
			return
		}
		if d, ok := e.Data.(domain.KeyCreated); ok && d.ExpiresAt != nil && !inRange(*d.ExpiresAt) {
			return
		}
		subj2, body2, err := eventstore.Encode(e)
		if err != nil {
			t.Fatalf("Encode of a decoded event: %v\nevent %+v\nfrom %q", err, e, body)
		}
		if subject != "" && subj2 != subject {
			t.Fatalf("decoded from subject %q, encodes to %q", subject, subj2)
		}
		again, err := eventstore.Decode(subj2, body2, 9)
		if err != nil {
			t.Fatalf("Decode refuses what Encode wrote (%v): %s", err, body2)
		}
		e.CreatedAt = e.CreatedAt.UTC()
		if d, ok := e.Data.(domain.WebhookSecretRotated); ok {
			d.PreviousExpiresAt = d.PreviousExpiresAt.UTC()
			e.Data = d
		}
		if !reflect.DeepEqual(again, e) {
			// Times may differ as values only (a zone and a fixed offset).
			sameEvent(t, again, e)
			if t.Failed() {
				t.Fatalf("round trip changed the event decoded from %q (via %s)", body, body2)
			}
		}
	})
}

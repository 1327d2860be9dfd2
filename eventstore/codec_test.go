package eventstore_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

// sameEvent compares two events field by field, times with Equal.
func sameEvent(t *testing.T, got, want domain.Event) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, want.CreatedAt)
	}
	g, w := got, want
	g.CreatedAt, w.CreatedAt = time.Time{}, time.Time{}
	if gc, ok := g.Data.(domain.KeyCreated); ok {
		wc, _ := w.Data.(domain.KeyCreated)
		if (gc.ExpiresAt == nil) != (wc.ExpiresAt == nil) || (gc.ExpiresAt != nil && !gc.ExpiresAt.Equal(*wc.ExpiresAt)) {
			t.Errorf("ExpiresAt = %v, want %v", gc.ExpiresAt, wc.ExpiresAt)
		}
		gc.ExpiresAt, wc.ExpiresAt = nil, nil
		g.Data, w.Data = gc, wc
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("event mismatch:\n got  %+v\n want %+v", g, w)
	}
}

func TestEncodeDecodeRoundTripEveryType(t *testing.T) {
	value, err := domain.GenerateKey(domain.PrefixTest)
	if err != nil {
		t.Fatal(err)
	}
	keyID := eventstore.NewID("api_key_")
	exp := time.Date(2031, 7, 1, 12, 30, 45, 123456789, time.UTC)
	created := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	user := domain.Actor{Type: domain.ActorUser, ID: "user_1"}

	tests := []struct {
		name        string
		ev          domain.Event
		wantSubject string
		wantType    string
	}{
		{
			name: "created with expiry",
			ev: domain.Event{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: keyID, Actor: user, CreatedAt: created,
				Data: domain.KeyCreated{KeyID: keyID, Name: "deploy bot", Owner: domain.Owner{Type: domain.OwnerUser, ID: "user_1"},
					Permissions: []string{"projects:read", "projects:write"}, Hash: domain.HashKey(value),
					Obfuscated: domain.ObfuscateKey(value), ExpiresAt: &exp}},
			wantSubject: "keyledger.events.org_1." + keyID + ".api_key.created",
			wantType:    schemas.EventAPIKeyCreated,
		},
		{
			name: "created without expiry, no permissions",
			ev: domain.Event{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: keyID, Actor: domain.Admin(), CreatedAt: created,
				Data: domain.KeyCreated{KeyID: keyID, Name: "k", Owner: orgOwner(testOrg), Permissions: []string{},
					Hash: domain.HashKey(value), Obfuscated: domain.ObfuscateKey(value)}},
			wantSubject: "keyledger.events.org_1." + keyID + ".api_key.created",
			wantType:    schemas.EventAPIKeyCreated,
		},
		{
			name: "revoked",
			ev: domain.Event{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: keyID, Actor: domain.Admin(), CreatedAt: created,
				Data: domain.KeyRevoked{KeyID: keyID, Reason: domain.ReasonLeaked}},
			wantSubject: "keyledger.events.org_1." + keyID + ".api_key.revoked",
			wantType:    schemas.EventAPIKeyRevoked,
		},
		{
			name: "member removed",
			ev: domain.Event{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: "user_9", Actor: domain.Admin(), CreatedAt: created,
				Data: domain.MemberRemoved{UserID: "user_9", RevokedKeyIDs: []string{keyID}}},
			wantSubject: "keyledger.events.org_1.user_9.organization_member.removed",
			wantType:    schemas.EventMemberRemoved,
		},
		{
			name: "catalogue set (operator-wide: _system token)",
			ev: domain.Event{ID: eventstore.NewID("event_"), AggregateID: domain.CatalogueAggregateID, Actor: domain.Admin(), CreatedAt: created,
				Data: domain.CataloguePermissionsSet{Permissions: []string{"a:read", "b:write"}, Previous: []string{"a:read"}}},
			wantSubject: "keyledger.events._system.api_key_permissions.api_key_permissions.updated",
			wantType:    schemas.EventAPIKeyPermissionsSaved,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			subj, body, err := eventstore.Encode(tc.ev)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if subj != tc.wantSubject {
				t.Errorf("subject = %q, want %q", subj, tc.wantSubject)
			}
			if got := schemas.SubjectEventType(subj); got != tc.wantType {
				t.Errorf("subject event type = %q, want %q", got, tc.wantType)
			}
			var env schemas.Envelope
			if err := json.Unmarshal(body, &env); err != nil {
				t.Fatalf("body is not an envelope: %v", err)
			}
			if env.Event != tc.wantType || env.Version != schemas.EventVersion || env.ID != tc.ev.ID {
				t.Errorf("envelope event/version/id = %q/%d/%q", env.Event, env.Version, env.ID)
			}
			if tc.ev.OrganizationID == "" {
				if env.OrganizationID != nil {
					t.Errorf("organization_id = %q, want null for an operator-wide event", *env.OrganizationID)
				}
			} else if env.OrganizationID == nil || *env.OrganizationID != tc.ev.OrganizationID {
				t.Errorf("organization_id = %v, want %q", env.OrganizationID, tc.ev.OrganizationID)
			}

			got, err := eventstore.Decode(subj, body, 42)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := tc.ev
			want.Seq = 42
			sameEvent(t, got, want)
		})
	}
}

func TestEncodeNilSlicesAsEmptyArrays(t *testing.T) {
	ev := domain.Event{ID: eventstore.NewID("event_"), AggregateID: domain.CatalogueAggregateID, Actor: domain.Admin(),
		CreatedAt: time.Now().UTC(), Data: domain.CataloguePermissionsSet{Permissions: []string{"a:read"}}}
	_, body, err := eventstore.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"previous_permissions":[]`) {
		t.Errorf("nil Previous should encode as [], body: %s", body)
	}
	ev = domain.Event{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: "user_1", Actor: domain.Admin(),
		CreatedAt: time.Now().UTC(), Data: domain.MemberRemoved{UserID: "user_1"}}
	_, body, err = eventstore.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"revoked_api_key_ids":[]`) {
		t.Errorf("nil RevokedKeyIDs should encode as [], body: %s", body)
	}
}

func TestEncodeRejectsNilData(t *testing.T) {
	ev := domain.Event{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: "x", Actor: domain.Admin(), CreatedAt: time.Now()}
	if _, _, err := eventstore.Encode(ev); err == nil {
		t.Fatal("Encode of an event without data succeeded")
	}
}

// validCreated returns a subject and body of a well-formed api_key.created,
// and the body as a generic map to tamper with.
func validCreated(t *testing.T) (string, map[string]any) {
	t.Helper()
	ev := newKeyCreated(t, testOrg, orgOwner(testOrg))
	subj, body, err := eventstore.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return subj, m
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	subj, good := validCreated(t)
	if _, err := eventstore.Decode(subj, mustJSON(t, good), 1); err != nil {
		t.Fatalf("the untampered body must decode: %v", err)
	}
	data := func(m map[string]any) map[string]any { return m["data"].(map[string]any) }
	clone := func() map[string]any {
		var m map[string]any
		if err := json.Unmarshal(mustJSON(t, good), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	tests := []struct {
		name    string
		subject string
		mutate  func(m map[string]any)
		raw     []byte
	}{
		{name: "not JSON", subject: subj, raw: []byte("{not json")},
		{name: "unknown event type", subject: strings.Replace(subj, "api_key.created", "api_key.rotated", 1),
			mutate: func(m map[string]any) { m["event"] = "api_key.rotated" }},
		{name: "wrong version", subject: subj, mutate: func(m map[string]any) { m["version"] = 2 }},
		{name: "version missing", subject: subj, mutate: func(m map[string]any) { delete(m, "version") }},
		{name: "hash not hex", subject: subj, mutate: func(m map[string]any) { data(m)["hash"] = strings.Repeat("zz", 32) }},
		{name: "hash too short", subject: subj, mutate: func(m map[string]any) { data(m)["hash"] = "abcd" }},
		{name: "hash too long", subject: subj, mutate: func(m map[string]any) {
			data(m)["hash"] = data(m)["hash"].(string) + "00"
		}},
		{name: "unknown owner type", subject: subj, mutate: func(m map[string]any) {
			data(m)["owner"] = map[string]any{"type": "team", "id": "t1"}
		}},
		{name: "subject of another organization", subject: strings.Replace(subj, ".org_1.", ".org_2.", 1)},
		{name: "subject of another aggregate", subject: schemas.Subject(testOrg, eventstore.NewID("api_key_"), schemas.EventAPIKeyCreated)},
		{name: "subject of another event type", subject: strings.Replace(subj, "api_key.created", "api_key.revoked", 1)},
		{name: "data id differs from subject aggregate", subject: subj, mutate: func(m map[string]any) {
			data(m)["id"] = eventstore.NewID("api_key_")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.raw
			if body == nil {
				m := clone()
				if tc.mutate != nil {
					tc.mutate(m)
				}
				body = mustJSON(t, m)
			}
			if ev, err := eventstore.Decode(tc.subject, body, 7); err == nil {
				t.Fatalf("Decode accepted it: %+v", ev)
			}
		})
	}
}

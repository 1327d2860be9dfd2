package eventstore_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

// fastSeeds are messages as Encode writes them, which must all take the
// single pass, and variants of them, most of which it must leave to
// encoding/json (compareDecoders checks that those it takes give the same).
func fastSeeds(t testing.TB) (fast []string, subjects []string, slow []string) {
	value, err := domain.GenerateKey(domain.PrefixTest)
	if err != nil {
		t.Fatal(err)
	}
	keyID := eventstore.NewID("api_key_")
	exp := time.Date(2031, 7, 1, 12, 30, 45, 123456789, time.UTC)
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("", 3600))
	user := domain.Actor{Type: domain.ActorUser, ID: "user_1"}
	events := []domain.Event{
		{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: keyID, Actor: user, CreatedAt: at,
			Data: domain.KeyCreated{KeyID: keyID, Name: "deploy bot é", Owner: domain.Owner{Type: domain.OwnerUser, ID: "user_1"},
				Permissions: []string{"projects:read", "projects:write"}, Hash: domain.HashKey(value),
				Obfuscated: domain.ObfuscateKey(value), ExpiresAt: &exp}},
		{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: keyID, Actor: domain.Admin(), CreatedAt: at,
			Data: domain.KeyCreated{KeyID: keyID, Name: "k", Owner: orgOwner(testOrg), Permissions: []string{},
				Hash: domain.HashKey(value), Obfuscated: domain.ObfuscateKey(value)}},
		{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: keyID, Actor: domain.Admin(), CreatedAt: at,
			Data: domain.KeyRevoked{KeyID: keyID, Reason: domain.ReasonLeaked}},
		{ID: eventstore.NewID("event_"), OrganizationID: testOrg, AggregateID: "user_9", Actor: domain.Admin(), CreatedAt: at,
			Data: domain.MemberRemoved{UserID: "user_9", RevokedKeyIDs: []string{keyID}}},
		{ID: eventstore.NewID("event_"), AggregateID: domain.CatalogueAggregateID, Actor: domain.Admin(), CreatedAt: at,
			Data: domain.CataloguePermissionsSet{Permissions: []string{"a:read", "b:write"}}},
	}
	for _, e := range events {
		subj, body, err := eventstore.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		fast = append(fast, string(body))
		subjects = append(subjects, subj)
	}
	created := fast[1]
	for _, r := range [][2]string{
		{`"id":"`, `"i\u0064":"`},                      // an escaped key
		{`"id":"`, `"ID":"`},                           // a key in another case
		{`"name":"k"`, `"name":"\u006b"`},              // an escaped value
		{`"version":1`, `"version":1.0`},               // not an int
		{`"version":1`, `"version":2`},                 // another version
		{`"version":1`, `"version":01`},                // not JSON
		{`"name":"k"`, `"name":null`},                  // null string
		{`"name":"k"`, `"name":"k","name":"j"`},        // duplicate key
		{`"name":"k"`, `"name":"k","extra":1`},         // unknown key
		{`"name":"k"`, `"name":"k","reason":"leaked"`}, // another type's key
		{`"permissions":[]`, `"permissions":null`},     // null array: fast
		{`"permissions":[]`, `"permissions":[null]`},   // null element
		{`"expires_at":null`, `"expires_at":"bad"`},    // bad time
		{`"hash":"`, `"hash":"0`},                      // bad hash
		{`"type":"organization"`, `"type":"org"`},      // bad owner type
		{`"organization_id":"org_1"`, `"organization_id":null`},
		{`{"id"`, ` { "id" `},                // white space: fast
		{`"name":"k"`, "\"name\":\"k\x01\""}, // control character
		{`"name":"k"`, "\"name\":\"k\xff\""}, // invalid UTF-8
		{`"name":"k"`, `"name":"<&>"`},       // HTML characters, unescaped: fast
	} {
		slow = append(slow, strings.Replace(created, r[0], r[1], 1))
	}
	// data before event
	slow = append(slow, `{"data":{"id":"x"},"event":"api_key.revoked","version":1}`, created+" x", created[:len(created)-1], "")
	return fast, subjects, slow
}

// Every event Encode writes takes the single pass, and it gives what
// encoding/json gives.
func TestDecodeFastMatchesJSON(t *testing.T) {
	fast, subjects, slow := fastSeeds(t)
	for i, body := range fast {
		got, ok := eventstore.DecodeFast(subjects[i], []byte(body), 7)
		if !ok {
			t.Fatalf("the single pass refused an encoded event: %s", body)
		}
		want, err := eventstore.DecodeJSON(subjects[i], []byte(body), 7)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("single pass differs from encoding/json:\n got  %+v\n want %+v", got, want)
		}
		if _, ok := eventstore.DecodeFast(subjects[i]+"x", []byte(body), 7); ok {
			t.Errorf("the single pass accepted a wrong subject")
		}
	}
	for _, body := range slow {
		compareDecoders(t, "", []byte(body))
		compareDecoders(t, subjects[1], []byte(body))
	}
}

func compareDecoders(t *testing.T, subject string, body []byte) {
	t.Helper()
	got, ok := eventstore.DecodeFast(subject, body, 3)
	want, err := eventstore.DecodeJSON(subject, body, 3)
	if !ok {
		return
	}
	if err != nil {
		t.Fatalf("the single pass accepted what encoding/json refuses (%v): %q", err, body)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("single pass differs from encoding/json on %q:\n got  %+v\n want %+v", body, got, want)
	}
}

// FuzzDecodeFast: whatever the single pass accepts, encoding/json decodes
// to the same event.
func FuzzDecodeFast(f *testing.F) {
	fast, subjects, slow := fastSeeds(f)
	for i, b := range fast {
		f.Add(subjects[i], []byte(b))
		f.Add("", []byte(b))
	}
	for _, b := range slow {
		f.Add("", []byte(b))
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		compareDecoders(t, subject, body)
	})
}

// PlainASCII, eight bytes at a time, agrees with a byte-by-byte check for
// every byte value at every place of strings of every length up to 24.
func TestPlainASCII(t *testing.T) {
	plain := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c >= 0x80 || c == '\\' {
				return false
			}
		}
		return true
	}
	for n := 1; n <= 24; n++ {
		b := []byte(strings.Repeat("a", n))
		if !eventstore.PlainASCII(string(b)) {
			t.Fatalf("PlainASCII(%q) = false", b)
		}
		for i := range b {
			for c := 0; c < 256; c++ {
				b[i] = byte(c)
				if got, want := eventstore.PlainASCII(string(b)), plain(string(b)); got != want {
					t.Fatalf("PlainASCII(%q) = %v, want %v", b, got, want)
				}
				// Next to a byte that borrows.
				if i+1 < n {
					b[i+1] = 0x20
					if got, want := eventstore.PlainASCII(string(b)), plain(string(b)); got != want {
						t.Fatalf("PlainASCII(%q) = %v, want %v", b, got, want)
					}
					b[i+1] = 'a'
				}
			}
			b[i] = 'a'
		}
	}
}

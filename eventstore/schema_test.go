package eventstore_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

// ledgerSchemas compiles events/envelope.json and one data schema per event
// type from schemas.Files, with format assertions on (date-time is checked).
type ledgerSchemas struct {
	envelope *jsonschema.Schema
	data     map[string]*jsonschema.Schema // by event type
}

func dataSchemaPath(eventType string) string {
	return fmt.Sprintf("events/%s.v%d.json", eventType, schemas.EventVersion)
}

func loadSchemas(t *testing.T) *ledgerSchemas {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	ids := map[string]string{} // path -> $id
	paths, err := fs.Glob(schemas.Files, "events/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no schemas in schemas.Files: %v", err)
	}
	for _, p := range paths {
		raw, err := fs.ReadFile(schemas.Files, p)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s is not JSON: %v", p, err)
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if id == "" {
			t.Fatalf("%s has no $id", p)
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatalf("add %s: %v", p, err)
		}
		ids[p] = id
	}
	compile := func(p string) *jsonschema.Schema {
		t.Helper()
		id, ok := ids[p]
		if !ok {
			t.Fatalf("schema %s is missing", p)
		}
		s, err := c.Compile(id)
		if err != nil {
			t.Fatalf("compile %s: %v", p, err)
		}
		return s
	}
	ls := &ledgerSchemas{envelope: compile("events/envelope.json"), data: map[string]*jsonschema.Schema{}}
	for _, typ := range schemas.EventTypes {
		ls.data[typ] = compile(dataSchemaPath(typ))
	}
	return ls
}

// validate checks one ledger message body: the envelope, then its data
// against the schema of its event type.
func (ls *ledgerSchemas) validate(body []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	if err := ls.envelope.Validate(v); err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	m := v.(map[string]any)
	typ, _ := m["event"].(string)
	ds, ok := ls.data[typ]
	if !ok {
		return fmt.Errorf("no data schema for %q", typ)
	}
	if err := ds.Validate(m["data"]); err != nil {
		return fmt.Errorf("%s data: %w", typ, err)
	}
	return nil
}

func TestEveryEventTypeHasASchema(t *testing.T) {
	for _, typ := range schemas.EventTypes {
		if _, err := fs.Stat(schemas.Files, dataSchemaPath(typ)); err != nil {
			t.Errorf("event type %s has no schema %s: %v", typ, dataSchemaPath(typ), err)
		}
	}
	if _, err := fs.Stat(schemas.Files, "events/envelope.json"); err != nil {
		t.Errorf("no envelope schema: %v", err)
	}

	// The envelope's enum of event types is exactly schemas.EventTypes.
	raw, err := fs.ReadFile(schemas.Files, "events/envelope.json")
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Properties struct {
			Event struct {
				Enum []string `json:"enum"`
			} `json:"event"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	got, want := slices.Sorted(slices.Values(env.Properties.Event.Enum)), slices.Sorted(slices.Values(schemas.EventTypes))
	if !slices.Equal(got, want) {
		t.Errorf("envelope event enum %v, want schemas.EventTypes %v", got, want)
	}

	// And every schema file belongs to a known event type.
	paths, _ := fs.Glob(schemas.Files, "events/*.json")
	for _, p := range paths {
		if p == "events/envelope.json" {
			continue
		}
		found := false
		for _, typ := range schemas.EventTypes {
			if p == dataSchemaPath(typ) {
				found = true
			}
		}
		if !found {
			t.Errorf("schema %s matches no event type of this version", p)
		}
	}
}

// TestLedgerMessagesMatchSchemas appends events of every type through the
// Store and validates every message the stream holds.
func TestLedgerMessagesMatchSchemas(t *testing.T) {
	ls := loadSchemas(t)
	st, env := mustOpenStore(t)
	ctx := ctxT(t)

	// Catalogue: first set, then a change.
	cat := func(perms, prev []string, expected uint64) uint64 {
		e := newEvent("", domain.CatalogueAggregateID, domain.Admin(), domain.CataloguePermissionsSet{Permissions: perms, Previous: prev})
		return appendOne(t, st, e, expected).Seq
	}
	v := cat([]string{"projects:read", "projects:write"}, nil, 0)
	cat([]string{"projects:read"}, []string{"projects:read", "projects:write"}, v)

	// Keys: an organization key with an expiry, by a user; a test-prefix key
	// with no permissions; revocations for every reason.
	e := newKeyCreated(t, testOrg, orgOwner(testOrg))
	d := e.Data.(domain.KeyCreated)
	exp := time.Now().Add(time.Hour).UTC()
	d.ExpiresAt = &exp
	e.Data = d
	e.Actor = domain.Actor{Type: domain.ActorUser, ID: "user_1"}
	appendOne(t, st, e, 0)

	value, err := domain.GenerateKey(domain.PrefixTest)
	if err != nil {
		t.Fatal(err)
	}
	bare := newKeyCreated(t, testOrg, orgOwner(testOrg))
	bd := bare.Data.(domain.KeyCreated)
	bd.Permissions, bd.Hash, bd.Obfuscated = nil, domain.HashKey(value), domain.ObfuscateKey(value)
	bare.Data = bd
	bare.Actor = domain.Actor{Type: domain.ActorAPIKey, ID: eventstore.NewID("api_key_")}
	appendOne(t, st, bare, 0)

	for _, reason := range []domain.RevokeReason{domain.ReasonRequested, domain.ReasonExpired, domain.ReasonLeaked, domain.ReasonRotated} {
		id, seq := createKey(t, st, testOrg, orgOwner(testOrg))
		r := revokeEvent(testOrg, id, reason)
		if reason == domain.ReasonExpired {
			r.Actor = domain.Actor{Type: domain.ActorSystem, ID: "system"}
		}
		appendOne(t, st, r, seq)
	}

	// A member removal cascade, and a removal of a member with no keys.
	keys := userKeys(t, st, testOrg, "user_2", 2)
	if _, err := st.Append(ctx, cascade(testOrg, "user_2", 0, keys)); err != nil {
		t.Fatal(err)
	}
	appendOne(t, st, newEvent("org-B", "user_3", domain.Admin(), domain.MemberRemoved{UserID: "user_3"}), 0)

	// A webhook endpoint's whole life, and LoadEndpoint folding it.
	we := eventstore.NewID("we_")
	wseq := appendOne(t, st, newEvent("", we, domain.Admin(), domain.WebhookEndpointCreated{EndpointID: we, URL: "https://hooks.example.com/kl", Events: []string{"api_key.created"}, Secret: "sealed-1"}), 0).Seq
	for _, d := range []domain.EventData{
		domain.WebhookEndpointUpdated{EndpointID: we, URL: "https://hooks.example.com/v2", Events: []string{"api_key.created", "api_key.revoked"}},
		domain.WebhookSecretRotated{EndpointID: we, Secret: "sealed-2", PreviousExpiresAt: time.Now().Add(time.Hour).UTC()},
		domain.WebhookEndpointDisabled{EndpointID: we, Reason: domain.DisabledGone},
		domain.WebhookEndpointEnabled{EndpointID: we},
	} {
		wseq = appendOne(t, st, newEvent("", we, domain.Admin(), d), wseq).Seq
	}
	w, err := st.LoadEndpoint(ctx, we)
	if err != nil || w.URL != "https://hooks.example.com/v2" || !w.Enabled || len(w.Secrets) != 2 || w.Secrets[0].Sealed != "sealed-2" || w.Version != wseq {
		t.Fatalf("LoadEndpoint = %+v, %v", w, err)
	}
	appendOne(t, st, newEvent("", we, domain.Admin(), domain.WebhookEndpointDeleted{EndpointID: we}), wseq)

	// Every message in the stream, read raw.
	last := lastSeq(t, st)
	raw := rawStream(t, env.nc, st.StreamName())
	seen := map[string]int{}
	for seq := uint64(1); seq <= last; seq++ {
		msg, err := raw.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("GetMsg %d: %v", seq, err)
		}
		if err := ls.validate(msg.Data); err != nil {
			t.Errorf("seq %d (%s) violates its schema: %v\n%s", seq, msg.Subject, err, msg.Data)
			continue
		}
		var envl schemas.Envelope
		if err := json.Unmarshal(msg.Data, &envl); err != nil {
			t.Fatal(err)
		}
		if got := schemas.SubjectEventType(msg.Subject); got != envl.Event {
			t.Errorf("seq %d: subject type %q, envelope event %q", seq, got, envl.Event)
		}
		seen[envl.Event]++
	}
	for _, typ := range schemas.EventTypes {
		if seen[typ] == 0 {
			t.Errorf("no %s event was appended and validated", typ)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("validated %d messages: %v", last, seen)
}

// TestSchemasRejectViolations makes sure the validation above can fail: a
// body encoded by the Store passes, and each tampered copy does not.
func TestSchemasRejectViolations(t *testing.T) {
	ls := loadSchemas(t)

	bodies := map[string][]byte{}
	value, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		t.Fatal(err)
	}
	keyID := eventstore.NewID("api_key_")
	for name, ev := range map[string]domain.Event{
		"created": newEvent(testOrg, keyID, domain.Admin(), domain.KeyCreated{KeyID: keyID, Name: "k", Owner: orgOwner(testOrg),
			Permissions: []string{"projects:read"}, Hash: domain.HashKey(value), Obfuscated: domain.ObfuscateKey(value)}),
		"revoked":   revokeEvent(testOrg, keyID, domain.ReasonRequested),
		"member":    newEvent(testOrg, "user_1", domain.Admin(), domain.MemberRemoved{UserID: "user_1", RevokedKeyIDs: []string{keyID}}),
		"catalogue": newEvent("", domain.CatalogueAggregateID, domain.Admin(), domain.CataloguePermissionsSet{Permissions: []string{"a:read"}}),
	} {
		_, body, err := eventstore.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := ls.validate(body); err != nil {
			t.Fatalf("untampered %s body fails validation: %v\n%s", name, err, body)
		}
		bodies[name] = body
	}

	tamper := func(name string, f func(env, data map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(bodies[name], &m); err != nil {
			t.Fatal(err)
		}
		f(m, m["data"].(map[string]any))
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hash := func(d map[string]any) string { return d["hash"].(string) }

	cases := []struct {
		name string
		body []byte
	}{
		{"extra envelope field", tamper("created", func(e, _ map[string]any) { e["secret"] = "x" })},
		{"extra data field", tamper("created", func(_, d map[string]any) { d["value"] = "sk_live_leak" })},
		{"missing data field", tamper("created", func(_, d map[string]any) { delete(d, "expires_at") })},
		{"hash too short", tamper("created", func(_, d map[string]any) { d["hash"] = hash(d)[:62] })},
		{"hash upper case", tamper("created", func(_, d map[string]any) { d["hash"] = strings.ToUpper(hash(d)) })},
		{"hash not hex", tamper("created", func(_, d map[string]any) { d["hash"] = "g" + hash(d)[1:] })},
		{"key id not a ULID", tamper("created", func(_, d map[string]any) { d["id"] = "api_key_123" })},
		{"obfuscated value shows the key", tamper("created", func(_, d map[string]any) { d["obfuscated_value"] = "sk_live_abcdefgh" })},
		{"duplicate permissions", tamper("created", func(_, d map[string]any) { d["permissions"] = []string{"a:read", "a:read"} })},
		{"unknown owner type", tamper("created", func(_, d map[string]any) { d["owner"] = map[string]any{"type": "team", "id": "t1"} })},
		{"wrong version", tamper("created", func(e, _ map[string]any) { e["version"] = 2 })},
		{"unknown event", tamper("created", func(e, _ map[string]any) { e["event"] = "api_key.rotated" })},
		{"created_at not a date-time", tamper("created", func(e, _ map[string]any) { e["created_at"] = "yesterday" })},
		{"event id without prefix", tamper("created", func(e, _ map[string]any) { e["id"] = strings.TrimPrefix(e["id"].(string), "event_") })},
		{"unknown actor type", tamper("created", func(e, _ map[string]any) { e["actor"] = map[string]any{"type": "robot", "id": "r"} })},
		{"organization_id missing", tamper("created", func(e, _ map[string]any) { delete(e, "organization_id") })},
		{"bad organization_id", tamper("created", func(e, _ map[string]any) { e["organization_id"] = "org.1" })},
		{"unknown revoke reason", tamper("revoked", func(_, d map[string]any) { d["reason"] = "bored" })},
		{"revoke missing reason", tamper("revoked", func(_, d map[string]any) { delete(d, "reason") })},
		{"member with a bad key id", tamper("member", func(_, d map[string]any) { d["revoked_api_key_ids"] = []string{"key1"} })},
		{"catalogue with a bad permission", tamper("catalogue", func(_, d map[string]any) { d["permissions"] = []string{"Has Spaces"} })},
		{"catalogue data of another type", tamper("catalogue", func(e, _ map[string]any) { e["event"] = schemas.EventAPIKeyRevoked })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := ls.validate(tc.body); err == nil {
				t.Errorf("validation accepted a violating body:\n%s", tc.body)
			}
		})
	}
}

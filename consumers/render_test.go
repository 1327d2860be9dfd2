package consumers_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/keyledger/keyledger/consumers"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

// sinkFixture is one event of each type in its public form, three of types
// keyledger does not have yet, and the secrets behind them.
type sinkFixture struct {
	events  []schemas.PublicEvent
	secrets []string // key values, their hashes (hex, base64) and random parts
}

func sinkNewKey(t *testing.T, f *sinkFixture) (value string, hash domain.KeyHash) {
	t.Helper()
	v, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		t.Fatal(err)
	}
	h := domain.HashKey(v)
	f.secrets = append(f.secrets, v, v[len(domain.PrefixLive)+1:], hex.EncodeToString(h[:]), strings.ToUpper(hex.EncodeToString(h[:])),
		base64.StdEncoding.EncodeToString(h[:]), base64.RawURLEncoding.EncodeToString(h[:]))
	return v, h
}

func sinkEvents(t *testing.T) sinkFixture {
	t.Helper()
	var f sinkFixture
	at := time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
	seq := uint64(0)
	add := func(e domain.Event) {
		t.Helper()
		seq++
		e.Seq = seq
		e.CreatedAt = at.Add(time.Duration(seq) * time.Second)
		if e.ID == "" {
			e.ID = eventstore.NewID("event_")
		}
		pub, err := eventstore.Public(e)
		if err != nil {
			t.Fatal(err)
		}
		f.events = append(f.events, pub)
	}
	user := domain.Actor{Type: domain.ActorUser, ID: "user_ada", OrganizationID: "org_a"}
	v1, h1 := sinkNewKey(t, &f)
	v2, h2 := sinkNewKey(t, &f)
	k1, k2 := eventstore.NewID("api_key_"), eventstore.NewID("api_key_")
	exp := at.Add(90 * 24 * time.Hour)
	add(domain.Event{OrganizationID: "org_a", AggregateID: k1, Actor: user, Data: domain.KeyCreated{
		KeyID: k1, Name: `ada's "deploy" key <ci> & [prod]`, Owner: domain.Owner{Type: domain.OwnerUser, ID: "user_ada"},
		Permissions: []string{"projects:read", "tasks:write"}, Hash: h1, Obfuscated: domain.ObfuscateKey(v1), ExpiresAt: &exp,
	}})
	add(domain.Event{OrganizationID: "org_a", AggregateID: k2, Actor: domain.Admin(), Data: domain.KeyCreated{
		KeyID: k2, Name: "billing", Owner: domain.Owner{Type: domain.OwnerOrganization, ID: "org_a"},
		Hash: h2, Obfuscated: domain.ObfuscateKey(v2),
	}})
	add(domain.Event{OrganizationID: "org_a", AggregateID: k2, Actor: domain.Admin(), Data: domain.KeyRevoked{KeyID: k2, Reason: domain.ReasonLeaked}})
	add(domain.Event{OrganizationID: "org_a", AggregateID: "user_ada", Actor: domain.Admin(), Data: domain.MemberRemoved{UserID: "user_ada", RevokedKeyIDs: []string{k1}}})
	add(domain.Event{OrganizationID: "org_a", AggregateID: k1, Actor: domain.Actor{Type: domain.ActorSystem, ID: "keyledger"}, Data: domain.KeyRevoked{KeyID: k1, Reason: domain.ReasonOwnerRemoved}})
	add(domain.Event{AggregateID: domain.CatalogueAggregateID, Actor: domain.Admin(), Data: domain.CataloguePermissionsSet{
		Permissions: []string{"projects:read", "reports:read"}, Previous: []string{"projects:read", "tasks:write"},
	}})
	// Types keyledger may have one day: rendered generically.
	org := "org_a"
	seq++
	f.events = append(f.events, schemas.PublicEvent{
		Object: schemas.ObjectEvent, ID: eventstore.NewID("event_"), Event: "api_key.rotated",
		Data:      json.RawMessage(`{"object":"api_key","id":"` + k2 + `","replaced_by":"api_key_01JQZ8Y8D4M2W6V0T3B7H5N9KX"}`),
		CreatedAt: at.Add(time.Duration(seq) * time.Second), Context: schemas.EventContext{OrganizationID: &org, Actor: schemas.Actor{Type: "api_key", ID: k1}, LedgerSequence: seq},
	})
	seq++
	f.events = append(f.events, schemas.PublicEvent{
		Object: schemas.ObjectEvent, ID: eventstore.NewID("event_"), Event: "widget.enabled",
		Data:      json.RawMessage(`{"object":"widget","id":"widget_1"}`),
		CreatedAt: at.Add(time.Duration(seq) * time.Second), Context: schemas.EventContext{OrganizationID: &org, Actor: schemas.Actor{Type: "user", ID: "user_bob"}, LedgerSequence: seq},
	})
	seq++
	f.events = append(f.events, schemas.PublicEvent{
		Object: schemas.ObjectEvent, ID: eventstore.NewID("event_"), Event: "organization.archived",
		Data:      json.RawMessage(`{"organization_id":"org_a","id":7}`),
		CreatedAt: at.Add(time.Duration(seq) * time.Second), Context: schemas.EventContext{OrganizationID: &org, Actor: schemas.Actor{Type: "admin", ID: "admin"}, LedgerSequence: seq},
	})
	return f
}

var (
	sinkKeyShaped  = regexp.MustCompile(`sk_(live|test)_[0-9A-Za-z]{37}`)
	sinkHashShaped = regexp.MustCompile(`[0-9A-Fa-f]{64}`)
)

// sinkNoSecrets fails if out holds anything shaped like a key value or a
// SHA-256 in hex, or any of the sinkFixture's secrets in any encoding.
func sinkNoSecrets(t *testing.T, what string, out []byte, secrets []string) {
	t.Helper()
	if m := sinkKeyShaped.Find(out); m != nil {
		t.Fatalf("%s holds a key value %q:\n%s", what, m, out)
	}
	if m := sinkHashShaped.Find(out); m != nil {
		t.Fatalf("%s holds a 64-hex-character hash %q:\n%s", what, m, out)
	}
	for _, s := range secrets {
		if bytes.Contains(out, []byte(s)) {
			t.Fatalf("%s holds the secret %q:\n%s", what, s, out)
		}
	}
}

func sinkCompileSchema(t *testing.T, name string, raw []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	return c.MustCompile(name)
}

func sinkPublicSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	raw, err := fs.ReadFile(schemas.Files, "public/event.json")
	if err != nil {
		t.Fatal(err)
	}
	return sinkCompileSchema(t, "event.json", raw)
}

// sinkCloudEventsSchema is the CloudEvents 1.0 JSON format's rules: the
// required attributes and their types, attribute names of lowercase
// letters and digits (at most 20), extension values of a CloudEvents type.
const sinkCloudEventsSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["specversion", "id", "source", "type"],
  "propertyNames": {"pattern": "^(data|data_base64|[a-z0-9]{1,20})$"},
  "properties": {
    "specversion": {"const": "1.0"},
    "id": {"type": "string", "minLength": 1},
    "source": {"type": "string", "minLength": 1, "format": "uri-reference"},
    "type": {"type": "string", "minLength": 1},
    "subject": {"type": "string", "minLength": 1},
    "time": {"type": "string", "format": "date-time"},
    "datacontenttype": {"type": "string", "minLength": 1},
    "dataschema": {"type": "string", "format": "uri"},
    "data": {}
  },
  "additionalProperties": {"type": ["string", "boolean", "integer"]}
}`

func sinkDecode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, raw)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document:\n%s", raw)
	}
	return m
}

func sinkRender(t *testing.T, f consumers.Format, ev schemas.PublicEvent, o consumers.RenderOptions) []byte {
	t.Helper()
	out, err := consumers.RenderWith(f, ev, o)
	if err != nil {
		t.Fatalf("render %s as %s: %v", ev.Event, f, err)
	}
	if bytes.ContainsAny(out, "\r\n") {
		t.Fatalf("render %s as %s: not one line:\n%s", ev.Event, f, out)
	}
	return out
}

// Native is the public event exactly, valid against public/event.json.
func TestRenderNativeIsThePublicEvent(t *testing.T) {
	fx := sinkEvents(t)
	sch := sinkPublicSchema(t)
	for _, ev := range fx.events {
		out := sinkRender(t, consumers.FormatNative, ev, consumers.RenderOptions{})
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(doc); err != nil {
			t.Fatalf("%s does not match public/event.json: %v\n%s", ev.Event, err, out)
		}
		var back schemas.PublicEvent
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(sinkDecode(t, back.Data), sinkDecode(t, ev.Data)) || back.ID != ev.ID || back.Event != ev.Event ||
			!back.CreatedAt.Equal(ev.CreatedAt) || !reflect.DeepEqual(back.Context, ev.Context) {
			t.Fatalf("native %s is not the public event:\n%s", ev.Event, out)
		}
	}
}

func TestRenderCloudEvents(t *testing.T) {
	fx := sinkEvents(t)
	sch := sinkCompileSchema(t, "cloudevents.json", []byte(sinkCloudEventsSchema))
	for _, src := range []string{"", "https://keys.example.com/"} {
		for _, ev := range fx.events {
			out := sinkRender(t, consumers.FormatCloudEvents, ev, consumers.RenderOptions{Source: src})
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(doc); err != nil {
				t.Fatalf("%s is not a CloudEvents 1.0 JSON event: %v\n%s", ev.Event, err, out)
			}
			m := sinkDecode(t, out)
			base := "/keyledger"
			if src != "" {
				base = "https://keys.example.com"
			}
			wantSource := base
			if ev.Context.OrganizationID != nil {
				wantSource += "/organizations/" + *ev.Context.OrganizationID
			}
			var d map[string]any
			_ = json.Unmarshal(ev.Data, &d)
			wantSubject := map[string]any{
				schemas.EventAPIKeyCreated: d["id"], schemas.EventAPIKeyRevoked: d["id"], "api_key.rotated": d["id"], "widget.enabled": "widget_1",
				schemas.EventMemberRemoved: "user_ada", schemas.EventAPIKeyPermissionsSaved: "api_key_permissions",
			}[ev.Event]
			want := map[string]any{
				"specversion": "1.0", "id": ev.ID, "source": wantSource, "type": "dev.keyledger." + ev.Event,
				"datacontenttype": "application/json", "keyledgerseq": strconv.FormatUint(ev.Context.LedgerSequence, 10),
				"keyledgeractortype": ev.Context.Actor.Type, "keyledgeractorid": ev.Context.Actor.ID, "subject": wantSubject,
			}
			if ev.Context.OrganizationID != nil {
				want["keyledgerorg"] = *ev.Context.OrganizationID
			}
			for k, v := range want {
				if v == nil {
					if _, ok := m[k]; ok {
						t.Errorf("%s: %s = %v, want it absent", ev.Event, k, m[k])
					}
					continue
				}
				if m[k] != v {
					t.Errorf("%s: %s = %#v, want %#v", ev.Event, k, m[k], v)
				}
			}
			if _, err := url.Parse(m["source"].(string)); err != nil {
				t.Errorf("source: %v", err)
			}
			tm, err := time.Parse(time.RFC3339Nano, m["time"].(string))
			if err != nil || !tm.Equal(ev.CreatedAt) {
				t.Errorf("%s: time %v, want %v (%v)", ev.Event, m["time"], ev.CreatedAt, err)
			}
			if !reflect.DeepEqual(m["data"], sinkDecode(t, ev.Data)) {
				t.Errorf("%s: data %v, want the public data %s", ev.Event, m["data"], ev.Data)
			}
			if _, ok := m["keyledgerorg"]; !ok && ev.Context.OrganizationID != nil {
				t.Errorf("%s: no keyledgerorg", ev.Event)
			}
		}
	}
}

func TestRenderOCSF(t *testing.T) {
	fx := sinkEvents(t)
	semver := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	want := []struct {
		activity   int64
		severity   int64
		entityType string
	}{
		{1, 1, "API Key"},              // api_key.created
		{1, 1, "API Key"},              // api_key.created
		{9, 3, "API Key"},              // api_key.revoked, leaked
		{4, 1, "Organization Member"},  // organization_member.removed
		{9, 1, "API Key"},              // api_key.revoked, owner_removed
		{3, 1, "Permission Catalogue"}, // api_key_permissions.updated
		{99, 1, "api_key"},             // api_key.rotated (future)
		{8, 1, "widget"},               // widget.enabled (future, a known verb)
		{99, 1, "organization"},        // organization.archived (future)
	}
	if len(want) != len(fx.events) {
		t.Fatal("sinkFixture changed")
	}
	num := func(m map[string]any, k string) int64 {
		t.Helper()
		n, ok := m[k].(json.Number)
		if !ok {
			t.Fatalf("%s = %#v, want an integer", k, m[k])
		}
		i, err := n.Int64()
		if err != nil {
			t.Fatalf("%s = %v, want an integer", k, n)
		}
		return i
	}
	str := func(m map[string]any, k string) string {
		t.Helper()
		s, ok := m[k].(string)
		if !ok || s == "" {
			t.Fatalf("%s = %#v, want a string", k, m[k])
		}
		return s
	}
	obj := func(m map[string]any, k string) map[string]any {
		t.Helper()
		o, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("%s = %#v, want an object", k, m[k])
		}
		return o
	}
	for i, ev := range fx.events {
		out := sinkRender(t, consumers.FormatOCSF, ev, consumers.RenderOptions{})
		m := sinkDecode(t, out)
		// Required by the base event and the class.
		if num(m, "class_uid") != 3004 || num(m, "category_uid") != 3 {
			t.Fatalf("%s: not Entity Management in IAM:\n%s", ev.Event, out)
		}
		act := num(m, "activity_id")
		if act != want[i].activity || num(m, "type_uid") != 3004*100+act {
			t.Errorf("%s: activity_id %d type_uid %d, want %d and %d", ev.Event, act, num(m, "type_uid"), want[i].activity, 3004*100+want[i].activity)
		}
		if sev := num(m, "severity_id"); sev != want[i].severity {
			t.Errorf("%s: severity_id %d, want %d", ev.Event, sev, want[i].severity)
		}
		if tm := num(m, "time"); tm != ev.CreatedAt.UnixMilli() {
			t.Errorf("%s: time %d, want %d (ms)", ev.Event, tm, ev.CreatedAt.UnixMilli())
		}
		md := obj(m, "metadata")
		if v := str(md, "version"); !semver.MatchString(v) {
			t.Errorf("metadata.version %q", v)
		}
		prod := obj(md, "product")
		if str(prod, "vendor_name") != "keyledger" || str(prod, "name") != "keyledger" {
			t.Errorf("metadata.product %v", prod)
		}
		if str(md, "uid") != ev.ID || str(md, "event_code") != ev.Event || num(md, "sequence") != int64(ev.Context.LedgerSequence) {
			t.Errorf("%s: metadata %v", ev.Event, md)
		}
		ent := obj(m, "entity")
		if ent["uid"] == nil && ent["name"] == nil {
			t.Errorf("%s: entity has neither uid nor name: %v", ev.Event, ent)
		}
		if str(ent, "type") != want[i].entityType {
			t.Errorf("%s: entity.type %v, want %s", ev.Event, ent["type"], want[i].entityType)
		}
		// Recommended, filled.
		for _, k := range []string{"activity_name", "category_name", "class_name", "type_name", "severity", "message", "status"} {
			str(m, k)
		}
		if num(m, "status_id") != 1 {
			t.Errorf("status_id %v", m["status_id"])
		}
		user := obj(obj(m, "actor"), "user")
		if str(user, "uid") != ev.Context.Actor.ID {
			t.Errorf("%s: actor.user %v", ev.Event, user)
		}
		um := obj(m, "unmapped")
		if num(um, "ledger_sequence") != int64(ev.Context.LedgerSequence) {
			t.Errorf("unmapped %v", um)
		}
		var d map[string]any
		_ = json.Unmarshal(ev.Data, &d)
		switch ev.Event {
		case schemas.EventAPIKeyCreated, schemas.EventAPIKeyRevoked:
			if ent["uid"] != d["id"] {
				t.Errorf("%s: entity.uid %v, want the key id %v", ev.Event, ent["uid"], d["id"])
			}
			if ev.Event == schemas.EventAPIKeyRevoked && m["comment"] != d["revoke_reason"] {
				t.Errorf("comment %v, want the reason %v", m["comment"], d["revoke_reason"])
			}
		case schemas.EventMemberRemoved:
			if ent["uid"] != "user_ada" {
				t.Errorf("entity.uid %v", ent["uid"])
			}
		case schemas.EventAPIKeyPermissionsSaved:
			res := obj(m, "entity_result")
			if !reflect.DeepEqual(obj(res, "data")["permissions"], d["permissions"]) || !reflect.DeepEqual(obj(ent, "data")["permissions"], d["previous_permissions"]) {
				t.Errorf("catalogue: entity %v entity_result %v", ent, res)
			}
		case "api_key.rotated":
			if ent["uid"] != d["id"] || m["activity_name"] != "api_key.rotated" {
				t.Errorf("future event: %s", out)
			}
		case "widget.enabled":
			if ent["uid"] != "widget_1" || m["activity_name"] != "Enable" {
				t.Errorf("future event with a known verb: %s", out)
			}
		case "organization.archived":
			if ent["name"] != "organization.archived" {
				t.Errorf("future event without a string id: %s", out)
			}
		}
	}
}

// No rendering, in any format, carries a key value or hash.
func TestRenderNeverCarriesSecrets(t *testing.T) {
	fx := sinkEvents(t)
	if len(fx.secrets) == 0 {
		t.Fatal("no secrets in the sinkFixture")
	}
	for _, f := range consumers.Formats {
		for _, ev := range fx.events {
			sinkNoSecrets(t, string(f)+" "+ev.Event, sinkRender(t, f, ev, consumers.RenderOptions{}), fx.secrets)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range consumers.Formats {
		if got, err := consumers.ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %q, %v", f, got, err)
		}
	}
	for _, s := range []string{"", "json", "OCSF", "cloudevents "} {
		if _, err := consumers.ParseFormat(s); err == nil {
			t.Errorf("ParseFormat(%q) accepted", s)
		}
	}
}

func TestRenderRejectsBrokenEvents(t *testing.T) {
	ok := sinkEvents(t).events[0]
	for name, ev := range map[string]schemas.PublicEvent{
		"no id":         func() schemas.PublicEvent { e := ok; e.ID = ""; return e }(),
		"no type":       func() schemas.PublicEvent { e := ok; e.Event = ""; return e }(),
		"no data":       func() schemas.PublicEvent { e := ok; e.Data = nil; return e }(),
		"array data":    func() schemas.PublicEvent { e := ok; e.Data = json.RawMessage(`[1]`); return e }(),
		"data not JSON": func() schemas.PublicEvent { e := ok; e.Data = json.RawMessage(`{"a":`); return e }(),
	} {
		for _, f := range consumers.Formats {
			if out, err := consumers.Render(f, ev); err == nil {
				t.Errorf("%s as %s: rendered %s", name, f, out)
			}
		}
	}
	if _, err := consumers.Render("xml", ok); err == nil {
		t.Error("unknown format rendered")
	}
}

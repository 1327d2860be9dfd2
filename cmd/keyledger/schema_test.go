package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

// Every event the running system appends validates against the envelope
// schema and the schema of its type, and no public-facing secret (the
// value) is ever in the ledger.
func TestEveryAppendedEventMatchesItsSchema(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read", "tasks:write")
	var values []string
	for _, user := range []string{"", "user_ada", "user_ada"} {
		k := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "k " + user, UserID: user, Permissions: []string{"projects:read"}})
		values = append(values, *k.Value)
		if user == "" {
			call(t, "DELETE", s.url+"/api_keys/"+k.ID, `{"reason":"leaked"}`, nil)
		}
	}
	call(t, "DELETE", s.url+"/organizations/org_1/members/user_ada", nil, nil)
	call(t, "DELETE", s.url+"/organizations/org_1/members/user_nobody", nil, nil)
	// A webhook endpoint's whole life; its secrets never reach the ledger in clear.
	var we schemas.WebhookEndpoint
	if status, raw := call(t, "POST", s.url+"/webhook_endpoints", `{"url":"http://127.0.0.1:9/hook","events":["api_key.created"]}`, &we); status != 201 || we.Secret == nil {
		t.Fatalf("create endpoint: %d %s", status, raw)
	}
	values = append(values, *we.Secret)
	for _, step := range []struct{ method, path, body string }{
		{"PATCH", "", `{"events":["api_key.created","api_key.revoked"]}`},
		{"POST", "/rotate_secret", ``},
		{"PATCH", "", `{"status":"disabled"}`},
		{"PATCH", "", `{"status":"enabled"}`},
		{"DELETE", "", ``},
	} {
		var out schemas.WebhookEndpoint
		status, raw := call(t, step.method, s.url+"/webhook_endpoints/"+we.ID+step.path, step.body, &out)
		if status != 200 {
			t.Fatalf("%s %s: %d %s", step.method, step.path, status, raw)
		}
		if out.Secret != nil {
			values = append(values, *out.Secret)
		}
	}

	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, name := range append([]string{"envelope"}, schemasFor(schemas.EventTypes)...) {
		raw, err := fs.ReadFile(schemas.Files, "events/"+name+".json")
		if err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource(name+".json", doc); err != nil {
			t.Fatal(err)
		}
	}
	compiled := map[string]*jsonschema.Schema{}
	for _, name := range append([]string{"envelope"}, schemasFor(schemas.EventTypes)...) {
		compiled[name] = c.MustCompile(name + ".json")
	}

	js, err := jetstream.New(s.main.store.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := js.Stream(ctx, "KEYLEDGER")
	if err != nil {
		t.Fatal(err)
	}
	last, _ := s.main.ledgerLastSeq()
	seen := map[string]int{}
	for seq := uint64(1); seq <= last; seq++ {
		msg, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if bytes.Contains(msg.Data, []byte(v)) {
				t.Fatalf("seq %d holds a key value", seq)
			}
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg.Data))
		if err != nil {
			t.Fatal(err)
		}
		if err := compiled["envelope"].Validate(doc); err != nil {
			t.Fatalf("seq %d envelope: %v\n%s", seq, err, msg.Data)
		}
		var env schemas.Envelope
		if err := json.Unmarshal(msg.Data, &env); err != nil {
			t.Fatal(err)
		}
		data, err := jsonschema.UnmarshalJSON(bytes.NewReader(env.Data))
		if err != nil {
			t.Fatal(err)
		}
		if err := compiled[fmt.Sprintf("%s.v%d", env.Event, env.Version)].Validate(data); err != nil {
			t.Fatalf("seq %d %s: %v\n%s", seq, env.Event, err, msg.Data)
		}
		if msg.Subject != schemas.Subject(deref(env.OrganizationID), aggregateOf(t, env), env.Event) {
			t.Fatalf("seq %d: subject %s does not name its event", seq, msg.Subject)
		}
		seen[env.Event]++
	}
	for _, typ := range schemas.EventTypes {
		if seen[typ] == 0 {
			t.Errorf("the flow appended no %s event", typ)
		}
	}
}

func schemasFor(types []string) []string {
	var out []string
	for _, t := range types {
		out = append(out, fmt.Sprintf("%s.v%d", t, schemas.EventVersion))
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func aggregateOf(t *testing.T, env schemas.Envelope) string {
	t.Helper()
	var d struct {
		ID     string `json:"id"`
		UserID string `json:"user_id"`
	}
	_ = json.Unmarshal(env.Data, &d)
	switch env.Event {
	case schemas.EventMemberRemoved:
		return d.UserID
	case schemas.EventAPIKeyPermissionsSaved:
		return "api_key_permissions"
	}
	return d.ID
}

// The applied reports a running node publishes match their schema, on the
// subject of the node they name, up to the one that says it leaves.
func TestAppliedReportsMatchTheirSchema(t *testing.T) {
	dir, addr := fleetNATS(t)
	nc := connectNATS(t, addr)
	msgs := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(schemas.AppliedSubject("*"), msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	n := fleetNode(t, dir, addr, "node-s", nil)
	sch := ledgertest.Schema(t, "messages/applied_report.json")
	n.stop()
	for seen := 0; ; seen++ {
		select {
		case m := <-msgs:
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Data))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(v); err != nil {
				t.Fatalf("report %s: %v", m.Data, err)
			}
			var r schemas.AppliedReport
			if err := json.Unmarshal(m.Data, &r); err != nil || r.Node != "node-s" || m.Subject != schemas.AppliedSubject("node-s") {
				t.Fatalf("report %s on %s (%v)", m.Data, m.Subject, err)
			}
			if r.Leaving {
				if seen == 0 {
					t.Fatal("only the leaving report")
				}
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no leaving report after %d reports", seen)
		}
	}
}

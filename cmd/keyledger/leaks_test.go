package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

// Everything that leaves keyledger (webhook bodies, audit sink lines in
// each format, feed pages, public NATS subjects) is scanned for the values
// and hashes of the keys made in the run, and for webhook secrets: none.
func TestNothingThatLeavesCarriesASecret(t *testing.T) {
	dir := t.TempDir()
	natsAddr := ledgertest.FreeAddr(t)
	const subscriberPassword = "subscriber_password_0123456789"
	var sinks []string
	for _, f := range []string{"native", "cloudevents", "ocsf"} {
		sinks = append(sinks, "file:"+filepath.Join(dir, "audit-"+f+".jsonl")+"?format="+f)
	}
	s := startServerWith(t, filepath.Join(dir, "data"), func(c *Config) {
		c.NATSListen = natsAddr
		c.ValidatorPassword = "validator_password_0123456789"
		c.SubscriberPassword = subscriberPassword
		c.AuditSinks = sinks
	})

	// A security team's subscriber on the public subjects.
	sub, err := nats.Connect("nats://"+natsAddr, nats.UserInfo(eventstore.SubscriberUser, subscriberPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var pubMu sync.Mutex
	var published [][]byte
	if _, err := sub.Subscribe(schemas.SubjectPublicRoot+".>", func(m *nats.Msg) {
		pubMu.Lock()
		published = append(published, m.Data)
		pubMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}

	rcv := newReceiver(t)
	var we schemas.WebhookEndpoint
	call(t, "POST", s.url+"/webhook_endpoints", `{"url":"`+rcv.srv.URL+`/hook?token=abc","events":["api_key.created","api_key.revoked","organization_member.removed","api_key_permissions.updated"]}`, &we)
	rcv.mu.Lock()
	rcv.secret = *we.Secret
	rcv.mu.Unlock()
	setCatalogue(t, s.url, "projects:read")
	var secrets []string
	secrets = append(secrets, *we.Secret, strings.TrimPrefix(*we.Secret, "whsec_"), "token=abc")
	var last schemas.APIKey
	for _, user := range []string{"", "user_ada", "user_ada"} {
		k := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "k", UserID: user, Permissions: []string{"projects:read"}})
		raw := domain.HashKey(*k.Value)
		h := hex.EncodeToString(raw[:])
		secrets = append(secrets, *k.Value, (*k.Value)[len("sk_live_"):], h, strings.ToUpper(h),
			base64.StdEncoding.EncodeToString(raw[:]), base64.RawURLEncoding.EncodeToString(raw[:]))
		last = k
	}
	call(t, "DELETE", s.url+"/api_keys/"+last.ID, `{"reason":"leaked"}`, nil)
	call(t, "DELETE", s.url+"/organizations/org_1/members/user_ada", nil, nil)
	var rot schemas.WebhookEndpoint
	call(t, "POST", s.url+"/webhook_endpoints/"+we.ID+"/rotate_secret", nil, &rot)
	secrets = append(secrets, *rot.Secret, strings.TrimPrefix(*rot.Secret, "whsec_"))

	// Wait until every output has seen the last event.
	all := listEvents(t, s.url, "limit=100")
	lastID := all.Data[len(all.Data)-1].ID
	rcv.waitFor(schemas.EventMemberRemoved, "user_ada")
	deadline := time.Now().Add(20 * time.Second)
	outputs := map[string][]byte{}
	for {
		done := true
		for _, f := range []string{"native", "cloudevents", "ocsf"} {
			b, _ := os.ReadFile(filepath.Join(dir, "audit-"+f+".jsonl"))
			outputs["sink "+f] = b
			done = done && bytes.Contains(b, []byte(lastID))
		}
		pubMu.Lock()
		outputs["public subjects"] = bytes.Join(published, []byte("\n"))
		pubMu.Unlock()
		done = done && bytes.Contains(outputs["public subjects"], []byte(lastID))
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every output saw %s: %v", lastID, keys(outputs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	feed, _ := json.Marshal(all)
	outputs["feed"] = feed
	rcv.mu.Lock()
	outputs["webhooks"] = bytes.Join(rcv.raw, []byte("\n"))
	rcv.mu.Unlock()

	for name, out := range outputs {
		if len(out) == 0 {
			t.Fatalf("%s is empty: the scan would prove nothing", name)
		}
		for _, secret := range secrets {
			if bytes.Contains(out, []byte(secret)) {
				t.Errorf("%s carries a secret (%.12s…)", name, secret)
			}
		}
		for _, field := range []string{`"hash"`, `"sealed_secret"`, `"secret"`} {
			if bytes.Contains(out, []byte(field)) {
				t.Errorf("%s carries a %s field", name, field)
			}
		}
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s (%d bytes)", k, len(v)))
	}
	return out
}

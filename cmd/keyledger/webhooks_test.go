package main

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// receiver is a webhook endpoint on loopback that verifies every delivery
// with the Standard Webhooks reference library and keeps what it got.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	got    []schemas.PublicEvent
	raw    [][]byte
	status int // what it answers
	notify chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, status: 200, notify: make(chan struct{}, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.secret != "" {
			wh, err := standardwebhooks.NewWebhook(r.secret)
			if err != nil {
				t.Errorf("receiver secret: %v", err)
			} else if err := wh.Verify(body, req.Header); err != nil {
				t.Errorf("delivery does not verify: %v", err)
				w.WriteHeader(400)
				return
			}
		}
		var e schemas.PublicEvent
		if err := json.Unmarshal(body, &e); err != nil || req.Header.Get("webhook-id") != e.ID {
			t.Errorf("delivery %s: %v, webhook-id %q", body, err, req.Header.Get("webhook-id"))
		}
		if r.status == 200 {
			r.got = append(r.got, e)
			r.raw = append(r.raw, body)
		}
		w.WriteHeader(r.status)
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// subscribe registers a webhook endpoint on the server at base that sends
// the given event types to the receiver, which then checks signatures with
// its secret.
func (r *receiver) subscribe(t *testing.T, base string, events ...string) {
	t.Helper()
	body, _ := json.Marshal(schemas.CreateWebhookEndpointRequest{URL: r.srv.URL + "/hook", Events: events})
	var we schemas.WebhookEndpoint
	if st, raw := call(t, "POST", base+"/webhook_endpoints", body, &we); st != 201 || we.Secret == nil {
		t.Fatalf("create webhook endpoint: %d %s", st, raw)
	}
	r.mu.Lock()
	r.secret = *we.Secret
	r.mu.Unlock()
}

// waitFor waits until the receiver holds an event of type typ about id.
func (r *receiver) waitFor(typ, id string) schemas.PublicEvent {
	r.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		for _, e := range r.got {
			if e.Event == typ && strings.Contains(string(e.Data), id) {
				r.mu.Unlock()
				return e
			}
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			r.t.Fatalf("no %s about %s was delivered", typ, id)
		}
	}
}

func TestWebhooksEndToEnd(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	rcv := newReceiver(t)

	var we schemas.WebhookEndpoint
	body := `{"url":"` + rcv.srv.URL + `/hook","events":["api_key.created","api_key.revoked"]}`
	if status, raw := call(t, "POST", s.url+"/webhook_endpoints", body, &we); status != 201 || we.Secret == nil || !strings.HasPrefix(*we.Secret, "whsec_") {
		t.Fatalf("create endpoint: %d %s", status, raw)
	}
	rcv.mu.Lock()
	rcv.secret = *we.Secret
	rcv.mu.Unlock()
	var got schemas.WebhookEndpoint
	if status, raw := call(t, "GET", s.url+"/webhook_endpoints/"+we.ID, nil, &got); status != 200 || got.Secret != nil || strings.Contains(string(raw), "whsec_") {
		t.Fatalf("get endpoint shows a secret: %d %s", status, raw)
	}

	k := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "hooked", Permissions: []string{"projects:read"}})
	rcv.waitFor(schemas.EventAPIKeyCreated, k.ID)
	if status, raw := call(t, "DELETE", s.url+"/api_keys/"+k.ID, nil, nil); status != 200 {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	rcv.waitFor(schemas.EventAPIKeyRevoked, k.ID)

	// Rotation: deliveries verify with the new secret, and with the old.
	var rot schemas.WebhookEndpoint
	if status, raw := call(t, "POST", s.url+"/webhook_endpoints/"+we.ID+"/rotate_secret", nil, &rot); status != 200 || rot.Secret == nil || *rot.Secret == *we.Secret {
		t.Fatalf("rotate: %d %s", status, raw)
	}
	rcv.mu.Lock()
	rcv.secret = *rot.Secret
	rcv.mu.Unlock()
	k2 := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "after rotation", Permissions: []string{"projects:read"}})
	e := rcv.waitFor(schemas.EventAPIKeyCreated, k2.ID)

	// The attempt log lists the deliveries.
	// (The receiver sees a delivery before the engine logs its attempt.)
	var attempts schemas.WebhookAttemptList
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		status, raw := call(t, "GET", s.url+"/webhook_endpoints/"+we.ID+"/attempts", nil, &attempts)
		if status != 200 {
			t.Fatalf("attempts: %d %s", status, raw)
		}
		if len(attempts.Data) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempts: %s, want 3", raw)
		}
	}
	for _, a := range attempts.Data {
		if !a.Delivered || a.Status == nil || *a.Status != 200 {
			t.Fatalf("attempt %+v: want delivered with 200", a)
		}
	}

	// Nothing delivered carries a key value or hash, or a secret.
	rcv.mu.Lock()
	for _, raw := range rcv.raw {
		for _, secret := range []string{*k.Value, *k2.Value, *we.Secret, *rot.Secret, "sealed_secret", `"hash"`} {
			if strings.Contains(string(raw), secret) {
				t.Fatalf("a delivery carries %q: %s", secret, raw)
			}
		}
		if strings.Contains(string(raw), hexHash(*k.Value)) {
			t.Fatalf("a delivery carries a key hash: %s", raw)
		}
	}
	rcv.mu.Unlock()
	if e.Context.LedgerSequence == 0 {
		t.Fatalf("event without its ledger sequence: %+v", e)
	}

	// Disabled: nothing more arrives; deleted: gone.
	var dis schemas.WebhookEndpoint
	if status, raw := call(t, "PATCH", s.url+"/webhook_endpoints/"+we.ID, `{"status":"disabled"}`, &dis); status != 200 || dis.Status != "disabled" || dis.DisabledReason == nil || *dis.DisabledReason != "requested" {
		t.Fatalf("disable: %d %s", status, raw)
	}
	if status, raw := call(t, "DELETE", s.url+"/webhook_endpoints/"+we.ID, nil, nil); status != 200 {
		t.Fatalf("delete: %d %s", status, raw)
	}
	if status, _ := call(t, "GET", s.url+"/webhook_endpoints/"+we.ID, nil, nil); status != 404 {
		t.Fatalf("get a deleted endpoint: %d", status)
	}
}

// An endpoint that answers 410 is disabled, and the ledger says so with a
// webhook_endpoint.disabled event that other endpoints can receive.
func TestWebhookGoneDisablesTheEndpoint(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	gone, watcher := newReceiver(t), newReceiver(t)
	gone.status = http.StatusGone
	var g, w schemas.WebhookEndpoint
	call(t, "POST", s.url+"/webhook_endpoints", `{"url":"`+gone.srv.URL+`","events":["api_key.created"]}`, &g)
	call(t, "POST", s.url+"/webhook_endpoints", `{"url":"`+watcher.srv.URL+`","events":["webhook_endpoint.disabled"]}`, &w)
	createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "x", Permissions: []string{"projects:read"}})
	e := watcher.waitFor(schemas.EventWebhookEndpointDisabled, g.ID)
	if !strings.Contains(string(e.Data), `"reason":"gone"`) {
		t.Fatalf("disabled event %s: want reason gone", e.Data)
	}
	var after schemas.WebhookEndpoint
	if call(t, "GET", s.url+"/webhook_endpoints/"+g.ID, nil, &after); after.Status != "disabled" || after.DisabledReason == nil || *after.DisabledReason != "gone" {
		t.Fatalf("endpoint after 410: %+v", after)
	}
}

func TestWebhookEndpointsRefuseUnsafeURLs(t *testing.T) {
	s := startServer(t, t.TempDir())
	for _, u := range []string{"http://169.254.169.254/latest/meta-data", "http://10.0.0.1/h", "http://[::1]/h", "ftp://example.com/h", "http://user:pw@127.0.0.1/h"} {
		status, raw := call(t, "POST", s.url+"/webhook_endpoints", `{"url":"`+u+`","events":["api_key.created"]}`, nil)
		if status != 400 {
			t.Errorf("%s: %d %s, want 400", u, status, raw)
		}
	}
	if status, raw := call(t, "POST", s.url+"/webhook_endpoints", `{"url":"http://127.0.0.1:9/h","events":["api_key.exploded"]}`, nil); status != 400 || errCode(t, raw) != "invalid_events" {
		t.Errorf("unknown event type: %d %s", status, raw)
	}
}

func hexHash(value string) string {
	h := domain.HashKey(value)
	return hex.EncodeToString(h[:])
}

// A delivery taken again while still in flight would be sent twice for
// nothing: the ack wait must exceed two attempts.
func TestWebhookAckWaitExceedsTwoAttempts(t *testing.T) {
	c := Config{Data: t.TempDir(), HTTPAddr: "127.0.0.1:0", KeyPrefix: domain.PrefixLive, WebhookTimeout: 10 * time.Second, WebhookAckWait: 20 * time.Second}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--webhook-ack-wait") {
		t.Fatalf("an ack wait of two attempts: %v", err)
	}
	c.WebhookAckWait = 21 * time.Second
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.WebhookTimeout, c.WebhookAckWait = 0, time.Minute // the 15s default timeout
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.WebhookAckWait = 30 * time.Second
	if err := c.Validate(); err == nil {
		t.Fatal("an ack wait of 30s with the 15s default timeout was accepted")
	}
	m := NewMain(io.Discard, io.Discard)
	if err := m.ParseFlags([]string{"--data", t.TempDir(), "--webhook-ack-wait", "soon"}); err == nil {
		t.Error("--webhook-ack-wait soon was accepted")
	}
}

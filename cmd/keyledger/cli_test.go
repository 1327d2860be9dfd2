package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/schemas"
)

func runCmd(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out, io.Discard)
	return out.Bytes(), err
}

// The CLI drives a running server: set the catalogue, create, list,
// validate, revoke, validate again.
func TestCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	t.Setenv("KEYLEDGER_URL", s.url)
	t.Setenv("KEYLEDGER_ADMIN_KEY", testAdminKey)

	if _, err := runCmd(t, "permissions", "set", "projects:read,tasks:read"); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, "keys", "create", "--org", "org_cli", "--name", "from the cli", "--permissions", "projects:read", "--user", "user_1")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	var k schemas.APIKey
	if err := json.Unmarshal(out, &k); err != nil || k.Value == nil || k.UserID == nil || *k.UserID != "user_1" {
		t.Fatalf("create printed %s (%v)", out, err)
	}
	if out, err := runCmd(t, "validate", *k.Value); err != nil {
		t.Fatalf("validate a live key: %v\n%s", err, out)
	}
	out, err = runCmd(t, "keys", "list", "--org", "org_cli", "--user", "user_1")
	var list schemas.APIKeyList
	if err != nil || json.Unmarshal(out, &list) != nil || len(list.Data) != 1 || list.Data[0].ID != k.ID {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := runCmd(t, "keys", "revoke", k.ID, "--reason", "leaked"); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	out, err = runCmd(t, "validate", *k.Value)
	var ee exitError
	if !errors.As(err, &ee) || ee != 1 {
		t.Fatalf("validate a revoked key: err %v, want exit status 1\n%s", err, out)
	}
	var v schemas.ValidateResponse
	if json.Unmarshal(out, &v) != nil || v.Reason != "revoked" {
		t.Fatalf("validate printed %s", out)
	}
	if _, err := runCmd(t, "keys", "create", "--org", "org_cli", "--name", "x", "--permissions", "admin:all"); !errors.As(err, &ee) {
		t.Fatalf("a refused create must fail: %v", err)
	}
	if _, err := runCmd(t, "keys", "create", "--name", "no org"); !errors.Is(err, errUsage) {
		t.Fatalf("missing --org: %v, want a usage error", err)
	}
}

// lineWatcher is a writer that cancels when a line containing want
// arrives.
type lineWatcher struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	want   string
	cancel context.CancelFunc
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.cancel()
	}
	return n, err
}

func TestCLIEvents(t *testing.T) {
	s := startServer(t, t.TempDir())
	t.Setenv("KEYLEDGER_URL", s.url)
	t.Setenv("KEYLEDGER_ADMIN_KEY", testAdminKey)
	setCatalogue(t, s.url, "projects:read")
	k := createKey(t, s.url, "org_cli", schemas.CreateAPIKeyRequest{Name: "tail me", Permissions: []string{"projects:read"}})

	out, err := runCmd(t, "events", "list", "--type", "api_key.created", "--org", "org_cli")
	var list schemas.EventList
	if err != nil || json.Unmarshal(out, &list) != nil || len(list.Data) != 1 || !strings.Contains(string(list.Data[0].Data), k.ID) {
		t.Fatalf("events list: %v\n%s", err, out)
	}

	// tail follows the feed live: it prints the revocation made after it
	// started, and only revocations.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := &lineWatcher{want: k.ID, cancel: cancel}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"events", "tail", "--type", "api_key.revoked", "--poll", "10ms"}, w, io.Discard)
	}()
	time.Sleep(50 * time.Millisecond)
	if status, raw := call(t, "DELETE", s.url+"/api_keys/"+k.ID, nil, nil); status != 200 {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	if err := <-done; err != nil {
		t.Fatalf("events tail: %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(w.buf.String()), "\n")
	var e schemas.PublicEvent
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &e) != nil || e.Event != schemas.EventAPIKeyRevoked {
		t.Fatalf("tail printed %q, want one api_key.revoked line", w.buf.String())
	}
}

func TestCLIWebhooks(t *testing.T) {
	s := startServer(t, t.TempDir())
	t.Setenv("KEYLEDGER_URL", s.url)
	t.Setenv("KEYLEDGER_ADMIN_KEY", testAdminKey)
	rcv := newReceiver(t)
	out, err := runCmd(t, "webhooks", "create", "--url", rcv.srv.URL, "--events", "api_key.created")
	var we schemas.WebhookEndpoint
	if err != nil || json.Unmarshal(out, &we) != nil || we.Secret == nil {
		t.Fatalf("webhooks create: %v\n%s", err, out)
	}
	steps := [][]string{
		{"webhooks", "update", we.ID, "--events", "api_key.created,api_key.revoked"},
		{"webhooks", "disable", we.ID},
		{"webhooks", "enable", we.ID},
		{"webhooks", "rotate-secret", we.ID},
		{"webhooks", "attempts", we.ID, "--limit", "5"},
		{"webhooks", "recover", we.ID, "--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)},
		{"webhooks", "get", we.ID},
		{"webhooks", "list"},
	}
	for _, args := range steps {
		if out, err := runCmd(t, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	var got schemas.WebhookEndpoint
	out, _ = runCmd(t, "webhooks", "get", we.ID)
	if json.Unmarshal(out, &got) != nil || got.Status != "enabled" || len(got.Events) != 2 || got.Secret != nil {
		t.Fatalf("after the steps: %s", out)
	}
	if out, err := runCmd(t, "webhooks", "delete", we.ID); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if _, err := runCmd(t, "webhooks", "get", we.ID); err == nil {
		t.Fatal("get after delete succeeded")
	}
}

package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/internal/ledgertest"
)

// runGenerated runs serve without KEYLEDGER_ADMIN_KEY until ready and
// returns what it printed, then stops it.
func runGenerated(t *testing.T, dir string, check func(base string)) string {
	t.Helper()
	out := &ledgertest.SyncBuffer{}
	m := NewMain(out, out)
	m.Config = Config{Data: dir, HTTPAddr: "127.0.0.1:0", KeyPrefix: domain.PrefixLive, Stream: "KEYLEDGER", LogLevel: "warn"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	for deadline := time.Now().Add(20 * time.Second); m.Addr() == ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("server did not bind")
		}
	}
	waitReady(t, "http://"+m.Addr())
	check("http://" + m.Addr())
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestGeneratedAdminKeyIsPrintedOnceAndOnlyItsHashKept(t *testing.T) {
	dir := t.TempDir()
	var key string
	out := runGenerated(t, dir, func(string) {})
	m := regexp.MustCompile(`KEYLEDGER_ADMIN_KEY=(kl_admin_[A-Za-z0-9_-]{43})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no admin key printed:\n%s", out)
	}
	key = m[1]
	stored, err := os.ReadFile(filepath.Join(dir, "admin_key.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(stored), key) || len(strings.TrimSpace(string(stored))) != 64 {
		t.Fatalf("the data folder keeps %q, want only a hex SHA-256", stored)
	}
	fi, _ := os.Stat(filepath.Join(dir, "admin_key.sha256"))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin key hash mode %v, want 0600", fi.Mode().Perm())
	}
	out = runGenerated(t, dir, func(base string) {
		for k, want := range map[string]int{key: 200, key + "x": 401} {
			req, _ := http.NewRequest("GET", base+"/api_key_permissions", nil)
			req.Header.Set("Authorization", "Bearer "+k)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("admin key %q…: %d, want %d", k[:12], resp.StatusCode, want)
			}
		}
	})
	if strings.Contains(out, key) || strings.Contains(out, "KEYLEDGER_ADMIN_KEY=") {
		t.Fatalf("the second start printed the admin key again:\n%s", out)
	}
}

// An embedded NATS server open to the network needs the validator user's
// password: without one, anyone on the host could write to the ledger.
func TestNATSListenNeedsTheValidatorPassword(t *testing.T) {
	c := Config{Data: t.TempDir(), HTTPAddr: "127.0.0.1:0", KeyPrefix: domain.PrefixLive, NATSListen: "127.0.0.1:0"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "KEYLEDGER_NATS_VALIDATOR_PASSWORD") {
		t.Fatalf("Validate without a password: %v", err)
	}
	c.ValidatorPassword = "short"
	if err := c.Validate(); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
	c.ValidatorPassword = strings.Repeat("p", 24)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate with a password: %v", err)
	}
}

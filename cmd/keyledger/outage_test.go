package main

import (
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

func startExternalNATS(t testing.TB, dir, addr string) *server.Server {
	t.Helper()
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	ns, err := server.NewServer(&server.Options{Host: host, Port: port, JetStream: true, StoreDir: dir, SyncAlways: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return ns
}

// With NATS away, commands fail with 503, validations go on answering
// from the projection within the staleness bound and then fail closed;
// when NATS returns everything resumes without a restart.
func TestNATSOutage(t *testing.T) {
	dir := t.TempDir()
	natsDir, addr := filepath.Join(dir, "nats"), ledgertest.FreeAddr(t)
	ns := startExternalNATS(t, natsDir, addr)
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	s := startServerWith(t, filepath.Join(dir, "data"), func(c *Config) {
		c.NATSURL = "nats://" + addr
		c.StaleAfter = time.Second
	})
	setCatalogue(t, s.url, "projects:read")
	k := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "k", Permissions: []string{"projects:read"}})
	if v := validate(t, s.url, *k.Value); v.APIKey == nil {
		t.Fatalf("before the outage: %+v", v)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	start := time.Now()
	status, raw := call(t, "POST", s.url+"/organizations/org_1/api_keys", `{"name":"during","permissions":[]}`, nil)
	if status != 503 || errCode(t, raw) != "ledger_unavailable" {
		t.Fatalf("create with NATS away: %d %s", status, raw)
	}
	t.Logf("a create with NATS away failed after %v", time.Since(start))

	// Validations answer until the bound, then fail closed.
	deadline := time.Now().Add(20 * time.Second)
	answered := 0
	for {
		status, raw := call(t, "POST", s.url+"/api_keys/validations", schemas.ValidateRequest{Value: *k.Value}, nil)
		if status == 503 {
			if code := errCode(t, raw); code != "ledger_stale" {
				t.Fatalf("validation: 503 %s, want ledger_stale", code)
			}
			break
		}
		if status != 200 {
			t.Fatalf("validation during the outage: %d %s", status, raw)
		}
		answered++
		if time.Now().After(deadline) {
			t.Fatal("validations never failed closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d validations answered from the projection before failing closed", answered)
	if status, _ := call(t, "POST", s.url+"/api_keys/validations", schemas.ValidateRequest{Value: *k.Value}, nil); status != 503 {
		t.Fatalf("stays closed: %d", status)
	}

	// NATS returns: commands and validations resume, no restart.
	ns = startExternalNATS(t, natsDir, addr)
	deadline = time.Now().Add(30 * time.Second)
	for {
		status, _ := call(t, "POST", s.url+"/api_keys/validations", schemas.ValidateRequest{Value: *k.Value}, nil)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("validations did not resume: %d", status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		status, raw := call(t, "POST", s.url+"/organizations/org_1/api_keys", `{"name":"after","permissions":[]}`, nil)
		if status == 201 {
			break
		}
		if status != 503 || time.Now().After(deadline) {
			t.Fatalf("create after NATS returned: %d %s", status, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

//go:build linux

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/diskguard"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

// command sends a command and returns its status, error code (when it
// failed) and Retry-After header.
func command(t *testing.T, client *http.Client, method, url, body string) (status int, code, retryAfter string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		code = errCode(t, raw)
	}
	return resp.StatusCode, code, resp.Header.Get("Retry-After")
}

// TestDiskFull fills the disk under a running keyledger, twice:
//   - with the reserve (--min-free) on, commands are refused at once with
//     507 storage_full while the disk is full, validations go on, and
//     commands are accepted again as soon as the space is freed;
//   - with the reserve off (--min-free 0), the embedded JetStream itself
//     meets the full disk and stops storing; the command that met it and
//     every later one are refused with 507, validations go on, and once the
//     space is freed the service restarts itself in the same process
//     (HTTP away for a moment) and commands are accepted, webhooks
//     delivered and events sealed again.
//
// Each time, every acknowledged create and revoke holds, and the projection
// equals a rebuild of the ledger.
func TestDiskFull(t *testing.T) {
	mnt := ledgertest.Tmpfs(t, 96<<20)
	dir := filepath.Join(mnt, "data")
	addr := ledgertest.FreeAddr(t)
	base := "http://" + addr
	client := &http.Client{Timeout: 30 * time.Second}

	var active, revoked []string // key values
	var activeID string          // an active key, for revokes that must be refused
	create := func(name string) (id, value string) {
		t.Helper()
		k := createKey(t, base, "org_disk", schemas.CreateAPIKeyRequest{Name: name, Permissions: []string{"projects:read"}})
		return k.ID, *k.Value
	}
	load := func(round string) {
		t.Helper()
		for i := range 6 {
			id, v := create(fmt.Sprintf("%s %d", round, i))
			if i%3 == 2 {
				if st, raw := call(t, "DELETE", base+"/api_keys/"+id, nil, nil); st != 200 {
					t.Fatalf("revoke: %d %s", st, raw)
				}
				revoked = append(revoked, v)
				continue
			}
			active = append(active, v)
			activeID = id
		}
	}
	checkKeys := func(when string) {
		t.Helper()
		for _, v := range active {
			if r := validate(t, base, v); r.APIKey == nil {
				t.Fatalf("%s: an acknowledged create does not validate: %+v", when, r)
			}
		}
		for _, v := range revoked {
			if r := validate(t, base, v); r.APIKey != nil || r.Reason != schemas.ReasonRevoked {
				t.Fatalf("%s: an acknowledged revoke does not hold: %+v", when, r)
			}
		}
	}
	refused := func(when string) {
		t.Helper()
		st, code, ra := command(t, client, "POST", base+"/organizations/org_disk/api_keys", `{"name":"refused","permissions":["projects:read"]}`)
		if st != http.StatusInsufficientStorage || code != "storage_full" || ra == "" {
			t.Fatalf("%s: create answered %d %q (Retry-After %q), want 507 storage_full with Retry-After", when, st, code, ra)
		}
		st, code, _ = command(t, client, "DELETE", base+"/api_keys/"+activeID, "")
		if st != http.StatusInsufficientStorage || code != "storage_full" {
			t.Fatalf("%s: revoke answered %d %q, want 507 storage_full", when, st, code)
		}
		st, code, _ = command(t, client, "PUT", base+"/api_key_permissions", `{"permissions":["projects:read","tasks:write","billing:read"]}`)
		if st != http.StatusInsufficientStorage || code != "storage_full" {
			t.Fatalf("%s: set catalogue answered %d %q, want 507 storage_full", when, st, code)
		}
	}
	// accepted waits for commands to be accepted again: the guard looks at
	// the disk once a second, and restarting JetStream takes a moment.
	accepted := func(when string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			req, _ := http.NewRequest("POST", base+"/organizations/org_disk/api_keys", strings.NewReader(`{"name":"probe","permissions":["projects:read"]}`))
			req.Header.Set("Authorization", "Bearer "+testAdminKey)
			resp, err := client.Do(req)
			if err != nil { // the service restarting
				if time.Now().After(deadline) {
					t.Fatalf("%s: %v a minute after the space was freed", when, err)
				}
				time.Sleep(200 * time.Millisecond)
				continue
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			st, code := resp.StatusCode, ""
			if st == http.StatusCreated {
				return
			}
			if st >= 300 {
				code = errCode(t, raw)
			}
			if st != http.StatusInsufficientStorage && st != http.StatusServiceUnavailable {
				t.Fatalf("%s: create answered %d %s", when, st, code)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: commands still refused (%d %s) a minute after the space was freed", when, st, code)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// With the reserve.
	c := startChild(t, dir, addr, "KEYLEDGER_MIN_FREE=16MiB", "KEYLEDGER_BALLAST=4MiB")
	t.Cleanup(func() {
		if t.Failed() {
			if c.cmd.ProcessState == nil {
				_ = c.cmd.Process.Kill()
				_ = c.cmd.Wait()
			}
			t.Logf("the last server's output:\n%s", c.out)
		}
	})
	if fi, err := os.Stat(filepath.Join(dir, diskguard.BallastName)); err != nil || fi.Size() != 4<<20 {
		t.Fatalf("ballast: %v %v", fi, err)
	}
	setCatalogue(t, base, "projects:read", "tasks:write")
	load("before")
	filler := ledgertest.FillDisk(t, mnt)
	refused("disk filled, reserve on")
	checkKeys("disk filled, reserve on")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	accepted("space freed, reserve on")
	load("after the reserve")
	checkKeys("space freed, reserve on")
	c = checkProjection(t, c, dir, 1, func() *child {
		return startChildArgs(t, dir, addr, []string{"--seal-interval", "200ms"},
			"KEYLEDGER_MIN_FREE=0", "KEYLEDGER_BALLAST=4MiB", "KEYLEDGER_LOG_LEVEL=info", "KEYLEDGER_WEBHOOK_ALLOW=127.0.0.0/8")
	})

	// Without the reserve: JetStream meets the full disk. A webhook
	// endpoint and the sealer show that the consumers come back with
	// JetStream.
	rcv := newReceiver(t)
	rcv.subscribe(t, base, schemas.EventAPIKeyCreated)
	filler = ledgertest.FillDisk(t, mnt)
	// The files' last pages still take a few small writes: create until
	// one meets the full disk; the ones acknowledged before must hold.
	for i := 0; ; i++ {
		var k schemas.APIKey
		req := schemas.CreateAPIKeyRequest{Name: fmt.Sprintf("filling %d", i), Permissions: []string{"projects:read"}}
		st, raw := call(t, "POST", base+"/organizations/org_disk/api_keys", req, &k)
		if st == http.StatusCreated {
			active = append(active, *k.Value)
			if i == 10000 {
				t.Fatal("10000 creates on a full disk, none refused")
			}
			continue
		}
		if st != http.StatusInsufficientStorage || errCode(t, raw) != "storage_full" {
			t.Fatalf("the create that met the full disk answered %d %s, want 507 storage_full", st, raw)
		}
		t.Logf("create %d met the full disk", i)
		break
	}
	refused("disk filled, reserve off")
	checkKeys("disk filled, reserve off")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	accepted("space freed, reserve off")
	load("after the write error")
	after, _ := create("after the restart of JetStream")
	restarted := time.Now()
	for delivered := false; !delivered; time.Sleep(100 * time.Millisecond) {
		rcv.mu.Lock()
		for _, e := range rcv.got {
			delivered = delivered || (e.Event == schemas.EventAPIKeyCreated && subjectOf(e) == after)
		}
		rcv.mu.Unlock()
		if time.Since(restarted) > 2*time.Minute {
			t.Fatal("no webhook delivery two minutes after JetStream restarted")
		}
	}
	t.Logf("the webhook delivery came %v after the create", time.Since(restarted).Round(time.Millisecond))
	feed := listEvents(t, base, "limit=1&order=desc")
	waitProof(t, base, feed.Data[0].ID)
	checkKeys("space freed, reserve off")
	checkProjection(t, c, dir, 2, nil) // waits for the process: its output is complete
	if !strings.Contains(c.out.String(), "restarting the service") {
		t.Errorf("no restart of the service in the log:\n%s", c.out)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "64MiB": 64 << 20, "1GiB": 1 << 30, "512KiB": 512 << 10, "10MB": 10e6, "4096": 4096, "2 GiB": 2 << 30, "7B": 7} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "MiB", "64 mib", "99999999999999999999", "18446744073709551615GiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
	m := NewMain(io.Discard, io.Discard)
	if err := m.ParseFlags([]string{"--data", t.TempDir(), "--min-free", "lots"}); err == nil {
		t.Error("--min-free lots was accepted")
	}
}

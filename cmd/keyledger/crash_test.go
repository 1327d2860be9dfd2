package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/projections"
	"github.com/keyledger/keyledger/schemas"
)

var crashRounds = flag.Int("crash.rounds", 2, "how many times the crash test kills the server under load")

// child is `keyledger serve` running as a separate process (this test binary
// acting as the command, see TestMain).
type child struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func startChild(t *testing.T, dir, addr string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--data", dir, "--http", addr)
	// Checking that every revoke held validates many revoked keys from
	// one address: no failed-validation limit here.
	cmd.Env = append(os.Environ(), "KEYLEDGER_TEST_AS_MAIN=1", "KEYLEDGER_ADMIN_KEY="+testAdminKey, "KEYLEDGER_LOG_LEVEL=warn", "KEYLEDGER_VALIDATION_FAIL_LIMIT=0")
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: out}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	waitReady(t, "http://"+addr)
	return c
}

type acked struct {
	id, value string
	revoked   bool
}

// TestCrashLosesNoAcknowledgedCommand kills a child keyledger with SIGKILL
// while creates and revokes are in flight. After a restart every create that
// was answered 201 validates, every revoke that was answered 200 holds, and
// the projection equals a rebuild from the ledger.
func TestCrashLosesNoAcknowledgedCommand(t *testing.T) {
	dir := t.TempDir()
	addr := ledgertest.FreeAddr(t)
	base := "http://" + addr
	c := startChild(t, dir, addr)
	setCatalogue(t, base, "projects:read", "tasks:write")

	var (
		mu   sync.Mutex
		acks = map[string]*acked{}
	)
	client := &http.Client{Timeout: 5 * time.Second}
	for round := 0; round < *crashRounds; round++ {
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil && i < 5000; i++ {
					k, ok := tryCreate(client, base, fmt.Sprintf("crash %d-%d", round, i))
					if !ok {
						continue
					}
					mu.Lock()
					acks[k.id] = k
					mu.Unlock()
					if i%4 == 3 && tryRevoke(client, base, k.id) {
						mu.Lock()
						k.revoked = true
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.cmd.Wait()
		// Give in-flight requests time to fail, then stop the load.
		time.Sleep(100 * time.Millisecond)
		stop()
		wg.Wait()
		c = startChild(t, dir, addr)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(acks) < 20 {
		t.Fatalf("only %d creates were acknowledged before the kills; the test proves nothing", len(acks))
	}
	revoked := 0
	for _, k := range acks {
		v := validate(t, base, k.value)
		switch {
		case k.revoked && (v.APIKey != nil || v.Reason != "revoked"):
			t.Errorf("acknowledged revoke of %s lost: %+v", k.id, v)
		case !k.revoked && v.APIKey == nil && v.Reason != "revoked":
			// An unacknowledged revoke may have landed; a lost create may not.
			t.Errorf("acknowledged create of %s lost: %s", k.id, v.Reason)
		}
		if k.revoked {
			revoked++
		}
	}
	t.Logf("%d acknowledged creates, %d acknowledged revokes, %d kills", len(acks), revoked, *crashRounds)

	// Stop cleanly, then compare the projection with a rebuild.
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, c.out)
	}
	live := dumpProjection(t, filepath.Join(dir, "projection"))
	m := NewMain(io.Discard, io.Discard)
	m.Config = Config{Data: dir, Stream: "KEYLEDGER", LogLevel: "warn"}
	if err := m.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	rebuilt := dumpProjection(t, filepath.Join(dir, "projection"))
	if !bytes.Equal(live, rebuilt) {
		t.Fatalf("the projection differs from a rebuild of the ledger (%d vs %d bytes)", len(live), len(rebuilt))
	}
}

func tryCreate(client *http.Client, base, name string) (*acked, bool) {
	var k schemas.APIKey
	if !tryCall(client, "POST", base+"/organizations/org_crash/api_keys", schemas.CreateAPIKeyRequest{Name: name, Permissions: []string{"projects:read"}}, 201, &k) {
		return nil, false
	}
	return &acked{id: k.ID, value: *k.Value}, true
}

func tryRevoke(client *http.Client, base, id string) bool {
	return tryCall(client, "DELETE", base+"/api_keys/"+id, nil, 200, nil)
}

func dumpProjection(t *testing.T, dir string) []byte {
	t.Helper()
	p, err := projections.Open(projections.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var buf bytes.Buffer
	if err := p.Dump(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
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

func startChild(t *testing.T, dir, addr string, env ...string) *child {
	t.Helper()
	return startChildArgs(t, dir, addr, nil, env...)
}

// startChildArgs is startChild with more serve flags.
func startChildArgs(t *testing.T, dir, addr string, args []string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--data", dir, "--http", addr}, args...)...)
	// Checking that every revoke held validates many revoked keys from
	// one address: no failed-validation limit here.
	cmd.Env = append(os.Environ(), "KEYLEDGER_TEST_AS_MAIN=1", "KEYLEDGER_ADMIN_KEY="+testAdminKey, "KEYLEDGER_LOG_LEVEL=warn", "KEYLEDGER_VALIDATION_FAIL_LIMIT=0")
	cmd.Env = append(cmd.Env, env...)
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
	revoked   bool // the revoke was answered 200
	revoking  bool // a revoke was sent: it may have landed unacknowledged
}

// crashFigures counts what the crash test did, for its log line.
type crashFigures struct {
	creates, revokes, validations, cleanFailures int
	lost                                         int
}

// TestCrashLosesNoAcknowledgedCommand kills a child keyledger with SIGKILL
// while creates, revokes and validations are in flight, with a webhook
// endpoint subscribed. It checks:
//   - no validation, before or after any kill, calls a key valid once its
//     revoke was answered 200, and every validation answer is right or a
//     clean failure (connection error while the server is down, or 503);
//   - after every restart the projection equals a rebuild of the ledger;
//   - every acknowledged create and revoke holds after the last restart;
//   - every delivered webhook carries an event of the ledger, and every
//     acknowledged command's event is delivered once deliveries drain.
func TestCrashLosesNoAcknowledgedCommand(t *testing.T) {
	dir := t.TempDir()
	addr := ledgertest.FreeAddr(t)
	base := "http://" + addr
	start := func() *child {
		// A delivery in flight at a kill is taken again after the ack wait:
		// 5s here (2 minutes by default) keeps the drain below short.
		return startChild(t, dir, addr, "KEYLEDGER_WEBHOOK_ALLOW=127.0.0.0/8", "KEYLEDGER_WEBHOOK_RETRY_SCHEDULE=20ms,50ms,100ms,200ms,500ms,1s",
			"KEYLEDGER_WEBHOOK_TIMEOUT=2s", "KEYLEDGER_WEBHOOK_ACK_WAIT=5s")
	}
	c := start()
	t.Cleanup(func() {
		if t.Failed() {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
			t.Logf("the last server's output:\n%s", c.out)
		}
	})
	setCatalogue(t, base, "projects:read", "tasks:write")
	rcv := newReceiver(t)
	rcv.subscribe(t, base, schemas.EventAPIKeyCreated, schemas.EventAPIKeyRevoked)

	var (
		mu   sync.Mutex
		acks = map[string]*acked{}
		keys []*acked // acknowledged creates, for validators to pick from
		fig  crashFigures
	)
	client := &http.Client{Timeout: 5 * time.Second}
	start0 := time.Now()
	for round := 0; round < *crashRounds; round++ {
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 3; w++ {
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
					keys = append(keys, k)
					fig.creates++
					revoke := i%4 == 3
					k.revoking = revoke
					mu.Unlock()
					if revoke && tryRevoke(client, base, k.id) {
						mu.Lock()
						k.revoked = true
						fig.revokes++
						mu.Unlock()
					}
				}
			}()
		}
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil && i < 20000; i++ {
					mu.Lock()
					if len(keys) == 0 {
						mu.Unlock()
						time.Sleep(time.Millisecond)
						continue
					}
					k := keys[rand.IntN(len(keys))]
					revokedBefore, revoking := k.revoked, k.revoking
					mu.Unlock()
					ok, problem := tryValidate(client, base, k.value, revokedBefore, revoking)
					mu.Lock()
					fig.validations++
					if !ok {
						fig.cleanFailures++
					}
					mu.Unlock()
					if problem != "" {
						t.Errorf("round %d: validation of %s: %s", round, k.id, problem)
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.cmd.Wait()
		// The load keeps running against the dead server for a moment (those
		// answers must be clean failures), then through the restart.
		c = start()
		time.Sleep(100 * time.Millisecond)
		stop()
		wg.Wait()
		// The restarted server has caught up: its projection must be what a
		// rebuild of the ledger gives.
		c = checkProjection(t, c, dir, round, start)
	}
	killWork := time.Since(start0)

	mu.Lock()
	defer mu.Unlock()
	if fig.creates < 20 || fig.revokes < 3 || fig.validations-fig.cleanFailures < 20 {
		t.Fatalf("only %d creates, %d revokes, %d answered validations were made; the test proves nothing", fig.creates, fig.revokes, fig.validations-fig.cleanFailures)
	}
	for _, k := range acks {
		v := validate(t, base, k.value)
		switch {
		case k.revoked && (v.APIKey != nil || v.Reason != "revoked"):
			t.Errorf("acknowledged revoke of %s lost: %+v", k.id, v)
			fig.lost++
		case !k.revoked && v.APIKey == nil && !(k.revoking && v.Reason == "revoked"):
			// An unacknowledged revoke may have landed; a lost create may not.
			t.Errorf("acknowledged create of %s lost: %s", k.id, v.Reason)
			fig.lost++
		}
	}

	// Deliveries drain: every acknowledged command's event arrives. A
	// delivery handed to a worker when the server was killed comes again
	// only after the ack wait (5s here), so the bound is well above it.
	var missing []string
	deadline := time.Now().Add(time.Minute)
	for {
		missing = missing[:0]
		got := map[string]bool{}
		rcv.mu.Lock()
		for _, e := range rcv.got {
			got[e.Event+" "+subjectOf(e)] = true
		}
		rcv.mu.Unlock()
		for _, k := range acks {
			if !got[schemas.EventAPIKeyCreated+" "+k.id] {
				missing = append(missing, "created "+k.id)
			}
			if k.revoked && !got[schemas.EventAPIKeyRevoked+" "+k.id] {
				missing = append(missing, "revoked "+k.id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-rcv.notify:
		case <-time.After(200 * time.Millisecond):
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged commands' events were never delivered, e.g. %v", len(missing), missing[:min(5, len(missing))])
		fig.lost += len(missing)
	}
	// Read once: each page of GET /events costs the server a consumer.
	ledger := readLedger(t, base)
	rcv.mu.Lock()
	delivered, dups := len(rcv.got), 0
	seen := map[string]bool{}
	for _, e := range rcv.got {
		if seen[e.ID] {
			dups++
		}
		seen[e.ID] = true
		if _, ok := ledger.subject[e.ID]; !ok {
			t.Errorf("webhook delivered event %s (%s), which is not in the ledger", e.ID, e.Event)
			fig.lost++
		}
	}
	rcv.mu.Unlock()
	t.Logf("%d kill/restart rounds in %v: %d acknowledged creates, %d acknowledged revokes, %d validations (%d clean failures while down), %d webhooks received (%d duplicates) of %d ledger events, lost %d",
		*crashRounds, killWork.Round(time.Millisecond), fig.creates, fig.revokes, fig.validations, fig.cleanFailures, delivered, dups, len(ledger.subject), fig.lost)
	checkProjection(t, c, dir, *crashRounds, nil)
}

// tryValidate validates value and judges the answer. ok is false for a
// clean failure (no connection, or 503). problem is set for an answer that
// is wrong: a 500 or any other status, a key valid after its revoke was
// acknowledged, or an acknowledged key not found.
func tryValidate(client *http.Client, base, value string, revokedBefore, revoking bool) (ok bool, problem string) {
	raw, err := json.Marshal(schemas.ValidateRequest{Value: value})
	if err != nil {
		return false, err.Error()
	}
	req, err := http.NewRequest("POST", base+"/api_keys/validations", bytes.NewReader(raw))
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := client.Do(req)
	if err != nil {
		return false, "" // the server is down or was killed mid-answer
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, ""
	}
	switch resp.StatusCode {
	case http.StatusServiceUnavailable:
		return false, ""
	case http.StatusOK:
	default:
		return false, fmt.Sprintf("status %d: %s", resp.StatusCode, body)
	}
	var v schemas.ValidateResponse
	if err := json.Unmarshal(body, &v); err != nil {
		return true, fmt.Sprintf("answer %s: %v", body, err)
	}
	switch {
	case v.APIKey != nil && revokedBefore:
		return true, "valid after its revoke was acknowledged"
	case v.APIKey == nil && !(revoking && v.Reason == schemas.ReasonRevoked):
		return true, "acknowledged key refused: " + v.Reason
	}
	return true, ""
}

// checkProjection stops the child cleanly, compares its projection with a
// rebuild of the ledger, and starts it again with restart (nil: leave it
// stopped).
func checkProjection(t *testing.T, c *child, dir string, round int, restart func() *child) *child {
	t.Helper()
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
		t.Fatalf("after round %d the projection differs from a rebuild of the ledger (%d vs %d bytes)", round, len(live), len(rebuilt))
	}
	if restart == nil {
		return nil
	}
	return restart()
}

// subjectOf is the id of what an event is about (the key's, for api_key.*).
func subjectOf(e schemas.PublicEvent) string {
	var d struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.ID
}

// ledgerEvents is the whole public feed, read through GET /events: the
// subject (key id) of each event id.
type ledgerEvents struct {
	subject map[string]string
}

func readLedger(t *testing.T, base string) ledgerEvents {
	t.Helper()
	l := ledgerEvents{subject: map[string]string{}}
	after := ""
	for {
		page := listEvents(t, base, "limit=100&after="+after)
		for _, e := range page.Data {
			l.subject[e.ID] = subjectOf(e)
		}
		if len(page.Data) == 0 || page.ListMetadata.After == nil {
			return l
		}
		after = *page.ListMetadata.After
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

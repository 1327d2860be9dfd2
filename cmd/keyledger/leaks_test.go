package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

// Everything that leaves keyledger (webhook bodies, audit sink lines in
// each format, feed pages, public NATS subjects, /metrics, its own logs at
// debug level) is scanned for the values and hashes of the keys made in
// the run, and for webhook secrets: none. What it keeps on disk (the Pebble
// projection, raw and read back through Pebble, and the JetStream store)
// is scanned for the values: the hashes belong there.
func TestNothingThatLeavesCarriesASecret(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	natsAddr, httpAddr := ledgertest.FreeAddr(t), ledgertest.FreeAddr(t)
	const subscriberPassword = "subscriber_password_0123456789"
	var sinks []string
	for _, f := range []string{"native", "cloudevents", "ocsf"} {
		sinks = append(sinks, "file:"+filepath.Join(dir, "audit-"+f+".jsonl")+"?format="+f)
	}
	// A child process, as an operator runs it, so that its whole log
	// (stdout and stderr, debug level) is scanned.
	child := exec.Command(os.Args[0], "serve", "--data", data, "--http", httpAddr)
	child.Env = append(os.Environ(), "KEYLEDGER_TEST_AS_MAIN=1", "KEYLEDGER_ADMIN_KEY="+testAdminKey,
		"KEYLEDGER_VALIDATION_FAIL_LIMIT=0",
		"KEYLEDGER_LOG_LEVEL=debug",
		"KEYLEDGER_NATS_LISTEN="+natsAddr,
		"KEYLEDGER_NATS_VALIDATOR_PASSWORD=validator_password_0123456789",
		"KEYLEDGER_NATS_SUBSCRIBER_PASSWORD="+subscriberPassword,
		"KEYLEDGER_AUDIT_SINKS="+strings.Join(sinks, ","),
		"KEYLEDGER_WEBHOOK_ALLOW=127.0.0.0/8",
		"KEYLEDGER_WEBHOOK_RETRY_SCHEDULE=10ms,20ms",
		"KEYLEDGER_METRICS_TOKEN="+testMetricsToken)
	var childOut bytes.Buffer // read only once the child has exited
	child.Stdout, child.Stderr = &childOut, &childOut
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	})
	waitReady(t, "http://"+httpAddr)
	s := struct{ url string }{"http://" + httpAddr}

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
	// stored are what the disk must not hold either: the key values and
	// webhook secrets, not the hashes (the ledger and the validation index
	// are keyed by them) nor the endpoint's URL.
	stored := []string{*we.Secret, strings.TrimPrefix(*we.Secret, "whsec_")}
	var last schemas.APIKey
	var made []schemas.APIKey
	for _, user := range []string{"", "user_ada", "user_ada"} {
		k := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "k", UserID: user, Permissions: []string{"projects:read"}})
		raw := domain.HashKey(*k.Value)
		h := hex.EncodeToString(raw[:])
		secrets = append(secrets, *k.Value, (*k.Value)[len("sk_live_"):], h, strings.ToUpper(h),
			base64.StdEncoding.EncodeToString(raw[:]), base64.RawURLEncoding.EncodeToString(raw[:]))
		stored = append(stored, *k.Value, (*k.Value)[len("sk_live_"):])
		last = k
		made = append(made, k)
	}
	call(t, "DELETE", s.url+"/api_keys/"+last.ID, `{"reason":"leaked"}`, nil)
	// Validations of each kind, so that their paths are in the logs and
	// the metrics.
	for _, v := range []string{*made[0].Value, *last.Value, "sk_live_" + strings.Repeat("A", 43), "sk_live_nope"} {
		if st, raw := call(t, "POST", s.url+"/api_keys/validations", schemas.ValidateRequest{Value: v}, nil); st != 200 {
			t.Fatalf("validate: %d %s", st, raw)
		}
	}
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
	st, metrics := scrape(t, s.url, "Bearer "+testMetricsToken)
	if st != 200 || !bytes.Contains(metrics, []byte(`keyledger_validations_total{result="valid"} 1`)) {
		t.Fatalf("/metrics: %d %s", st, metrics)
	}
	outputs["metrics"] = metrics

	// Stop the child cleanly: its log is complete and Pebble is closed.
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = child.Wait()
	exited = true
	if err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, childOut.Bytes())
	}
	logs := childOut.Bytes()
	if !bytes.Contains(logs, []byte("level=DEBUG")) {
		t.Fatalf("the log holds no debug line: the scan would not cover debug logging\n%s", logs)
	}
	outputs["logs (debug)"] = logs

	disk := map[string][]byte{
		"projection files":               readTree(t, filepath.Join(data, "projection")),
		"projection read through Pebble": readPebble(t, filepath.Join(data, "projection")),
		"JetStream store files":          readTree(t, filepath.Join(data, "jetstream")),
	}
	for name, b := range disk {
		// A positive control: the key ids are readable there, so the
		// files are not compressed or encrypted past what a scan sees.
		if !bytes.Contains(b, []byte(last.ID)) {
			t.Errorf("%s (%d bytes) does not hold the key id %s in clear: the scan would prove nothing", name, len(b), last.ID)
		}
		for _, secret := range stored {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds a secret (%.12s…)", name, secret)
			}
		}
	}

	t.Logf("scanned: %v; on disk: %v", keys(outputs), keys(disk))
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

// readTree reads every file under dir, concatenated.
func readTree(t *testing.T, dir string) []byte {
	t.Helper()
	var out []byte
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out = append(out, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readPebble reads every key and value of a closed Pebble store back
// through Pebble: its files may be compressed, so a raw scan alone could
// pass without seeing what they hold.
func readPebble(t *testing.T, dir string) []byte {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: pebbleTestLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	n := 0
	for it.First(); it.Valid(); it.Next() {
		out = append(out, it.Key()...)
		out = append(out, '\n')
		out = append(out, it.Value()...)
		out = append(out, '\n')
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the projection holds no key")
	}
	return out
}

// pebbleTestLog sends Pebble's log to the test's.
type pebbleTestLog struct{ t *testing.T }

func (l pebbleTestLog) Infof(format string, args ...any)  { l.t.Logf("pebble: "+format, args...) }
func (l pebbleTestLog) Errorf(format string, args ...any) { l.t.Logf("pebble: "+format, args...) }
func (l pebbleTestLog) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

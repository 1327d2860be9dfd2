package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/client"
	"github.com/keyledger/keyledger/embedded"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/projections"
	"github.com/keyledger/keyledger/schemas"
)

func TestMain(m *testing.M) { os.Exit(ledgertest.Main(m)) }

const org = "org_runway"

func validatorURL(natsAddr string) string {
	return "nats://" + eventstoreValidatorUser + ":" + ledgertest.ValidatorPassword + "@" + natsAddr
}

const eventstoreValidatorUser = "validator"

func setup(t *testing.T, srv *ledgertest.Server) *client.Client {
	t.Helper()
	c, err := client.New(srv.URL(), ledgertest.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetPermissions(context.Background(), []string{"projects:read", "projects:write"}); err != nil {
		t.Fatal(err)
	}
	return c
}

func create(t *testing.T, c *client.Client, name string) (id, value string) {
	t.Helper()
	k, err := c.CreateKey(context.Background(), org, schemas.CreateAPIKeyRequest{Name: name, Permissions: []string{"projects:read"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	return k.ID, *k.Value
}

func open(t *testing.T, cfg embedded.Config) *embedded.Validator {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := embedded.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// check asserts what v answers for value: the key id when want is "",
// else the reason.
func check(t *testing.T, v *embedded.Validator, value, wantID, wantReason string) {
	t.Helper()
	res, err := v.Validate(context.Background(), value)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	switch {
	case wantID != "" && (res.APIKey == nil || res.APIKey.ID != wantID):
		t.Fatalf("Validate = %+v, want key %s", res, wantID)
	case wantID == "" && (res.APIKey != nil || res.Reason != wantReason):
		t.Fatalf("Validate = %+v, want reason %s", res, wantReason)
	}
}

// eventually polls Validate until it gives the answer (the validator
// follows the ledger asynchronously), failing after 15 s.
func eventually(t *testing.T, v *embedded.Validator, value, wantID, wantReason string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := v.Validate(context.Background(), value)
		if err == nil && ((wantID != "" && res.APIKey != nil && res.APIKey.ID == wantID) || (wantID == "" && res.APIKey == nil && res.Reason == wantReason)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Validate never gave %q/%q: last %+v, %v", wantID, wantReason, res, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFollowsTheLedgerAcrossRestartsOfBothSides(t *testing.T) {
	srv := ledgertest.Start(t)
	c := setup(t, srv)
	ctx := context.Background()
	id1, v1 := create(t, c, "one")
	dir := filepath.Join(t.TempDir(), "projection")
	cfg := embedded.Config{NATSURL: validatorURL(srv.NATSAddr), Dir: dir, StaleAfter: 2 * time.Second}

	v := open(t, cfg)
	// Open returns once current: the key created before is there at once.
	check(t, v, v1, id1, "")
	check(t, v, "sk_live_"+strings.Repeat("a", 37), "", schemas.ReasonMalformed)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := projections.Open(projections.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	kept := p.Applied()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if kept < 2 {
		t.Fatalf("the validator's folder kept sequence %d, want at least 2", kept)
	}

	// While the validator is down: a new key, a revoke, and a restart of
	// keyledger (and of its NATS server).
	id2, v2 := create(t, c, "two")
	if _, err := c.RevokeKey(ctx, id1, ""); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Start()

	v = open(t, cfg)
	defer v.Close()
	if v.Applied() <= kept {
		t.Fatalf("applied %d after reopening, want past %d", v.Applied(), kept)
	}
	check(t, v, v1, "", schemas.ReasonRevoked)
	check(t, v, v2, id2, "")

	// keyledger restarts under the running validator: it reconnects and
	// follows on.
	srv.Stop()
	srv.Start()
	id3, v3 := create(t, c, "three")
	eventually(t, v, v3, id3, "")
	if _, err := c.RevokeKey(ctx, id2, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, v, v2, "", schemas.ReasonRevoked)
}

// The validator is a node of the fleet: keyledger answers a create or a
// revoke only once the validator has applied it, so its answer right after
// is the new one, every time.
func TestCommandsAnsweredHoldOnTheValidatorAtOnce(t *testing.T) {
	srv := ledgertest.Start(t)
	c := setup(t, srv)
	ctx := context.Background()
	v := open(t, embedded.Config{NATSURL: validatorURL(srv.NATSAddr), StaleAfter: 2 * time.Second, Source: "app-1"})
	defer v.Close()
	for i := range 30 {
		id, value := create(t, c, fmt.Sprint("k", i))
		check(t, v, value, id, "")
		if _, err := c.RevokeKey(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
		check(t, v, value, "", schemas.ReasonRevoked)
	}
}

// Servers wait at most fleet.MaxBound for a validator to apply a command:
// one that answered on older proofs could contradict them.
func TestStaleAfterIsAtMostTheBarriersCap(t *testing.T) {
	if _, err := embedded.Open(context.Background(), embedded.Config{NATSURL: "nats://127.0.0.1:1", StaleAfter: 21 * time.Second}); err == nil || !strings.Contains(err.Error(), "StaleAfter") {
		t.Fatalf("StaleAfter 21s: %v", err)
	}
}

// The Source names the validator's applied reports' subject.
func TestSourceIsOneSubjectToken(t *testing.T) {
	if _, err := embedded.Open(context.Background(), embedded.Config{NATSURL: "nats://127.0.0.1:1", Source: "app.1"}); err == nil || !strings.Contains(err.Error(), "Source") {
		t.Fatalf("Source with a dot: %v", err)
	}
}

func TestFailsClosedWhenTheLedgerIsLost(t *testing.T) {
	srv := ledgertest.Start(t)
	c := setup(t, srv)
	id, value := create(t, c, "cut")
	px := ledgertest.NewProxy(t, srv.NATSAddr)
	const bound = 500 * time.Millisecond
	v := open(t, embedded.Config{NATSURL: validatorURL(px.Addr), StaleAfter: bound})
	defer v.Close()
	check(t, v, value, id, "")

	app := httptest.NewServer(client.NewMiddleware(v, nil).Protect("projects:read", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})))
	defer app.Close()
	status := func() int {
		req, _ := http.NewRequest("GET", app.URL, nil)
		req.Header.Set("Authorization", "Bearer "+value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := status(); s != http.StatusOK {
		t.Fatalf("through the middleware: %d, want 200", s)
	}

	// Cut the validator off, then revoke: it must not go on answering
	// valid for longer than its bound.
	px.Cut()
	if _, err := c.RevokeKey(context.Background(), id, ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Validate(context.Background(), value)
		if errors.Is(err, embedded.ErrStale) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still answering %v long after the ledger was lost", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Fails closed, and stays closed while cut off.
	for range 5 {
		if _, err := v.Validate(context.Background(), value); !errors.Is(err, embedded.ErrStale) {
			t.Fatalf("Validate while cut off: %v, want ErrStale", err)
		}
		if s := status(); s != http.StatusServiceUnavailable {
			t.Fatalf("middleware while cut off: %d, want 503", s)
		}
		time.Sleep(bound / 4)
	}
	// The connection returns: the validator catches up and refuses the key.
	px.Listen()
	eventually(t, v, value, "", schemas.ReasonRevoked)
	if s := status(); s != http.StatusUnauthorized {
		t.Fatalf("middleware after reconnecting: %d, want 401", s)
	}
}

func TestReportsLastUseToTheServer(t *testing.T) {
	srv := ledgertest.Start(t)
	c := setup(t, srv)
	id, value := create(t, c, "used")
	v := open(t, embedded.Config{NATSURL: validatorURL(srv.NATSAddr), UsageInterval: 50 * time.Millisecond})
	defer v.Close()
	if k, err := c.GetKey(context.Background(), id); err != nil || k.LastUsedAt != nil {
		t.Fatalf("before any use: %+v, %v", k, err)
	}
	before := time.Now().Add(-time.Second)
	check(t, v, value, id, "")
	deadline := time.Now().Add(15 * time.Second)
	for {
		k, err := c.GetKey(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if k.LastUsedAt != nil {
			if k.LastUsedAt.Before(before.Truncate(time.Second)) || k.LastUsedAt.After(time.Now().Add(2*time.Second)) {
				t.Fatalf("last_used_at %v, want about now", k.LastUsedAt)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never showed the embedded validator's use of the key")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The validator's NATS user reads the ledger; it cannot write it.
func TestValidatorUserCannotWriteTheLedger(t *testing.T) {
	srv := ledgertest.Start(t)
	setup(t, srv)
	nc, err := nats.Connect(validatorURL(srv.NATSAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, schemas.Subject(org, "api_key_01J00000000000000000000000", schemas.EventAPIKeyCreated), []byte(`{}`)); err == nil {
		t.Fatal("the validator user appended to the ledger")
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}}); err == nil {
		t.Fatal("the validator user created a stream")
	}
	if _, err := nats.Connect("nats://" + srv.NATSAddr); err == nil {
		t.Fatal("an anonymous client connected to the embedded NATS server")
	}
	bad, _ := url.Parse(validatorURL(srv.NATSAddr))
	bad.User = url.UserPassword("validator", "wrong-password-wrong-password")
	if _, err := nats.Connect(bad.String()); err == nil {
		t.Fatal("a wrong password connected")
	}
}

package eventstore_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

const testOrg = "org_1"

// testEnv is one real, in-process NATS server with JetStream, its data
// folder and an in-process connection to it.
type testEnv struct {
	ns  *eventstore.Embedded
	nc  *nats.Conn
	dir string
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startEnv starts an embedded server on dir (a fresh temporary folder when
// dir is empty) and connects to it. Both are shut down when the test ends.
func startEnv(t *testing.T, dir string) *testEnv {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ns, err := eventstore.StartEmbedded(eventstore.EmbeddedConfig{Dir: dir}, discardLog())
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	nc, err := eventstore.ConnectEmbedded(ns)
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		t.Fatalf("ConnectEmbedded: %v", err)
	}
	env := &testEnv{ns: ns, nc: nc, dir: dir}
	t.Cleanup(env.stop)
	return env
}

// stop closes the connection and shuts the server down; calling it twice is
// harmless.
func (e *testEnv) stop() {
	e.nc.Close()
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
}

func (e *testEnv) open(t *testing.T, cfg eventstore.Config) *eventstore.Store {
	t.Helper()
	st, err := eventstore.Open(ctxT(t), e.nc, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return st
}

// mustOpenStore starts a server in a temporary folder and opens the ledger on
// it with the default configuration.
func mustOpenStore(t *testing.T) (*eventstore.Store, *testEnv) {
	t.Helper()
	env := startEnv(t, "")
	return env.open(t, eventstore.Config{}), env
}

// ctxT is a context that ends with the test, or after 20 seconds.
func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rawStream opens the ledger stream through plain JetStream, bypassing the
// Store, to look at what is really stored.
func rawStream(t *testing.T, nc *nats.Conn, name string) jetstream.Stream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	s, err := js.Stream(ctxT(t), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s
}

func lastSeq(t *testing.T, st *eventstore.Store) uint64 {
	t.Helper()
	seq, err := st.LastSeq(ctxT(t))
	if err != nil {
		t.Fatalf("LastSeq: %v", err)
	}
	return seq
}

func newEvent(org, aggregate string, actor domain.Actor, data domain.EventData) domain.Event {
	return domain.Event{
		ID: eventstore.NewID("event_"), OrganizationID: org, AggregateID: aggregate,
		Actor: actor, CreatedAt: time.Now().UTC(), Data: data,
	}
}

// newKeyCreated builds an api_key.created event for a fresh key of owner.
func newKeyCreated(t *testing.T, org string, owner domain.Owner) domain.Event {
	t.Helper()
	value, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	keyID := eventstore.NewID("api_key_")
	return newEvent(org, keyID, domain.Admin(), domain.KeyCreated{
		KeyID: keyID, Name: "k", Owner: owner, Permissions: []string{"projects:read"},
		Hash: domain.HashKey(value), Obfuscated: domain.ObfuscateKey(value),
	})
}

func orgOwner(org string) domain.Owner { return domain.Owner{Type: domain.OwnerOrganization, ID: org} }

func revokeEvent(org, keyID string, reason domain.RevokeReason) domain.Event {
	return newEvent(org, keyID, domain.Admin(), domain.KeyRevoked{KeyID: keyID, Reason: reason})
}

// appendOne appends a single event with its own id as message id.
func appendOne(t *testing.T, st *eventstore.Store, e domain.Event, expected uint64) domain.AppendResult {
	t.Helper()
	res, err := st.Append(ctxT(t), []domain.Append{{Event: e, Expected: expected, MsgID: e.ID}})
	if err != nil {
		t.Fatalf("Append %T (expected %d): %v", e.Data, expected, err)
	}
	if res.Duplicate {
		t.Fatalf("Append %T: unexpectedly reported duplicate (seq %d)", e.Data, res.Seq)
	}
	return res
}

// createKey appends a new organization (or user) key and returns its id and
// the sequence of its creation.
func createKey(t *testing.T, st *eventstore.Store, org string, owner domain.Owner) (string, uint64) {
	t.Helper()
	e := newKeyCreated(t, org, owner)
	res := appendOne(t, st, e, 0)
	return e.AggregateID, res.Seq
}

func mustLoadKey(t *testing.T, st *eventstore.Store, org, keyID string) *domain.Key {
	t.Helper()
	k, err := st.LoadKey(ctxT(t), org, keyID)
	if err != nil {
		t.Fatalf("LoadKey %s: %v", keyID, err)
	}
	return k
}

func wantErrIs(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one matching %v", what, err, target)
	}
}

package consumers_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/keyledger/keyledger/consumers"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

const publicSubscriberPassword = "subscriber-password-0123456789"

// startListeningLedger is startLedger on a server that listens on a free
// loopback port, with the read-only subscriber user; it returns the
// ledger and the server's address.
func startListeningLedger(t *testing.T) (*ledger, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := startLedgerWith(t, eventstore.EmbeddedConfig{
		Dir: t.TempDir(), Listen: addr,
		ValidatorPassword: "validator-password-0123456789", SubscriberPassword: publicSubscriberPassword,
	})
	return l, addr
}

// secretKey is a key created in the ledger with a real value: what must
// never leave keyledger is its value and its hash.
type secretKey struct {
	id, value string
	hash      domain.KeyHash
	seq       uint64
}

func (k secretKey) forms() []string {
	return []string{
		k.value,
		hex.EncodeToString(k.hash[:]),
		base64.StdEncoding.EncodeToString(k.hash[:]),
		base64.RawURLEncoding.EncodeToString(k.hash[:]),
	}
}

func appendToLedger(t *testing.T, l *ledger, e domain.Event, expected uint64) uint64 {
	t.Helper()
	res, err := l.store.Append(context.Background(), []domain.Append{{Event: e, Expected: expected, MsgID: e.ID}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Seq
}

func newPublicEvent(org, aggregate string, data domain.EventData) domain.Event {
	return domain.Event{ID: eventstore.NewID("event_"), OrganizationID: org, AggregateID: aggregate,
		Actor: domain.Admin(), CreatedAt: time.Now().UTC(), Data: data}
}

// createSecret appends an api_key.created for a key with a real value.
func createSecret(t *testing.T, l *ledger, org string) (secretKey, string) {
	t.Helper()
	v, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		t.Fatal(err)
	}
	k := secretKey{id: eventstore.NewID("api_key_"), value: v, hash: domain.HashKey(v)}
	e := newPublicEvent(org, k.id, domain.KeyCreated{KeyID: k.id, Name: "ci deploy",
		Owner: domain.Owner{Type: domain.OwnerOrganization, ID: org}, Permissions: []string{},
		Hash: k.hash, Obfuscated: domain.ObfuscateKey(v)})
	k.seq = appendToLedger(t, l, e, 0)
	return k, e.ID
}

func revokeSecret(t *testing.T, l *ledger, org string, k secretKey) string {
	t.Helper()
	e := newPublicEvent(org, k.id, domain.KeyRevoked{KeyID: k.id, Reason: domain.ReasonLeaked})
	appendToLedger(t, l, e, k.seq)
	return e.ID
}

func publicEventSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	return ledgertest.Schema(t, "public/event.json")
}

// publicMsg is one message on a public subject.
type publicMsg struct {
	subject, msgID string
	header         nats.Header
	body           []byte
	event          schemas.PublicEvent
}

func nextPublic(t *testing.T, sub *nats.Subscription) publicMsg {
	t.Helper()
	m, err := sub.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("%s: %v", sub.Subject, err)
	}
	r := publicMsg{subject: m.Subject, msgID: m.Header.Get(schemas.HeaderMsgID), header: m.Header, body: m.Data}
	if err := json.Unmarshal(m.Data, &r.event); err != nil {
		t.Fatalf("%s: %v\n%s", m.Subject, err, m.Data)
	}
	return r
}

// Every ledger event goes out on keyledger.public.<org>.<type>, to a
// security team connected as the read-only subscriber user: filtered by
// organization and by type, valid against public/event.json, with the
// event id as Nats-Msg-Id, and never a key's value or hash.
func TestPublicSubjects(t *testing.T) {
	l, addr := startListeningLedger(t)
	sc, err := nats.Connect("nats://"+addr, nats.UserInfo(eventstore.SubscriberUser, publicSubscriberPassword), nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	subscribe := func(subject string) *nats.Subscription {
		sub, err := sc.SubscribeSync(subject)
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	all := subscribe("keyledger.public.>")
	orgB := subscribe("keyledger.public.org_b.>")
	created := subscribe("keyledger.public.*.api_key.created")
	system := subscribe("keyledger.public._system.>")
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}

	// Published while the consumer is not running yet: it starts from the
	// first event.
	keyA, createdA := createSecret(t, l, "org_a")
	keyB, createdB := createSecret(t, l, "org_b")
	revokedB := revokeSecret(t, l, "org_b", keyB)

	pc, err := eventstore.ConnectEmbedded(l.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	stop := run(t, l, consumers.PublicSubjects(pc))
	defer stop()

	revokedA := revokeSecret(t, l, "org_a", keyA)
	catalogue := newPublicEvent("", domain.CatalogueAggregateID, domain.CataloguePermissionsSet{Permissions: []string{"projects:read"}})
	appendToLedger(t, l, catalogue, 0)

	schema := publicEventSchema(t)
	secrets := append(keyA.forms(), keyB.forms()...)
	want := []struct{ subject, id string }{
		{"keyledger.public.org_a.api_key.created", createdA},
		{"keyledger.public.org_b.api_key.created", createdB},
		{"keyledger.public.org_b.api_key.revoked", revokedB},
		{"keyledger.public.org_a.api_key.revoked", revokedA},
		{"keyledger.public._system.api_key_permissions.updated", catalogue.ID},
	}
	for i, w := range want {
		r := nextPublic(t, all)
		headers, _ := json.Marshal(r.header)
		for _, s := range secrets {
			if bytes.Contains(r.body, []byte(s)) || bytes.Contains(headers, []byte(s)) {
				t.Fatalf("%s carries a key's value or hash (%s…)\n%s\n%s", r.subject, s[:8], headers, r.body)
			}
		}
		if r.subject != w.subject || r.event.ID != w.id {
			t.Fatalf("message %d: %s %s, want %s %s (ledger order)", i, r.subject, r.event.ID, w.subject, w.id)
		}
		if r.msgID != r.event.ID {
			t.Fatalf("%s: Nats-Msg-Id %q, want the event id %q", r.subject, r.msgID, r.event.ID)
		}
		if r.event.Context.LedgerSequence != uint64(i+1) {
			t.Fatalf("%s: ledger_sequence %d, want %d", r.subject, r.event.Context.LedgerSequence, i+1)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(doc); err != nil {
			t.Fatalf("%s does not match public/event.json: %v\n%s", r.subject, err, r.body)
		}
	}

	for _, c := range []struct {
		sub  *nats.Subscription
		want []string
	}{
		{orgB, []string{createdB, revokedB}},
		{created, []string{createdA, createdB}},
		{system, []string{catalogue.ID}},
	} {
		for _, id := range c.want {
			if r := nextPublic(t, c.sub); r.event.ID != id {
				t.Fatalf("%s: got %s (%s), want %s", c.sub.Subject, r.event.ID, r.subject, id)
			}
		}
	}
	// Nothing else came, on any of them.
	time.Sleep(200 * time.Millisecond)
	for _, sub := range []*nats.Subscription{all, orgB, created, system} {
		if m, err := sub.NextMsg(time.Millisecond); err == nil {
			t.Fatalf("%s: unexpected %s %s", sub.Subject, m.Subject, m.Data)
		}
	}

	// The ledger does hold the hash: the check above is not vacuous.
	js, err := jetstream.New(l.store.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), schemas.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.GetMsg(context.Background(), keyA.seq)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw.Data, []byte(hex.EncodeToString(keyA.hash[:]))) {
		t.Fatalf("the ledger's api_key.created does not hold the key's hex hash: %s", raw.Data)
	}
}

// A publish that cannot go out is an error, so the router delivers the
// event again instead of acknowledging it.
func TestPublicSubjectsFailsWhenItCannotPublish(t *testing.T) {
	l := startLedger(t)
	nc, err := eventstore.ConnectEmbedded(l.ns)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	k, _ := createSecret(t, l, "org_a")
	e, err := l.store.EventAt(context.Background(), k.seq)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := eventstore.Public(e)
	if err != nil {
		t.Fatal(err)
	}
	c := consumers.PublicSubjects(nc)
	if c.Name != "public_subjects" || !c.Ordered {
		t.Fatalf("consumer %q ordered=%v, want public_subjects, ordered", c.Name, c.Ordered)
	}
	if err := c.Handle(context.Background(), e, pub); err == nil {
		t.Fatal("publishing on a closed connection: no error")
	}
}

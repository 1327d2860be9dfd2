package eventstore_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

const (
	listenValidatorPassword  = "validator-password-0123456789"
	listenSubscriberPassword = "subscriber-password-0123456789"
)

// listening is an embedded server that listens on a free loopback port,
// with the ledger opened through the in-process connection.
type listening struct {
	ns    *eventstore.Embedded
	nc    *nats.Conn
	store *eventstore.Store
	addr  string
}

func listenAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func startListening(t *testing.T, subscriberPassword string) *listening {
	t.Helper()
	addr := listenAddr(t)
	ns, err := eventstore.StartEmbedded(eventstore.EmbeddedConfig{
		Dir: t.TempDir(), Listen: addr, ValidatorPassword: listenValidatorPassword, SubscriberPassword: subscriberPassword,
	}, discardLog())
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	nc, err := eventstore.ConnectEmbedded(ns)
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		t.Fatalf("ConnectEmbedded: %v", err)
	}
	t.Cleanup(func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	st, err := eventstore.Open(ctxT(t), nc, eventstore.Config{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return &listening{ns: ns, nc: nc, store: st, addr: addr}
}

// asyncErrs collects the errors the server reports to a connection
// (permissions violations).
type asyncErrs struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	a.mu.Lock()
	a.errs = append(a.errs, err)
	a.mu.Unlock()
}

// waitViolation waits for a permissions violation that names want (the
// server's wording, e.g. `Publish to "x"` or `Subscription to "x"`).
func (a *asyncErrs) waitViolation(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		for _, err := range a.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				a.mu.Unlock()
				return
			}
		}
		a.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t.Fatalf("no permissions violation for %s; errors seen: %v", want, a.errs)
}

// connectAs connects to the listening server as user over TCP.
func (l *listening) connectAs(t *testing.T, user, password string) (*nats.Conn, *asyncErrs) {
	t.Helper()
	errs := &asyncErrs{}
	opts := []nats.Option{nats.UserInfo(user, password), nats.ErrorHandler(errs.handler), nats.MaxReconnects(0)}
	if user == eventstore.ValidatorUser {
		// Validators may subscribe to their own inboxes only.
		opts = append(opts, nats.CustomInboxPrefix(eventstore.ValidatorInboxPrefix))
	}
	nc, err := nats.Connect("nats://"+l.addr, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// noMessage fails if sub receives anything within a short while.
func noMessage(t *testing.T, sub *nats.Subscription, what string) {
	t.Helper()
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("%s: received %s: %.200s", what, m.Subject, m.Data)
	}
}

// The subscriber reads what is published on the public subjects, with the
// headers, and subject filters by organization and type work for it.
func TestSubscriberReadsPublicSubjects(t *testing.T) {
	l := startListening(t, listenSubscriberPassword)
	sc, errs := l.connectAs(t, eventstore.SubscriberUser, listenSubscriberPassword)
	all, err := sc.SubscribeSync(schemas.SubjectPublicRoot + ".>")
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := sc.SubscribeSync(schemas.SubjectPublicRoot + ".*." + schemas.EventAPIKeyRevoked)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}

	for _, p := range []struct{ subject, id string }{
		{schemas.PublicSubject("org_a", schemas.EventAPIKeyCreated), "event_1"},
		{schemas.PublicSubject("org_a", schemas.EventAPIKeyRevoked), "event_2"},
		{schemas.PublicSubject("", schemas.EventAPIKeyPermissionsSaved), "event_3"},
	} {
		m := nats.NewMsg(p.subject)
		m.Header.Set(schemas.HeaderMsgID, p.id)
		m.Data = []byte(`{"id":"` + p.id + `"}`)
		if err := l.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ subject, id string }{
		{"keyledger.public.org_a.api_key.created", "event_1"},
		{"keyledger.public.org_a.api_key.revoked", "event_2"},
		{"keyledger.public._system.api_key_permissions.updated", "event_3"},
	} {
		m, err := all.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want.subject, err)
		}
		if m.Subject != want.subject || m.Header.Get(schemas.HeaderMsgID) != want.id {
			t.Fatalf("got %s (Nats-Msg-Id %q), want %s (%s)", m.Subject, m.Header.Get(schemas.HeaderMsgID), want.subject, want.id)
		}
	}
	m, err := revoked.NextMsg(5 * time.Second)
	if err != nil || m.Subject != "keyledger.public.org_a.api_key.revoked" {
		t.Fatalf("type filter: got %v, %v; want only the revocation", m, err)
	}
	noMessage(t, revoked, "type filter")
	errs.mu.Lock()
	defer errs.mu.Unlock()
	if len(errs.errs) > 0 {
		t.Fatalf("subscriber saw errors: %v", errs.errs)
	}
}

// The subscriber publishes nothing: not into the ledger (core NATS or
// JetStream), not on the public subjects, not a usage report.
func TestSubscriberCannotPublish(t *testing.T) {
	l := startListening(t, listenSubscriberPassword)
	id, _ := createKey(t, l.store, testOrg, orgOwner(testOrg))
	before := lastSeq(t, l.store)

	sc, errs := l.connectAs(t, eventstore.SubscriberUser, listenSubscriberPassword)
	// Someone listening where the subscriber would publish must hear
	// nothing.
	spy, err := l.nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	subj, body, err := eventstore.Encode(revokeEvent(testOrg, id, "leaked"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"keyledger.events.org.x.api_key.created",
		subj,
		schemas.PublicSubject(testOrg, schemas.EventAPIKeyRevoked),
		schemas.SubjectUsage,
	} {
		if err := sc.Publish(s, body); err != nil {
			t.Fatalf("publish %s: %v", s, err)
		}
		if err := sc.Flush(); err != nil {
			t.Fatal(err)
		}
		errs.waitViolation(t, `Publish to "`+s+`"`)
	}
	noMessage(t, spy, "the subscriber's publishes")

	// A JetStream publish to the ledger fails and appends nothing.
	js, err := jetstream.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ack, err := js.Publish(ctx, subj, body); err == nil {
		t.Fatalf("JetStream publish to the ledger as the subscriber: acknowledged %+v", ack)
	}
	if got := lastSeq(t, l.store); got != before {
		t.Fatalf("ledger last sequence %d after the subscriber's publishes, want %d", got, before)
	}
	if k := mustLoadKey(t, l.store, testOrg, id); k.Status != domain.StatusActive {
		t.Fatal("the subscriber revoked a key")
	}
}

// The subscriber reads nothing but the public subjects: not the ledger's
// subjects, not the JetStream API, not the other connections' inboxes
// (where JetStream delivers ledger events to their consumers).
func TestSubscriberCannotReadTheLedger(t *testing.T) {
	l := startListening(t, listenSubscriberPassword)
	sc, errs := l.connectAs(t, eventstore.SubscriberUser, listenSubscriberPassword)

	denied := []string{schemas.SubjectRoot + ".>", "keyledger.>", ">", "_INBOX.>", "$JS.>", schemas.SubjectUsage}
	var subs []*nats.Subscription
	for _, s := range denied {
		sub, err := sc.SubscribeSync(s)
		if err != nil {
			t.Fatalf("subscribe %s: %v", s, err)
		}
		subs = append(subs, sub)
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}

	// Events appended and read back through JetStream (replies and
	// deliveries on the internal connection's inboxes) reach none of them.
	id, seq := createKey(t, l.store, testOrg, orgOwner(testOrg))
	mustLoadKey(t, l.store, testOrg, id)
	if _, err := rawStream(t, l.nc, schemas.DefaultStreamName).GetMsg(ctxT(t), seq); err != nil {
		t.Fatal(err)
	}
	if err := l.nc.Publish(schemas.SubjectUsage, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	for _, sub := range subs {
		if m, err := sub.NextMsg(time.Millisecond); err == nil {
			t.Fatalf("denied subscription %s received %s: %.300s", sub.Subject, m.Subject, m.Data)
		}
	}
	for _, s := range denied {
		errs.waitViolation(t, `Subscription to "`+s+`"`)
	}

	// No JetStream API: not the stream's info, not the account's.
	if _, err := sc.Request("$JS.API.STREAM.INFO."+schemas.DefaultStreamName, nil, time.Second); err == nil {
		t.Fatal("the subscriber got the ledger stream's info")
	}
	errs.waitViolation(t, `Publish to "$JS.API.STREAM.INFO.`+schemas.DefaultStreamName+`"`)
	js, err := jetstream.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, schemas.DefaultStreamName); err == nil {
		t.Fatal("the subscriber opened the ledger stream")
	}
}

func TestSubscriberPassword(t *testing.T) {
	l := startListening(t, listenSubscriberPassword)
	for _, pw := range []string{"", "wrong-password-0123456789012", listenValidatorPassword} {
		nc, err := nats.Connect("nats://"+l.addr, nats.UserInfo(eventstore.SubscriberUser, pw), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Fatalf("connected as the subscriber with password %q", pw)
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("password %q: got %v, want an authorization violation", pw, err)
		}
	}

	// Without a subscriber password there is no subscriber user.
	l = startListening(t, "")
	if nc, err := nats.Connect("nats://"+l.addr, nats.UserInfo(eventstore.SubscriberUser, ""), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected as a subscriber that was not configured")
	}

	// A short password is refused.
	_, err := eventstore.StartEmbedded(eventstore.EmbeddedConfig{
		Dir: t.TempDir(), Listen: listenAddr(t), ValidatorPassword: listenValidatorPassword, SubscriberPassword: "short",
	}, discardLog())
	if err == nil || !strings.Contains(err.Error(), "subscriber password") {
		t.Fatalf("StartEmbedded with a short subscriber password: %v", err)
	}
}

// The validator keeps its rights next to the subscriber: it reads the
// ledger stream (stream info, direct get) and still cannot append to it.
func TestValidatorUnchangedBesideSubscriber(t *testing.T) {
	l0 := startListening(t, listenSubscriberPassword)
	// With the default inbox prefix a validator gets no answers: it may not
	// read replies meant for keyledger's own connections.
	plain, err := nats.Connect("nats://"+l0.addr, nats.UserInfo(eventstore.ValidatorUser, listenValidatorPassword), nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.SubscribeSync("_INBOX.>"); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Request("$JS.API.STREAM.INFO."+schemas.DefaultStreamName, nil, 500*time.Millisecond); err == nil {
		t.Fatal("a validator read a reply on _INBOX")
	}

	l := startListening(t, listenSubscriberPassword)
	_, seq := createKey(t, l.store, testOrg, orgOwner(testOrg))
	vc, errs := l.connectAs(t, eventstore.ValidatorUser, listenValidatorPassword)
	js, err := jetstream.New(vc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctxT(t), schemas.DefaultStreamName)
	if err != nil {
		t.Fatalf("validator: stream info: %v", err)
	}
	if _, err := st.GetMsg(ctxT(t), seq); err != nil {
		t.Fatalf("validator: direct get: %v", err)
	}
	if err := vc.Publish(schemas.Subject(testOrg, "api_key_x", schemas.EventAPIKeyCreated), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	errs.waitViolation(t, `Publish to "keyledger.events.`)
}

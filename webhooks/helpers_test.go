package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
	"github.com/keyledger/keyledger/webhooks"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// ctxT is a context that ends with the test, or after 25 seconds.
func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// natsEnv is a real in-process NATS server with JetStream on a folder.
type natsEnv struct {
	dir string
	ns  *eventstore.Embedded
	nc  *nats.Conn
	q   *eventstore.DeliveryQueue
}

func startNATS(t testing.TB, dir string) *natsEnv {
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
		t.Fatalf("ConnectEmbedded: %v", err)
	}
	env := &natsEnv{dir: dir, ns: ns, nc: nc}
	t.Cleanup(env.stop)
	env.q, err = eventstore.NewDeliveryQueue(ctxT(t), nc, eventstore.DeliveryConfig{AckWait: 45 * time.Second})
	if err != nil {
		t.Fatalf("NewDeliveryQueue: %v", err)
	}
	return env
}

func (e *natsEnv) stop() {
	e.nc.Close()
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
}

// registry is an in-memory Endpoints and Disabler: the ledger side, which
// is not this package's.
type registry struct {
	mu       sync.Mutex
	eps      map[string]webhooks.Endpoint
	disabled []string // "id:reason", in order
}

func newRegistry(eps ...webhooks.Endpoint) *registry {
	r := &registry{eps: map[string]webhooks.Endpoint{}}
	for _, ep := range eps {
		r.put(ep)
	}
	return r
}

func (r *registry) put(ep webhooks.Endpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.eps[ep.ID] = ep
}

func (r *registry) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.eps, id)
}

func (r *registry) setEnabled(id string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep := r.eps[id]
	ep.Enabled = on
	r.eps[id] = ep
}

func (r *registry) Endpoint(_ context.Context, id string) (webhooks.Endpoint, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep, ok := r.eps[id]
	if !ok {
		return webhooks.Endpoint{}, domain.ErrNotFound
	}
	return ep, nil
}

func (r *registry) Endpoints(context.Context) ([]webhooks.Endpoint, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]webhooks.Endpoint, 0, len(r.eps))
	for _, ep := range r.eps {
		out = append(out, ep)
	}
	return out, nil
}

func (r *registry) DisableEndpoint(_ context.Context, id, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep, ok := r.eps[id]
	if !ok {
		return domain.ErrNotFound
	}
	ep.Enabled = false
	r.eps[id] = ep
	r.disabled = append(r.disabled, id+":"+reason)
	return nil
}

func (r *registry) disables() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.disabled)
}

// hit is one request a receiver got.
type hit struct {
	at     time.Time
	header http.Header
	body   []byte
	id     string // webhook-id
	event  string // the body's event id
}

// receiver is a real HTTP server on 127.0.0.1 that records what it gets and
// answers as answer says (200 when answer is nil).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	hits []hit
	// answer returns the status to answer, and may set response headers;
	// nth is how many times this event came before, from 0.
	answer func(h hit, nth int, w http.Header) int
}

func newReceiver(t testing.TB, answer func(h hit, nth int, w http.Header) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev schemas.PublicEvent
	_ = json.Unmarshal(body, &ev)
	h := hit{at: time.Now(), header: r.Header.Clone(), body: body, id: r.Header.Get("webhook-id"), event: ev.ID}
	rc.mu.Lock()
	nth := 0
	for _, p := range rc.hits {
		if p.event == h.event {
			nth++
		}
	}
	rc.hits = append(rc.hits, h)
	answer := rc.answer
	rc.mu.Unlock()
	status := http.StatusOK
	if answer != nil {
		status = answer(h, nth, w.Header())
	}
	w.WriteHeader(status)
}

func (rc *receiver) got() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.hits)
}

// counts returns how many times each event came.
func (rc *receiver) counts() map[string]int {
	n := map[string]int{}
	for _, h := range rc.got() {
		n[h.event]++
	}
	return n
}

func newSecret(t testing.TB) string {
	t.Helper()
	s, err := webhooks.NewSecret()
	if err != nil {
		t.Fatalf("NewSecret: %v", err)
	}
	return s
}

func endpoint(t testing.TB, id, url string) webhooks.Endpoint {
	return webhooks.Endpoint{ID: id, URL: url, Events: []string{schemas.EventAPIKeyCreated}, Enabled: true, Secrets: []string{newSecret(t)}}
}

func event(id string) schemas.PublicEvent {
	org := "org_1"
	return schemas.PublicEvent{
		Object: schemas.ObjectEvent, ID: id, Event: schemas.EventAPIKeyCreated,
		Data:      json.RawMessage(`{"object":"api_key","id":"api_key_1","name":"k"}`),
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
		Context:   schemas.EventContext{OrganizationID: &org, Actor: schemas.Actor{Type: "admin", ID: "admin"}, LedgerSequence: 1},
	}
}

// fastSchedule retries within milliseconds.
var fastSchedule = []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}

// engineCfg is a configuration for tests: millisecond retries, loopback
// allowed, a quick reconcile.
func engineCfg(env *natsEnv, reg *registry) webhooks.Config {
	return webhooks.Config{
		Queue: env.q, Endpoints: reg, Disabler: reg, Allow: loopback,
		Schedule: fastSchedule, Timeout: 5 * time.Second, Reconcile: 50 * time.Millisecond,
		Log: discardLog(),
	}
}

// runEngine starts an engine; the returned stop ends Run and waits for it.
func runEngine(t testing.TB, cfg webhooks.Config) (*webhooks.Engine, func()) {
	t.Helper()
	e, err := webhooks.NewEngine(cfg)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return e, stop
}

func enqueue(t testing.TB, e *webhooks.Engine, ep string, evs ...schemas.PublicEvent) {
	t.Helper()
	for _, ev := range evs {
		if err := e.Enqueue(ctxT(t), ep, ev); err != nil {
			t.Fatalf("Enqueue %s to %s: %v", ev.ID, ep, err)
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 20*time.Second, what, cond)
}

// waitWithin is waitFor with its own bound.
func waitWithin(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// attempts lists every attempt of an endpoint, newest first.
func attempts(t testing.TB, e *webhooks.Engine, ep string) []webhooks.Attempt {
	t.Helper()
	as, err := e.Attempts(ctxT(t), ep, webhooks.AttemptQuery{Limit: 1000})
	if err != nil {
		t.Fatalf("Attempts: %v", err)
	}
	return as
}

// finals returns the final attempts of an endpoint by event.
func finals(t testing.TB, e *webhooks.Engine, ep string) map[string]webhooks.Attempt {
	out := map[string]webhooks.Attempt{}
	for _, a := range attempts(t, e, ep) {
		if a.Final {
			if _, ok := out[a.EventID]; !ok {
				out[a.EventID] = a
			}
		}
	}
	return out
}

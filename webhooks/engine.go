package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Config configures the delivery engine.
type Config struct {
	// Queue keeps deliveries and the attempt log (eventstore.DeliveryQueue).
	Queue Queue
	// Endpoints is the registry, read before every attempt.
	Endpoints Endpoints
	// Disabler disables an endpoint that answered 410 or kept failing; nil
	// only logs that it should be.
	Disabler Disabler
	// Allow lists the addresses webhooks may reach although they are
	// refused by default (loopback, private, ...): the SSRF allowlist.
	Allow []netip.Prefix
	// Schedule is the delays between attempts, with jitter (default
	// DefaultSchedule: 5s, 5m, 30m, 2h, 5h, 10h, 10h). A delivery is tried
	// len(Schedule)+1 times at most.
	Schedule []time.Duration
	// DisableAfter is how long an endpoint may fail continuously (no
	// attempt delivered) before it is disabled; default 5 days, negative
	// never.
	DisableAfter time.Duration
	// Timeout bounds each attempt, from connecting to the end of the
	// response; default 15s. It must stay well under the queue's ack wait.
	Timeout time.Duration
	// Reconcile is how often the engine lists the endpoints to start and
	// stop workers, and how long a delivery for a disabled or unknown
	// endpoint waits before it is looked at again; default 1s.
	Reconcile time.Duration
	// Concurrency is the number of attempts in flight per endpoint;
	// default 4.
	Concurrency int
	// MaxRetryAfter caps the Retry-After an endpoint may ask for; default
	// 10 hours.
	MaxRetryAfter time.Duration
	// UserAgent of the requests; default "keyledger-webhooks/1".
	UserAgent string
	Log       *slog.Logger
	// Now is the clock of attempt times, due times and DisableAfter;
	// default time.Now.
	Now func() time.Time
}

// Engine delivers queued events to webhook endpoints.
type Engine struct {
	cfg     Config
	client  *http.Client
	log     *slog.Logger
	running atomic.Bool

	mu      sync.Mutex
	workers map[string]*worker
	wg      sync.WaitGroup
}

// worker delivers to one endpoint.
type worker struct {
	id     string
	cancel context.CancelFunc

	mu        sync.Mutex
	since     time.Time // start of the current run of failures; zero when the last attempt succeeded
	disabling bool      // a disable for failing was asked for in this run
}

// NewEngine checks cfg, fills in its defaults and returns an engine; Run
// starts delivering.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Queue == nil || cfg.Endpoints == nil {
		return nil, errors.New("webhooks: the engine needs a queue and the endpoints")
	}
	if len(cfg.Schedule) == 0 {
		cfg.Schedule = DefaultSchedule
	}
	for _, d := range cfg.Schedule {
		if d < 0 {
			return nil, errors.New("webhooks: a negative delay in the retry schedule")
		}
	}
	cfg.Schedule = append([]time.Duration(nil), cfg.Schedule...)
	if cfg.DisableAfter == 0 {
		cfg.DisableAfter = 5 * 24 * time.Hour
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Reconcile <= 0 {
		cfg.Reconcile = time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 10 * time.Hour
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "keyledger-webhooks/1"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Allow = append([]netip.Prefix(nil), cfg.Allow...)
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second, Control: dialGuard(cfg.Allow)}
	transport := &http.Transport{
		// Never a proxy: the guard checks the address really connected to.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    cfg.Concurrency,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    cfg.Timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	client := &http.Client{
		Transport: transport,
		// Redirects are not followed: a redirect is an answer that is not
		// 2xx (and could lead anywhere).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Engine{cfg: cfg, client: client, log: cfg.Log, workers: map[string]*worker{}}, nil
}

// Run runs a worker per enabled endpoint until ctx ends, starting and
// stopping them as endpoints come, go, are enabled and disabled. When ctx
// ends it lets the attempts in flight finish (each within Timeout) and
// acknowledges them, hands the rest back to the queue, and returns nil.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("webhooks: the engine is already running")
	}
	defer e.running.Store(false)
	tick := time.NewTicker(e.cfg.Reconcile)
	defer tick.Stop()
	for {
		e.reconcile(ctx)
		select {
		case <-ctx.Done():
			e.mu.Lock()
			for id, w := range e.workers {
				w.cancel()
				delete(e.workers, id)
			}
			e.mu.Unlock()
			e.wg.Wait()
			return nil
		case <-tick.C:
		}
	}
}

// reconcile starts a worker for each enabled endpoint that has none, and
// stops the workers of endpoints deleted or disabled.
func (e *Engine) reconcile(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, max(e.cfg.Reconcile, 5*time.Second))
	eps, err := e.cfg.Endpoints.Endpoints(lctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("webhooks: could not list the endpoints", "err", err)
		}
		return
	}
	want := make(map[string]bool, len(eps))
	for _, ep := range eps {
		if ep.Enabled && ValidEndpointID(ep.ID) {
			want[ep.ID] = true
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	for id, w := range e.workers {
		if !want[id] {
			w.cancel()
			delete(e.workers, id)
			e.log.Debug("webhooks: endpoint worker stopped", "endpoint", id)
		}
	}
	for id := range want {
		if _, ok := e.workers[id]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker{id: id, cancel: cancel}
		e.workers[id] = w
		e.wg.Add(1)
		go e.work(wctx, w)
		e.log.Debug("webhooks: endpoint worker started", "endpoint", id)
	}
}

// work consumes the endpoint's queue until ctx ends, starting over after a
// pause when the queue fails.
func (e *Engine) work(ctx context.Context, w *worker) {
	defer e.wg.Done()
	e.restoreFailing(ctx, w)
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := e.cfg.Queue.Consume(ctx, w.id, e.cfg.Concurrency, func(hctx context.Context, ref uint64, msg []byte) time.Duration {
			return e.handle(hctx, w, ref, msg)
		})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			e.log.Warn("webhooks: consuming an endpoint's queue failed; starting over", "endpoint", w.id, "err", err, "pause", pause)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// restoreFailing picks up the endpoint's run of failures where the attempt
// log left it, so a restart does not postpone disabling a failing
// endpoint. A run already longer than DisableAfter (the endpoint was
// disabled for it, then enabled again) starts over.
func (e *Engine) restoreFailing(ctx context.Context, w *worker) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := e.cfg.Queue.Records(rctx, w.id, 0, time.Time{}, func(_ uint64, _ time.Time, entry []byte) bool {
		var r record
		if json.Unmarshal(entry, &r) == nil && !r.FailingSince.IsZero() &&
			(e.cfg.DisableAfter < 0 || e.cfg.Now().Sub(r.FailingSince) < e.cfg.DisableAfter) {
			w.since = r.FailingSince
		}
		return false
	})
	if err != nil && ctx.Err() == nil {
		e.log.Warn("webhooks: could not read the endpoint's last attempt", "endpoint", w.id, "err", err)
	}
}

// handle makes one attempt of a queued delivery, if it is due and its
// endpoint enabled, and says when to see the message again.
func (e *Engine) handle(ctx context.Context, w *worker, ref uint64, msg []byte) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout+30*time.Second)
	defer cancel()
	d, err := decodeDelivery(msg)
	if err != nil {
		e.log.Error("webhooks: dropped a queued delivery that cannot be read", "endpoint", w.id, "ref", ref, "err", err)
		return -1
	}
	if wait := d.NotBefore.Sub(e.cfg.Now()); wait > 0 {
		return wait
	}
	ep, err := e.cfg.Endpoints.Endpoint(ctx, d.EndpointID)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		// Deleted (its worker stops at the next reconcile), or not known
		// here yet: the delivery waits.
		return e.cfg.Reconcile
	case err != nil:
		e.log.Warn("webhooks: could not read an endpoint; the delivery waits", "endpoint", d.EndpointID, "err", err)
		return e.cfg.Reconcile
	case !ep.Enabled:
		// Disabled: its deliveries wait until it is enabled again.
		return e.cfg.Reconcile
	}

	at := e.cfg.Now()
	res := e.post(ctx, ep, d, at)
	rec := record{
		EndpointID: d.EndpointID, EventID: d.EventID, DeliveryID: d.ID, Attempt: d.Attempt, At: at,
		Status: res.status, LatencyMs: float64(res.latency.Microseconds()) / 1000, Error: res.err, Ref: ref,
	}
	next := time.Duration(-1)
	disable := ""
	w.mu.Lock()
	switch {
	case res.delivered():
		rec.Final, rec.Delivered = true, true
		w.since, w.disabling = time.Time{}, false
	case res.status == http.StatusGone:
		rec.Final = true
		if w.since.IsZero() {
			w.since = at
		}
		disable = DisabledGone
	default:
		if w.since.IsZero() {
			w.since = at
		}
		if d.Attempt > len(e.cfg.Schedule) {
			rec.Final = true
		} else {
			next = retryDelay(e.cfg.Schedule, d.Attempt, res.retryAfter, e.cfg.MaxRetryAfter)
		}
		if e.cfg.DisableAfter > 0 && at.Sub(w.since) >= e.cfg.DisableAfter && !w.disabling {
			w.disabling = true
			disable = DisabledFailing
		}
	}
	rec.FailingSince = w.since
	w.mu.Unlock()

	if entry, err := json.Marshal(rec); err == nil {
		if err := e.cfg.Queue.Record(ctx, d.EndpointID, entry); err != nil {
			e.log.Warn("webhooks: could not log an attempt", "endpoint", d.EndpointID, "event", d.EventID, "attempt", d.Attempt, "err", err)
		}
	}
	level := slog.LevelDebug
	if rec.Final && !rec.Delivered {
		level = slog.LevelWarn
	}
	e.log.Log(ctx, level, "webhooks: attempt", "endpoint", d.EndpointID, "event", d.EventID, "delivery", d.ID,
		"attempt", d.Attempt, "status", rec.Status, "latency_ms", rec.LatencyMs, "error", rec.Error,
		"final", rec.Final, "delivered", rec.Delivered)

	if disable != "" {
		e.disable(ctx, w, d.EndpointID, disable)
	}
	if next < 0 {
		return -1
	}
	nd := d
	nd.Attempt++
	nd.NotBefore = e.cfg.Now().Add(next)
	if err := e.put(ctx, nd); err != nil {
		// The same attempt comes again after the delay instead.
		e.log.Warn("webhooks: could not schedule a retry; the attempt will be repeated", "endpoint", d.EndpointID, "event", d.EventID, "err", err)
		return next
	}
	return -1
}

func (e *Engine) disable(ctx context.Context, w *worker, id, reason string) {
	if e.cfg.Disabler == nil {
		e.log.Warn("webhooks: an endpoint should be disabled, but there is no disabler", "endpoint", id, "reason", reason)
		return
	}
	if err := e.cfg.Disabler.DisableEndpoint(ctx, id, reason); err != nil {
		e.log.Warn("webhooks: could not disable an endpoint", "endpoint", id, "reason", reason, "err", err)
		if reason == DisabledFailing {
			w.mu.Lock()
			w.disabling = false // ask again after the next failure
			w.mu.Unlock()
		}
		return
	}
	e.log.Info("webhooks: endpoint disabled", "endpoint", id, "reason", reason)
}

// result is what one attempt got.
type result struct {
	status     int
	latency    time.Duration
	err        string
	retryAfter time.Duration
}

func (r result) delivered() bool { return r.err == "" && r.status >= 200 && r.status < 300 }

// post sends one attempt: the body, signed for this attempt's time, to the
// endpoint's current URL with its current secrets.
func (e *Engine) post(ctx context.Context, ep Endpoint, d delivery, at time.Time) result {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	u, err := url.Parse(ep.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return result{err: "the endpoint's URL is not a valid webhook URL"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(d.Body))
	if err != nil {
		return result{err: "the endpoint's URL is not a valid webhook URL"}
	}
	signed := Sign(ep.Secrets, d.EventID, at, d.Body)
	if signed.Get(HeaderSignature) == "" {
		// Never send an unsigned delivery: the receiver could not tell it
		// from a forgery.
		return result{err: "the endpoint has no valid signing secret"}
	}
	for k, v := range signed {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", e.cfg.UserAgent)
	start := time.Now()
	resp, err := e.client.Do(req)
	if err != nil {
		return result{latency: time.Since(start), err: describe(ctx, err, e.cfg.Timeout)}
	}
	// Read a little of the body so the connection can be reused; what it
	// says is not kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	r := result{status: resp.StatusCode, latency: time.Since(start)}
	if !r.delivered() {
		r.err = fmt.Sprintf("the endpoint answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			r.err += " (redirects are not followed)"
		}
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), e.cfg.Now())
	}
	return r
}

// describe says why a request got no response, without the URL (which may
// carry a token of the subscriber's).
func describe(ctx context.Context, err error, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("no response within %s", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// Enqueue queues a delivery of ev to the endpoint, durably: when it returns
// nil, the delivery survives a restart. Enqueueing the same event for the
// same endpoint again (within the queue's duplicate window) does nothing.
func (e *Engine) Enqueue(ctx context.Context, endpointID string, ev schemas.PublicEvent) error {
	if !ValidEndpointID(endpointID) {
		return domain.Errorf(domain.KindInvalid, "invalid_webhook_endpoint", "%q is not a webhook endpoint id", endpointID)
	}
	if ev.ID == "" {
		return domain.Errorf(domain.KindInvalid, "invalid_event", "the event has no id")
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhooks: encode event %s: %w", ev.ID, err)
	}
	return e.put(ctx, delivery{
		EndpointID: endpointID, EventID: ev.ID, EventType: ev.Event, ID: ev.ID,
		Attempt: 1, EnqueuedAt: e.cfg.Now().UTC(), Body: body,
	})
}

func (e *Engine) put(ctx context.Context, d delivery) error {
	msg, err := d.encode()
	if err != nil {
		return err
	}
	return e.cfg.Queue.Put(ctx, d.EndpointID, d.msgID(), msg)
}

// maxAttemptPage is the largest page Attempts returns.
const maxAttemptPage = 1000

// Attempts lists the endpoint's attempt log, newest first, a page at a
// time: pass the Cursor of a page's last attempt as q.Before for the next.
func (e *Engine) Attempts(ctx context.Context, endpointID string, q AttemptQuery) ([]Attempt, error) {
	if !ValidEndpointID(endpointID) {
		return nil, domain.Errorf(domain.KindInvalid, "invalid_webhook_endpoint", "%q is not a webhook endpoint id", endpointID)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, maxAttemptPage)
	var before uint64
	if q.Before != "" {
		var err error
		if before, err = strconv.ParseUint(q.Before, 10, 64); err != nil || before == 0 {
			return nil, domain.Errorf(domain.KindInvalid, "invalid_cursor", "the cursor is not one Attempts returned")
		}
	}
	out := []Attempt{}
	err := e.cfg.Queue.Records(ctx, endpointID, before, time.Time{}, func(ref uint64, _ time.Time, entry []byte) bool {
		var r record
		if err := json.Unmarshal(entry, &r); err != nil {
			e.log.Warn("webhooks: skipped an attempt log entry that cannot be read", "endpoint", endpointID, "ref", ref, "err", err)
			return true
		}
		if q.EventID != "" && r.EventID != q.EventID {
			return true
		}
		out = append(out, r.attempt(ref))
		return len(out) < limit
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Recover sends again the endpoint's deliveries that finally failed (their
// last attempt, not delivered) in [since, until): each is a new delivery of
// the same event (the same webhook-id), tried on the whole schedule. It
// returns how many failed deliveries it sent again. Recovering the same
// range twice within the queue's duplicate window sends them once (and
// returns the same count); a delivery no longer kept (older than the
// queue's retention) is skipped.
func (e *Engine) Recover(ctx context.Context, endpointID string, since, until time.Time) (int, error) {
	if !ValidEndpointID(endpointID) {
		return 0, domain.Errorf(domain.KindInvalid, "invalid_webhook_endpoint", "%q is not a webhook endpoint id", endpointID)
	}
	if !since.Before(until) {
		return 0, domain.Errorf(domain.KindInvalid, "invalid_time_range", "the range's start must be before its end")
	}
	type failure struct {
		rec record
		ref uint64
	}
	var failed []failure
	seen := map[string]bool{}
	// An attempt is logged when it ends, at most Timeout after it began.
	bound := until.Add(e.cfg.Timeout + time.Minute)
	err := e.cfg.Queue.Records(ctx, endpointID, 0, bound, func(ref uint64, stored time.Time, entry []byte) bool {
		if stored.Before(since) {
			return false // logged before since, so begun before it too
		}
		var r record
		if json.Unmarshal(entry, &r) != nil || !r.Final || r.Delivered || r.At.Before(since) || !r.At.Before(until) {
			return true
		}
		if !seen[r.DeliveryID] {
			seen[r.DeliveryID] = true
			failed = append(failed, failure{r, ref})
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for i := len(failed) - 1; i >= 0; i-- { // oldest first
		f := failed[i]
		raw, err := e.cfg.Queue.Get(ctx, f.rec.Ref)
		if errors.Is(err, domain.ErrNotFound) {
			e.log.Warn("webhooks: a failed delivery is no longer kept; not recovered", "endpoint", endpointID, "event", f.rec.EventID)
			continue
		}
		if err != nil {
			return n, err
		}
		d, err := decodeDelivery(raw)
		if err != nil || d.EventID != f.rec.EventID {
			e.log.Warn("webhooks: a failed delivery cannot be read; not recovered", "endpoint", endpointID, "event", f.rec.EventID, "err", err)
			continue
		}
		nd := delivery{
			EndpointID: endpointID, EventID: d.EventID, EventType: d.EventType,
			ID: d.EventID + "~r" + strconv.FormatUint(f.ref, 10), Attempt: 1,
			EnqueuedAt: e.cfg.Now().UTC(), Body: d.Body,
		}
		if err := e.put(ctx, nd); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Forget drops a deleted endpoint's queue: its worker stops (if this engine
// runs one) and its waiting deliveries are discarded. Its attempt log is
// kept. Call it once the endpoint's deletion is in the ledger.
func (e *Engine) Forget(ctx context.Context, endpointID string) error {
	if !ValidEndpointID(endpointID) {
		return domain.Errorf(domain.KindInvalid, "invalid_webhook_endpoint", "%q is not a webhook endpoint id", endpointID)
	}
	e.mu.Lock()
	if w, ok := e.workers[endpointID]; ok {
		w.cancel()
		delete(e.workers, endpointID)
	}
	e.mu.Unlock()
	return e.cfg.Queue.Forget(ctx, endpointID)
}

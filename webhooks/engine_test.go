package webhooks_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/webhooks"
)

// A delivery is a signed POST of the public event: both signatures of a
// rotation verify with the Standard Webhooks library, WorkOS's with the
// newest secret; the attempt log holds no secret and no signature.
func TestDeliveryIsSignedForEverySecret(t *testing.T) {
	env := startNATS(t, "")
	rc := newReceiver(t, nil)
	ep := endpoint(t, "we_sig", rc.URL+"/hook?x=1")
	ep.Secrets = []string{newSecret(t), newSecret(t)} // rotating
	reg := newRegistry(ep)
	e, _ := runEngine(t, engineCfg(env, reg))
	ev := event("event_sig")
	enqueue(t, e, ep.ID, ev)
	waitFor(t, "the event is delivered", func() bool { return len(rc.got()) == 1 })
	h := rc.got()[0]

	want, _ := json.Marshal(ev)
	if !bytes.Equal(h.body, want) {
		t.Errorf("body = %s, want %s", h.body, want)
	}
	if h.id != ev.ID {
		t.Errorf("webhook-id = %q, want the event id %q", h.id, ev.ID)
	}
	if ct := h.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if ua := h.header.Get("User-Agent"); !strings.HasPrefix(ua, "keyledger-webhooks") {
		t.Errorf("User-Agent = %q", ua)
	}
	if n := len(strings.Fields(h.header.Get("webhook-signature"))); n != 2 {
		t.Errorf("%d signatures during a rotation, want 2", n)
	}
	for i, s := range ep.Secrets {
		if err := verifyStandard(t, s, h.body, h.header); err != nil {
			t.Errorf("secret %d: Standard Webhooks verify: %v", i, err)
		}
	}
	if err := verifyWorkOS(h.header.Get("WorkOS-Signature"), h.body, ep.Secrets[0], time.Now(), 5*time.Minute); err != nil {
		t.Errorf("WorkOS verify: %v", err)
	}

	waitFor(t, "the attempt is logged", func() bool { return len(attempts(t, e, ep.ID)) == 1 })
	a := attempts(t, e, ep.ID)[0]
	if a.EventID != ev.ID || a.Attempt != 1 || a.Status != 200 || !a.Final || !a.Delivered || a.Error != "" {
		t.Errorf("attempt = %+v", a)
	}
	logged, _ := json.Marshal(a)
	logged = append(logged, []byte(fmt.Sprintf("%+v", a))...)
	for _, secret := range append(slices.Clone(ep.Secrets), strings.Fields(h.header.Get("webhook-signature"))...) {
		if bytes.Contains(logged, []byte(secret)) || bytes.Contains(logged, []byte(strings.TrimPrefix(secret, "whsec_"))) {
			t.Errorf("the attempt log holds a secret or a signature: %s", logged)
		}
	}
}

// A receiver that fails N times and then recovers gets every event exactly
// N+1 times, with the same webhook-id and body each time.
func TestRetriesUntilDelivered(t *testing.T) {
	const failures = 3
	env := startNATS(t, "")
	rc := newReceiver(t, func(_ hit, nth int, _ http.Header) int {
		if nth < failures {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	ep := endpoint(t, "we_retry", rc.URL)
	reg := newRegistry(ep)
	e, _ := runEngine(t, engineCfg(env, reg))
	var ids []string
	for i := range 5 {
		ev := event(fmt.Sprintf("event_retry_%d", i))
		ids = append(ids, ev.ID)
		enqueue(t, e, ep.ID, ev)
	}
	waitFor(t, "every event is delivered", func() bool { return len(finals(t, e, ep.ID)) == len(ids) })
	time.Sleep(150 * time.Millisecond) // longer than the schedule: nothing more comes
	counts := rc.counts()
	for _, id := range ids {
		if counts[id] != failures+1 {
			t.Errorf("%s came %d times, want %d", id, counts[id], failures+1)
		}
	}
	bodies := map[string][]byte{}
	for _, h := range rc.got() {
		if h.id != h.event {
			t.Errorf("webhook-id %q for event %q", h.id, h.event)
		}
		if b, ok := bodies[h.event]; ok && !bytes.Equal(b, h.body) {
			t.Errorf("the body of %s changed between attempts", h.event)
		}
		bodies[h.event] = h.body
		if err := verifyStandard(t, ep.Secrets[0], h.body, h.header); err != nil {
			t.Errorf("retry of %s: %v", h.event, err)
		}
	}
	for id, a := range finals(t, e, ep.ID) {
		if !a.Delivered || a.Attempt != failures+1 || a.Status != http.StatusNoContent {
			t.Errorf("final attempt of %s = %+v", id, a)
		}
	}
	// Every attempt is in the log, with its status.
	as := attempts(t, e, ep.ID)
	if len(as) != len(ids)*(failures+1) {
		t.Errorf("%d attempts logged, want %d", len(as), len(ids)*(failures+1))
	}
	for _, a := range as {
		if a.Attempt <= failures && (a.Status != 500 || a.Final || a.Error == "") {
			t.Errorf("failed attempt logged as %+v", a)
		}
	}
}

// After the schedule is exhausted, the delivery finally fails.
func TestScheduleExhaustedFinallyFails(t *testing.T) {
	env := startNATS(t, "")
	rc := newReceiver(t, func(hit, int, http.Header) int { return http.StatusServiceUnavailable })
	ep := endpoint(t, "we_exhaust", rc.URL)
	e, _ := runEngine(t, engineCfg(env, newRegistry(ep)))
	enqueue(t, e, ep.ID, event("event_exhaust"))
	waitFor(t, "the delivery finally fails", func() bool { return len(finals(t, e, ep.ID)) == 1 })
	time.Sleep(150 * time.Millisecond)
	if n := rc.counts()["event_exhaust"]; n != len(fastSchedule)+1 {
		t.Errorf("tried %d times, want %d", n, len(fastSchedule)+1)
	}
	a := finals(t, e, ep.ID)["event_exhaust"]
	if a.Delivered || a.Attempt != len(fastSchedule)+1 || a.Status != 503 {
		t.Errorf("final attempt = %+v", a)
	}
}

// 410 disables the endpoint and stops retrying; its later deliveries wait
// while it is disabled, and go out once it is enabled again.
func TestGoneDisablesTheEndpoint(t *testing.T) {
	env := startNATS(t, "")
	var mu sync.Mutex
	status := http.StatusGone
	rc := newReceiver(t, func(hit, int, http.Header) int { mu.Lock(); defer mu.Unlock(); return status })
	ep := endpoint(t, "we_gone", rc.URL)
	reg := newRegistry(ep)
	e, _ := runEngine(t, engineCfg(env, reg))
	enqueue(t, e, ep.ID, event("event_gone"))
	waitFor(t, "the endpoint is disabled", func() bool { return len(reg.disables()) == 1 })
	if got := reg.disables(); got[0] != "we_gone:gone" {
		t.Errorf("disabled = %v, want we_gone:gone", got)
	}
	enqueue(t, e, ep.ID, event("event_while_disabled"))
	time.Sleep(300 * time.Millisecond) // many times the schedule and the reconcile interval
	if n := len(rc.got()); n != 1 {
		t.Fatalf("%d requests after a 410 and while disabled, want 1", n)
	}
	a := finals(t, e, ep.ID)["event_gone"]
	if !a.Final || a.Delivered || a.Status != http.StatusGone {
		t.Errorf("attempt = %+v", a)
	}

	mu.Lock()
	status = http.StatusOK
	mu.Unlock()
	reg.setEnabled(ep.ID, true)
	waitFor(t, "the waiting delivery goes out", func() bool { return rc.counts()["event_while_disabled"] == 1 })
	if n := rc.counts()["event_gone"]; n != 1 {
		t.Errorf("the gone delivery was retried: %d requests", n)
	}
}

// A 429 with Retry-After: 1 is not retried sooner than a second later,
// although the schedule says milliseconds.
func TestRetryAfterIsHonoured(t *testing.T) {
	env := startNATS(t, "")
	var answered time.Time
	var mu sync.Mutex
	rc := newReceiver(t, func(_ hit, nth int, w http.Header) int {
		if nth > 0 {
			return http.StatusOK
		}
		mu.Lock()
		defer mu.Unlock()
		w.Set("Retry-After", "1")
		answered = time.Now()
		return http.StatusTooManyRequests
	})
	ep := endpoint(t, "we_429", rc.URL)
	e, _ := runEngine(t, engineCfg(env, newRegistry(ep)))
	enqueue(t, e, ep.ID, event("event_429"))
	waitFor(t, "the event is delivered", func() bool { return len(finals(t, e, ep.ID)) == 1 })
	hits := rc.got()
	if len(hits) != 2 {
		t.Fatalf("%d requests, want 2", len(hits))
	}
	mu.Lock()
	defer mu.Unlock()
	if gap := hits[1].at.Sub(answered); gap < time.Second {
		t.Errorf("retried %v after the 429 with Retry-After: 1", gap)
	}
	if a := finals(t, e, ep.ID)["event_429"]; !a.Delivered || a.Attempt != 2 {
		t.Errorf("final attempt = %+v", a)
	}
}

// An endpoint failing continuously for DisableAfter is disabled.
func TestFailingEndpointIsDisabled(t *testing.T) {
	env := startNATS(t, "")
	rc := newReceiver(t, func(hit, int, http.Header) int { return http.StatusInternalServerError })
	ep := endpoint(t, "we_failing", rc.URL)
	reg := newRegistry(ep)
	cfg := engineCfg(env, reg)
	cfg.DisableAfter = 30 * time.Millisecond
	e, _ := runEngine(t, cfg)
	enqueue(t, e, ep.ID, event("event_failing"))
	waitFor(t, "the endpoint is disabled", func() bool { return len(reg.disables()) > 0 })
	if got := reg.disables(); !slices.Equal(got, []string{"we_failing:failing"}) {
		t.Errorf("disabled = %v, want [we_failing:failing]", got)
	}
	as := attempts(t, e, ep.ID)
	if len(as) == 0 || as[len(as)-1].FailingSince.IsZero() || !as[0].FailingSince.Equal(as[len(as)-1].FailingSince) {
		t.Errorf("the run of failures is not tracked: %+v", as)
	}
}

// A dead endpoint (its receiver hangs) does not slow a healthy one: the
// healthy one gets all its events while the dead one's first attempt has
// not even ended.
func TestDeadEndpointDoesNotDelayOthers(t *testing.T) {
	env := startNATS(t, "")
	release := make(chan struct{})
	dead := newReceiver(t, func(hit, int, http.Header) int { <-release; return http.StatusServiceUnavailable })
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	healthy := newReceiver(t, nil)
	deadEP, okEP := endpoint(t, "we_dead", dead.URL), endpoint(t, "we_healthy", healthy.URL)
	cfg := engineCfg(env, newRegistry(deadEP, okEP))
	cfg.Timeout = 10 * time.Second // far longer than the test: the dead one's attempts hang until released
	e, stop := runEngine(t, cfg)
	t.Cleanup(releaseAll) // first of all cleanups: the engine waits for its attempts
	const n = 40
	for i := range n {
		enqueue(t, e, deadEP.ID, event(fmt.Sprintf("event_dead_%d", i)))
		enqueue(t, e, okEP.ID, event(fmt.Sprintf("event_ok_%d", i)))
	}
	waitFor(t, "the healthy endpoint gets every event", func() bool { return len(healthy.counts()) == n })
	if as := attempts(t, e, deadEP.ID); len(as) != 0 {
		t.Errorf("the dead endpoint's attempts ended before the healthy one got everything: %+v", as)
	}
	if len(dead.got()) == 0 {
		t.Error("the dead endpoint was never tried")
	}
	releaseAll()
	waitFor(t, "the dead endpoint's first attempts end", func() bool { return len(attempts(t, e, deadEP.ID)) > 0 })
	stop()
}

// Enqueueing the same event twice delivers it once.
func TestEnqueueIsIdempotent(t *testing.T) {
	env := startNATS(t, "")
	rc := newReceiver(t, nil)
	ep := endpoint(t, "we_idem", rc.URL)
	e, _ := runEngine(t, engineCfg(env, newRegistry(ep)))
	ev := event("event_idem")
	enqueue(t, e, ep.ID, ev, ev, ev)
	enqueue(t, e, ep.ID, event("event_idem_2"))
	waitFor(t, "both events are delivered", func() bool { return len(finals(t, e, ep.ID)) == 2 })
	time.Sleep(100 * time.Millisecond)
	if c := rc.counts(); c["event_idem"] != 1 || c["event_idem_2"] != 1 {
		t.Errorf("counts = %v, want each once", c)
	}
	if err := e.Enqueue(ctxT(t), "we.bad", ev); err == nil {
		t.Error("Enqueue to a malformed endpoint id: no error")
	}
}

// A deleted endpoint gets nothing; Forget drops what waited for it.
func TestDeletedEndpointGetsNothing(t *testing.T) {
	env := startNATS(t, "")
	rc := newReceiver(t, nil)
	ep := endpoint(t, "we_deleted", rc.URL)
	reg := newRegistry(ep)
	e, _ := runEngine(t, engineCfg(env, reg))
	enqueue(t, e, ep.ID, event("event_before"))
	waitFor(t, "the first event is delivered", func() bool { return len(rc.got()) == 1 })
	reg.remove(ep.ID)
	enqueue(t, e, ep.ID, event("event_after"))
	time.Sleep(300 * time.Millisecond)
	if n := len(rc.got()); n != 1 {
		t.Errorf("%d requests, want only the one before the deletion", n)
	}
	if err := e.Forget(ctxT(t), ep.ID); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	// Even were it to come back, what waited was dropped.
	reg.put(ep)
	enqueue(t, e, ep.ID, event("event_new"))
	waitFor(t, "the new event is delivered", func() bool { return rc.counts()["event_new"] == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := rc.counts()["event_after"]; n != 0 {
		t.Errorf("a delivery queued for the deleted endpoint came %d times", n)
	}
}

// Redirects are not followed: a 3xx is a failed attempt.
func TestRedirectsAreNotFollowed(t *testing.T) {
	env := startNATS(t, "")
	target := newReceiver(t, nil)
	rc := newReceiver(t, nil)
	rc.Config.Handler = http.RedirectHandler(target.URL, http.StatusTemporaryRedirect)
	ep := endpoint(t, "we_redirect", rc.URL)
	cfg := engineCfg(env, newRegistry(ep))
	cfg.Schedule = []time.Duration{time.Millisecond}
	e, _ := runEngine(t, cfg)
	enqueue(t, e, ep.ID, event("event_redirect"))
	waitFor(t, "the delivery finally fails", func() bool { return len(finals(t, e, ep.ID)) == 1 })
	if n := len(target.got()); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
	a := finals(t, e, ep.ID)["event_redirect"]
	if a.Status != http.StatusTemporaryRedirect || a.Delivered || !strings.Contains(a.Error, "redirect") {
		t.Errorf("attempt = %+v", a)
	}
}

// Attempts lists every attempt, newest first, with status and latency, a
// page at a time; Recover sends again the deliveries that finally failed in
// the range, and not the others.
func TestAttemptsAndRecover(t *testing.T) {
	env := startNATS(t, "")
	var mu sync.Mutex
	status := http.StatusBadGateway
	rc := newReceiver(t, func(hit, int, http.Header) int { mu.Lock(); defer mu.Unlock(); return status })
	ep := endpoint(t, "we_recover", rc.URL)
	cfg := engineCfg(env, newRegistry(ep))
	cfg.Schedule = []time.Duration{time.Millisecond}
	cfg.DisableAfter = -1
	e, _ := runEngine(t, cfg)

	enqueue(t, e, ep.ID, event("event_early"))
	waitFor(t, "the early delivery fails", func() bool { return len(finals(t, e, ep.ID)) == 1 })
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	enqueue(t, e, ep.ID, event("event_in_range"))
	waitFor(t, "the second delivery fails", func() bool { return len(finals(t, e, ep.ID)) == 2 })
	until := time.Now()
	time.Sleep(20 * time.Millisecond)
	enqueue(t, e, ep.ID, event("event_late"))
	waitFor(t, "the late delivery fails", func() bool { return len(finals(t, e, ep.ID)) == 3 })

	as := attempts(t, e, ep.ID)
	if len(as) != 6 {
		t.Fatalf("%d attempts, want 6 (two per event)", len(as))
	}
	for i, a := range as {
		if a.Status != http.StatusBadGateway || a.LatencyMs <= 0 || a.At.IsZero() || a.Delivered || a.Error == "" {
			t.Errorf("attempt %d = %+v", i, a)
		}
		if i > 0 && a.At.After(as[i-1].At) {
			t.Errorf("attempt %d is newer than the one before it", i)
		}
		if a.Final != (a.Attempt == 2) {
			t.Errorf("attempt %d: final=%v at attempt %d", i, a.Final, a.Attempt)
		}
	}
	// Paging walks the same list.
	var paged []webhooks.Attempt
	q := webhooks.AttemptQuery{Limit: 4}
	for {
		page, err := e.Attempts(ctxT(t), ep.ID, q)
		if err != nil {
			t.Fatalf("Attempts: %v", err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		q.Before = page[len(page)-1].Cursor
	}
	if len(paged) != len(as) {
		t.Fatalf("paging gave %d attempts, want %d", len(paged), len(as))
	}
	for i := range as {
		if paged[i].Cursor != as[i].Cursor {
			t.Errorf("page entry %d differs", i)
		}
	}
	byEvent, err := e.Attempts(ctxT(t), ep.ID, webhooks.AttemptQuery{EventID: "event_in_range"})
	if err != nil || len(byEvent) != 2 {
		t.Errorf("attempts of one event: %d, %v", len(byEvent), err)
	}
	if _, err := e.Attempts(ctxT(t), ep.ID, webhooks.AttemptQuery{Before: "nope"}); err == nil {
		t.Error("a bad cursor: no error")
	}

	mu.Lock()
	status = http.StatusOK
	mu.Unlock()
	n, err := e.Recover(ctxT(t), ep.ID, since, until)
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want 1", n, err)
	}
	waitFor(t, "the recovered delivery arrives", func() bool { return rc.counts()["event_in_range"] == 3 })
	time.Sleep(100 * time.Millisecond)
	c := rc.counts()
	if c["event_early"] != 2 || c["event_late"] != 2 {
		t.Errorf("counts = %v: only event_in_range should be sent again", c)
	}
	last := rc.got()[len(rc.got())-1]
	if last.id != "event_in_range" {
		t.Errorf("the recovered delivery's webhook-id = %q, want the event id", last.id)
	}
	a := finals(t, e, ep.ID)["event_in_range"]
	if !a.Delivered || a.Attempt != 1 || a.DeliveryID == "event_in_range" {
		t.Errorf("the recovered delivery's attempt = %+v: a new delivery, delivered", a)
	}
	// Recovering the same range again right away queues nothing new.
	if n, err := e.Recover(ctxT(t), ep.ID, since, until); err != nil || n != 1 {
		t.Errorf("Recover again = %d, %v", n, err)
	}
	time.Sleep(100 * time.Millisecond)
	if c := rc.counts()["event_in_range"]; c != 3 {
		t.Errorf("a second Recover sent it again: %d requests", c)
	}
	if _, err := e.Recover(ctxT(t), ep.ID, until, since); err == nil {
		t.Error("Recover of an empty range: no error")
	}
}

// An endpoint with no valid signing secret gets nothing: a delivery is never
// sent unsigned.
func TestNeverSendsUnsigned(t *testing.T) {
	env := startNATS(t, "")
	rc := newReceiver(t, nil)
	ep := endpoint(t, "we_unsigned", rc.URL)
	ep.Secrets = []string{"whsec_not-base64!"}
	cfg := engineCfg(env, newRegistry(ep))
	cfg.Schedule = []time.Duration{time.Millisecond}
	e, _ := runEngine(t, cfg)
	enqueue(t, e, ep.ID, event("event_unsigned"))
	waitFor(t, "the delivery finally fails", func() bool { return len(finals(t, e, ep.ID)) == 1 })
	if a := finals(t, e, ep.ID)["event_unsigned"]; a.Delivered || !strings.Contains(a.Error, "signing secret") {
		t.Errorf("attempt = %+v", a)
	}
	if n := len(rc.got()); n != 0 {
		t.Errorf("the receiver got %d unsigned requests", n)
	}
}

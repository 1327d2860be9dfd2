package webhooks_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Stopping the engine and the NATS server in the middle of deliveries, and
// starting both again on the same folder, loses nothing: every event
// enqueued is delivered, and none delivered (and so acknowledged) before
// the restart comes again.
func TestRestartLosesNothingAndRepeatsNothingAcknowledged(t *testing.T) {
	env := startNATS(t, "")
	rc := newReceiver(t, func(hit, int, http.Header) int {
		time.Sleep(5 * time.Millisecond) // slow enough to stop half way
		return http.StatusOK
	})
	ep := endpoint(t, "we_restart", rc.URL)
	reg := newRegistry(ep)
	cfg := engineCfg(env, reg)
	cfg.Concurrency = 2
	e, stop := runEngine(t, cfg)
	const n = 60
	for i := range n {
		enqueue(t, e, ep.ID, event(fmt.Sprintf("event_restart_%02d", i)))
	}
	waitFor(t, "some events are delivered", func() bool { return len(rc.got()) >= 10 })
	stop()
	env.stop()
	before := rc.counts()
	if len(before) >= n {
		t.Fatalf("every event was delivered before the restart; nothing is left to test")
	}
	t.Logf("%d of %d events delivered before the restart", len(before), n)

	env = startNATS(t, env.dir)
	cfg.Queue = env.q
	e, stop = runEngine(t, cfg)
	// A delivery handed out just before the stop and not handed back (the
	// server went away first) comes again after the queue's AckWait (45 s).
	waitWithin(t, 60*time.Second, "every event is delivered", func() bool { return len(rc.counts()) == n })
	stop()
	after := rc.counts()
	for id, c := range after {
		if c != 1 {
			t.Errorf("%s delivered %d times (%d before the restart)", id, c, before[id])
		}
	}
	// Every attempt of both runs is in the log, each event delivered once.
	fs := finals(t, e, ep.ID)
	if len(fs) != n {
		t.Errorf("%d final attempts logged, want %d", len(fs), n)
	}
}

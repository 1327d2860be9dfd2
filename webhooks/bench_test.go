package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyledger/keyledger/schemas"
)

// benchReceiver answers 200 at once and notes when each event arrived.
type benchReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	arrived map[string]time.Time
	n       atomic.Int64
	all     chan struct{} // closed when want events arrived
	want    int64
}

func newBenchReceiver(b *testing.B, want int) *benchReceiver {
	rc := &benchReceiver{arrived: make(map[string]time.Time, want), all: make(chan struct{}), want: int64(want)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("webhook-id")
		rc.mu.Lock()
		_, seen := rc.arrived[id]
		if !seen {
			rc.arrived[id] = now
		}
		rc.mu.Unlock()
		if !seen && rc.n.Add(1) == rc.want {
			close(rc.all)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(rc.Close)
	return rc
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkDeliver measures throughput: b.N events enqueued by 8
// goroutines over the given number of endpoints, all delivered to local
// receivers (real JetStream on disk with fsync, real HTTP). It reports
// deliveries per second, and the enqueue-to-delivery latency under that
// load.
func BenchmarkDeliver(b *testing.B) {
	for _, endpoints := range []int{1, 8} {
		b.Run(fmt.Sprintf("endpoints=%d", endpoints), func(b *testing.B) {
			env := startNATS(b, "")
			reg := newRegistry()
			rcs := make([]*benchReceiver, endpoints)
			per := (b.N + endpoints - 1) / endpoints
			for i := range rcs {
				rcs[i] = newBenchReceiver(b, per)
				reg.put(endpoint(b, fmt.Sprintf("we_bench_%d", i), rcs[i].URL))
			}
			cfg := engineCfg(env, reg)
			cfg.Concurrency = 16
			e, stop := runEngine(b, cfg)
			defer stop()
			body := json.RawMessage(`{"object":"api_key","id":"api_key_1","name":"k"}`)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var enqMu sync.Mutex
			enqueued := make(map[string]time.Time, endpoints*per)

			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			var next atomic.Int64
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1) - 1)
						if i >= endpoints*per {
							return
						}
						ev := schemas.PublicEvent{Object: schemas.ObjectEvent, ID: fmt.Sprintf("event_b%09d", i),
							Event: schemas.EventAPIKeyCreated, Data: body, CreatedAt: time.Now().UTC()}
						ep := fmt.Sprintf("we_bench_%d", i%endpoints)
						t0 := time.Now()
						if err := e.Enqueue(ctx, ep, ev); err != nil {
							b.Error(err)
							return
						}
						enqMu.Lock()
						enqueued[ev.ID] = t0
						enqMu.Unlock()
					}
				}()
			}
			wg.Wait()
			for _, rc := range rcs {
				select {
				case <-rc.all:
				case <-time.After(2 * time.Minute):
					b.Fatalf("not every event was delivered: %d of %d", rc.n.Load(), per)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(endpoints*per)/elapsed.Seconds(), "deliveries/s")
			var lat []time.Duration
			for _, rc := range rcs {
				rc.mu.Lock()
				for id, at := range rc.arrived {
					lat = append(lat, at.Sub(enqueued[id]))
				}
				rc.mu.Unlock()
			}
			reportLatency(b, lat)
		})
	}
}

// BenchmarkDeliverLatency measures enqueue-to-delivery latency with no
// load: one event at a time, the next enqueued once the last arrived.
func BenchmarkDeliverLatency(b *testing.B) {
	env := startNATS(b, "")
	rc := newBenchReceiver(b, b.N)
	reg := newRegistry(endpoint(b, "we_latency", rc.URL))
	e, stop := runEngine(b, engineCfg(env, reg))
	defer stop()
	body := json.RawMessage(`{"object":"api_key","id":"api_key_1","name":"k"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		ev := schemas.PublicEvent{Object: schemas.ObjectEvent, ID: fmt.Sprintf("event_l%09d", i),
			Event: schemas.EventAPIKeyCreated, Data: body, CreatedAt: time.Now().UTC()}
		t0 := time.Now()
		if err := e.Enqueue(ctx, "we_latency", ev); err != nil {
			b.Fatal(err)
		}
		for rc.n.Load() <= int64(i) {
			time.Sleep(20 * time.Microsecond)
		}
		rc.mu.Lock()
		lat = append(lat, rc.arrived[ev.ID].Sub(t0))
		rc.mu.Unlock()
	}
	b.StopTimer()
	reportLatency(b, lat)
}

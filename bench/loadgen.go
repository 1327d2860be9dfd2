package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// LoadGen is the one load generator every HTTP comparison uses
// (validate-http, validate-postgres): both sides of a comparison are driven
// by a LoadGen built with the same connection count and the same request
// bodies, so whatever differs between them is the server, not the client.
//
// Each of its conns workers holds one keep-alive connection of its own (one
// http.Transport per worker with MaxConnsPerHost 1, kept across rounds) and
// sends POST requests in a closed loop: the next body, wait for the answer,
// read it fully, record the latency, repeat. Every answer must be 200; any
// other status or a transport error fails the round.
//
// The generator runs in the benchmark's own process, on the same cores as
// the servers it drives, so absolute figures include its cost, equally for
// both sides.
type LoadGen struct {
	url    string
	conns  int
	bodies [][]byte
	header http.Header

	workers []*loadgenWorker
}

// loadgenWorker is one connection's state, kept across rounds so that a round
// does not pay for dialling or for growing its latency buffer again.
type loadgenWorker struct {
	tr     *http.Transport
	client *http.Client
	header http.Header
	lats   []time.Duration
	next   int // index of the next body
}

// NewLoadGen returns a generator that POSTs bodies (round-robin, each
// worker starting at its own offset) to url over conns connections, with
// header on every request (Content-Type defaults to application/json).
func NewLoadGen(url string, conns int, bodies [][]byte, header http.Header) *LoadGen {
	conns = max(conns, 1)
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	g := &LoadGen{url: url, conns: conns, bodies: bodies, header: h}
	for i := 0; i < conns; i++ {
		tr := &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxConnsPerHost:     1,
			MaxIdleConns:        1,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		}
		off := 0
		if len(bodies) > 0 {
			off = i * len(bodies) / conns
		}
		g.workers = append(g.workers, &loadgenWorker{
			tr:     tr,
			client: &http.Client{Transport: tr},
			header: h.Clone(), // one per worker: requests never share a map across goroutines
			next:   off,
		})
	}
	return g
}

// Conns is the number of connections (and workers).
func (g *LoadGen) Conns() int { return g.conns }

// Side returns a bench Side that drives the server for the round's
// duration and reports the requests answered and every request's latency
// (from sending the request to having read the whole answer).
func (g *LoadGen) Side() Side {
	return func(ctx context.Context, d time.Duration) (Sample, error) {
		if len(g.bodies) == 0 {
			return Sample{}, errors.New("loadgen: no request bodies")
		}
		// A round that hangs (a server that stopped answering) fails
		// instead of blocking the run.
		rctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
		defer cancel()
		// Preallocate for a generous rate so the round does not allocate
		// while it measures; buffers grown in a round are kept for the next.
		want := int(d.Seconds()*200_000)/g.conns + 64
		for _, w := range g.workers {
			if cap(w.lats) < want {
				w.lats = make([]time.Duration, 0, want)
			}
			w.lats = w.lats[:0]
		}
		var (
			wg       sync.WaitGroup
			errOnce  sync.Once
			firstErr error
		)
		fail := func(err error) {
			errOnce.Do(func() {
				firstErr = err
				cancel()
			})
		}
		start := time.Now()
		deadline := start.Add(d)
		for _, w := range g.workers {
			wg.Add(1)
			go func(w *loadgenWorker) {
				defer wg.Done()
				for {
					body := g.bodies[w.next]
					w.next++
					if w.next == len(g.bodies) {
						w.next = 0
					}
					lat, err := w.do(rctx, g.url, body)
					if err != nil {
						fail(err)
						return
					}
					w.lats = append(w.lats, lat)
					if time.Now().After(deadline) {
						return
					}
				}
			}(w)
		}
		wg.Wait()
		elapsed := time.Since(start)
		if firstErr != nil {
			return Sample{}, firstErr
		}
		n := 0
		for _, w := range g.workers {
			n += len(w.lats)
		}
		lats := make([]time.Duration, 0, n)
		for _, w := range g.workers {
			lats = append(lats, w.lats...)
		}
		return Sample{Ops: int64(n), Elapsed: elapsed, Latencies: lats}, nil
	}
}

// do sends one request and reads its answer fully.
func (w *loadgenWorker) do(ctx context.Context, url string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("loadgen: %w", err)
	}
	req.Header = w.header
	t0 := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("loadgen: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return 0, fmt.Errorf("loadgen: %s answered %d: %s", url, resp.StatusCode, bytes.TrimSpace(msg))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	lat := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("loadgen: reading the answer: %w", err)
	}
	return lat, nil
}

// Close closes the generator's idle connections.
func (g *LoadGen) Close() {
	for _, w := range g.workers {
		w.tr.CloseIdleConnections()
	}
}

package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"time"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/schemas"
)

// httpAdminKey is the admin key the validate-http server accepts.
const httpAdminKey = "kl_admin_bench_0123456789abcdefghijklmnop"

// validateHTTP measures validations through the real HTTP server (the API
// handler, configured as `keyledger serve` configures it, over loopback)
// against a bare net/http handler that reads the request and answers a
// fixed body of the same size, both driven by the same load generator
// with the same connections and the same request bodies.
func validateHTTP(ctx context.Context, o Options, p Progress) ([]Result, error) {
	o.HTTPConns = max(o.HTTPConns, 1)
	pop, err := Populate(ctx, filepath.Join(o.Dir, "http"), o.Keys, scaleProgress(p, 0, 0.5))
	if err != nil {
		return nil, err
	}
	defer pop.Close()
	if len(pop.Values) <= pop.Revoked {
		return nil, errors.New("no active keys to validate")
	}

	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	handler := api.New(api.Config{
		Queries:      pop.Proj,
		AdminKeyHash: sha256.Sum256([]byte(httpAdminKey)),
		Log:          slog.New(slog.DiscardHandler),
	})
	klURL, stopKL, err := httpServeLoopback(handler, log)
	if err != nil {
		return nil, err
	}
	defer stopKL()
	klURL += "/api_keys/validations"

	header := http.Header{}
	header.Set("Authorization", "Bearer "+httpAdminKey)
	header.Set("Content-Type", "application/json")

	// One real answer for a hit (the most frequent key of the mix), taken
	// the second time so that it carries last_used_at as steady state does.
	hit, err := json.Marshal(schemas.ValidateRequest{Value: pop.Values[pop.Revoked]})
	if err != nil {
		return nil, err
	}
	var sample []byte
	var contentType string
	for i := 0; i < 2; i++ {
		sample, contentType, err = httpPostOnce(ctx, klURL, header, hit)
		if err != nil {
			return nil, fmt.Errorf("a hit: %w", err)
		}
	}
	var check schemas.ValidateResponse
	if err := json.Unmarshal(sample, &check); err != nil || check.APIKey == nil {
		return nil, fmt.Errorf("a hit was not answered with a key: %s", sample)
	}

	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(sample)
	})
	bareURL, stopBare, err := httpServeLoopback(bare, log)
	if err != nil {
		return nil, err
	}
	defer stopBare()
	bareURL += "/api_keys/validations"

	bodies := make([][]byte, len(pop.Mix))
	for i, v := range pop.Mix {
		if bodies[i], err = json.Marshal(schemas.ValidateRequest{Value: v}); err != nil {
			return nil, err
		}
	}
	nKeys, nRevoked := len(pop.Values), pop.Revoked
	// A server does not hold every key's value: let them go, so that the
	// garbage collector of this process does not scan them on either side.
	pop.Values, pop.Mix = nil, nil

	ref, subj, err := compareHTTP(ctx, o, scaleProgress(p, 0.5, 1), "validate-http", "bare handler", bareURL, "keyledger", klURL, bodies, header)
	if err != nil {
		return nil, err
	}
	ratio := 0.0
	if ref.OpsPerSec > 0 {
		ratio = subj.OpsPerSec / ref.OpsPerSec
	}
	return []Result{{
		Scenario: "validate-http", Subject: subj, Reference: ref, Ratio: ratio,
		RatioOf: "validations/s ÷ bare handler req/s",
		Target:  "≥ 0.80× and p99 < 1 ms",
		Met:     Met(ratio >= 0.8 && subj.P99Ms < 1),
		Notes: []string{
			fmt.Sprintf("%d keep-alive connections, closed loop, realistic mix over %d keys (%d revoked); HTTP/1.1 on loopback", o.HTTPConns, nKeys, nRevoked),
			fmt.Sprintf("the bare handler reads the body and answers a fixed %d-byte %s body, the size of a hit's answer", len(sample), contentType),
			fmt.Sprintf("the load generator runs in the same process on the same %d CPUs, so absolute figures include its cost, equally for both sides", runtime.NumCPU()),
			fmt.Sprintf("at saturation a closed loop queues: mean latency = connections ÷ throughput = %.3f ms for keyledger, %.3f ms for the bare handler", littleMs(o.HTTPConns, subj.OpsPerSec), littleMs(o.HTTPConns, ref.OpsPerSec)),
		},
	}}, nil
}

// scaleProgress maps a step's progress into [from, to] of the scenario's,
// so that a scenario made of several steps moves its bar forward only.
func scaleProgress(p Progress, from, to float64) Progress {
	if p == nil {
		return nil
	}
	return func(step string, done, total int) {
		const res = 1000
		frac := 1.0
		if total > 0 {
			frac = float64(done) / float64(total)
		}
		p(step, int((from+(to-from)*frac)*res), res)
	}
}

// littleMs is the mean latency of a closed loop of conns clients at
// opsPerSec (Little's law), in milliseconds.
func littleMs(conns int, opsPerSec float64) float64 {
	if opsPerSec <= 0 {
		return 0
	}
	return float64(conns) / opsPerSec * 1e3
}

// httpServeLoopback serves h on a loopback port with the timeouts `keyledger
// serve` uses, and returns its base URL and a function that stops it.
func httpServeLoopback(h http.Handler, log *slog.Logger) (string, func(), error) {
	srv := api.NewHTTPServer(h, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// httpPostOnce sends one request on a fresh client and returns the answer's
// body and Content-Type; anything but 200 is an error.
func httpPostOnce(ctx context.Context, url string, header http.Header, body []byte) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header = header.Clone()
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, resp.Header.Get("Content-Type"), nil
}

// compareHTTP drives two HTTP services with the same load generator, the
// same connections and the same bodies: a warm-up of both (connections,
// buffers, caches), then alternating rounds.
func compareHTTP(ctx context.Context, o Options, p Progress, step, refName, refURL, subjName, subjURL string, bodies [][]byte, header http.Header) (ref, subj Measure, err error) {
	refGen := NewLoadGen(refURL, o.HTTPConns, bodies, header)
	defer refGen.Close()
	subjGen := NewLoadGen(subjURL, o.HTTPConns, bodies, header)
	defer subjGen.Close()
	warm := min(o.RoundTime, 200*time.Millisecond)
	for _, side := range []Side{refGen.Side(), subjGen.Side()} {
		if _, err := side(ctx, warm); err != nil {
			return ref, subj, fmt.Errorf("warm-up: %w", err)
		}
	}
	runtime.GC()
	return Alternate(ctx, o, p, step, refName, refGen.Side(), subjName, subjGen.Side())
}

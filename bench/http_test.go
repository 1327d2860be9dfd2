package bench

import (
	"bufio"
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
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/schemas"
)

// countingServer answers 200 (or status) and counts requests per body and
// new connections.
type countingServer struct {
	mu     sync.Mutex
	bodies map[string]int
	conns  int
	status int
}

func startCounting(t *testing.T, status int) (*countingServer, string) {
	t.Helper()
	cs := &countingServer{bodies: map[string]int{}, status: status}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			cs.mu.Lock()
			cs.bodies[string(b)]++
			cs.mu.Unlock()
			if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer x" || r.Header.Get("Content-Type") != "application/json" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(cs.status)
			_, _ = w.Write([]byte(`{"ok":true}`))
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				cs.mu.Lock()
				cs.conns++
				cs.mu.Unlock()
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return cs, "http://" + ln.Addr().String() + "/v"
}

func TestLoadGen(t *testing.T) {
	cs, url := startCounting(t, http.StatusOK)
	var bodies [][]byte
	for i := 0; i < 5; i++ {
		bodies = append(bodies, []byte(fmt.Sprintf(`{"value":"v%d"}`, i)))
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer x")
	g := NewLoadGen(url, 3, bodies, h)
	defer g.Close()
	side := g.Side()
	var total int64
	for round := 0; round < 2; round++ {
		s, err := side(context.Background(), 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if s.Ops == 0 || int64(len(s.Latencies)) != s.Ops || s.Elapsed < 100*time.Millisecond {
			t.Fatalf("round %d: %d ops, %d latencies, %s", round, s.Ops, len(s.Latencies), s.Elapsed)
		}
		for _, l := range s.Latencies {
			if l <= 0 {
				t.Fatalf("latency %s", l)
			}
		}
		total += s.Ops
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var served int64
	for _, b := range bodies {
		if cs.bodies[string(b)] == 0 {
			t.Errorf("body %s never sent", b)
		}
		served += int64(cs.bodies[string(b)])
	}
	if served != total || len(cs.bodies) != len(bodies) {
		t.Errorf("server saw %d requests (%d distinct bodies), generator counted %d", served, len(cs.bodies), total)
	}
	if cs.conns != 3 {
		t.Errorf("%d connections opened over two rounds, want 3 kept alive", cs.conns)
	}
}

func TestLoadGenFailsOnNon200(t *testing.T) {
	_, url := startCounting(t, http.StatusInternalServerError)
	h := http.Header{}
	h.Set("Authorization", "Bearer x")
	g := NewLoadGen(url, 2, [][]byte{[]byte(`{}`)}, h)
	defer g.Close()
	if _, err := g.Side()(context.Background(), 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("err = %v, want a 500", err)
	}
}

func TestLoadGenFailsOnTransportError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g := NewLoadGen("http://"+addr+"/", 2, [][]byte{[]byte(`{}`)}, nil)
	defer g.Close()
	if _, err := g.Side()(context.Background(), 50*time.Millisecond); err == nil {
		t.Fatal("no error from a closed port")
	}
}

// startRaw serves HTTP/1.1 by hand on loopback, for answers net/http would
// not give: it reads each request (headers, then Content-Length bytes of
// body) and lets respond answer it on the connection. It allocates nothing
// per request unless respond does.
func startRaw(t *testing.T, respond func(c net.Conn, n int) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					length := 0
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) == 2 {
							break
						}
						if rest, ok := bytes.CutPrefix(line, []byte("Content-Length:")); ok {
							v, _ := loadgenAtoi(bytes.TrimSpace(rest))
							length = int(v)
						}
					}
					if _, err := br.Discard(length); err != nil {
						return
					}
					if respond(c, n) != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/v"
}

// rawAnswer answers every request with resp.
func rawAnswer(resp string) func(net.Conn, int) error {
	b := []byte(resp)
	return func(c net.Conn, _ int) error {
		_, err := c.Write(b)
		return err
	}
}

func TestLoadGenRefusesBadAnswers(t *testing.T) {
	chunked := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(`{"ok":`))
		w.(http.Flusher).Flush() // the header goes out before the length is known: chunked
		_, _ = w.Write([]byte(`true}`))
	})
	srv := httptest.NewServer(chunked)
	defer srv.Close()
	for _, tc := range []struct {
		name, url, want string
	}{
		{"chunked", srv.URL + "/v", `refused Transfer-Encoding "chunked"`},
		{"bad status line", startRaw(t, rawAnswer("HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n")), `malformed status line: "HTTP/1.1 2OO OK\r\n`},
		{"not HTTP/1.1", startRaw(t, rawAnswer("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")), "malformed status line"},
		{"bare LF", startRaw(t, rawAnswer("HTTP/1.1 200 OK\nContent-Length: 0\n\n")), "malformed status line"},
		{"bad status", startRaw(t, rawAnswer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")), `answered 503, not 200: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"`},
		{"no length", startRaw(t, rawAnswer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello")), "no Content-Length"},
		{"bad length", startRaw(t, rawAnswer("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello")), "malformed Content-Length"},
		{"bad header", startRaw(t, rawAnswer("HTTP/1.1 200 OK\r\nno colon\r\nContent-Length: 0\r\n\r\n")), `malformed header line: "no colon"`},
		{"long body", startRaw(t, rawAnswer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello")), "3 bytes after the answer's Content-Length"},
		{"short body", startRaw(t, func(c net.Conn, _ int) error {
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"))
			return errors.New("close")
		}), "I/O error: reading the body (5 of 10 bytes): EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewLoadGen(tc.url, 2, [][]byte{[]byte(`{}`)}, nil)
			defer g.Close()
			start := time.Now()
			_, err := g.Side()(context.Background(), 50*time.Millisecond)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.url) {
				t.Fatalf("err = %v, want one naming %s and saying %q", err, tc.url, tc.want)
			}
			if el := time.Since(start); el > 10*time.Second {
				t.Fatalf("the round took %s to fail", el)
			}
			t.Log(err)
		})
	}
}

func TestLoadGenRequests(t *testing.T) {
	h := http.Header{}
	h.Set("Authorization", "Bearer x")
	h.Add("X-Many", "a")
	h.Add("X-Many", "b")
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", "999") // the generator's own
	g := NewLoadGen("http://example.com/api_keys/validations?x=1", 2, [][]byte{[]byte(`{"v":1}`), []byte(``)}, h)
	want := []string{
		"POST /api_keys/validations?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 7\r\nAuthorization: Bearer x\r\nX-Many: a\r\nX-Many: b\r\n\r\n{\"v\":1}",
		"POST /api_keys/validations?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 0\r\nAuthorization: Bearer x\r\nX-Many: a\r\nX-Many: b\r\n\r\n",
	}
	for i, w := range want {
		if got := string(g.request(i)); got != w {
			t.Errorf("request %d:\n%q\nwant\n%q", i, got, w)
		}
	}
	if g.addr != "example.com:80" {
		t.Errorf("dials %s", g.addr)
	}
	if _, err := NewLoadGen("https://example.com/", 1, [][]byte{nil}, nil).Side()(context.Background(), time.Millisecond); err == nil {
		t.Error("no error for https")
	}
	if _, err := NewLoadGen("http://example.com/", 1, nil, nil).Side()(context.Background(), time.Millisecond); err == nil {
		t.Error("no error without bodies")
	}
}

func TestLoadGenReconnects(t *testing.T) {
	// Connection: close on every third answer: the worker dials again and
	// the round goes on.
	var mu sync.Mutex
	served, conns := 0, 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		served++
		if served%3 == 0 {
			w.Header().Set("Connection", "close")
		}
		mu.Unlock()
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	g := NewLoadGen(srv.URL+"/v", 2, [][]byte{[]byte(`{}`)}, nil)
	defer g.Close()
	s, err := g.Side()(context.Background(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// The server closes the connections it left idle: the next round sends
	// again on new ones.
	time.Sleep(400 * time.Millisecond)
	s2, err := g.Side()(context.Background(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if int64(served) != s.Ops+s2.Ops || conns < served/3 {
		t.Fatalf("%d answers on %d connections, generator counted %d", served, conns, s.Ops+s2.Ops)
	}
}

func TestLoadGenHungServer(t *testing.T) {
	old := loadgenGrace
	t.Cleanup(func() { loadgenGrace = old })
	loadgenGrace = 200 * time.Millisecond
	url := startRaw(t, func(c net.Conn, n int) error {
		if n == 3 {
			// Stops answering, the connection open, until the
			// generator (or the cleanup) closes it.
			_, _ = io.Copy(io.Discard, c)
			return io.EOF
		}
		_, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		return err
	})
	g := NewLoadGen(url, 2, [][]byte{[]byte(`{}`)}, nil)
	defer g.Close()
	start := time.Now()
	_, err := g.Side()(context.Background(), 50*time.Millisecond)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("the round took %s to fail", el)
	}

	// Cancelling the context stops a round at once, grace or not.
	loadgenGrace = time.Hour
	g2 := NewLoadGen(url, 2, [][]byte{[]byte(`{}`)}, nil)
	defer g2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := g2.Side()(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("the round took %s to stop", el)
	}
}

func TestLoadGenAllocates(t *testing.T) {
	resp := rawAnswer("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
	g := NewLoadGen(startRaw(t, resp), 1, [][]byte{[]byte(`{}`)}, nil)
	defer g.Close()
	r := &loadgenRound{g: g, ctx: context.Background(), hard: time.Now().Add(time.Minute)}
	w := g.workers[0]
	if _, _, err := w.roundTrip(r, g.request(0)); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, err := w.roundTrip(r, g.request(0)); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per request", allocs)
	}
}

// TestLoadGenAPI drives keyledger's real API handler, built as
// validateHTTP builds it: every answer of the mix (hits, revoked, unknown
// and malformed keys) parses, one after the other on one connection.
func TestLoadGenAPI(t *testing.T) {
	pop, err := Populate(context.Background(), t.TempDir(), 2_000, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	handler := api.New(api.Config{
		Queries:      pop.Proj,
		AdminKeyHash: sha256.Sum256([]byte(httpAdminKey)),
		Log:          slog.New(slog.DiscardHandler),
	})
	base, stop, err := httpServeLoopback(handler, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	header := http.Header{}
	header.Set("Authorization", "Bearer "+httpAdminKey)
	header.Set("Content-Type", "application/json")
	var bodies [][]byte
	reasons := map[string]int{}
	for _, v := range pop.Mix[:3000] {
		b, err := json.Marshal(schemas.ValidateRequest{Value: v})
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	// The answers net/http reads, to compare lengths with.
	for _, b := range bodies[:200] {
		ans, _, err := httpPostOnce(context.Background(), base+"/api_keys/validations", header, b)
		if err != nil {
			t.Fatal(err)
		}
		var vr schemas.ValidateResponse
		if err := json.Unmarshal(ans, &vr); err != nil {
			t.Fatal(err)
		}
		reasons[vr.Reason]++
	}
	if len(reasons) < 3 {
		t.Fatalf("the mix's answers are not varied: %v", reasons)
	}
	g := NewLoadGen(base+"/api_keys/validations", 1, bodies, header)
	defer g.Close()
	r := &loadgenRound{g: g, ctx: context.Background(), hard: time.Now().Add(time.Minute)}
	w := g.workers[0]
	for i := range bodies {
		if _, _, err := w.roundTrip(r, g.request(i)); err != nil {
			t.Fatalf("body %d %s: %v", i, bodies[i], err)
		}
	}
	if w.served != len(bodies) {
		t.Fatalf("%d answers on the connection for %d requests", w.served, len(bodies))
	}

	// And a round over several connections.
	g2 := NewLoadGen(base+"/api_keys/validations", 3, bodies, header)
	defer g2.Close()
	s, err := g2.Side()(context.Background(), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ops == 0 || int64(len(s.Latencies)) != s.Ops {
		t.Fatalf("%d ops, %d latencies", s.Ops, len(s.Latencies))
	}
	t.Logf("answers by reason %v; %d requests in %s over 3 connections", reasons, s.Ops, s.Elapsed)
}

func quickOptions(t *testing.T) Options {
	o := Defaults(true)
	o.Dir = t.TempDir()
	o.Log = slog.New(slog.DiscardHandler)
	return o
}

func TestValidateHTTPQuick(t *testing.T) {
	o := quickOptions(t)
	rs, err := validateHTTP(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	r := rs[0]
	if r.Scenario != "validate-http" || r.Met == nil || r.Ratio <= 0 ||
		r.Subject.OpsPerSec <= 0 || r.Reference.OpsPerSec <= 0 || r.Subject.P99Ms <= 0 || r.Reference.P99Ms <= 0 ||
		len(r.Subject.RoundsPerOp) != o.Rounds || len(r.Reference.RoundsPerOp) != o.Rounds {
		t.Fatalf("result %+v", r)
	}
	t.Logf("keyledger %.0f/s p99 %.3f ms, bare %.0f/s p99 %.3f ms, ratio %.2f; %v",
		r.Subject.OpsPerSec, r.Subject.P99Ms, r.Reference.OpsPerSec, r.Reference.P99Ms, r.Ratio, r.Notes)
}

const memoryChildEnv = "KEYLEDGER_BENCH_TEST_MEMORY_CHILD"

// TestMemoryChildHelper is the child process of TestMemoryQuick: the test
// binary re-executed with memoryChildEnv set to the projection's folder.
// (A helper test rather than a TestMain, so that no other test file of the
// package has to share one.)
func TestMemoryChildHelper(t *testing.T) {
	dir := os.Getenv(memoryChildEnv)
	if dir == "" {
		return
	}
	if err := MemoryChild([]string{dir}); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryQuick(t *testing.T) {
	old := MemoryChildCommand
	t.Cleanup(func() { MemoryChildCommand = old })
	MemoryChildCommand = func(dir string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryChildHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), memoryChildEnv+"="+dir)
		return cmd
	}
	o := quickOptions(t)
	rs, err := memory(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	r := rs[0]
	if r.Scenario != "memory" || r.Value <= 0 || r.ValueUnit != "MB RSS" || r.Reference.Name != "" || r.Met != nil {
		t.Fatalf("result %+v", r)
	}
	t.Logf("%.1f MB; %v", r.Value, r.Notes)
}

func TestMemoryChildUsage(t *testing.T) {
	if err := MemoryChild(nil); err == nil {
		t.Fatal("no error without a folder")
	}
}

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
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

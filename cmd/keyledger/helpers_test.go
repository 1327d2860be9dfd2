package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

const testAdminKey = "kl_admin_test_0123456789abcdefghij"

// testMetricsToken is the bearer token of /metrics in tests.
const testMetricsToken = "kl_metrics_test_0123456789abcdef"

// TestMain lets the test binary act as the keyledger command, so crash tests
// can run it as a child process without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("KEYLEDGER_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testServer is a keyledger serve running in this process on 127.0.0.1:0.
type testServer struct {
	t      testing.TB
	main   *Main
	cancel context.CancelFunc
	done   chan error
	url    string
}

func startServer(t testing.TB, dir string) *testServer {
	t.Helper()
	return startServerWith(t, dir, nil)
}

// startServerWith is startServer with a config changed by edit.
func startServerWith(t testing.TB, dir string, edit func(*Config)) *testServer {
	t.Helper()
	m := NewMain(io.Discard, io.Discard)
	m.Config = Config{Data: dir, HTTPAddr: "127.0.0.1:0", KeyPrefix: domain.PrefixLive, AdminKey: testAdminKey, Stream: "KEYLEDGER", LogLevel: "warn",
		WebhookAllow: "127.0.0.0/8", WebhookSchedule: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
		SealInterval: 100 * time.Millisecond, MetricsToken: testMetricsToken}
	if edit != nil {
		edit(&m.Config)
	}
	if err := m.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{t: t, main: m, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- m.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for m.Addr() == "" {
		select {
		case err := <-s.done:
			t.Fatalf("serve exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not bind")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.url = "http://" + m.Addr()
	waitReady(t, s.url)
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *testServer) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		s.t.Error("serve did not stop")
	}
}

func waitReady(t testing.TB, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became ready (last error %v)", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call sends a request with the admin key and decodes a JSON answer into
// out (when not nil). It returns the status and the raw body.
func call(t testing.TB, method, url string, body any, out any, hdr ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: content type %q, body %s", method, url, ct, raw)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, url, raw, err)
		}
	}
	return resp.StatusCode, raw
}

func errCode(t testing.TB, raw []byte) string {
	t.Helper()
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("not an error body {code, message}: %s", raw)
	}
	return e.Code
}

// tryCall is call for load generators: no test failure on transport errors,
// just whether the expected status came back.
func tryCall(client *http.Client, method, url string, body any, want int, out any) bool {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return false
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != want {
		return false
	}
	if out != nil {
		return json.Unmarshal(raw, out) == nil
	}
	return true
}

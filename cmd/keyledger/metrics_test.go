package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/schemas"
)

// scrape GETs /metrics with the given Authorization header (empty: none)
// and returns the status and body.
func scrape(t testing.TB, base, auth string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// metricValue finds one sample in the text exposition: name with its
// labels exactly as written, e.g. keyledger_validations_total{result="valid"};
// a sample not present reads as -1.
func metricValue(t testing.TB, body []byte, sample string) float64 {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	return -1
}

func TestMetricsNeedTheTokenAndCount(t *testing.T) {
	s := startServer(t, t.TempDir())
	for _, auth := range []string{"", "Bearer wrong-token-0123456789abcdefgh", "Bearer " + testAdminKey, "Basic " + testMetricsToken} {
		if st, raw := scrape(t, s.url, auth); st != http.StatusUnauthorized || errCode(t, raw) != "unauthorized" {
			t.Fatalf("/metrics with %q: %d %s", auth, st, raw)
		}
	}
	good := "Bearer " + testMetricsToken
	st, body := scrape(t, s.url, good)
	if st != http.StatusOK {
		t.Fatalf("/metrics with the token: %d %s", st, body)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "keyledger_projection_applied_sequence"} {
		if metricValue(t, body, name) < 0 {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	setCatalogue(t, s.url, "projects:read")
	live := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "live", Permissions: []string{"projects:read"}})
	dead := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "dead", Permissions: []string{"projects:read"}})
	if st, raw := call(t, "DELETE", s.url+"/api_keys/"+dead.ID, nil, nil); st != 200 {
		t.Fatalf("revoke: %d %s", st, raw)
	}
	if st, raw := call(t, "POST", s.url+"/organizations/org_1/api_keys", `{"name":""}`, nil); st != 400 {
		t.Fatalf("a bad create: %d %s", st, raw)
	}

	results := []string{"valid", "not_found", "revoked", "expired", "malformed", "rate_limited", "stale", "bad_request"}
	count := func() map[string]float64 {
		_, body := scrape(t, s.url, good)
		out := map[string]float64{}
		for _, r := range results {
			out[r] = metricValue(t, body, `keyledger_validations_total{result="`+r+`"}`)
		}
		for _, c := range []string{`kind="create_key",outcome="ok"`, `kind="create_key",outcome="rejected"`, `kind="revoke_key",outcome="ok"`, `kind="set_catalogue",outcome="ok"`} {
			out[c] = metricValue(t, body, "keyledger_commands_total{"+c+"}")
		}
		return out
	}
	before := count()
	for name, want := range map[string]float64{`kind="create_key",outcome="ok"`: 2, `kind="create_key",outcome="rejected"`: 1, `kind="revoke_key",outcome="ok"`: 1, `kind="set_catalogue",outcome="ok"`: 1} {
		if before[name] != want {
			t.Errorf("commands %s = %v, want %v", name, before[name], want)
		}
	}
	for _, v := range []string{*live.Value, *dead.Value} {
		var out schemas.ValidateResponse
		if st, raw := call(t, "POST", s.url+"/api_keys/validations", schemas.ValidateRequest{Value: v}, &out); st != 200 {
			t.Fatalf("validate: %d %s", st, raw)
		}
	}
	after := count()
	for _, r := range results {
		want := before[r]
		if r == "valid" || r == "revoked" {
			want++
		}
		if after[r] != want {
			t.Errorf("validations %s: %v then %v, want %v", r, before[r], after[r], want)
		}
	}

	// After a command, the projection's applied sequence reaches the
	// ledger's last sequence, and the lag reads 0.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := scrape(t, s.url, good)
		applied := metricValue(t, body, "keyledger_projection_applied_sequence")
		last := metricValue(t, body, "keyledger_ledger_last_sequence")
		lag := metricValue(t, body, "keyledger_projection_lag_events")
		if applied >= 4 && applied == last && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied %v, ledger last %v, lag %v", applied, last, lag)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

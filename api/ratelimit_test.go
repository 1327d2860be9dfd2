package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/projections"
	"github.com/keyledger/keyledger/schemas"
)

func TestParseFailLimit(t *testing.T) {
	for in, want := range map[string]FailLimit{
		"":         {},
		"0":        {},
		"off":      {},
		"0/min":    {},
		"100/min":  {Failures: 100, Per: time.Minute},
		" 100/m ":  {Failures: 100, Per: time.Minute},
		"10/s":     {Failures: 10, Per: time.Second},
		"5000/h":   {Failures: 5000, Per: time.Hour},
		"20/30s":   {Failures: 20, Per: 30 * time.Second},
		"3/1m30s":  {Failures: 3, Per: 90 * time.Second},
		"1/minute": {Failures: 1, Per: time.Minute},
	} {
		got, err := ParseFailLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseFailLimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if again, err := ParseFailLimit(got.String()); err != nil || again != got {
			t.Errorf("ParseFailLimit(%q.String() = %q) = %+v, %v", in, got.String(), again, err)
		}
	}
	for _, bad := range []string{"100", "x/min", "-1/min", "100/", "100/fortnight", "100/-1s", "100/0s", "1e3/min", "99999999999/s"} {
		if l, err := ParseFailLimit(bad); err == nil {
			t.Errorf("ParseFailLimit(%q) = %+v, want an error", bad, l)
		}
	}
}

func TestSourceOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:51234":                "192.0.2.7",
		"192.0.2.7":                      "192.0.2.7",
		"[::ffff:192.0.2.7]:443":         "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443":     "2001:db8:1:2::",
		"[2001:db8:1:2:ffff::1]:443":     "2001:db8:1:2::", // the same /64
		"[fe80::1%eth0]:80":              "fe80::",
		"[::1]:9":                        "::",
		"":                               "invalid IP",
		"@":                              "invalid IP",
		"not an address:80":              "invalid IP",
		"192.0.2.7:51234, 10.0.0.1:8080": "invalid IP",
	} {
		if got := sourceOf(in).String(); got != want {
			t.Errorf("sourceOf(%q) = %s, want %s", in, got, want)
		}
	}
}

// fakeClock is a limiter clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// GCRA: Failures at once, then one per Per/Failures; a refusal uses no
// budget; the wait is exact.
func TestFailLimiterBudget(t *testing.T) {
	l := newFailLimiter(FailLimit{Failures: 5, Per: time.Minute})
	var clk fakeClock
	clk.advance(time.Hour)
	l.now = clk.now
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := 0; i < 5; i++ {
		if _, ok := l.fail(a); !ok {
			t.Fatalf("failure %d refused, want 5 at once", i+1)
		}
	}
	for i := 0; i < 3; i++ {
		wait, ok := l.fail(a)
		if ok || wait != 12*time.Second {
			t.Fatalf("6th failure: %v %v, want refused with 12s to wait", wait, ok)
		}
	}
	if _, ok := l.fail(b); !ok {
		t.Fatal("another source shares the budget")
	}
	clk.advance(11 * time.Second)
	if wait, ok := l.fail(a); ok || wait != time.Second {
		t.Fatalf("after 11s: %v %v, want refused with 1s to wait", wait, ok)
	}
	clk.advance(time.Second)
	if _, ok := l.fail(a); !ok {
		t.Fatal("after 12s one failure is not answered")
	}
	if _, ok := l.fail(a); ok {
		t.Fatal("after 12s two failures are answered")
	}
	// A whole period later, the whole budget is back.
	clk.advance(time.Minute)
	for i := 0; i < 5; i++ {
		if _, ok := l.fail(a); !ok {
			t.Fatalf("after a minute, failure %d refused", i+1)
		}
	}
}

// However many sources fail, at most MaxSources are held, and a source
// that stays within its budget keeps working.
func TestFailLimiterBoundedMemory(t *testing.T) {
	l := newFailLimiter(FailLimit{Failures: 3, Per: time.Minute, MaxSources: 256})
	var clk fakeClock
	l.now = clk.now
	for i := 0; i < 100_000; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.fail(a)
		if i%1000 == 0 {
			clk.advance(time.Millisecond)
		}
	}
	if n := l.tracked(); n > 256 || n < 128 {
		t.Fatalf("%d sources tracked, want at most 256 (and not emptied)", n)
	}
	// Sources that have their budget whole again are forgotten first.
	clk.advance(time.Hour)
	l.fail(netip.MustParseAddr("192.0.2.1"))
	if n := l.tracked(); n > 256 {
		t.Fatalf("%d sources tracked", n)
	}
}

// ledgerFixture is an api.Server on a real projection holding a valid, a
// revoked and an expired key.
type ledgerFixture struct {
	srv                     *Server
	valid, revoked, expired string
	url                     string
}

const rlAdmin = "kl_admin_ratelimit_0123456789abcdef"

func newLedgerFixture(t testing.TB, limit FailLimit) *ledgerFixture {
	t.Helper()
	p, err := projections.Open(projections.Config{Dir: "p", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	f := &ledgerFixture{}
	now := time.Now()
	var events []domain.Event
	for i, v := range []*string{&f.valid, &f.revoked, &f.expired} {
		*v, _ = domain.GenerateKey(domain.PrefixLive)
		id := fmt.Sprintf("api_key_01J0000000000000000000000%d", i)
		d := domain.KeyCreated{KeyID: id, Name: "k", Owner: domain.Owner{Type: domain.OwnerOrganization, ID: "org_a"},
			Permissions: []string{"projects:read"}, Hash: domain.HashKey(*v), Obfuscated: domain.ObfuscateKey(*v)}
		if v == &f.expired {
			exp := now.Add(-time.Hour)
			d.ExpiresAt = &exp
		}
		events = append(events, domain.Event{ID: fmt.Sprintf("event_%d", i), OrganizationID: "org_a", AggregateID: id, Seq: uint64(len(events) + 1), CreatedAt: now.Add(-2 * time.Hour), Data: d})
		if v == &f.revoked {
			events = append(events, domain.Event{ID: "event_r", OrganizationID: "org_a", AggregateID: id, Seq: uint64(len(events) + 1), CreatedAt: now,
				Data: domain.KeyRevoked{KeyID: id, Reason: domain.ReasonLeaked}})
		}
	}
	if err := p.Apply(events); err != nil {
		t.Fatal(err)
	}
	f.srv = New(Config{Queries: p, AdminKeyHash: sha256.Sum256([]byte(rlAdmin)), FailedValidationLimit: limit, Metrics: prometheus.NewRegistry()})
	return f
}

// serve runs the fixture's server as keyledger serves it (NewHTTPServer)
// on a loopback port.
func (f *ledgerFixture) serve(t testing.TB) {
	t.Helper()
	hs := NewHTTPServer(f.srv, f.srv.log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	f.url = "http://" + ln.Addr().String()
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (all of 127.0.0.0/8 is loopback on Linux).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
}

type answer struct {
	status     int
	retryAfter string
	key        *schemas.APIKey
	reason     string
	code       string
}

func validateAs(t testing.TB, c *http.Client, url, body string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/api_keys/validations", bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+rlAdmin)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode == 200 {
		var v schemas.ValidateResponse
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		a.key, a.reason = v.APIKey, v.Reason
		return a
	}
	var e schemas.Error
	if err := json.Unmarshal(raw, &e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("%d answer is not {code, message}: %s", resp.StatusCode, raw)
	}
	a.code = e.Code
	return a
}

func valueBody(v string) string { return `{"value":` + strconv.Quote(v) + `}` }

// Through the real HTTP server: each kind of failure counts, a source over
// its budget gets 429 with Retry-After for further failures, valid keys
// are answered from every source meanwhile, other sources have their own
// budget, a body that is not a validation does not count, and the budget
// comes back with time.
func TestFailedValidationsAreRateLimitedPerSource(t *testing.T) {
	f := newLedgerFixture(t, FailLimit{Failures: 4, Per: time.Minute})
	var clk fakeClock
	clk.advance(time.Hour)
	f.srv.fails.now = clk.now
	f.serve(t)
	a, b := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	notFound, _ := domain.GenerateKey(domain.PrefixLive)

	// Not a validation: not counted.
	for i := 0; i < 10; i++ {
		if got := validateAs(t, a, f.url, `{"value":1}`); got.status != 400 || got.code != "invalid_json" {
			t.Fatalf("wrong type: %+v", got)
		}
	}
	// One of each failure: all four count.
	for v, reason := range map[string]string{"sk_live_nope": "malformed", notFound: "not_found", f.revoked: "revoked", f.expired: "expired"} {
		if got := validateAs(t, a, f.url, valueBody(v)); got.status != 200 || got.key != nil || got.reason != reason {
			t.Fatalf("%s: %+v, want 200 %s", reason, got, reason)
		}
	}
	for _, v := range []string{notFound, "garbage", f.revoked, f.expired, ""} {
		got := validateAs(t, a, f.url, valueBody(v))
		if got.status != 429 || got.code != CodeTooManyFailedValidations || got.retryAfter != "15" {
			t.Fatalf("failure past the budget: %+v, want 429 %s with Retry-After 15", got, CodeTooManyFailedValidations)
		}
	}
	// The escaped (JSON path) form of the body is limited the same way.
	if got := validateAs(t, a, f.url, `{"value":"sk_live_\u006eope"}`); got.status != 429 {
		t.Fatalf("JSON path failure past the budget: %+v", got)
	}
	// Valid keys are answered, from the limited source too.
	for _, c := range []*http.Client{a, b} {
		if got := validateAs(t, c, f.url, valueBody(f.valid)); got.status != 200 || got.key == nil || got.retryAfter != "" {
			t.Fatalf("valid key while a source is limited: %+v", got)
		}
	}
	// Another source has its own budget.
	for i := 0; i < 4; i++ {
		if got := validateAs(t, b, f.url, valueBody(notFound)); got.status != 200 || got.reason != "not_found" {
			t.Fatalf("another source's failure %d: %+v", i+1, got)
		}
	}
	if got := validateAs(t, b, f.url, valueBody(notFound)); got.status != 429 {
		t.Fatalf("another source past its budget: %+v", got)
	}
	// Retry-After counts down, and when it is over one more failure is
	// answered.
	clk.advance(14*time.Second + time.Millisecond)
	if got := validateAs(t, a, f.url, valueBody(notFound)); got.status != 429 || got.retryAfter != "1" {
		t.Fatalf("1 ms before the next failure may be answered: %+v, want Retry-After 1", got)
	}
	clk.advance(time.Second)
	if got := validateAs(t, a, f.url, valueBody(notFound)); got.status != 200 || got.reason != "not_found" {
		t.Fatalf("after Retry-After: %+v", got)
	}
	if got := validateAs(t, a, f.url, valueBody(notFound)); got.status != 429 {
		t.Fatalf("the budget refills at 4/min, not faster: %+v", got)
	}
}

// Without a limit, failures are never refused.
func TestNoFailLimitByDefault(t *testing.T) {
	f := newLedgerFixture(t, FailLimit{})
	if f.srv.fails != nil {
		t.Fatal("a zero FailLimit built a limiter")
	}
	f.serve(t)
	c := clientFrom("127.0.0.1")
	for i := 0; i < 300; i++ {
		if got := validateAs(t, c, f.url, valueBody("sk_live_nope")); got.status != 200 || got.reason != "malformed" {
			t.Fatalf("failure %d without a limit: %+v", i, got)
		}
	}
}

// A flood of failures from one source, concurrent with valid validations
// from it and from another: the valid ones are all answered 200, and the
// limited source gets exactly its budget of failure answers.
func TestFailLimitUnderConcurrency(t *testing.T) {
	f := newLedgerFixture(t, FailLimit{Failures: 50, Per: time.Hour})
	f.serve(t)
	attacker, other := clientFrom("127.0.0.3"), clientFrom("127.0.0.4")
	var answered, limited atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for w := 0; w < 8; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 40 && ctx.Err() == nil; i++ {
				switch got := validateAs(t, attacker, f.url, valueBody(fmt.Sprintf("sk_live_guess%d", i))); got.status {
				case 200:
					answered.Add(1)
				case 429:
					limited.Add(1)
				default:
					t.Errorf("attacker: %+v", got)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 40 && ctx.Err() == nil; i++ {
				c := attacker
				if i%2 == 0 {
					c = other
				}
				if got := validateAs(t, c, f.url, valueBody(f.valid)); got.status != 200 || got.key == nil {
					t.Errorf("valid key during a flood: %+v", got)
				}
			}
		}()
	}
	wg.Wait()
	if answered.Load() != 50 || limited.Load() != 8*40-50 {
		t.Fatalf("answered %d and limited %d failures, want 50 and %d", answered.Load(), limited.Load(), 8*40-50)
	}
}

// discard is a ResponseWriter that keeps nothing.
type discard struct {
	h      http.Header
	status int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(s int)           { d.status = s }

// handlerLoop returns a function that sends one validation of value from
// remote to h, reusing the request.
func handlerLoop(h http.Handler, value, remote string) func() int {
	body := []byte(valueBody(value))
	req, _ := http.NewRequest("POST", "/api_keys/validations", nil)
	req.Header.Set("Authorization", "Bearer "+rlAdmin)
	req.RemoteAddr = remote
	w := &discard{h: http.Header{}}
	rd := bytes.NewReader(body)
	return func() int {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		w.status = 200
		h.ServeHTTP(w, req)
		return w.status
	}
}

// The limiter costs a valid validation nothing: the same allocations with
// it as without, from a source that is over its budget too. A known
// source's further failures do not allocate for it either.
func TestFailLimitAllocations(t *testing.T) {
	off := newLedgerFixture(t, FailLimit{})
	on := newLedgerFixture(t, FailLimit{Failures: 1, Per: time.Hour})
	const src = "198.51.100.9:4000"
	sendOff := handlerLoop(off.srv, off.valid, src)
	sendOn := handlerLoop(on.srv, on.valid, src)
	// Put the source over its budget.
	failOn := handlerLoop(on.srv, "sk_live_nope", src)
	failOn()
	if st := failOn(); st != 429 {
		t.Fatalf("second failure: %d, want 429", st)
	}
	base := testing.AllocsPerRun(200, func() { sendOff() })
	with := testing.AllocsPerRun(200, func() {
		if st := sendOn(); st != 200 {
			t.Fatalf("valid key from a limited source: %d", st)
		}
	})
	if with != base {
		t.Fatalf("a valid validation allocates %.1f times with the limiter, %.1f without", with, base)
	}
	failBase := handlerLoop(off.srv, "sk_live_nope", src)
	fb := testing.AllocsPerRun(200, func() { failBase() })
	big := newLedgerFixture(t, FailLimit{Failures: 1_000_000_000, Per: time.Hour})
	failBig := handlerLoop(big.srv, "sk_live_nope", src)
	failBig()
	fw := testing.AllocsPerRun(200, func() { failBig() })
	if fw != fb {
		t.Fatalf("a failed validation within the budget allocates %.1f times with the limiter, %.1f without", fw, fb)
	}
}

func benchLimited(b *testing.B, limit FailLimit, valid bool) {
	f := newLedgerFixture(b, limit)
	v := "sk_live_nope"
	if valid {
		v = f.valid
	}
	send := handlerLoop(f.srv, v, "203.0.113.7:5555")
	for b.Loop() {
		send()
	}
}

// The hot-path benchmarks of bench_test.go with the limiter on: a valid
// key, a failure within the budget, and a failure past it (429).
func BenchmarkHandlerValidateHitLimited(b *testing.B) {
	benchLimited(b, FailLimit{Failures: 100, Per: time.Minute}, true)
}

func BenchmarkHandlerValidateMalformedLimited(b *testing.B) {
	benchLimited(b, FailLimit{Failures: 1_000_000_000, Per: time.Second}, false)
}

func BenchmarkHandlerValidateMalformedOverLimit(b *testing.B) {
	benchLimited(b, FailLimit{Failures: 1, Per: time.Hour}, false)
}

func BenchmarkHandlerValidateHitUnlimited(b *testing.B) {
	benchLimited(b, FailLimit{}, true)
}

func BenchmarkHandlerValidateMalformedUnlimited(b *testing.B) {
	benchLimited(b, FailLimit{}, false)
}

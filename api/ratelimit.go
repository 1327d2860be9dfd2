package api

import (
	"fmt"
	"hash/maphash"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Failed validations are rate limited per source address: past its budget,
// a source's further failed validations (not_found, malformed, revoked,
// expired) are answered 429 too_many_failed_validations with Retry-After,
// instead of the reason.
//
//   - Valid keys are always answered, from every address, over its budget or
//     not. The caller of /api_keys/validations is an application service
//     validating keys for all of its users from one address: one user
//     guessing keys through it must not lock the others out. So the limiter
//     is consulted only after a validation has failed, and valid traffic
//     does no work for it at all: no lock, no allocation, no clock read.
//   - Only validations that ran count; a body that is not a validation
//     request (400 invalid_json) does not.
//   - The source is the TCP peer (Request.RemoteAddr). X-Forwarded-For is
//     ignored: anyone can write it. Behind a proxy every client is the
//     proxy's address. An IPv6 source counts by its /64, which one host
//     usually holds whole; an IPv4-mapped IPv6 address counts as the IPv4
//     address.
//   - The algorithm is GCRA (a token bucket held as one time per source):
//     Failures may come at once, then one per Per/Failures. A 429 does not
//     consume budget, so a source that keeps failing gets a steady
//     Failures per Per answered and 429 for the rest.
//   - Memory is bounded: at most MaxSources addresses are tracked, in
//     shards. A full shard first forgets the sources whose budget is whole
//     again (they carry no state), then arbitrary ones.

// FailLimit is how many failed validations a source address may make per
// period. The zero value turns the limit off.
type FailLimit struct {
	Failures int
	Per      time.Duration
	// MaxSources bounds the number of source addresses tracked (default
	// 65536).
	MaxSources int
}

// Enabled reports whether the limit is on.
func (l FailLimit) Enabled() bool { return l.Failures > 0 && l.Per > 0 }

// String is the limit as ParseFailLimit reads it.
func (l FailLimit) String() string {
	if !l.Enabled() {
		return "0"
	}
	switch l.Per {
	case time.Second:
		return strconv.Itoa(l.Failures) + "/s"
	case time.Minute:
		return strconv.Itoa(l.Failures) + "/min"
	case time.Hour:
		return strconv.Itoa(l.Failures) + "/h"
	}
	return strconv.Itoa(l.Failures) + "/" + l.Per.String()
}

// ParseFailLimit reads a limit such as "100/min", "10/s", "5000/h" or
// "20/30s" (any Go duration after the slash); "0", "off" and "" turn it
// off.
func ParseFailLimit(s string) (FailLimit, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "0", "off":
		return FailLimit{}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return FailLimit{}, fmt.Errorf("%q: want failures/period, e.g. 100/min, or 0 to turn the limit off", s)
	}
	failures, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || failures < 0 || failures > 1_000_000_000 {
		return FailLimit{}, fmt.Errorf("%q: the number of failures must be an integer from 0 to 1000000000", s)
	}
	var d time.Duration
	switch p := strings.TrimSpace(per); p {
	case "s", "sec", "second":
		d = time.Second
	case "m", "min", "minute":
		d = time.Minute
	case "h", "hour":
		d = time.Hour
	default:
		if d, err = time.ParseDuration(p); err != nil || d <= 0 {
			return FailLimit{}, fmt.Errorf("%q: the period must be s, min, h or a positive duration such as 30s", s)
		}
	}
	if failures == 0 {
		return FailLimit{}, nil
	}
	return FailLimit{Failures: failures, Per: d}, nil
}

const (
	failShards        = 64
	defaultMaxSources = 1 << 16
)

// failLimiter is the per-source state of a FailLimit.
type failLimiter struct {
	interval int64 // ns of budget one failure uses: Per/Failures
	burst    int64 // ns: how far ahead of now a source's budget may be used
	perShard int
	seed     maphash.Seed
	now      func() int64 // monotonic ns
	shards   [failShards]failShard
}

type failShard struct {
	mu sync.Mutex
	// tat is each source's theoretical arrival time: when its budget is
	// whole again, in the limiter's clock.
	tat map[netip.Addr]int64
	_   [48]byte // one shard per cache line
}

// newFailLimiter returns the limiter of l, or nil when l is off.
func newFailLimiter(l FailLimit) *failLimiter {
	if !l.Enabled() {
		return nil
	}
	maxSources := l.MaxSources
	if maxSources <= 0 {
		maxSources = defaultMaxSources
	}
	epoch := time.Now()
	fl := &failLimiter{
		interval: max(int64(l.Per)/int64(l.Failures), 1),
		burst:    int64(l.Per),
		perShard: max((maxSources+failShards-1)/failShards, 1),
		seed:     maphash.MakeSeed(),
		now:      func() int64 { return int64(time.Since(epoch)) },
	}
	for i := range fl.shards {
		fl.shards[i].tat = map[netip.Addr]int64{}
	}
	return fl
}

// sourceOf is the address a request's failures count against.
func sourceOf(remoteAddr string) netip.Addr {
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(remoteAddr); err != nil {
		// Not an IP (a Unix socket, a test): all such sources share one
		// budget, the zero address.
		return netip.Addr{}
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	return a
}

// fail counts one failed validation of src. It reports whether it was
// within the limit, and, when not, how long until the next one would be.
func (l *failLimiter) fail(src netip.Addr) (time.Duration, bool) {
	sh := &l.shards[maphash.Comparable(l.seed, src)%failShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := l.now()
	tat, known := sh.tat[src]
	tat = max(tat, now)
	next := tat + l.interval
	if next-now > l.burst {
		return time.Duration(next - now - l.burst), false
	}
	if !known && len(sh.tat) >= l.perShard {
		sh.evict(now, l.perShard)
	}
	sh.tat[src] = next
	return 0, true
}

// evict makes room in a full shard: sources whose budget is whole again
// first, then arbitrary ones (map order), down to 7/8 of its size, so that
// the sweep runs once per perShard/8 new sources at most.
func (sh *failShard) evict(now int64, perShard int) {
	for a, t := range sh.tat {
		if t <= now {
			delete(sh.tat, a)
		}
	}
	for a := range sh.tat {
		if len(sh.tat) <= perShard-perShard/8-1 {
			break
		}
		delete(sh.tat, a)
	}
}

// tracked is the number of sources held, for tests.
func (l *failLimiter) tracked() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.tat)
		sh.mu.Unlock()
	}
	return n
}

// CodeTooManyFailedValidations is the code of the 429 answer.
const CodeTooManyFailedValidations = "too_many_failed_validations"

// limitFailure counts a failed validation against its source address and,
// when the source is over its limit, answers 429 with Retry-After (whole
// seconds, at least 1). It reports whether it answered.
func (s *Server) limitFailure(w http.ResponseWriter, r *http.Request) bool {
	if s.fails == nil {
		return false
	}
	wait, ok := s.fails.fail(sourceOf(r.RemoteAddr))
	if ok {
		return false
	}
	secs := max(int64((wait+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeError(w, http.StatusTooManyRequests, CodeTooManyFailedValidations,
		fmt.Sprintf("too many failed validations from this address; failed validations are answered again in %d s (valid keys are answered meanwhile)", secs))
	return true
}

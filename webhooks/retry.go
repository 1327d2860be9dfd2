package webhooks

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultSchedule is the design's retry schedule: the delays before the
// 2nd to the 8th attempt. A delivery still failing after the last one
// finally fails, about 28 hours after it was first tried.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// jitter spreads the retries of many deliveries that failed together (an
// endpoint's outage) over a tenth of their delay, never earlier than the
// schedule.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/10+1)
}

// retryDelay is the wait before attempt n+1 after attempt n failed: the
// schedule's step with jitter, and no less than the Retry-After the
// endpoint asked for (capped at maxRetryAfter).
func retryDelay(schedule []time.Duration, n int, retryAfter, maxRetryAfter time.Duration) time.Duration {
	d := jitter(schedule[n-1])
	return max(d, min(retryAfter, maxRetryAfter))
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP
// date. It returns 0 when there is none or it is not valid or already past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		// Beyond any sensible cap already; avoid overflowing a Duration.
		return time.Duration(min(secs, 365*24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

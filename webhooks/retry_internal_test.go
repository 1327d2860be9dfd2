package webhooks

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]time.Duration{
		"":      0,
		"1":     time.Second,
		" 120 ": 2 * time.Minute,
		"0":     0,
		"-5":    0,
		"soon":  0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
		"99999999999999": 365 * 24 * time.Hour,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	s := []time.Duration{time.Second, 10 * time.Second}
	for range 200 {
		if d := retryDelay(s, 2, 0, time.Hour); d < 10*time.Second || d > 11*time.Second {
			t.Fatalf("delay %v outside the step and its jitter", d)
		}
	}
	// Retry-After wins over a shorter step, up to the cap.
	if d := retryDelay(s, 1, time.Minute, time.Hour); d != time.Minute {
		t.Errorf("with Retry-After 1m: %v", d)
	}
	if d := retryDelay(s, 1, 48*time.Hour, time.Hour); d != time.Hour {
		t.Errorf("with Retry-After 48h capped at 1h: %v", d)
	}
	// The default schedule is the design's.
	want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
	for i := range want {
		if DefaultSchedule[i] != want[i] {
			t.Errorf("DefaultSchedule = %v", DefaultSchedule)
		}
	}
}

func TestDeliveryEncodingKeepsTheBodyExact(t *testing.T) {
	body := []byte("{\"a\":\"line\\nbreak\"}\n\n  trailing")
	d := delivery{EndpointID: "we_1", EventID: "event_1", ID: "event_1", Attempt: 3, NotBefore: time.Now().UTC(), Body: body}
	raw, err := d.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeDelivery(raw)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Body) != string(body) || got.Attempt != 3 || !got.NotBefore.Equal(d.NotBefore) || got.msgID() != "event_1/3" {
		t.Errorf("round trip = %+v", got)
	}
	for _, bad := range [][]byte{nil, []byte("{}"), []byte("{}\n"), []byte("nope\nbody")} {
		if _, err := decodeDelivery(bad); err == nil {
			t.Errorf("decodeDelivery(%q): no error", bad)
		}
	}
}

func TestValidEndpointID(t *testing.T) {
	for _, ok := range []string{"we_01J0000000000000000000000", "a", "A-b_9"} {
		if !ValidEndpointID(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "we.1", "we*", "we>", "we 1", "we/1", string(make([]byte, 129))} {
		if ValidEndpointID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

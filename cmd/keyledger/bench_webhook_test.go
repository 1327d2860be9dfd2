package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/schemas"
)

// BenchmarkRevokeToWebhook measures, through the real server, the time
// from a revoke's request to its api_key.revoked webhook reaching a
// receiver on loopback; it reports the median and p99.
//
//	go test -run '^$' -bench RevokeToWebhook -benchtime 200x ./cmd/keyledger
func BenchmarkRevokeToWebhook(b *testing.B) {
	s := startServer(b, b.TempDir())
	setCatalogue(b, s.url, "projects:read")
	var mu sync.Mutex
	arrived := map[string]chan time.Time{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		var e schemas.PublicEvent
		var d struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(body, &e) == nil && json.Unmarshal(e.Data, &d) == nil {
			mu.Lock()
			if c, ok := arrived[d.ID]; ok {
				c <- at
			}
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	call(b, "POST", s.url+"/webhook_endpoints", `{"url":"`+rcv.URL+`","events":["api_key.revoked"]}`, nil)

	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		b.StopTimer()
		k := createKey(b, s.url, "org_bench", schemas.CreateAPIKeyRequest{Name: "k", Permissions: []string{"projects:read"}})
		c := make(chan time.Time, 1)
		mu.Lock()
		arrived[k.ID] = c
		mu.Unlock()
		b.StartTimer()
		start := time.Now()
		if status, raw := call(b, "DELETE", s.url+"/api_keys/"+k.ID, nil, nil); status != 200 {
			b.Fatalf("revoke: %d %s", status, raw)
		}
		select {
		case at := <-c:
			lat = append(lat, at.Sub(start))
		case <-time.After(30 * time.Second):
			b.Fatal("the webhook never came")
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
	}
}

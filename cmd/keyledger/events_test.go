package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/schemas"
)

func listEvents(t *testing.T, base, query string) schemas.EventList {
	t.Helper()
	var out schemas.EventList
	if status, raw := call(t, "GET", base+"/events?"+query, nil, &out); status != http.StatusOK {
		t.Fatalf("GET /events?%s: %d %s", query, status, raw)
	}
	return out
}

// Paging the feed while keys are being created concurrently sees every
// event once, in ledger order: no skip, no repeat.
func TestEventsFeedNeverSkipsOrRepeats(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	const writers, each = 4, 15
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				createKey(t, s.url, fmt.Sprintf("org_%d", w), schemas.CreateAPIKeyRequest{Name: fmt.Sprintf("k%d", i), Permissions: []string{"projects:read"}})
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[string]bool{}
	var last uint64
	after := ""
	deadline := time.Now().Add(60 * time.Second)
	for {
		page := listEvents(t, s.url, "events=api_key.created&limit=7&after="+after)
		for _, e := range page.Data {
			if seen[e.ID] {
				t.Fatalf("event %s repeated", e.ID)
			}
			if e.Context.LedgerSequence <= last {
				t.Fatalf("sequence %d after %d: out of order", e.Context.LedgerSequence, last)
			}
			if e.Event != schemas.EventAPIKeyCreated {
				t.Fatalf("filtered on api_key.created, got %s", e.Event)
			}
			seen[e.ID], last = true, e.Context.LedgerSequence
		}
		if page.ListMetadata.After != nil {
			after = *page.ListMetadata.After
		}
		select {
		case <-done:
			if len(page.Data) == 0 && len(seen) == writers*each {
				return
			}
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("saw %d of %d events", len(seen), writers*each)
		}
		if len(page.Data) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestEventsFeedFilters(t *testing.T) {
	s := startServer(t, t.TempDir())
	setCatalogue(t, s.url, "projects:read")
	a := createKey(t, s.url, "org_a", schemas.CreateAPIKeyRequest{Name: "a", Permissions: []string{"projects:read"}})
	mid := time.Now()
	time.Sleep(10 * time.Millisecond)
	b := createKey(t, s.url, "org_b", schemas.CreateAPIKeyRequest{Name: "b", Permissions: []string{"projects:read"}})
	if status, raw := call(t, "DELETE", s.url+"/api_keys/"+a.ID, nil, nil); status != 200 {
		t.Fatalf("revoke: %d %s", status, raw)
	}

	all := listEvents(t, s.url, "limit=100")
	if len(all.Data) != 4 { // the catalogue, two creates, a revoke
		t.Fatalf("all events: %d, want 4", len(all.Data))
	}
	byOrg := listEvents(t, s.url, "organization_id=org_a")
	if len(byOrg.Data) != 2 || byOrg.Data[0].Event != schemas.EventAPIKeyCreated || byOrg.Data[1].Event != schemas.EventAPIKeyRevoked {
		t.Fatalf("org_a's events: %+v", byOrg.Data)
	}
	revoked := listEvents(t, s.url, "events=api_key.revoked")
	if len(revoked.Data) != 1 || !strings.Contains(string(revoked.Data[0].Data), a.ID) {
		t.Fatalf("revocations: %+v", revoked.Data)
	}
	since := listEvents(t, s.url, "events=api_key.created&range_start="+mid.UTC().Format(time.RFC3339Nano))
	if len(since.Data) != 1 || !strings.Contains(string(since.Data[0].Data), b.ID) {
		t.Fatalf("created since %v: %+v", mid, since.Data)
	}
	until := listEvents(t, s.url, "events=api_key.created&range_end="+mid.UTC().Format(time.RFC3339Nano))
	if len(until.Data) != 1 || !strings.Contains(string(until.Data[0].Data), a.ID) {
		t.Fatalf("created before %v: %+v", mid, until.Data)
	}
	// Newest first, paged by the cursor: the same events, reversed.
	var desc []string
	after := ""
	for {
		page := listEvents(t, s.url, "order=desc&limit=3&after="+after)
		for _, e := range page.Data {
			desc = append(desc, e.ID)
		}
		if len(page.Data) == 0 {
			break
		}
		after = *page.ListMetadata.After
	}
	if len(desc) != len(all.Data) {
		t.Fatalf("desc pages hold %d events, want %d", len(desc), len(all.Data))
	}
	for i, e := range all.Data {
		if desc[len(desc)-1-i] != e.ID {
			t.Fatalf("desc order %v is not the reverse of %v", desc, all.Data)
		}
	}
	if rev := listEvents(t, s.url, "order=desc&events=api_key.created&organization_id=org_b"); len(rev.Data) != 1 || !strings.Contains(string(rev.Data[0].Data), b.ID) {
		t.Fatalf("desc filtered: %+v", rev.Data)
	}

	// Nothing leaves with a value or a hash.
	raw, _ := json.Marshal(all)
	for _, secret := range []string{*a.Value, *b.Value} {
		if strings.Contains(string(raw), secret) {
			t.Fatal("a key value is in the feed")
		}
	}
	if strings.Contains(string(raw), `"hash"`) {
		t.Fatal("a hash is in the feed")
	}
	for q, code := range map[string]string{
		"events=api_key.exploded": "invalid_event_type", "limit=0": "invalid_limit",
		"order=sideways": "invalid_order", "after=bm9wZQ": "invalid_cursor", "range_start=yesterday": "invalid_range", "organization_id=a.b": "invalid_organization_id",
	} {
		status, body := call(t, "GET", s.url+"/events?"+q, nil, nil)
		if status != 400 || errCode(t, body) != code {
			t.Errorf("GET /events?%s: %d %s, want 400 %s", q, status, body, code)
		}
	}
}

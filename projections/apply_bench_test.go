package projections

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// BenchmarkApplyCreated applies runs of 512 api_key.created events to a
// projection on disk: the projector's cost per event, Pebble's background
// work included (an op is a run).
func BenchmarkApplyCreated(b *testing.B) {
	p, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	owner := domain.Owner{Type: domain.OwnerOrganization, ID: "org_bench"}
	now := time.Now().UTC()
	const run = 512
	var events []domain.Event
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if len(events) == 0 {
			events = make([]domain.Event, 64*run)
			for i := range events {
				seq++
				v, _ := domain.GenerateKey(domain.PrefixLive)
				id := fmt.Sprintf("api_key_01J%023d", seq)
				events[i] = domain.Event{ID: "event_x", OrganizationID: "org_bench", AggregateID: id, Seq: seq, CreatedAt: now,
					Data: domain.KeyCreated{KeyID: id, Name: "bench", Owner: owner, Permissions: []string{"projects:read"},
						Hash: domain.HashKey(v), Obfuscated: domain.ObfuscateKey(v)}}
			}
		}
		b.StartTimer()
		if err := p.Apply(events[:run]); err != nil {
			b.Fatal(err)
		}
		events = events[run:]
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*run), "ns/event")
}

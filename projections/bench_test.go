package projections

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/keyledger/keyledger/domain"
)

// Hot-path benchmarks; CI runs them briefly so they cannot rot.

func benchProjection(b *testing.B, n int) (*Projection, []string) {
	b.Helper()
	p, err := Open(Config{Dir: "p", FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	values := make([]string, n)
	events := make([]domain.Event, n)
	for i := range values {
		v, _ := domain.GenerateKey(domain.PrefixLive)
		values[i] = v
		id := fmt.Sprintf("api_key_01J%023d", i)
		events[i] = domain.Event{ID: fmt.Sprintf("event_%d", i), OrganizationID: "org_a", AggregateID: id, Seq: uint64(i + 1), CreatedAt: time.Now(),
			Data: domain.KeyCreated{KeyID: id, Name: "k", Owner: domain.Owner{Type: domain.OwnerOrganization, ID: "org_a"},
				Permissions: []string{"projects:read"}, Hash: domain.HashKey(v), Obfuscated: domain.ObfuscateKey(v)}}
	}
	if err := p.Apply(events); err != nil {
		b.Fatal(err)
	}
	return p, values
}

func BenchmarkSHA256Reference(b *testing.B) {
	v, _ := domain.GenerateKey(domain.PrefixLive)
	buf := []byte(v)
	for b.Loop() {
		_ = sha256.Sum256(buf)
	}
}

func BenchmarkValidateHit(b *testing.B) {
	p, values := benchProjection(b, 1000)
	i := 0
	var k domain.ValidKey
	for b.Loop() {
		if reason := p.ValidateInto(values[i%len(values)], &k); reason != "" {
			b.Fatal(reason)
		}
		i++
	}
}

func BenchmarkValidateMiss(b *testing.B) {
	p, _ := benchProjection(b, 1000)
	unknown, _ := domain.GenerateKey(domain.PrefixLive)
	for b.Loop() {
		if _, reason := p.Validate(unknown); reason != domain.InvalidNotFound {
			b.Fatal(reason)
		}
	}
}

func BenchmarkValidateMalformed(b *testing.B) {
	p, _ := benchProjection(b, 10)
	for b.Loop() {
		if _, reason := p.Validate("sk_live_not-a-key"); reason != domain.InvalidMalformed {
			b.Fatal(reason)
		}
	}
}

package api_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/projections"
)

// Hot-path benchmarks of the handler alone (no network); CI runs them
// briefly so they cannot rot.

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

const benchAdmin = "kl_admin_bench_0123456789abcdef"

func benchHandler(b *testing.B) (http.Handler, string) {
	b.Helper()
	p, err := projections.Open(projections.Config{Dir: "p", FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	v, _ := domain.GenerateKey(domain.PrefixLive)
	id := "api_key_01J00000000000000000000001"
	err = p.Apply([]domain.Event{{ID: "event_1", OrganizationID: "org_a", AggregateID: id, Seq: 1, CreatedAt: time.Now(),
		Data: domain.KeyCreated{KeyID: id, Name: "ci", Owner: domain.Owner{Type: domain.OwnerUser, ID: "user_1"},
			Permissions: []string{"projects:read", "tasks:read"}, Hash: domain.HashKey(v), Obfuscated: domain.ObfuscateKey(v)}}})
	if err != nil {
		b.Fatal(err)
	}
	// With a metrics registry, as keyledger serve runs it: counting is on the hot path.
	return api.New(api.Config{Queries: p, AdminKeyHash: sha256.Sum256([]byte(benchAdmin)), Metrics: prometheus.NewRegistry()}), v
}

func benchValidate(b *testing.B, h http.Handler, value string) {
	body := []byte(fmt.Sprintf(`{"value":%q}`, value))
	req, _ := http.NewRequest("POST", "/api_keys/validations", nil)
	req.Header.Set("Authorization", "Bearer "+benchAdmin)
	req.Header.Set("Content-Type", "application/json")
	w := &discardWriter{h: http.Header{}}
	rd := bytes.NewReader(body)
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

func BenchmarkHandlerValidateHit(b *testing.B) {
	h, v := benchHandler(b)
	benchValidate(b, h, v)
}

func BenchmarkHandlerValidateMalformed(b *testing.B) {
	h, _ := benchHandler(b)
	benchValidate(b, h, "sk_live_nope")
}

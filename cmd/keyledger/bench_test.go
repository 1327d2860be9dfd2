package main

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"testing"

	"github.com/keyledger/keyledger/schemas"
)

// Benchmarks through the real server: go test -run '^$' -bench . ./cmd/keyledger/

func benchServer(b *testing.B, keys int) (*testServer, []string) {
	b.Helper()
	s := startServer(b, b.TempDir())
	setCatalogue(b, s.url, "projects:read")
	values := make([]string, 0, keys)
	for i := 0; i < keys; i++ {
		var k schemas.APIKey
		if !tryCall(http.DefaultClient, "POST", s.url+"/organizations/org_bench/api_keys",
			schemas.CreateAPIKeyRequest{Name: fmt.Sprint("k", i), Permissions: []string{"projects:read"}}, 201, &k) {
			b.Fatal("create failed")
		}
		values = append(values, *k.Value)
	}
	return s, values
}

// BenchmarkSHA256OfKey is the reference: one hash of a key-sized value, the
// floor of any hash-at-rest design.
func BenchmarkSHA256OfKey(b *testing.B) {
	v := []byte("sk_live_Cxvwe5oXIpw2Oypl5APWsPcwk6TO50C1Z317U")
	for b.Loop() {
		_ = sha256.Sum256(v)
	}
}

// BenchmarkValidateInProcess validates through the projection, the code
// path the HTTP handler calls.
func BenchmarkValidateInProcess(b *testing.B) {
	s, values := benchServer(b, 200)
	proj := s.main.proj()
	i := 0
	for b.Loop() {
		if _, reason := proj.Validate(values[i%len(values)]); reason != "" {
			b.Fatal("valid key refused")
		}
		i++
	}
}

// BenchmarkValidateHTTP validates over HTTP on loopback, in parallel.
func BenchmarkValidateHTTP(b *testing.B) {
	s, values := benchServer(b, 200)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if !tryCall(client, "POST", s.url+"/api_keys/validations", schemas.ValidateRequest{Value: values[i%len(values)]}, 200, nil) {
				b.Fatal("validation failed")
			}
			i++
		}
	})
}

// BenchmarkCreateHTTP creates keys over HTTP: each is fsynced to the ledger
// and applied by the projection before it is answered.
func BenchmarkCreateHTTP(b *testing.B) {
	s, _ := benchServer(b, 0)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if !tryCall(client, "POST", s.url+"/organizations/org_bench/api_keys",
				schemas.CreateAPIKeyRequest{Name: fmt.Sprint("b", i), Permissions: []string{"projects:read"}}, 201, nil) {
				b.Fatal("create failed")
			}
			i++
		}
	})
}

package client_test

import (
	"context"
	"testing"

	"github.com/keyledger/keyledger/client"
	"github.com/keyledger/keyledger/internal/ledgertest"
)

// benchKey starts keyledger and creates one key to validate.
func benchKey(b *testing.B) (*client.Client, string) {
	b.Helper()
	srv := ledgertest.Start(b)
	_, value := srv.Seed(b, org, "projects:read")
	return srv.Client(b), value
}

// BenchmarkValidateHTTPClient is one validation through the Go client, over
// loopback HTTP to a real keyledger.
func BenchmarkValidateHTTPClient(b *testing.B) {
	c, value := benchKey(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Validate(ctx, value)
		if err != nil || res.APIKey == nil {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkMiddlewareHTTPClient is one request through the middleware
// validating with the Go client (the application's handler does nothing).
func BenchmarkMiddlewareHTTPClient(b *testing.B) {
	c, value := benchKey(b)
	ledgertest.BenchMiddleware(b, c, value)
}

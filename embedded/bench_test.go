package embedded_test

import (
	"context"
	"testing"

	"github.com/keyledger/keyledger/embedded"
	"github.com/keyledger/keyledger/internal/ledgertest"
)

func benchValidator(b *testing.B) (*embedded.Validator, string) {
	b.Helper()
	srv := ledgertest.Start(b)
	_, value := srv.Seed(b, org, "projects:read")
	v, err := embedded.Open(context.Background(), embedded.Config{NATSURL: validatorURL(srv.NATSAddr)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Close() })
	// Opened after the create: the key is in the projection.
	return v, value
}

// BenchmarkValidateEmbedded is one validation by the embedded validator,
// in-process, answered in the API's shape.
func BenchmarkValidateEmbedded(b *testing.B) {
	v, value := benchValidator(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := v.Validate(ctx, value)
		if err != nil || res.APIKey == nil {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkMiddlewareEmbedded is one request through the middleware
// validating with the embedded validator.
func BenchmarkMiddlewareEmbedded(b *testing.B) {
	v, value := benchValidator(b)
	ledgertest.BenchMiddleware(b, v, value)
}

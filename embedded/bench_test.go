package embedded_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyledger/keyledger/client"
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
	h := client.NewMiddleware(v, nil).Protect("projects:read", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	req := httptest.NewRequest("GET", "/api/projects", nil)
	req.Header.Set("Authorization", "Bearer "+value)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

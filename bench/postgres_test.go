package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/schemas"
)

func TestValidatePostgresSkipsWithoutDSN(t *testing.T) {
	o := Defaults(true)
	o.Dir = t.TempDir()
	rs, err := validatePostgres(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Scenario != "validate-postgres" || rs[0].Skipped == "" || rs[0].Target == "" || rs[0].Met != nil {
		t.Fatalf("want one skipped result with a target, got %+v", rs)
	}
}

// TestValidatePostgres runs the scenario for real, small, when
// KEYLEDGER_BENCH_POSTGRES_DSN names a server (scripts/postgres.sh starts
// one). It checks the result's shape, never its figures.
func TestValidatePostgres(t *testing.T) {
	dsn := os.Getenv("KEYLEDGER_BENCH_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("KEYLEDGER_BENCH_POSTGRES_DSN is not set (scripts/postgres.sh starts a server)")
	}
	o := Defaults(true)
	o.Dir = t.TempDir()
	o.Keys = 2_000
	o.Rounds = 1
	o.RoundTime = 50 * time.Millisecond
	o.PostgresDSN = dsn
	steps := map[string]bool{}
	rs, err := validatePostgres(context.Background(), o, func(step string, _, _ int) { steps[step] = true })
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("want one result, got %+v", rs)
	}
	r := rs[0]
	if r.Skipped != "" || r.Met == nil || r.Subject.Ops == 0 || r.Reference.Ops == 0 || r.Ratio <= 0 || r.Subject.P99Ms <= 0 || r.Reference.P99Ms <= 0 {
		t.Fatalf("incomplete result: %+v", r)
	}
	if !steps["copying 2000 keys to PostgreSQL"] {
		t.Fatalf("no progress for the copy: %v", steps)
	}
}

// TestPGServiceAnswersLikeKeyledger checks the PostgreSQL service's answers
// that need no database (authentication, decoding, malformed keys) against
// keyledger's own handler: the competitor does the same work before its
// lookup.
func TestPGServiceAnswersLikeKeyledger(t *testing.T) {
	pop, err := Populate(context.Background(), t.TempDir(), 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	adminHash := sha256.Sum256([]byte(httpAdminKey))
	kl := api.New(api.Config{Queries: pop.Proj, AdminKeyHash: adminHash})
	pg := newPGService(nil, adminHash, slog.New(slog.DiscardHandler))

	good := "Bearer " + httpAdminKey
	flipped := []byte(pop.Values[0])
	flipped[len(flipped)-1] ^= 1
	for _, c := range []struct {
		name, auth, body string
		status           int
		reason           string
	}{
		{"no auth", "", `{"value":"x"}`, 401, ""},
		{"wrong admin key", "Bearer " + httpAdminKey + "x", `{"value":"x"}`, 401, ""},
		{"empty body", good, ``, 400, ""},
		{"not an object", good, `[1]`, 400, ""},
		{"wrong type", good, `{"value":1}`, 400, ""},
		{"unknown field", good, `{"value":"x","other":1}`, 400, ""},
		{"trailing data", good, `{"value":"x"}{}`, 400, ""},
		{"invalid UTF-8", good, "{\"value\":\"\xff\"}", 400, ""},
		{"garbage value", good, `{"value":"x"}`, 200, "malformed"},
		{"bad checksum", good, `{"value":"` + string(flipped) + `"}`, 200, "malformed"},
		{"lower-case bearer", "bearer " + httpAdminKey, `{"value":"x"}`, 200, "malformed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var bodies [2][]byte
			for i, h := range []http.Handler{kl, pg} {
				req := httptest.NewRequest(http.MethodPost, "/api_keys/validations", bytes.NewReader([]byte(c.body)))
				if c.auth != "" {
					req.Header.Set("Authorization", c.auth)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != c.status {
					t.Fatalf("handler %d answered %d, want %d: %s", i, rec.Code, c.status, rec.Body)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Fatalf("handler %d: Content-Type %q", i, ct)
				}
				bodies[i] = rec.Body.Bytes()
			}
			if c.status != 200 {
				return
			}
			for i, b := range bodies {
				var v schemas.ValidateResponse
				if err := json.Unmarshal(b, &v); err != nil || v.APIKey != nil || v.Reason != c.reason {
					t.Fatalf("handler %d answered %s, want reason %q", i, b, c.reason)
				}
			}
			if !bytes.Equal(bodies[0], bodies[1]) {
				t.Fatalf("keyledger answered %s, the PostgreSQL service %s", bodies[0], bodies[1])
			}
		})
	}
}

package api

import (
	"bytes"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// The hand-written validation answer is byte for byte what encoding/json
// writes, for every kind of key and every awkward name.
func TestAppendValidationMatchesEncodingJSON(t *testing.T) {
	names := []string{"ci", "", `quote " and \ backslash`, "tab\tnew\nline\r", "\x00\x01\x1f control", "<html> & ünïcødé ✓ 🔑",
		"line\u2028sep\u2029para", "invalid \xff utf-8 \xc3", "\x7f del", strings.Repeat("long ", 40)}
	r := rand.New(rand.NewPCG(1, 2))
	times := []time.Time{{}, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), time.Unix(0, 1).UTC()}
	for i := 0; i < 400; i++ {
		k := domain.ValidKey{
			ID: "api_key_01J00000000000000000000001", OrganizationID: "org_" + names[r.IntN(2)],
			Owner: domain.Owner{Type: domain.OwnerOrganization, ID: "org_a"}, Name: names[r.IntN(len(names))],
			Permissions: [][]string{{}, {"projects:read"}, {"a:b", "c.d-e_f"}}[r.IntN(3)],
			CreatedAt:   times[1+r.IntN(3)], ExpiresAt: times[r.IntN(4)], LastUsedAt: times[r.IntN(4)],
		}
		k.UpdatedAt = k.CreatedAt
		if r.IntN(2) == 0 {
			k.Owner = domain.Owner{Type: domain.OwnerUser, ID: "user_" + names[r.IntN(2)]}
		}
		obf := "sk_live_…" + names[r.IntN(2)]
		want := httptest.NewRecorder()
		out := ValidKeyJSON(k, obf)
		writeJSON(want, 200, schemas.ValidateResponse{APIKey: &out})
		if got := appendValidation(nil, &k, obf, ""); !bytes.Equal(got, want.Body.Bytes()) {
			t.Fatalf("key %+v:\n got %s\nwant %s", k, got, want.Body.Bytes())
		}
	}
	for _, reason := range []domain.ValidationReason{domain.InvalidNotFound, domain.InvalidRevoked, domain.InvalidExpired, domain.InvalidMalformed} {
		want := httptest.NewRecorder()
		writeJSON(want, 200, schemas.ValidateResponse{Reason: string(reason)})
		if got := appendValidation(nil, nil, "", reason); !bytes.Equal(got, want.Body.Bytes()) {
			t.Fatalf("reason %s:\n got %s\nwant %s", reason, got, want.Body.Bytes())
		}
	}
}

// parseValue recognises only the plain form, and what it recognises the
// general decoder reads the same way.
func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		body  string
		value string
		ok    bool
	}{
		{`{"value":"sk_live_abc"}`, "sk_live_abc", true},
		{` { "value" : "" } ` + "\n", "", true},
		{"{\n\t\"value\":\r\n\"x y\"}", "x y", true},
		{`{"value":"a\"b"}`, "", false},
		{`{"value":"\u0041"}`, "", false},
		{`{"value":"é"}`, "", false},
		{`{"value":1}`, "", false},
		{`{"value":null}`, "", false},
		{`{"Value":"x"}`, "", false},
		{`{"value":"x","other":1}`, "", false},
		{`{"value":"x"} {}`, "", false},
		{`{"value":"x"`, "", false},
		{`[{"value":"x"}]`, "", false},
		{`{"value":"x"}x`, "", false},
		{``, "", false},
	} {
		v, ok := parseValue([]byte(c.body))
		if ok != c.ok || v != c.value {
			t.Errorf("parseValue(%q) = %q, %v; want %q, %v", c.body, v, ok, c.value, c.ok)
		}
	}
}

func FuzzParseValue(f *testing.F) {
	for _, s := range []string{`{"value":"sk_live_abc"}`, `{"value":"a\"b"}`, ` {"value" :"x"} `, `{"value":1}`, `{}`, `{"value":"x","y":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, ok := parseValue(body)
		if !ok {
			return
		}
		var req schemas.ValidateRequest
		if err := decodeBytes(body, &req); err != nil {
			t.Fatalf("parseValue accepted %q, which the decoder refuses: %v", body, err)
		}
		if req.Value != v {
			t.Fatalf("parseValue(%q) = %q, the decoder reads %q", body, v, req.Value)
		}
	})
}

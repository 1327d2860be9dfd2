package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// requestKinds are the JSON request bodies of the API, each with whether
// its body may be empty (the revoke's).
var requestKinds = []struct {
	name     string
	new      func() any
	optional bool
}{
	{"create key", func() any { return new(schemas.CreateAPIKeyRequest) }, false},
	{"revoke", func() any { return new(schemas.RevokeAPIKeyRequest) }, true},
	{"validate", func() any { return new(schemas.ValidateRequest) }, false},
	{"catalogue", func() any { return new(schemas.PermissionsBody) }, false},
	{"webhook create", func() any { return new(schemas.CreateWebhookEndpointRequest) }, false},
	{"webhook update", func() any { return new(schemas.UpdateWebhookEndpointRequest) }, false},
	{"recover", func() any { return new(schemas.RecoverRequest) }, false},
	{"widget token", func() any { return new(schemas.WidgetTokenRequest) }, false},
}

// checkErrorAnswer checks a recorded answer is a 4xx with the API's error
// body, and returns its code.
func checkErrorAnswer(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if w.Code < 400 || w.Code >= 500 {
		t.Fatalf("status %d, want a 4xx: %s", w.Code, w.Body.Bytes())
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var e schemas.Error
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Code == "" || e.Message == "" || !utf8.ValidString(e.Message) {
		t.Fatalf("not an error body {code, message}: %q (%v)", w.Body.Bytes(), err)
	}
	return e.Code
}

// FuzzDecodeRequests runs decode, the reader of every JSON request body
// of the API, on any body for each request type: it never panics; it
// refuses with a domain error the API answers 400 (invalid_json,
// body_too_large), whose message is valid UTF-8 whatever the body; and
// what it accepts is one valid JSON value in valid UTF-8 that reads back
// the same after a round trip.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{
		`{"name":"ci","permissions":["projects:read"],"user_id":"user_1","expires_at":"2030-01-01T00:00:00Z"}`,
		`{"reason":"leaked"}`, ``, ` `, `null`, `{}`, `[]`, `"x"`, `1e999`,
		`{"value":"sk_live_x"}`, `{"value":"\ud800"}`, `{"value":"a","value":"b"}`, `{"VALUE":"x"}`,
		`{"permissions":[]}`, `{"permissions":null}`, `{"permissions":[1]}`,
		`{"url":"https://x.example","events":["api_key.created"]}`,
		`{"url":null,"events":null,"status":"disabled"}`,
		`{"range_start":"2026-01-01T00:00:00Z","range_end":"2026-01-02T00:00:00+02:00"}`,
		`{"range_start":"2026-13-01T00:00:00Z"}`,
		`{"organization_id":"org_1","user_id":"u","permissions":[],"expires_in":18446744074}`,
		`{"expires_in":1.5}`, `{"name":"a"} {}`, `{"name":"a"}x`, "{\"name\":\"\xff\"}", `{"a":` + strings.Repeat("[", 20000),
		strings.Repeat(" ", 70<<10) + "{}", `{"name":"` + strings.Repeat("é", 10) + `","unknown_` + strings.Repeat("x", 300) + `":1}`,
		`{"name":"\u0000\u001f\u2028"}`, "\ufeff{}",
	} {
		for k := range requestKinds {
			f.Add(uint8(k), []byte(s))
		}
	}
	s := New(Config{})
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		k := requestKinds[int(kind)%len(requestKinds)]
		v := k.new()
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		w := httptest.NewRecorder()
		err := decode(w, r, v, k.optional)
		if err != nil {
			var de *domain.Error
			if !errors.As(err, &de) || de.Kind != domain.KindInvalid {
				t.Fatalf("%s: decode(%q) = %v, want an invalid-request domain error", k.name, body, err)
			}
			switch de.Code {
			case "invalid_json", "body_too_large":
			default:
				t.Fatalf("%s: decode(%q) gave code %q", k.name, body, de.Code)
			}
			w := httptest.NewRecorder()
			s.fail(w, r, err)
			if w.Code != 400 || checkErrorAnswer(t, w) != de.Code {
				t.Fatalf("%s: the error of %q is answered %d %s", k.name, body, w.Code, w.Body.Bytes())
			}
			return
		}
		trimmed := bytes.TrimSpace(body)
		if len(trimmed) == 0 {
			if !k.optional {
				t.Fatalf("%s: an empty body was accepted", k.name)
			}
			return
		}
		if !utf8.Valid(body) || !json.Valid(body) || len(body) > MaxBodyBytes {
			t.Fatalf("%s: decode accepted %q, which is not one valid JSON value in UTF-8 within the size bound", k.name, body)
		}
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: accepted %q into %+v, which does not encode: %v", k.name, body, v, err)
		}
		again := k.new()
		if err := decodeBytes(raw, again); err != nil {
			t.Fatalf("%s: the re-encoded %s is refused: %v", k.name, raw, err)
		}
		raw2, _ := json.Marshal(again)
		if !bytes.Equal(raw, raw2) {
			t.Fatalf("%s: round trip changed %s into %s", k.name, raw, raw2)
		}
	})
}

// FuzzValidateHandler sends any body to POST /api_keys/validations of a
// Server on a real projection (holding a valid, a revoked and an expired
// key; "$VALID", "$REVOKED" and "$EXPIRED" in a body stand for their
// values), once without a failure limit and once with one. It checks the
// hand-written path against encoding/json and the projection: a 400
// invalid_json exactly when decode refuses the body; otherwise a 200 whose
// answer is the projection's verdict on the value decode reads (the key
// when valid, else the reason). With the limit, a failure may instead get
// 429 with Retry-After, a valid key never. Never a 5xx, never a panic.
func FuzzValidateHandler(f *testing.F) {
	for _, s := range []string{
		`{"value":"$VALID"}`, ` {"value" : "$VALID"} `, `{"value":"$VALID","value":"x"}`, `{"value":"x","value":"$VALID"}`,
		`{"Value":"$VALID"}`, `{"value":"$VALID\u0000"}`, `{"value":"\u0073k_live_` + "$VALID" + `"}`,
		`{"value":"$REVOKED"}`, `{"value":"$EXPIRED"}`, `{"value":"sk_live_nope"}`, `{"value":""}`, `{"value":null}`,
		`{"value":1}`, `{"value":["$VALID"]}`, `{}`, ``, `[]`, `null`, `{"value":"$VALID"}{}`, "{\"value\":\"\xff\"}",
		`{"value":"` + strings.Repeat("A", 70<<10) + `"}`, `{"value":"$VALID","other":true}`,
	} {
		f.Add([]byte(s), uint8(1))
	}
	fx := newLedgerFixture(f, FailLimit{})
	limited := New(Config{Queries: fx.srv.cfg.Queries, AdminKeyHash: sha256.Sum256([]byte(rlAdmin)), FailedValidationLimit: FailLimit{Failures: 3, Per: time.Hour}})
	names := strings.NewReplacer("$VALID", fx.valid, "$REVOKED", fx.revoked, "$EXPIRED", fx.expired)
	send := func(h http.Handler, body []byte, remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/api_keys/validations", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+rlAdmin)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	f.Fuzz(func(t *testing.T, body []byte, src uint8) {
		body = []byte(names.Replace(string(body)))
		var req schemas.ValidateRequest
		decErr := decodeBytes(body, &req)
		w := send(fx.srv, body, "192.0.2.1:1")
		var wantReason domain.ValidationReason
		switch {
		case len(body) > MaxBodyBytes:
			if w.Code != 400 || checkErrorAnswer(t, w) != "body_too_large" {
				t.Fatalf("oversized body: %d %s", w.Code, w.Body.Bytes())
			}
			return
		case decErr != nil:
			if w.Code != 400 || checkErrorAnswer(t, w) != "invalid_json" {
				t.Fatalf("decode refuses %q (%v), the handler answers %d %s", body, decErr, w.Code, w.Body.Bytes())
			}
			return
		default:
			if w.Code != 200 {
				t.Fatalf("decode reads %q from %q, the handler answers %d %s", req.Value, body, w.Code, w.Body.Bytes())
			}
			var k domain.ValidKey
			wantReason = fx.srv.cfg.Queries.ValidateInto(req.Value, &k)
			var got schemas.ValidateResponse
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("answer %q: %v", w.Body.Bytes(), err)
			}
			if wantReason == "" {
				if got.APIKey == nil || got.APIKey.ID != k.ID || got.Reason != "" || req.Value != fx.valid {
					t.Fatalf("valid %q: answered %s", req.Value, w.Body.Bytes())
				}
			} else if got.APIKey != nil || got.Reason != string(wantReason) {
				t.Fatalf("%q is %s, answered %s", req.Value, wantReason, w.Body.Bytes())
			}
		}
		lw := send(limited, body, "198.51.100."+strconv.Itoa(int(src)%8)+":1")
		switch lw.Code {
		case 200:
			if !bytes.Equal(lw.Body.Bytes(), w.Body.Bytes()) {
				t.Fatalf("with a limit %s, without %s", lw.Body.Bytes(), w.Body.Bytes())
			}
		case 429:
			if wantReason == "" {
				t.Fatalf("a valid key got 429")
			}
			if checkErrorAnswer(t, lw) != CodeTooManyFailedValidations {
				t.Fatalf("429 %s", lw.Body.Bytes())
			}
			if n, err := strconv.Atoi(lw.Header().Get("Retry-After")); err != nil || n < 1 || n > 3600 {
				t.Fatalf("Retry-After %q", lw.Header().Get("Retry-After"))
			}
		default:
			t.Fatalf("with a limit: %d %s", lw.Code, lw.Body.Bytes())
		}
	})
}

// widgetFixture is a Server that signs widget tokens, on a clock tests
// set, and tokens it minted.
type widgetFixture struct {
	s      *Server
	now    time.Time
	tokens map[string]widgetClaims
}

func newWidgetFixture(t testing.TB) *widgetFixture {
	wf := &widgetFixture{now: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC), tokens: map[string]widgetClaims{}}
	wf.s = New(Config{WidgetKey: []byte("widget key for the fuzz test, 32+ bytes"), Now: func() time.Time { return wf.now }})
	for i, c := range []widgetClaims{
		{OrganizationID: "org_1", UserID: "user_ada", Permissions: []string{domain.PermManageOwnUserKeys}},
		{OrganizationID: "org_1", UserID: "user_admin", Permissions: []string{domain.PermManageAllUserKeys, domain.PermManageOrgKeys}, UserPermissions: []string{"projects:read"}, HasUserPerms: true},
		{OrganizationID: "org_2", UserID: "user_bob", Permissions: []string{}},
	} {
		c.Version, c.IssuedAt, c.ExpiresAt, c.ID = 1, wf.now.UnixMilli(), wf.now.Add(10*time.Minute).UnixMilli(), "jti"+strconv.Itoa(i)
		tok, err := wf.s.mintWidget(c)
		if err != nil {
			t.Fatal(err)
		}
		wf.tokens[tok] = c
	}
	return wf
}

// FuzzWidgetToken hands the widget token verifier any token, at any time
// around the tokens' life: it never panics; it accepts only a token it
// minted, byte for byte (so no alteration of one passes), and only before
// the token expires (no replay after); what it accepts carries the claims
// minted. The seeds are minted tokens and altered ones.
func FuzzWidgetToken(f *testing.F) {
	wf := newWidgetFixture(f)
	for tok := range wf.tokens {
		f.Add(tok, int64(0))
		f.Add(tok, int64(10*time.Minute/time.Millisecond))
		f.Add(tok, int64(-1))
		payload, sig, _ := strings.Cut(strings.TrimPrefix(tok, schemas.WidgetTokenPrefix), ".")
		f.Add(schemas.WidgetTokenPrefix+payload+"."+sig[:len(sig)-1]+"A", int64(0))
		f.Add(schemas.WidgetTokenPrefix+payload+"=."+sig, int64(0))
		f.Add(schemas.WidgetTokenPrefix+payload+"."+sig+"."+sig, int64(0))
		f.Add(strings.ToUpper(tok), int64(0))
	}
	for _, s := range []string{"", "kwt_", "kwt_.", "kwt_a.b", "kwt_..", "sk_live_x", "kwt_e30.", "kwt_\xff.\xff"} {
		f.Add(s, int64(0))
	}
	base := wf.now
	f.Fuzz(func(t *testing.T, token string, offsetMs int64) {
		at := base.Add(time.Duration(offsetMs%(2*int64(time.Hour/time.Millisecond))) * time.Millisecond)
		wf.now = at
		c, err := wf.s.verifyWidget(token)
		if err != nil {
			var de *domain.Error
			if !errors.As(err, &de) || de.Kind != domain.KindUnauthorized {
				t.Fatalf("verifyWidget(%q) = %v, want a 401 domain error", token, err)
			}
			if de.Code == "widget_token_expired" {
				want, ok := wf.tokens[token]
				if !ok || at.UnixMilli() < want.ExpiresAt {
					t.Fatalf("verifyWidget(%q) at %v says expired", token, at)
				}
			}
			return
		}
		want, ok := wf.tokens[token]
		if !ok {
			t.Fatalf("verifyWidget accepted a token it did not mint: %q", token)
		}
		if at.UnixMilli() >= want.ExpiresAt {
			t.Fatalf("verifyWidget accepted %q at %v, after it expired", token, at)
		}
		if c.OrganizationID != want.OrganizationID || c.UserID != want.UserID || strings.Join(c.Permissions, ",") != strings.Join(want.Permissions, ",") ||
			c.HasUserPerms != want.HasUserPerms || strings.Join(c.UserPermissions, ",") != strings.Join(want.UserPermissions, ",") {
			t.Fatalf("claims %+v, minted %+v", c, want)
		}
	})
}

// FuzzWidgetClaims signs any claims payload with the widget key (what only
// a bug in minting could produce) and checks the verifier still holds its
// line: no panic, and it accepts only version 1 claims that have not
// expired.
func FuzzWidgetClaims(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"org":"org_1","sub":"user_ada","perms":[],"iat":0,"exp":9999999999999,"jti":"x"}`,
		`{"v":2,"exp":9999999999999}`, `{"v":1}`, `{"v":1,"exp":1.5e300}`, `{"v":1,"exp":"soon"}`,
		`{"v":1,"exp":9999999999999,"perms":null,"uperms":null,"has_uperms":true}`, `null`, `[]`, ``, `{"v":1,"exp":9999999999999}x`,
	} {
		f.Add([]byte(s))
	}
	wf := newWidgetFixture(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		payload := base64.RawURLEncoding.EncodeToString(raw)
		tok := schemas.WidgetTokenPrefix + payload + "." + wf.s.signWidget(payload)
		c, err := wf.s.verifyWidget(tok)
		if err != nil {
			return
		}
		if c.Version != 1 || wf.now.UnixMilli() >= c.ExpiresAt {
			t.Fatalf("accepted claims %+v from %q", c, raw)
		}
		a := c.actor()
		if a.Type != domain.ActorUser || (c.HasUserPerms && a.UserPermissions == nil) {
			t.Fatalf("actor %+v from claims %+v", a, c)
		}
	})
}

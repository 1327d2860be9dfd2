package webhooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keyledger/keyledger/webhooks"
)

// verifyWorkOS checks a WorkOS-Signature header as WorkOS's SDKs do:
// "t=<unix ms>, v1=<hex HMAC-SHA256 of t.body keyed with the secret>",
// compared in constant time, within a tolerance of the timestamp.
func verifyWorkOS(header string, body []byte, secret string, now time.Time, tolerance time.Duration) error {
	ts, sig, ok := strings.Cut(header, ", ")
	if !ok || !strings.HasPrefix(ts, "t=") || !strings.HasPrefix(sig, "v1=") {
		return errors.New("malformed WorkOS-Signature")
	}
	ts, sig = strings.TrimPrefix(ts, "t="), strings.TrimPrefix(sig, "v1=")
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("bad timestamp")
	}
	if d := now.Sub(time.UnixMilli(ms)); d > tolerance || d < -tolerance {
		return errors.New("timestamp outside the tolerance")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(body)))
	want := hex.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return errors.New("no valid signature")
	}
	return nil
}

func verifyStandard(t *testing.T, secret string, body []byte, h http.Header) error {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	return wh.Verify(body, h)
}

func TestNewSecret(t *testing.T) {
	a, b := newSecret(t), newSecret(t)
	if a == b {
		t.Fatal("two secrets are the same")
	}
	raw, ok := strings.CutPrefix(a, "whsec_")
	if !ok {
		t.Fatalf("secret %q does not start with whsec_", a)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) != 32 {
		t.Fatalf("secret is not the base64 of 32 bytes: %d bytes, %v", len(key), err)
	}
	if _, err := webhooks.ParseSecret(a); err != nil {
		t.Errorf("ParseSecret: %v", err)
	}
	for _, bad := range []string{"", "whsec_", "whsec_!!!", "sk_" + raw, "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := webhooks.ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q): no error", bad)
		}
	}
}

func TestSignVerifiesWithTheReferenceLibraries(t *testing.T) {
	newest, older, other := newSecret(t), newSecret(t), newSecret(t)
	body := []byte(`{"object":"event","id":"event_1","event":"api_key.created"}`)
	now := time.Now()
	h := webhooks.Sign([]string{newest, older}, "event_1", now, body)

	if got := h.Get("webhook-id"); got != "event_1" {
		t.Errorf("webhook-id = %q", got)
	}
	if got := h.Get("webhook-timestamp"); got != strconv.FormatInt(now.Unix(), 10) {
		t.Errorf("webhook-timestamp = %q, want %d", got, now.Unix())
	}
	sigs := strings.Fields(h.Get("webhook-signature"))
	if len(sigs) != 2 || !strings.HasPrefix(sigs[0], "v1,") || !strings.HasPrefix(sigs[1], "v1,") {
		t.Fatalf("webhook-signature = %q, want two v1 signatures", h.Get("webhook-signature"))
	}
	// Each secret of the rotation verifies on its own.
	for _, s := range []string{newest, older} {
		if err := verifyStandard(t, s, body, h); err != nil {
			t.Errorf("Standard Webhooks verify: %v", err)
		}
	}
	// The reference signature of each secret is the one sent.
	for i, s := range []string{newest, older} {
		wh, _ := standardwebhooks.NewWebhook(s)
		want, _ := wh.Sign("event_1", now, body)
		if sigs[i] != want {
			t.Errorf("signature %d = %q, reference library says %q", i, sigs[i], want)
		}
	}
	if err := verifyStandard(t, other, body, h); err == nil {
		t.Error("another secret verifies")
	}
	if err := verifyStandard(t, newest, append(body, ' '), h); err == nil {
		t.Error("a changed body verifies")
	}
	// WorkOS's check, with the newest secret.
	wos := h.Get("WorkOS-Signature")
	if !strings.HasPrefix(wos, "t="+strconv.FormatInt(now.UnixMilli(), 10)+", v1=") {
		t.Errorf("WorkOS-Signature = %q", wos)
	}
	if err := verifyWorkOS(wos, body, newest, time.Now(), 5*time.Minute); err != nil {
		t.Errorf("WorkOS verify: %v", err)
	}
	if err := verifyWorkOS(wos, body, other, time.Now(), 5*time.Minute); err == nil {
		t.Error("WorkOS verify with another secret passed")
	}
	if err := verifyWorkOS(wos, body, newest, time.Now().Add(time.Hour), 5*time.Minute); err == nil {
		t.Error("WorkOS verify of an old timestamp passed")
	}

	// One secret, one signature.
	h = webhooks.Sign([]string{newest}, "event_1", now, body)
	if n := len(strings.Fields(h.Get("webhook-signature"))); n != 1 {
		t.Errorf("%d signatures for one secret", n)
	}
}

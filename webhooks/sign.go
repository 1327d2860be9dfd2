package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// Header names a delivery carries (Standard Webhooks, and WorkOS's).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
	HeaderWorkOS    = "WorkOS-Signature"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// NewSecret returns a new signing secret: "whsec_" and the standard base64
// of 32 random bytes.
func NewSecret() (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", domain.Errorf(domain.KindInternal, "secret_generation_failed", "could not generate a webhook secret")
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(raw), nil
}

// ParseSecret returns the HMAC key of a signing secret: the base64-decoded
// part after "whsec_". The error never repeats the secret.
func ParseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, domain.Errorf(domain.KindInvalid, "invalid_webhook_secret", "a webhook secret starts with %q", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, domain.Errorf(domain.KindInvalid, "invalid_webhook_secret", "a webhook secret is %q and the base64 of 24 to 64 bytes", SecretPrefix)
	}
	return key, nil
}

// Sign returns the signature headers of a delivery of body, whose
// webhook-id is id, sent at ts:
//
//   - webhook-id: id;
//   - webhook-timestamp: ts in unix seconds;
//   - webhook-signature: "v1,<base64 HMAC-SHA256 of id.timestamp.body>" for
//     each secret (keyed with its decoded part), separated by spaces;
//   - WorkOS-Signature: "t=<ts in unix ms>, v1=<hex HMAC-SHA256 of
//     t.body>", keyed with the newest secret as a string, as WorkOS's SDKs
//     check it.
//
// Secrets that do not parse (ParseSecret) are skipped.
func Sign(secrets []string, id string, ts time.Time, body []byte) http.Header {
	h := http.Header{}
	sec := strconv.FormatInt(ts.Unix(), 10)
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, sec)
	var sigs []string
	for _, s := range secrets {
		key, err := ParseSecret(s)
		if err != nil {
			continue
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(sec))
		m.Write([]byte{'.'})
		m.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	if len(sigs) > 0 {
		h.Set(HeaderSignature, strings.Join(sigs, " "))
	}
	if len(secrets) > 0 && secrets[0] != "" {
		ms := strconv.FormatInt(ts.UnixMilli(), 10)
		m := hmac.New(sha256.New, []byte(secrets[0]))
		m.Write([]byte(ms))
		m.Write([]byte{'.'})
		m.Write(body)
		h.Set(HeaderWorkOS, "t="+ms+", v1="+hex.EncodeToString(m.Sum(nil)))
	}
	return h
}

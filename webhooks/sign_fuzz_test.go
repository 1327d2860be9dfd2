package webhooks_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keyledger/keyledger/webhooks"
)

// secretOf makes a valid signing secret from any bytes: 24 to 64 of them,
// base64 after "whsec_".
func secretOf(raw []byte) string {
	key := make([]byte, 24, 64)
	copy(key, raw)
	if len(raw) > 24 {
		key = append(key[:24], raw[24:min(len(raw), 64)]...)
	}
	return webhooks.SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// FuzzSignVerifies signs any body under any webhook id, at any time within
// the receivers' tolerance, with a rotation of two secrets, and checks the
// headers as receivers do: the Standard Webhooks reference library
// verifies each secret's signature and WorkOS's check verifies the newest;
// the reference library signs exactly what Sign sent; a body changed by one
// byte, one byte more or one byte less, another secret, and the headers of
// another id or time verify with neither.
func FuzzSignVerifies(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef"), []byte("older secret bytes, 24+ long"), "event_01J00000000000000000000000", int16(0), []byte(`{"object":"event","id":"event_1"}`))
	f.Add([]byte{}, []byte{0xff}, "event_01J00000000000000000000001", int16(-299), []byte{})
	f.Add([]byte(strings.Repeat("k", 80)), []byte("x"), "id with spaces, commas and v1,", int16(299), []byte("\x00\xff\n\r"))
	f.Add([]byte("a"), []byte("b"), "é\u2028", int16(7), bytes.Repeat([]byte("{}"), 500))
	f.Fuzz(func(t *testing.T, newestRaw, olderRaw []byte, id string, offset int16, body []byte) {
		if id == "" || strings.TrimSpace(id) != id || strings.ContainsAny(id, "\r\n\x00") {
			// http.Header.Get trims nothing but the transport would refuse
			// such a value; keyledger's ids are event_ + ULID.
			return
		}
		newest, older := secretOf(newestRaw), secretOf(olderRaw)
		if newest == older {
			return
		}
		now := time.Now()
		ts := now.Add(time.Duration(int(offset)%240) * time.Second)
		h := webhooks.Sign([]string{newest, older}, id, ts, body)
		for _, s := range []string{newest, older} {
			wh, err := standardwebhooks.NewWebhook(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(body, h); err != nil {
				t.Fatalf("reference library refuses the signature of %q: %v", s, err)
			}
			want, _ := wh.Sign(id, ts, body)
			if !strings.Contains(" "+h.Get(webhooks.HeaderSignature)+" ", " "+want+" ") {
				t.Fatalf("webhook-signature %q lacks the reference signature %q", h.Get(webhooks.HeaderSignature), want)
			}
		}
		if err := verifyWorkOS(h.Get(webhooks.HeaderWorkOS), body, newest, now, 5*time.Minute); err != nil {
			t.Fatalf("WorkOS check refuses: %v (header %q)", err, h.Get(webhooks.HeaderWorkOS))
		}
		var changed [][]byte
		changed = append(changed, append(bytes.Clone(body), 'x'))
		if len(body) > 0 {
			flipped := bytes.Clone(body)
			flipped[len(body)/2] ^= 0x01
			changed = append(changed, flipped, body[:len(body)-1])
		}
		newestWH, _ := standardwebhooks.NewWebhook(newest)
		for _, c := range changed {
			if newestWH.Verify(c, h) == nil {
				t.Fatalf("reference library verifies a changed body %q (signed %q)", c, body)
			}
			if verifyWorkOS(h.Get(webhooks.HeaderWorkOS), c, newest, now, 5*time.Minute) == nil {
				t.Fatalf("WorkOS check verifies a changed body %q (signed %q)", c, body)
			}
		}
		other := secretOf(append([]byte("other"), newestRaw...))
		if other != newest && other != older {
			otherWH, _ := standardwebhooks.NewWebhook(other)
			if otherWH.Verify(body, h) == nil {
				t.Fatal("another secret verifies")
			}
			if verifyWorkOS(h.Get(webhooks.HeaderWorkOS), body, other, now, 5*time.Minute) == nil {
				t.Fatal("WorkOS check verifies with another secret")
			}
		}
		// The signature of one id or time does not pass for another.
		moved := h.Clone()
		moved.Set(webhooks.HeaderTimestamp, strconv.FormatInt(ts.Unix()+1, 10))
		if newestWH.Verify(body, moved) == nil {
			t.Fatal("the signature verifies with another timestamp")
		}
		if !strings.Contains(id, ".") {
			// ("id.ts.body" is ambiguous when the id holds a dot; keyledger's
			// ids never do.)
			renamed := h.Clone()
			renamed.Set(webhooks.HeaderID, id+"x")
			if newestWH.Verify(body, renamed) == nil {
				t.Fatal("the signature verifies under another webhook-id")
			}
		}
	})
}

// FuzzVerifySignatureHeaders hands receivers' checks arbitrary headers and
// bodies, as an attacker posting to a receiver would: neither the
// reference library nor the WorkOS-Signature check panics, and each
// accepts only a header holding the exact HMAC of the secret (the seeds
// include real signatures, so acceptance is exercised too).
func FuzzVerifySignatureHeaders(f *testing.F) {
	secret := secretOf([]byte("fuzz secret 0123456789abcdef"))
	at := time.Unix(1_900_000_000, 0)
	body := []byte(`{"id":"event_1"}`)
	good := webhooks.Sign([]string{secret}, "event_1", at, body)
	f.Add("event_1", good.Get(webhooks.HeaderTimestamp), good.Get(webhooks.HeaderSignature), good.Get(webhooks.HeaderWorkOS), body)
	f.Add("event_1", good.Get(webhooks.HeaderTimestamp), "v1,AAAA v2,x "+good.Get(webhooks.HeaderSignature), "t=1, v1=00", body)
	f.Add("event_1", "1900000000.0", "v1", "t=, v1=", []byte{})
	f.Add("", "-1", ",,, v1,,", "v1=ab, t=1900000000000", []byte("x"))
	f.Add("e", "99999999999999999999", "v1,"+strings.Repeat("=", 44), "t=1900000000000,v1="+strings.Repeat("0", 64), body)
	f.Add("event_1", " 1900000000", "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)), "t=1900000000000, v1="+strings.Repeat("G", 64), body)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		f.Fatal(err)
	}
	key, _ := webhooks.ParseSecret(secret)
	f.Fuzz(func(t *testing.T, id, ts, sig, workos string, body []byte) {
		h := http.Header{}
		h.Set(webhooks.HeaderID, id)
		h.Set(webhooks.HeaderTimestamp, ts)
		h.Set(webhooks.HeaderSignature, sig)
		h.Set(webhooks.HeaderWorkOS, workos)
		err := wh.VerifyIgnoringTimestamp(body, h)
		if err == nil {
			sec, perr := strconv.ParseInt(ts, 10, 64)
			if perr != nil || id == "" {
				t.Fatalf("accepted a timestamp %q or id %q that does not parse", ts, id)
			}
			m := hmac.New(sha256.New, key)
			m.Write([]byte(id + "." + strconv.FormatInt(sec, 10) + "."))
			m.Write(body)
			want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
			found := false
			for _, s := range strings.Split(sig, " ") {
				found = found || s == want || strings.HasPrefix(s, want+",")
			}
			if !found {
				t.Fatalf("reference library accepted %q, which does not hold %q", sig, want)
			}
		}
		// The WorkOS check, at the header's own time (no tolerance in play).
		if err := verifyWorkOS(workos, body, secret, workosTime(workos), time.Minute); err == nil {
			tsPart, sigPart, _ := strings.Cut(workos, ", ")
			ms := strings.TrimPrefix(tsPart, "t=")
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte(ms + "."))
			m.Write(body)
			if strings.TrimPrefix(sigPart, "v1=") != hex.EncodeToString(m.Sum(nil)) {
				t.Fatalf("WorkOS check accepted %q", workos)
			}
		}
	})
}

// workosTime is the time a WorkOS-Signature header claims, or now.
func workosTime(h string) time.Time {
	ts, _, _ := strings.Cut(h, ", ")
	if ms, err := strconv.ParseInt(strings.TrimPrefix(ts, "t="), 10, 64); err == nil {
		return time.UnixMilli(ms)
	}
	return time.Now()
}

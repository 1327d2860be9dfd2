package webhooks_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/webhooks"
)

func TestCheckURL(t *testing.T) {
	withIPv6Loopback := append(append([]netip.Prefix(nil), loopback...), netip.MustParsePrefix("::1/128"))
	cases := []struct {
		url   string
		allow []netip.Prefix
		code  string // "" when accepted
	}{
		{"https://93.184.215.14/hooks", nil, ""},
		{"http://93.184.215.14:8080/hooks?x=1", nil, ""},
		{"https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/h", nil, ""},
		{"ftp://93.184.215.14/", nil, webhooks.CodeInvalidURL},
		{"javascript:alert(1)", nil, webhooks.CodeInvalidURL},
		{"/relative/path", nil, webhooks.CodeInvalidURL},
		{"https://", nil, webhooks.CodeInvalidURL},
		{"https://user:pass@93.184.215.14/", nil, webhooks.CodeInvalidURL},
		{"https://93.184.215.14:99999/", nil, webhooks.CodeInvalidURL},
		{"http://%zz", nil, webhooks.CodeInvalidURL},
		{"http://no-such-host.invalid/", nil, webhooks.CodeInvalidURL},
		{"http://127.0.0.1:8080/", nil, webhooks.CodeURLNotAllowed},
		{"http://127.9.9.9/", nil, webhooks.CodeURLNotAllowed},
		{"http://[::1]/", nil, webhooks.CodeURLNotAllowed},
		{"http://[::ffff:127.0.0.1]/", nil, webhooks.CodeURLNotAllowed},
		{"http://[64:ff9b::a9fe:a9fe]/", nil, webhooks.CodeURLNotAllowed}, // NAT64 of 169.254.169.254
		{"http://localhost:8080/", nil, webhooks.CodeURLNotAllowed},
		{"http://10.1.2.3/", nil, webhooks.CodeURLNotAllowed},
		{"http://172.16.0.1/", nil, webhooks.CodeURLNotAllowed},
		{"http://192.168.1.1/", nil, webhooks.CodeURLNotAllowed},
		{"http://[fd00::1]/", nil, webhooks.CodeURLNotAllowed},
		{"http://169.254.169.254/latest/meta-data/", nil, webhooks.CodeURLNotAllowed},
		{"http://[fe80::1]/", nil, webhooks.CodeURLNotAllowed},
		{"http://0.0.0.0/", nil, webhooks.CodeURLNotAllowed},
		{"http://[::]/", nil, webhooks.CodeURLNotAllowed},
		{"http://224.0.0.1/", nil, webhooks.CodeURLNotAllowed},
		{"http://100.64.0.1/", nil, webhooks.CodeURLNotAllowed},
		{"http://255.255.255.255/", nil, webhooks.CodeURLNotAllowed},
		// The allowlist lets the operator's own addresses through.
		{"http://127.0.0.1:8080/", loopback, ""},
		{"http://localhost:8080/", withIPv6Loopback, ""},
		{"http://[::1]/", loopback, webhooks.CodeURLNotAllowed},
		{"http://10.1.2.3/", []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, ""},
		{"http://169.254.169.254/", loopback, webhooks.CodeURLNotAllowed},
	}
	for _, c := range cases {
		err := webhooks.CheckURL(ctxT(t), c.url, c.allow)
		if c.code == "" {
			if err != nil {
				t.Errorf("CheckURL(%q, %v) = %v, want accepted", c.url, c.allow, err)
			}
			continue
		}
		var de *domain.Error
		if !errors.As(err, &de) || de.Kind != domain.KindInvalid || de.Code != c.code {
			t.Errorf("CheckURL(%q, %v) = %v, want a KindInvalid %s", c.url, c.allow, err, c.code)
		}
	}
}

// A delivery to a refused address is refused when it connects, after DNS
// resolution, whatever the registry holds: the attempt is logged with the
// reason and the receiver never sees a request.
func TestDeliveryToARefusedAddressIsRefusedAtDial(t *testing.T) {
	env := startNATS(t, "")
	rc := newReceiver(t, nil)
	port := rc.URL[strings.LastIndex(rc.URL, ":"):]
	byIP := endpoint(t, "we_ssrf_ip", rc.URL)
	byName := endpoint(t, "we_ssrf_name", "http://localhost"+port+"/hook")
	reg := newRegistry(byIP, byName)
	cfg := engineCfg(env, reg)
	cfg.Allow = nil
	cfg.Schedule = []time.Duration{time.Millisecond}
	e, _ := runEngine(t, cfg)
	enqueue(t, e, byIP.ID, event("event_ssrf_1"))
	enqueue(t, e, byName.ID, event("event_ssrf_2"))
	for _, id := range []string{byIP.ID, byName.ID} {
		waitFor(t, "the delivery to "+id+" finally fails", func() bool { return len(finals(t, e, id)) == 1 })
		for _, a := range attempts(t, e, id) {
			if a.Status != 0 || a.Delivered || !strings.Contains(a.Error, "refused to connect") || !strings.Contains(a.Error, "loopback") {
				t.Errorf("%s: attempt = %+v, want refused at dial", id, a)
			}
		}
	}
	if n := len(rc.got()); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
}

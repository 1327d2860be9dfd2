package webhooks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"

	"github.com/keyledger/keyledger/domain"
)

// Error codes of refused webhook URLs.
const (
	CodeInvalidURL    = "invalid_webhook_url"
	CodeURLNotAllowed = "webhook_url_not_allowed"
)

// refusedRanges are the addresses a webhook may not reach unless allowed:
// they lead into the operator's own network, not to a subscriber's
// service.
var refusedRanges = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "private"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// nat64 is the well-known NAT64 prefix: its last 32 bits are an IPv4
// address, checked as such.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// refused says why ip may not be reached, or "" when it may: allow wins
// over every refused range.
func refused(ip netip.Addr, allow []netip.Prefix) string {
	ip = ip.Unmap().WithZone("")
	for _, p := range allow {
		if p.Contains(ip) {
			return ""
		}
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		if why := refused(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), allow); why != "" {
			return why + " (NAT64)"
		}
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(ip) {
			return r.why
		}
	}
	if !ip.IsGlobalUnicast() {
		return "not a global unicast address"
	}
	return ""
}

// CheckURL refuses a webhook URL at creation: not http or https, no host,
// user information, or a host any of whose addresses (after DNS
// resolution) is loopback, private, link-local (the cloud metadata service
// 169.254.169.254 among them), unspecified, multicast or CGNAT, unless
// inside allow. It returns a *domain.Error of KindInvalid with code
// "invalid_webhook_url", or "webhook_url_not_allowed" for a refused
// address.
func CheckURL(ctx context.Context, raw string, allow []netip.Prefix) error {
	u, err := url.Parse(raw)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, CodeInvalidURL, "the webhook URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return domain.Errorf(domain.KindInvalid, CodeInvalidURL, "a webhook URL is http or https")
	}
	if u.User != nil {
		return domain.Errorf(domain.KindInvalid, CodeInvalidURL, "a webhook URL may not carry user information")
	}
	host := u.Hostname()
	if host == "" || u.Opaque != "" {
		return domain.Errorf(domain.KindInvalid, CodeInvalidURL, "a webhook URL needs a host")
	}
	if p := u.Port(); p != "" {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 {
			return domain.Errorf(domain.KindInvalid, CodeInvalidURL, "the webhook URL's port is not valid")
		}
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		if strings.ContainsAny(host, " %/") {
			return domain.Errorf(domain.KindInvalid, CodeInvalidURL, "the webhook URL's host is not valid")
		}
		addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(addrs) == 0 {
			return domain.Errorf(domain.KindInvalid, CodeInvalidURL, "the webhook URL's host %q does not resolve", host)
		}
	}
	for _, ip := range addrs {
		if why := refused(ip, allow); why != "" {
			return domain.Errorf(domain.KindInvalid, CodeURLNotAllowed,
				"the webhook URL's host %q resolves to a %s address, which webhooks may not reach", host, why)
		}
	}
	return nil
}

// dialGuard is a net.Dialer's Control: it checks the address being
// connected to, after resolution, so a name that resolves differently at
// delivery (DNS rebinding) is refused all the same.
func dialGuard(allow []netip.Prefix) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("webhooks: refused to connect to %q: not an IP address", address)
		}
		if why := refused(ap.Addr(), allow); why != "" {
			return fmt.Errorf("webhooks: refused to connect to %s: %s address", ap.Addr(), why)
		}
		return nil
	}
}

package consumers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

// syslogTestRFC5424 is the syntax of RFC 5424 (section 6), strictly:
// PRI, VERSION 1, a full-date T full-time timestamp with at most 6
// fraction digits, HOSTNAME (≤255), APP-NAME (≤48), PROCID (≤128) and
// MSGID (≤32) of printable US-ASCII, NILVALUE or SD-ELEMENTs whose
// SD-NAMEs (≤32) exclude '=', ' ', ']' and '"' and whose PARAM-VALUEs
// escape '"', '\' and ']', then SP MSG.
var syslogTestRFC5424 = func() *regexp.Regexp {
	const name = `[\x21\x23-\x3c\x3e-\x5c\x5e-\x7e]{1,32}`
	const sdid = `[\x21\x23-\x3c\x3e-\x5c\x5e-\x7e]{1,32}`
	const value = `"(?:[^"\\\]]|\\["\\\]])*"`
	return regexp.MustCompile(`(?s)^<([0-9]{1,3})>1 ` +
		`(-|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})) ` +
		`([\x21-\x7e]{1,255}) ([\x21-\x7e]{1,48}) ([\x21-\x7e]{1,128}) ([\x21-\x7e]{1,32}) ` +
		`(-|(?:\[` + sdid + `(?: ` + name + `=` + value + `)*\])+)` +
		`(?: (.*))?$`)
}()

var syslogTestParam = regexp.MustCompile(`([\x21\x23-\x3c\x3e-\x5c\x5e-\x7e]{1,32})="((?:[^"\\\]]|\\["\\\]])*)"`)

type syslogTestMsg struct {
	pri                                   int
	time                                  time.Time
	host, app, procID, msgID, sdID, frame string
	params                                map[string]string
	msg                                   []byte
}

// syslogTestParse checks one message against RFC 5424 and splits it.
func syslogTestParse(t *testing.T, raw []byte) syslogTestMsg {
	t.Helper()
	m := syslogTestRFC5424.FindSubmatch(raw)
	if m == nil {
		t.Fatalf("not an RFC 5424 message:\n%q", raw)
	}
	var out syslogTestMsg
	out.pri, _ = strconv.Atoi(string(m[1]))
	if out.pri > 191 || (len(m[1]) > 1 && m[1][0] == '0') {
		t.Fatalf("PRI %s out of range", m[1])
	}
	if ts := string(m[2]); ts != "-" {
		var err error
		if out.time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Fatalf("TIMESTAMP %s: %v", ts, err)
		}
	}
	out.host, out.app, out.procID, out.msgID = string(m[3]), string(m[4]), string(m[5]), string(m[6])
	sd := string(m[7])
	out.params = map[string]string{}
	if sd != "-" {
		out.sdID = sd[1:strings.IndexAny(sd, " ]")]
		for _, p := range syslogTestParam.FindAllStringSubmatch(sd[len(out.sdID)+1:], -1) {
			v := strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\]`, `]`).Replace(p[2])
			out.params[p[1]] = v
		}
	}
	out.msg = m[8]
	return out
}

func syslogTestEvents(t *testing.T) (evs []schemas.PublicEvent, secrets []string) {
	t.Helper()
	v, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		t.Fatal(err)
	}
	h := domain.HashKey(v)
	secrets = []string{v, hex.EncodeToString(h[:])}
	k := eventstore.NewID("api_key_")
	at := time.Now().UTC()
	for i, e := range []domain.Event{
		{OrganizationID: "org_a", AggregateID: k, Actor: domain.Admin(), Data: domain.KeyCreated{
			KeyID: k, Name: `a "key" [x] \ y`, Owner: domain.Owner{Type: domain.OwnerOrganization, ID: "org_a"}, Hash: h, Obfuscated: domain.ObfuscateKey(v)}},
		{OrganizationID: "org_a", AggregateID: k, Actor: domain.Admin(), Data: domain.KeyRevoked{KeyID: k, Reason: domain.ReasonLeaked}},
		{OrganizationID: "org_a", AggregateID: "user_ada", Actor: domain.Admin(), Data: domain.MemberRemoved{UserID: "user_ada"}},
		{AggregateID: domain.CatalogueAggregateID, Actor: domain.Admin(), Data: domain.CataloguePermissionsSet{Permissions: []string{"a:b"}}},
	} {
		e.ID, e.Seq, e.CreatedAt = eventstore.NewID("event_"), uint64(i+1), at.Add(time.Duration(i)*time.Millisecond)
		pub, err := eventstore.Public(e)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, pub)
	}
	return evs, secrets
}

// syslogTestCheck checks every field of a received message against the
// event it carries.
func syslogTestCheck(t *testing.T, got syslogTestMsg, ev schemas.PublicEvent, f Format, facility int) {
	t.Helper()
	wantSev := map[string]int{
		schemas.EventAPIKeyCreated: SyslogInfo, schemas.EventAPIKeyRevoked: SyslogWarning, // leaked
		schemas.EventMemberRemoved: SyslogNotice, schemas.EventAPIKeyPermissionsSaved: SyslogInfo,
	}[ev.Event]
	if got.pri != facility*8+wantSev {
		t.Errorf("%s: PRI %d, want %d·8+%d", ev.Event, got.pri, facility, wantSev)
	}
	if !got.time.Equal(ev.CreatedAt.Truncate(time.Microsecond)) {
		t.Errorf("%s: TIMESTAMP %v, want %v", ev.Event, got.time, ev.CreatedAt)
	}
	host, _ := os.Hostname()
	if got.host != host || got.app != "keyledger" || got.procID != strconv.Itoa(os.Getpid()) || got.msgID != ev.Event {
		t.Errorf("header %q %q %q %q, want %q keyledger %d %q", got.host, got.app, got.procID, got.msgID, host, os.Getpid(), ev.Event)
	}
	want := map[string]string{
		"event_id": ev.ID, "event": ev.Event, "seq": strconv.FormatUint(ev.Context.LedgerSequence, 10),
		"actor_type": ev.Context.Actor.Type, "actor_id": ev.Context.Actor.ID,
	}
	if ev.Context.OrganizationID != nil {
		want["organization_id"] = *ev.Context.OrganizationID
	}
	if got.sdID != "keyledger@32473" || fmt.Sprint(got.params) != fmt.Sprint(want) {
		t.Errorf("structured data [%s %v], want [keyledger@32473 %v]", got.sdID, got.params, want)
	}
	rendered, err := Render(f, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.msg, rendered) {
		t.Errorf("MSG is not the %s rendering:\n%s\nwant\n%s", f, got.msg, rendered)
	}
}

func syslogTestNoSecrets(t *testing.T, raw []byte, secrets []string) {
	t.Helper()
	if regexp.MustCompile(`sk_(live|test)_[0-9A-Za-z]{37}|[0-9A-Fa-f]{64}`).Match(raw) {
		t.Fatalf("a key value or hash in %q", raw)
	}
	for _, s := range secrets {
		if bytes.Contains(raw, []byte(s)) {
			t.Fatalf("secret in %q", raw)
		}
	}
}

func syslogTestSink(t *testing.T, spec string) (Consumer, *SyslogWriter) {
	t.Helper()
	cfg, err := ParseSink(spec)
	if err != nil {
		t.Fatal(err)
	}
	c, closer, err := NewSink(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closer.Close() })
	if !c.Ordered || !strings.HasPrefix(c.Name, "sink_") {
		t.Fatalf("consumer %+v", c)
	}
	return c, closer.(*SyslogWriter)
}

// One datagram per event, each a strict RFC 5424 message, in each format.
func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	evs, secrets := syslogTestEvents(t)
	for _, f := range Formats {
		c, _ := syslogTestSink(t, "syslog+udp://"+pc.LocalAddr().String()+"?format="+string(f)+"&facility=local4&name=udp_"+string(f))
		for _, ev := range evs {
			if err := c.Handle(context.Background(), domain.Event{}, ev); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 65536)
			_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			syslogTestNoSecrets(t, buf[:n], secrets)
			syslogTestCheck(t, syslogTestParse(t, buf[:n]), ev, f, 20)
		}
	}
}

// syslogTestServer is a TCP syslog server: it reads octet-counted frames
// (RFC 6587 section 3.4.1) from each connection in turn.
type syslogTestServer struct {
	ln    net.Listener
	conns chan net.Conn
}

func startSyslogTestServer(t *testing.T, addr string) *syslogTestServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &syslogTestServer{ln: ln, conns: make(chan net.Conn, 8)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns <- c
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return s
}

func (s *syslogTestServer) accept(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	case <-time.After(10 * time.Second):
		t.Fatal("no connection")
		return nil, nil
	}
}

// syslogTestFrame reads one frame: MSG-LEN (a nonzero digit, then digits)
// SP, then exactly MSG-LEN octets.
func syslogTestFrame(t *testing.T, r *bufio.Reader) []byte {
	t.Helper()
	head, err := r.ReadString(' ')
	if err != nil {
		t.Fatalf("frame length: %v", err)
	}
	if !regexp.MustCompile(`^[1-9][0-9]* $`).MatchString(head) {
		t.Fatalf("MSG-LEN %q", head)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(head))
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		t.Fatalf("frame of %d octets: %v", n, err)
	}
	return msg
}

// Frames on one connection, octet counted, in order, each a strict RFC 5424
// message, in each format.
func TestSyslogTCP(t *testing.T) {
	srv := startSyslogTestServer(t, "127.0.0.1:0")
	evs, secrets := syslogTestEvents(t)
	for _, f := range Formats {
		c, _ := syslogTestSink(t, "syslog+tcp://"+srv.ln.Addr().String()+"?format="+string(f))
		for _, ev := range evs {
			if err := c.Handle(context.Background(), domain.Event{}, ev); err != nil {
				t.Fatal(err)
			}
		}
		_, r := srv.accept(t)
		for _, ev := range evs {
			raw := syslogTestFrame(t, r)
			syslogTestNoSecrets(t, raw, secrets)
			syslogTestCheck(t, syslogTestParse(t, raw), ev, f, DefaultSyslogFacility)
		}
	}
}

// The server closing the connection, or being down, fails no event for
// good: the writer reconnects, and a write it cannot make is an error (the
// event comes again).
func TestSyslogTCPReconnects(t *testing.T) {
	srv := startSyslogTestServer(t, "127.0.0.1:0")
	addr := srv.ln.Addr().String()
	evs, _ := syslogTestEvents(t)
	c, w := syslogTestSink(t, "syslog+tcp://"+addr+"?format=ocsf")
	send := func(ev schemas.PublicEvent) error { return c.Handle(context.Background(), domain.Event{}, ev) }

	if err := send(evs[0]); err != nil {
		t.Fatal(err)
	}
	conn, r := srv.accept(t)
	syslogTestCheck(t, syslogTestParse(t, syslogTestFrame(t, r)), evs[0], FormatOCSF, DefaultSyslogFacility)

	// The server closes the connection (a restart): the writer sees it and
	// the next event goes over a new connection.
	_ = conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		noticed := w.conn == nil || w.peerClosed()
		w.mu.Unlock()
		if noticed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer did not notice the server closed the connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := send(evs[1]); err != nil {
		t.Fatal(err)
	}
	conn2, r2 := srv.accept(t)
	syslogTestCheck(t, syslogTestParse(t, syslogTestFrame(t, r2)), evs[1], FormatOCSF, DefaultSyslogFacility)

	// The server is down: the event fails, and goes once it is back.
	_ = srv.ln.Close()
	_ = conn2.Close()
	var err error
	for range 100 { // until the writer has seen the close and cannot connect
		if err = send(evs[2]); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("sending to a server that is down did not fail")
	}
	srv2 := startSyslogTestServer(t, addr)
	if err := send(evs[2]); err != nil {
		t.Fatalf("after the server came back: %v", err)
	}
	_, r3 := srv2.accept(t)
	syslogTestCheck(t, syslogTestParse(t, syslogTestFrame(t, r3)), evs[2], FormatOCSF, DefaultSyslogFacility)

	_ = w.Close()
	if err := send(evs[3]); err == nil {
		t.Fatal("a closed writer wrote")
	}
}

// Structured data values are escaped, header fields sanitised and cut.
func TestSyslogFormatEscapesAndSanitises(t *testing.T) {
	w, err := NewSyslogWriter(SyslogConfig{Network: "udp", Addr: "127.0.0.1:514", Hostname: "host name\twith spaces", Facility: 23})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	raw := w.Format(SyslogMessage{
		Severity: SyslogNotice, Time: at,
		MsgID: "odd msgid\x00é with a length well over thirty-two characters",
		SDID:  "keyledger@32473", Params: []SDParam{{"q", `say "hi"`}, {"b", `back\slash`}, {"br", `a]b[c`}, {"bad=name x", "v"}, {"u", "caf\xe9"}},
		Msg: []byte(`{"a":"]"}`),
	})
	got := syslogTestParse(t, raw)
	if got.pri != 23*8+5 {
		t.Errorf("PRI %d", got.pri)
	}
	if !strings.Contains(string(raw), " 2026-01-02T02:04:05.123456Z ") || !got.time.Equal(at.Truncate(time.Microsecond)) {
		t.Errorf("TIMESTAMP not UTC with microseconds: %s", raw)
	}
	if got.host != "hostnamewithspaces" {
		t.Errorf("HOSTNAME %q", got.host)
	}
	if got.msgID != "oddmsgidwithalengthwelloverthirt" || len(got.msgID) != 32 {
		t.Errorf("MSGID %q", got.msgID)
	}
	want := map[string]string{"q": `say "hi"`, "b": `back\slash`, "br": `a]b[c`, "badnamex": "v", "u": "caf\uFFFD"}
	if fmt.Sprint(got.params) != fmt.Sprint(want) {
		t.Errorf("params %v, want %v\n%s", got.params, want, raw)
	}
	if string(got.msg) != `{"a":"]"}` {
		t.Errorf("MSG %q", got.msg)
	}
	// No structured data, no time: NILVALUEs.
	raw = w.Format(SyslogMessage{Severity: SyslogInfo, Msg: []byte("x")})
	if !bytes.HasPrefix(raw, []byte("<190>1 - hostnamewithspaces keyledger ")) || !bytes.HasSuffix(raw, []byte(" - - x")) {
		t.Errorf("nil values: %q", raw)
	}
	syslogTestParse(t, raw)
}

func TestSyslogWriterConfig(t *testing.T) {
	for _, cfg := range []SyslogConfig{
		{Network: "unix", Addr: "127.0.0.1:514"},
		{Network: "tcp", Addr: "no-port"},
		{Network: "udp", Addr: "127.0.0.1:514", Facility: 24},
	} {
		if _, err := NewSyslogWriter(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	for _, s := range []string{"authpriv", "local7", "1", "23"} {
		if _, err := ParseSyslogFacility(s); err != nil {
			t.Errorf("facility %s: %v", s, err)
		}
	}
	for _, s := range []string{"kern", "0", "24", "", "LOCAL0"} {
		if _, err := ParseSyslogFacility(s); err == nil {
			t.Errorf("facility %q accepted", s)
		}
	}
	if _, err := NewSyslogWriter(SyslogConfig{Network: "udp", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
}

package consumers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Syslog facilities (RFC 5424, section 6.2.1) by name. kern (0) is the
// kernel's alone.
var syslogFacilities = map[string]int{
	"user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8, "cron": 9,
	"authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// DefaultSyslogFacility is authpriv (10): security and authorization
// messages that syslog daemons keep in a restricted file.
const DefaultSyslogFacility = 10

// ParseSyslogFacility parses a facility name (authpriv, local0, ...) or
// number (1-23).
func ParseSyslogFacility(s string) (int, error) {
	if n, ok := syslogFacilities[s]; ok {
		return n, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= 23 {
		return n, nil
	}
	return 0, fmt.Errorf("unknown syslog facility %q: want a name (authpriv, auth, daemon, local0 ... local7, ...) or a number from 1 to 23", s)
}

// Syslog severities (RFC 5424, section 6.2.1).
const (
	SyslogWarning = 4
	SyslogNotice  = 5
	SyslogInfo    = 6
)

// SyslogConfig configures a SyslogWriter.
type SyslogConfig struct {
	Network string // "udp" or "tcp"
	Addr    string // host:port
	// Facility is 1-23; 0 is DefaultSyslogFacility (authpriv).
	Facility int
	// Hostname is the HOSTNAME field; default os.Hostname().
	Hostname string
	// AppName is the APP-NAME field; default "keyledger".
	AppName string
	// Timeout bounds a connection and a write (default 10 s), so that a
	// stuck server fails the event (it is delivered again) well within the
	// router's ack wait.
	Timeout time.Duration
}

// SyslogMessage is one message: the header's variable fields, one
// structured data element, and the message itself.
type SyslogMessage struct {
	Severity int       // 0-7
	Time     time.Time // the TIMESTAMP field
	MsgID    string    // sanitised to at most 32 printable US-ASCII characters
	SDID     string    // the SD-ID of the element, e.g. keyledger@32473; empty: no structured data
	Params   []SDParam // its parameters, in order
	Msg      []byte    // the MSG part, sent as it is (no BOM)
}

// SDParam is one SD-PARAM: a name (at most 32 printable US-ASCII characters
// other than '=', ' ', ']' and '"') and a UTF-8 value, escaped when
// written.
type SDParam struct{ Name, Value string }

// SyslogWriter writes RFC 5424 messages to a syslog server over UDP (RFC
// 5426: one message a datagram) or TCP (RFC 6587: octet counting, "LEN SP
// MSG"). It connects on the first write, and again on the next write after
// any error: a failed write returns its error, for the event to be sent
// again, and never leaves a half-written frame on a connection in use.
//
// Over TCP, syslog has no acknowledgement: a message written just before
// the server goes away can be lost with no error. The writer watches the
// connection for the server closing it, and reconnects before writing
// rather than losing the next message to a closed connection. For
// delivery guarantees, use the file sink (fsync) and ship the file.
type SyslogWriter struct {
	cfg      SyslogConfig
	procID   string
	hostname string

	mu     sync.Mutex
	conn   net.Conn
	dead   chan struct{} // closed once the server closed the TCP connection
	closed bool
}

// NewSyslogWriter checks a config and returns a writer; it connects on the
// first write.
func NewSyslogWriter(cfg SyslogConfig) (*SyslogWriter, error) {
	if cfg.Network != "udp" && cfg.Network != "tcp" {
		return nil, fmt.Errorf("syslog: network %q: want udp or tcp", cfg.Network)
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("syslog: address %q: %w", cfg.Addr, err)
	}
	if cfg.Facility == 0 {
		cfg.Facility = DefaultSyslogFacility
	}
	if cfg.Facility < 1 || cfg.Facility > 23 {
		return nil, fmt.Errorf("syslog: facility %d: want 1 to 23", cfg.Facility)
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.AppName == "" {
		cfg.AppName = "keyledger"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &SyslogWriter{
		cfg:      cfg,
		procID:   strconv.Itoa(os.Getpid()),
		hostname: printASCII(cfg.Hostname, 255),
	}, nil
}

// Write sends one message. An error means it was not sent (or may not have
// been): send it again.
func (w *SyslogWriter) Write(ctx context.Context, m SyslogMessage) error {
	frame := w.Format(m)
	if w.cfg.Network == "tcp" {
		frame = append(strconv.AppendInt(nil, int64(len(frame)), 10), append([]byte{' '}, frame...)...)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("syslog: writer closed")
	}
	if w.conn != nil && w.peerClosed() {
		w.drop()
	}
	deadline := time.Now().Add(w.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if w.conn == nil {
		dctx, cancel := context.WithDeadline(ctx, deadline)
		conn, err := (&net.Dialer{}).DialContext(dctx, w.cfg.Network, w.cfg.Addr)
		cancel()
		if err != nil {
			return fmt.Errorf("syslog: connect to %s %s: %w", w.cfg.Network, w.cfg.Addr, err)
		}
		w.conn = conn
		if w.cfg.Network == "tcp" {
			w.dead = make(chan struct{})
			go watchSyslogConn(conn, w.dead)
		}
	}
	_ = w.conn.SetWriteDeadline(deadline)
	if _, err := w.conn.Write(frame); err != nil {
		w.drop()
		return fmt.Errorf("syslog: write to %s %s: %w", w.cfg.Network, w.cfg.Addr, err)
	}
	return nil
}

// watchSyslogConn reads a TCP connection until it ends: a syslog server sends
// nothing, so a read returns only when the server closes the connection
// (or the writer does).
func watchSyslogConn(conn net.Conn, dead chan struct{}) {
	buf := make([]byte, 256)
	for {
		if _, err := conn.Read(buf); err != nil {
			close(dead)
			return
		}
	}
}

func (w *SyslogWriter) peerClosed() bool {
	if w.dead == nil {
		return false
	}
	select {
	case <-w.dead:
		return true
	default:
		return false
	}
}

func (w *SyslogWriter) drop() {
	if w.conn != nil {
		_ = w.conn.Close()
	}
	w.conn, w.dead = nil, nil
}

// Close closes the connection; later writes fail.
func (w *SyslogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.drop()
	return nil
}

// Format returns one RFC 5424 message, without transport framing:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID NAME="VALUE" ...] MSG
//
// PRI is facility·8 + severity; TIMESTAMP is the message's time in UTC with
// microseconds; header fields are printable US-ASCII, cut to their maximum
// length, "-" when empty; PARAM-VALUEs have '"', '\' and ']' escaped.
func (w *SyslogWriter) Format(m SyslogMessage) []byte {
	sev := min(max(m.Severity, 0), 7)
	b := make([]byte, 0, 160+len(m.Msg))
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(w.cfg.Facility*8+sev), 10)
	b = append(b, ">1 "...)
	if m.Time.IsZero() {
		b = append(b, '-')
	} else {
		b = m.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	for _, f := range []struct {
		s   string
		max int
	}{{w.hostname, 255}, {w.cfg.AppName, 48}, {w.procID, 128}, {m.MsgID, 32}} {
		b = append(b, ' ')
		b = append(b, printASCII(f.s, f.max)...)
	}
	b = append(b, ' ')
	if id := sdName(m.SDID, false); id == "" {
		b = append(b, '-')
	} else {
		b = append(b, '[')
		b = append(b, id...)
		for _, p := range m.Params {
			name := sdName(p.Name, true)
			if name == "" {
				continue
			}
			b = append(b, ' ')
			b = append(b, name...)
			b = append(b, '=', '"')
			b = appendSDValue(b, p.Value)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	if len(m.Msg) > 0 {
		b = append(b, ' ')
		b = append(b, m.Msg...)
	}
	return b
}

// printASCII keeps the printable US-ASCII characters (33-126) of s, at
// most max of them; "-" (NILVALUE) if none.
func printASCII(s string, max int) string {
	var sb strings.Builder
	for i := 0; i < len(s) && sb.Len() < max; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			sb.WriteByte(c)
		}
	}
	if sb.Len() == 0 {
		return "-"
	}
	return sb.String()
}

// sdName keeps the characters of s allowed in an SD-NAME (printable
// US-ASCII but '=', ' ', ']' and '"'), at most 32 of them. An SD-ID may
// carry one '@' (enterprise number); a PARAM-NAME none.
func sdName(s string, param bool) string {
	var sb strings.Builder
	for i := 0; i < len(s) && sb.Len() < 32; i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' || (param && c == '@') {
			continue
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// appendSDValue appends a PARAM-VALUE: valid UTF-8, with '"', '\' and ']'
// escaped by a backslash.
func appendSDValue(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

package consumers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Audit sinks are configured at start, one spec each (ParseSink):
//
//	file:/var/log/keyledger/audit.jsonl?format=ocsf
//	syslog+udp://127.0.0.1:514?format=cloudevents&facility=local4
//	syslog+tcp://logs.example.com:601
//	stdout?format=native&name=console
//
// Each sink is an ordered durable consumer named "sink_" + its name: it
// gets every event of the ledger, from the first, once each (at least once:
// after a crash, the events since the last acknowledgement come again, and
// a receiver dedupes on the event id), in ledger order. The name is stable
// (derived from the kind and the path or address unless set with name=):
// changing it starts the sink over from the first event, while changing
// the format does not.

// Sink kinds.
const (
	SinkFile   = "file"
	SinkSyslog = "syslog"
	SinkStdout = "stdout"
)

// SinkConfig is one audit sink.
type SinkConfig struct {
	// Name is stable across restarts: the consumer is "sink_" + Name.
	// Letters, digits, '_' and '-', at most 64.
	Name string
	Kind string // SinkFile, SinkSyslog or SinkStdout
	// Path is the JSON lines file (file).
	Path string
	// Network (udp or tcp) and Addr (host:port) locate the syslog server.
	Network string
	Addr    string
	// Format renders each event; default FormatNative.
	Format Format
	// Facility is the syslog facility, 1-23 (0: authpriv, 10).
	Facility int
	// Source is the CloudEvents source (format cloudevents), default
	// DefaultCloudEventsSource.
	Source string
}

var sinkNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

const sinkUsage = "want file:PATH, syslog+udp://HOST[:PORT], syslog+tcp://HOST[:PORT] or stdout, then optionally ?format=native|cloudevents|ocsf&name=NAME (syslog: &facility=authpriv|local0..local7|1-23; cloudevents: &source=URI-REFERENCE)"

// ParseSink parses a sink spec:
//
//	file:PATH                    a JSON lines file (file:///abs/path too)
//	syslog+udp://HOST[:PORT]     RFC 5424 over UDP, port 514 by default
//	syslog+tcp://HOST[:PORT]     RFC 5424 over TCP, octet counting, port 601 by default
//	stdout
//
// followed by options after '?', separated by '&', values URL-escaped:
// format (native, the default; cloudevents; ocsf), name, facility (syslog
// only; authpriv by default) and source (cloudevents only). A path cannot
// hold '?'. Anything else is an error.
func ParseSink(spec string) (SinkConfig, error) {
	fail := func(format string, args ...any) (SinkConfig, error) {
		return SinkConfig{}, fmt.Errorf("audit sink %q: %s", spec, fmt.Sprintf(format, args...))
	}
	if spec == "" {
		return SinkConfig{}, errors.New("audit sink: empty spec; " + sinkUsage)
	}
	base, query, _ := strings.Cut(spec, "?")
	var c SinkConfig
	switch {
	case base == SinkStdout:
		c.Kind = SinkStdout
	case strings.HasPrefix(base, "file:"):
		c.Kind = SinkFile
		p := strings.TrimPrefix(base, "file:")
		if strings.HasPrefix(p, "//") {
			if !strings.HasPrefix(p, "///") {
				return fail("a file URL takes no host: write file:/abs/path or file:///abs/path")
			}
			p = p[2:]
		}
		if p == "" {
			return fail("no path after file:")
		}
		if strings.HasSuffix(p, "/") || strings.HasSuffix(p, string(filepath.Separator)) {
			return fail("%s is a folder: give the path of a file", p)
		}
		c.Path = filepath.Clean(p)
	case strings.HasPrefix(base, "syslog+udp://"), strings.HasPrefix(base, "syslog+tcp://"):
		c.Kind = SinkSyslog
		c.Network = base[len("syslog+") : len("syslog+")+3]
		hostport := base[len("syslog+udp://"):]
		if strings.ContainsAny(hostport, "/@") {
			return fail("a syslog address is HOST or HOST:PORT, with no path or user")
		}
		addr, err := syslogAddr(hostport, c.Network)
		if err != nil {
			return fail("%v", err)
		}
		c.Addr = addr
	case strings.HasPrefix(base, "syslog:") || strings.HasPrefix(base, "syslog+"):
		return fail("say syslog+udp:// or syslog+tcp://")
	default:
		return fail("unknown kind; %s", sinkUsage)
	}

	opts := map[string]string{}
	if query != "" {
		for kv := range strings.SplitSeq(query, "&") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fail("option %q is not NAME=VALUE", kv)
			}
			val, err := url.QueryUnescape(v)
			if err != nil {
				return fail("option %s: %v", k, err)
			}
			if val == "" {
				return fail("option %s is empty", k)
			}
			if _, dup := opts[k]; dup {
				return fail("option %s given twice", k)
			}
			opts[k] = val
		}
	} else if strings.Contains(spec, "?") {
		return fail("nothing after '?'")
	}
	for k, v := range opts {
		var err error
		switch k {
		case "format":
			c.Format, err = ParseFormat(v)
		case "name":
			c.Name = v
		case "facility":
			if c.Kind != SinkSyslog {
				return fail("facility applies to syslog sinks only")
			}
			c.Facility, err = ParseSyslogFacility(v)
		case "source":
			c.Source = v
		default:
			return fail("unknown option %q (format, name, facility, source)", k)
		}
		if err != nil {
			return fail("%v", err)
		}
	}
	if c.Source != "" && c.Format != FormatCloudEvents {
		return fail("source applies to format=cloudevents only")
	}
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return SinkConfig{}, fmt.Errorf("audit sink %q: %w", spec, err)
	}
	return c, nil
}

func syslogAddr(hostport, network string) (string, error) {
	port := map[string]string{"udp": "514", "tcp": "601"}[network]
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port: the host alone (a bracketed IPv6 address too).
		host = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
		if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && !strings.HasPrefix(hostport, "[")) {
			return "", fmt.Errorf("address %q: write an IPv6 address in brackets, [::1]:514", hostport)
		}
	} else {
		port = p
	}
	if host == "" {
		return "", errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q: want 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

// ParseSinks parses several specs and checks that their names differ.
func ParseSinks(specs []string) ([]SinkConfig, error) {
	var (
		out  []SinkConfig
		errs []error
		seen = map[string]string{}
	)
	for _, s := range specs {
		c, err := ParseSink(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := seen[c.Name]; dup {
			errs = append(errs, fmt.Errorf("audit sinks %q and %q are both named %s: give one another name with &name=", prev, s, c.Name))
			continue
		}
		seen[c.Name] = s
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

// SplitSinkSpecs splits a comma-separated list of specs (as in an
// environment variable), dropping blanks. A spec cannot hold a comma.
func SplitSinkSpecs(list string) []string {
	var out []string
	for s := range strings.SplitSeq(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (c SinkConfig) withDefaults() SinkConfig {
	if c.Format == "" {
		c.Format = FormatNative
	}
	if c.Kind == SinkSyslog && c.Facility == 0 {
		c.Facility = DefaultSyslogFacility
	}
	if c.Name == "" {
		c.Name = deriveSinkName(c)
	}
	return c
}

// deriveSinkName names a sink after its kind and its path or address:
// file_var_log_keyledger_audit_jsonl, syslog_udp_127_0_0_1_514, stdout.
// A long name is cut and ends with a hash of the whole.
func deriveSinkName(c SinkConfig) string {
	raw := c.Kind
	switch c.Kind {
	case SinkFile:
		raw += "_" + c.Path
	case SinkSyslog:
		raw += "_" + c.Network + "_" + c.Addr
	}
	var sb strings.Builder
	under := false
	for _, r := range raw {
		ok := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
		if !ok {
			if !under && sb.Len() > 0 {
				sb.WriteByte('_')
			}
			under = true
			continue
		}
		sb.WriteRune(r)
		under = false
	}
	name := strings.TrimRight(sb.String(), "_")
	if len(name) > 64 {
		sum := sha256.Sum256([]byte(raw))
		name = name[:55] + "_" + hex.EncodeToString(sum[:4])
	}
	return name
}

// Validate checks a config.
func (c SinkConfig) Validate() error {
	if !sinkNamePattern.MatchString(c.Name) {
		return fmt.Errorf("sink name %q: 1 to 64 letters, digits, '_' or '-'", c.Name)
	}
	if _, err := ParseFormat(string(c.Format)); err != nil {
		return err
	}
	if c.Source != "" {
		if strings.ContainsAny(c.Source, " \t\r\n") {
			return fmt.Errorf("source %q: a URI-reference has no spaces", c.Source)
		}
		if _, err := url.Parse(c.Source); err != nil {
			return fmt.Errorf("source %q is not a URI-reference: %w", c.Source, err)
		}
	}
	switch c.Kind {
	case SinkFile:
		if c.Path == "" {
			return errors.New("a file sink needs a path")
		}
	case SinkSyslog:
		if c.Network != "udp" && c.Network != "tcp" {
			return fmt.Errorf("syslog network %q: want udp or tcp", c.Network)
		}
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("syslog address %q: %w", c.Addr, err)
		}
		if c.Facility < 0 || c.Facility > 23 {
			return fmt.Errorf("syslog facility %d: want 1 to 23", c.Facility)
		}
	case SinkStdout:
	default:
		return fmt.Errorf("sink kind %q: want file, syslog or stdout", c.Kind)
	}
	return nil
}

// String returns the config as a spec ParseSink reads back.
func (c SinkConfig) String() string {
	var s string
	switch c.Kind {
	case SinkFile:
		s = "file:" + c.Path
	case SinkSyslog:
		s = "syslog+" + c.Network + "://" + c.Addr
	default:
		s = c.Kind
	}
	q := []string{"format=" + url.QueryEscape(string(c.Format)), "name=" + url.QueryEscape(c.Name)}
	if c.Kind == SinkSyslog && c.Facility != 0 {
		q = append(q, "facility="+strconv.Itoa(c.Facility))
	}
	if c.Source != "" {
		q = append(q, "source="+url.QueryEscape(c.Source))
	}
	return s + "?" + strings.Join(q, "&")
}

// NewSink opens a sink and returns its consumer, to run with Run, and what
// closes it once Run has returned. stdout is where a stdout sink writes.
func NewSink(cfg SinkConfig, stdout io.Writer, log *slog.Logger) (Consumer, io.Closer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return Consumer{}, nil, fmt.Errorf("audit sink: %w", err)
	}
	log = log.With("sink", cfg.Name)
	opts := RenderOptions{Source: cfg.Source}
	var (
		write  func(ctx context.Context, pub schemas.PublicEvent, rendered []byte) error
		closer io.Closer
	)
	switch cfg.Kind {
	case SinkFile:
		f, err := openFileSink(cfg.Path, log)
		if err != nil {
			return Consumer{}, nil, err
		}
		write = func(_ context.Context, _ schemas.PublicEvent, line []byte) error { return f.write(line) }
		closer = f
	case SinkStdout:
		if stdout == nil {
			return Consumer{}, nil, errors.New("audit sink stdout: no standard output")
		}
		s := &stdoutSink{w: stdout}
		write = func(_ context.Context, _ schemas.PublicEvent, line []byte) error { return s.write(line) }
		closer = stdoutCloser{} // standard output is not the sink's to close
	case SinkSyslog:
		w, err := NewSyslogWriter(SyslogConfig{Network: cfg.Network, Addr: cfg.Addr, Facility: cfg.Facility})
		if err != nil {
			return Consumer{}, nil, fmt.Errorf("audit sink %s: %w", cfg.Name, err)
		}
		write = func(ctx context.Context, pub schemas.PublicEvent, msg []byte) error {
			return w.Write(ctx, syslogMessage(pub, msg))
		}
		closer = w
	}
	log.Info("audit sink", "kind", cfg.Kind, "spec", cfg.String())
	return Consumer{
		Name:    "sink_" + cfg.Name,
		Ordered: true,
		Handle: func(ctx context.Context, _ domain.Event, pub schemas.PublicEvent) error {
			out, err := RenderWith(cfg.Format, pub, opts)
			if err != nil {
				log.Error("audit sink: cannot render the event", "event", pub.ID, "err", err)
				return err
			}
			return write(ctx, pub, out)
		},
	}, closer, nil
}

// SyslogSDID is the SD-ID of keyledger's structured data element. 32473 is
// the private enterprise number reserved for documentation (RFC 5612):
// keyledger has none of its own.
const SyslogSDID = "keyledger@32473"

// syslogMessage is the syslog message of an event: MSGID its type, the
// structured data its id, sequence, organization and actor, and the
// rendered event as MSG. Severity: warning for a leaked key's revocation,
// notice for other revocations and removals, info otherwise.
func syslogMessage(pub schemas.PublicEvent, msg []byte) SyslogMessage {
	sev := SyslogInfo
	switch pub.Event {
	case schemas.EventAPIKeyRevoked:
		sev = SyslogNotice
		var d schemas.PublicAPIKeyRevoked
		if json.Unmarshal(pub.Data, &d) == nil && d.RevokeReason == string(domain.ReasonLeaked) {
			sev = SyslogWarning
		}
	case schemas.EventMemberRemoved:
		sev = SyslogNotice
	}
	params := []SDParam{
		{"event_id", pub.ID},
		{"event", pub.Event},
		{"seq", strconv.FormatUint(pub.Context.LedgerSequence, 10)},
	}
	if pub.Context.OrganizationID != nil {
		params = append(params, SDParam{"organization_id", *pub.Context.OrganizationID})
	}
	params = append(params, SDParam{"actor_type", pub.Context.Actor.Type}, SDParam{"actor_id", pub.Context.Actor.ID})
	return SyslogMessage{Severity: sev, Time: pub.CreatedAt, MsgID: pub.Event, SDID: SyslogSDID, Params: params, Msg: msg}
}

type stdoutCloser struct{}

func (stdoutCloser) Close() error { return nil }

// stdoutSink writes one line per event, in one Write.
type stdoutSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *stdoutSink) write(line []byte) error {
	buf := make([]byte, 0, len(line)+1)
	buf = append(append(buf, line...), '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(buf)
	return err
}

// fileSink appends one line per event to a file, and fsyncs it before the
// event is acknowledged: an acknowledged event is on disk. After a crash the
// events since the last acknowledgement are appended again (a line may
// repeat; readers dedupe on the event id), and a line cut short by the
// crash is ended before the next, so it stays alone.
//
// The file is opened O_APPEND|O_CREATE|O_WRONLY, mode 0600 when created;
// it is never truncated nor rewritten. When it is moved away (log rotation
// by renaming), the next event goes to a new file at the path.
type fileSink struct {
	path string
	log  *slog.Logger

	mu   sync.Mutex
	f    *os.File
	info os.FileInfo
	torn bool // the file ends in the middle of a line
}

func openFileSink(path string, log *slog.Logger) (*fileSink, error) {
	s := &fileSink{path: path, log: log}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit sink file: %w", err)
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = errors.New("not a regular file (use the stdout sink for standard output)")
	}
	var torn bool
	if err == nil {
		torn, err = sinkEndsMidLine(s.path, info.Size())
	}
	if err == nil {
		// The new file's name is durable before any event is acknowledged.
		err = syncSinkDir(filepath.Dir(s.path))
	}
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit sink file %s: %w", s.path, err)
	}
	if torn {
		s.log.Warn("audit sink file ends in a partial line (a crash during a write?); it is ended before the next event", "path", s.path)
	}
	s.f, s.info, s.torn = f, info, torn
	return nil
}

func sinkEndsMidLine(path string, size int64) (bool, error) {
	if size == 0 {
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], size-1); err != nil {
		return false, err
	}
	return b[0] != '\n', nil
}

func syncSinkDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *fileSink) write(line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("audit sink file: closed")
	}
	if err := s.reopenIfMoved(); err != nil {
		return err
	}
	buf := make([]byte, 0, len(line)+2)
	if s.torn {
		buf = append(buf, '\n')
	}
	buf = append(append(buf, line...), '\n')
	n, err := s.f.Write(buf)
	if err != nil {
		if n > 0 {
			s.torn = buf[n-1] != '\n'
		}
		return fmt.Errorf("audit sink file %s: %w", s.path, err)
	}
	s.torn = false
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit sink file %s: fsync: %w", s.path, err)
	}
	return nil
}

// reopenIfMoved opens the path again when the open file is no longer
// there: it was renamed or removed (rotated).
func (s *fileSink) reopenIfMoved() error {
	st, err := os.Stat(s.path)
	if err == nil && os.SameFile(st, s.info) {
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit sink file: %w", err)
	}
	s.log.Info("audit sink file was moved away; opening a new one", "path", s.path)
	old := s.f
	if err := s.open(); err != nil {
		return err
	}
	_ = old.Close()
	return nil
}

// Close closes the file.
func (s *fileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

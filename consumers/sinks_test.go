package consumers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/consumers"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

func TestParseSink(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want consumers.SinkConfig
	}{
		{"file:/var/log/keyledger/audit.jsonl?format=ocsf", consumers.SinkConfig{
			Name: "file_var_log_keyledger_audit_jsonl", Kind: "file", Path: "/var/log/keyledger/audit.jsonl", Format: "ocsf"}},
		{"file:///var/log/keyledger/../audit.jsonl", consumers.SinkConfig{
			Name: "file_var_log_audit_jsonl", Kind: "file", Path: "/var/log/audit.jsonl", Format: "native"}},
		{"file:audit.jsonl?name=local-audit", consumers.SinkConfig{
			Name: "local-audit", Kind: "file", Path: "audit.jsonl", Format: "native"}},
		{"syslog+udp://127.0.0.1:514?format=cloudevents", consumers.SinkConfig{
			Name: "syslog_udp_127_0_0_1_514", Kind: "syslog", Network: "udp", Addr: "127.0.0.1:514", Format: "cloudevents", Facility: 10}},
		{"syslog+tcp://logs.example.com:601", consumers.SinkConfig{
			Name: "syslog_tcp_logs_example_com_601", Kind: "syslog", Network: "tcp", Addr: "logs.example.com:601", Format: "native", Facility: 10}},
		{"syslog+tcp://logs.example.com?facility=local4", consumers.SinkConfig{
			Name: "syslog_tcp_logs_example_com_601", Kind: "syslog", Network: "tcp", Addr: "logs.example.com:601", Format: "native", Facility: 20}},
		{"syslog+udp://[::1]?facility=13", consumers.SinkConfig{
			Name: "syslog_udp_1_514", Kind: "syslog", Network: "udp", Addr: "[::1]:514", Format: "native", Facility: 13}},
		{"syslog+udp://[2001:db8::1]:5514", consumers.SinkConfig{
			Name: "syslog_udp_2001_db8_1_5514", Kind: "syslog", Network: "udp", Addr: "[2001:db8::1]:5514", Format: "native", Facility: 10}},
		{"stdout", consumers.SinkConfig{Name: "stdout", Kind: "stdout", Format: "native"}},
		{"stdout?format=native", consumers.SinkConfig{Name: "stdout", Kind: "stdout", Format: "native"}},
		{"stdout?format=cloudevents&source=https%3A%2F%2Fkeys.example.com&name=ce", consumers.SinkConfig{
			Name: "ce", Kind: "stdout", Format: "cloudevents", Source: "https://keys.example.com"}},
	} {
		got, err := consumers.ParseSink(tc.spec)
		if err != nil {
			t.Errorf("ParseSink(%q): %v", tc.spec, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseSink(%q)\n = %+v\nwant %+v", tc.spec, got, tc.want)
		}
		// String is a spec that parses back to the same config.
		back, err := consumers.ParseSink(got.String())
		if err != nil || back != got {
			t.Errorf("ParseSink(%q) = %+v, %v; want %+v", got.String(), back, err, got)
		}
	}
	long, err := consumers.ParseSink("file:/" + strings.Repeat("very-long-folder-name/", 6) + "audit.jsonl")
	if err != nil || len(long.Name) != 64 || !strings.HasPrefix(long.Name, "file_very-long-folder-name_") {
		t.Errorf("a long path: %+v, %v", long, err)
	}
}

func TestParseSinkRejects(t *testing.T) {
	for spec, want := range map[string]string{
		"":                                       "empty",
		"file:":                                  "no path",
		"file://host/x":                          "no host",
		"file:/var/log/":                         "folder",
		"syslog://127.0.0.1:514":                 "syslog+udp:// or syslog+tcp://",
		"syslog+tls://127.0.0.1:6514":            "syslog+udp:// or syslog+tcp://",
		"syslog+udp://":                          "no host",
		"syslog+udp://127.0.0.1:0":               "port",
		"syslog+udp://127.0.0.1:70000":           "port",
		"syslog+udp://127.0.0.1:syslog":          "port",
		"syslog+tcp://127.0.0.1:601/path":        "no path",
		"syslog+tcp://user@127.0.0.1:601":        "no path or user",
		"syslog+udp://::1":                       "IPv6",
		"stdout:":                                "unknown kind",
		"STDOUT":                                 "unknown kind",
		"kafka://broker:9092":                    "unknown kind",
		"/var/log/audit.jsonl":                   "unknown kind",
		"stdout?":                                "nothing after",
		"stdout?format=xml":                      "unknown format",
		"stdout?format=":                         "empty",
		"stdout?format":                          "NAME=VALUE",
		"stdout?format=ocsf&format=native":       "twice",
		"stdout?colour=red":                      "unknown option",
		"stdout?name=a.b":                        "sink name",
		"stdout?name=" + strings.Repeat("n", 65): "sink name",
		"stdout?facility=local0":                 "syslog sinks only",
		"stdout?source=/x":                       "cloudevents only",
		"stdout?format=cloudevents&source=a%20b": "no spaces",
		"syslog+udp://h:514?facility=kern":       "facility",
		"syslog+udp://h:514?facility=24":         "facility",
		"file:/x?format=ocsf&name=%zz":           "name",
	} {
		_, err := consumers.ParseSink(spec)
		if err == nil {
			t.Errorf("ParseSink(%q) accepted", spec)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSink(%q): %v; want it to say %q", spec, err, want)
		}
	}
}

func TestParseSinks(t *testing.T) {
	specs := consumers.SplitSinkSpecs(" file:/a/b.jsonl , ,stdout?format=ocsf,")
	if !reflect.DeepEqual(specs, []string{"file:/a/b.jsonl", "stdout?format=ocsf"}) {
		t.Fatalf("SplitSinkSpecs: %q", specs)
	}
	cfgs, err := consumers.ParseSinks(specs)
	if err != nil || len(cfgs) != 2 {
		t.Fatalf("ParseSinks: %v %v", cfgs, err)
	}
	// Two sinks of one name would share one consumer: refused, each
	// problem said at once.
	_, err = consumers.ParseSinks([]string{"file:/a/b.jsonl", "file:/a/b.jsonl?format=ocsf", "file:/a_b.jsonl", "nope"})
	if err == nil || !strings.Contains(err.Error(), "both named file_a_b_jsonl") || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("ParseSinks: %v", err)
	}
}

func sinkNew(t *testing.T, spec string, stdout io.Writer) consumers.Consumer {
	t.Helper()
	cfg, err := consumers.ParseSink(spec)
	if err != nil {
		t.Fatal(err)
	}
	c, closer, err := consumers.NewSink(cfg, stdout, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closer.Close() })
	if c.Name != "sink_"+cfg.Name || !c.Ordered || c.Handle == nil || len(c.Filter) != 0 {
		t.Fatalf("consumer %+v", c)
	}
	return c
}

func sinkHandle(t *testing.T, c consumers.Consumer, evs []schemas.PublicEvent) {
	t.Helper()
	for _, ev := range evs {
		if err := c.Handle(context.Background(), domain.Event{}, ev); err != nil {
			t.Fatal(err)
		}
	}
}

func sinkRenderAll(t *testing.T, f consumers.Format, evs []schemas.PublicEvent) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range evs {
		out, err := consumers.Render(f, ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
		b.WriteByte('\n')
	}
	return b.String()
}

// The file is created 0600, gets one line per event, each the rendering
// of the event; a file already there is appended to, never rewritten.
func TestFileSink(t *testing.T) {
	fx := sinkEvents(t)
	dir := t.TempDir()
	for _, f := range consumers.Formats {
		path := filepath.Join(dir, string(f)+".jsonl")
		c := sinkNew(t, "file:"+path+"?format="+string(f), nil)
		sinkHandle(t, c, fx.events[:3])
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", info.Mode().Perm())
		}
		want := sinkRenderAll(t, f, fx.events[:3])
		if got, _ := os.ReadFile(path); string(got) != want {
			t.Fatalf("file:\n%s\nwant\n%s", got, want)
		}

		// Again, as after a restart: appended after what was there.
		c = sinkNew(t, "file:"+path+"?format="+string(f), nil)
		sinkHandle(t, c, fx.events[3:])
		got, _ := os.ReadFile(path)
		if string(got) != sinkRenderAll(t, f, fx.events) {
			t.Fatalf("after reopening:\n%s", got)
		}
		sinkNoSecrets(t, path, got, fx.secrets)
	}

	// Someone else's file, with content and its own mode: kept as is.
	path := filepath.Join(dir, "theirs.jsonl")
	if err := os.WriteFile(path, []byte("{\"earlier\":true}\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	sinkHandle(t, sinkNew(t, "file:"+path, nil), fx.events[:1])
	got, _ := os.ReadFile(path)
	if string(got) != "{\"earlier\":true}\n"+sinkRenderAll(t, consumers.FormatNative, fx.events[:1]) {
		t.Fatalf("existing content not kept:\n%s", got)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o640 {
		t.Errorf("mode changed to %v", info.Mode().Perm())
	}
}

// A line cut short by a crash stays alone: the next event starts a line
// of its own.
func TestFileSinkEndsATornLine(t *testing.T) {
	fx := sinkEvents(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	whole := sinkRenderAll(t, consumers.FormatNative, fx.events[:1])
	torn := whole + whole[:25]
	if err := os.WriteFile(path, []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	sinkHandle(t, sinkNew(t, "file:"+path, nil), fx.events[:2])
	got, _ := os.ReadFile(path)
	if string(got) != torn+"\n"+sinkRenderAll(t, consumers.FormatNative, fx.events[:2]) {
		t.Fatalf("file:\n%s", got)
	}
}

// Rotation by renaming: the next event goes to a new file at the path.
func TestFileSinkFollowsRotation(t *testing.T) {
	fx := sinkEvents(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	c := sinkNew(t, "file:"+path, nil)
	sinkHandle(t, c, fx.events[:2])
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	sinkHandle(t, c, fx.events[2:])
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != sinkRenderAll(t, consumers.FormatNative, fx.events[:2]) || string(cur) != sinkRenderAll(t, consumers.FormatNative, fx.events[2:]) {
		t.Fatalf("rotated:\n%s\nnew:\n%s", old, cur)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v", info.Mode().Perm())
	}
}

func TestFileSinkRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	for _, spec := range []string{"file:" + filepath.Join(dir, "missing", "audit.jsonl"), "file:" + dir + "/."} {
		cfg, err := consumers.ParseSink(spec)
		if err != nil {
			continue // refused already
		}
		if _, _, err := consumers.NewSink(cfg, nil, nil); err == nil {
			t.Errorf("NewSink(%s) opened", spec)
		}
	}
	if _, _, err := consumers.NewSink(consumers.SinkConfig{Kind: "stdout"}, nil, nil); err == nil {
		t.Error("a stdout sink without standard output opened")
	}
	if _, _, err := consumers.NewSink(consumers.SinkConfig{Kind: "file", Path: filepath.Join(dir, "x"), Format: "xml"}, nil, nil); err == nil {
		t.Error("a sink of an unknown format opened")
	}
}

// stdout: one line per event, in one write each.
func TestStdoutSink(t *testing.T) {
	fx := sinkEvents(t)
	for _, f := range consumers.Formats {
		var buf writeCounter
		c := sinkNew(t, "stdout?format="+string(f), &buf)
		sinkHandle(t, c, fx.events)
		if buf.String() != sinkRenderAll(t, f, fx.events) || buf.writes != len(fx.events) {
			t.Fatalf("%s: %d writes:\n%s", f, buf.writes, buf.String())
		}
		sinkNoSecrets(t, "stdout "+string(f), buf.Bytes(), fx.secrets)
	}
	var buf bytes.Buffer
	c := sinkNew(t, "stdout?format=cloudevents&source=https://keys.example.com", &buf)
	sinkHandle(t, c, fx.events[:1])
	if !strings.Contains(buf.String(), `"source":"https://keys.example.com/organizations/org_a"`) {
		t.Fatalf("source not configured: %s", buf.String())
	}
}

type writeCounter struct {
	bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

// ---------------------------------------------------------------------------
// Through the router, from the ledger.

func sinkAppend(t *testing.T, l *ledger, batch ...domain.Append) uint64 {
	t.Helper()
	for i := range batch {
		batch[i].Event.ID = eventstore.NewID("event_")
		batch[i].Event.CreatedAt = time.Now().UTC()
		batch[i].MsgID = batch[i].Event.ID
	}
	res, err := l.store.Append(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	return res.Seq
}

// sinkLineRef returns the event id and ledger sequence a line carries, in
// any format.
func sinkLineRef(t *testing.T, f consumers.Format, line []byte) (string, uint64) {
	t.Helper()
	var v struct {
		ID       string `json:"id"`
		Seq      string `json:"keyledgerseq"`
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
		Context struct {
			Seq uint64 `json:"ledger_sequence"`
		} `json:"context"`
		Unmapped struct {
			Seq uint64 `json:"ledger_sequence"`
		} `json:"unmapped"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		t.Fatalf("%s line: %v\n%s", f, err, line)
	}
	switch f {
	case consumers.FormatNative:
		return v.ID, v.Context.Seq
	case consumers.FormatCloudEvents:
		n, _ := strconv.ParseUint(v.Seq, 10, 64)
		return v.ID, n
	default:
		return v.Metadata.UID, v.Unmapped.Seq
	}
}

func sinkFileLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		return nil // mid-write
	}
	return bytes.Split(b[:len(b)-1], []byte{'\n'})
}

func sinkWaitLines(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(sinkFileLines(t, path)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d lines, want %d", path, len(sinkFileLines(t, path)), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every event of the ledger reaches each file sink once, in ledger order,
// in its format, across a restart; none carries a key value or hash.
func TestFileSinksThroughTheRouter(t *testing.T) {
	l := startLedger(t)
	var (
		secrets []string
		want    []string
	)
	created := func(org, keyID string, owner domain.Owner) domain.Append {
		v, err := domain.GenerateKey(domain.PrefixLive)
		if err != nil {
			t.Fatal(err)
		}
		h := domain.HashKey(v)
		secrets = append(secrets, v, fmt.Sprintf("%x", h[:]))
		return domain.Append{Event: domain.Event{OrganizationID: org, AggregateID: keyID, Actor: domain.Admin(),
			Data: domain.KeyCreated{KeyID: keyID, Name: "k", Owner: owner, Permissions: []string{}, Hash: h, Obfuscated: domain.ObfuscateKey(v)}}}
	}
	k1, k2 := eventstore.NewID("api_key_"), eventstore.NewID("api_key_")
	s1 := sinkAppend(t, l, created("org_a", k1, domain.Owner{Type: domain.OwnerUser, ID: "user_ada"}))
	s2 := sinkAppend(t, l, created("org_a", k2, domain.Owner{Type: domain.OwnerOrganization, ID: "org_a"}))
	sinkAppend(t, l, domain.Append{Expected: s2, Event: domain.Event{OrganizationID: "org_a", AggregateID: k2, Actor: domain.Admin(),
		Data: domain.KeyRevoked{KeyID: k2, Reason: domain.ReasonLeaked}}})
	sinkAppend(t, l,
		domain.Append{Event: domain.Event{OrganizationID: "org_a", AggregateID: "user_ada", Actor: domain.Admin(),
			Data: domain.MemberRemoved{UserID: "user_ada", RevokedKeyIDs: []string{k1}}}},
		domain.Append{Expected: s1, Event: domain.Event{OrganizationID: "org_a", AggregateID: k1, Actor: domain.Admin(),
			Data: domain.KeyRevoked{KeyID: k1, Reason: domain.ReasonOwnerRemoved}}})
	sinkAppend(t, l, domain.Append{Event: domain.Event{AggregateID: domain.CatalogueAggregateID, Actor: domain.Admin(),
		Data: domain.CataloguePermissionsSet{Permissions: []string{"projects:read"}, Previous: []string{}}}})
	l.create(t, "org_b")

	last, err := l.store.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= last; seq++ {
		e, err := l.store.EventAt(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, e.ID)
	}
	if len(want) != 7 {
		t.Fatalf("ledger holds %d events, want 7", len(want))
	}

	dir := t.TempDir()
	path := func(f consumers.Format) string { return filepath.Join(dir, string(f)+".jsonl") }
	start := func() (stop func()) {
		var cs []consumers.Consumer
		var closers []io.Closer
		for _, f := range consumers.Formats {
			cfg, err := consumers.ParseSink("file:" + path(f) + "?format=" + string(f))
			if err != nil {
				t.Fatal(err)
			}
			c, closer, err := consumers.NewSink(cfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			cs, closers = append(cs, c), append(closers, closer)
		}
		stopRouter := run(t, l, cs...)
		return func() {
			stopRouter()
			for _, c := range closers {
				if err := c.Close(); err != nil {
					t.Error(err)
				}
			}
		}
	}
	check := func() {
		t.Helper()
		for _, f := range consumers.Formats {
			lines := sinkFileLines(t, path(f))
			var got []string
			for i, line := range lines {
				id, seq := sinkLineRef(t, f, line)
				if seq != uint64(i+1) {
					t.Errorf("%s line %d carries sequence %d", f, i+1, seq)
				}
				got = append(got, id)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s file holds\n%v\nwant every event once, in ledger order\n%v", f, got, want)
			}
			raw, _ := os.ReadFile(path(f))
			sinkNoSecrets(t, path(f), raw, secrets)
		}
	}

	stop := start()
	for _, f := range consumers.Formats {
		sinkWaitLines(t, path(f), len(want))
	}
	stop()
	check()

	// Events appended while stopped come after a restart; none again.
	want = append(want, l.create(t, "org_a"), l.create(t, "org_b"))
	stop = start()
	for _, f := range consumers.Formats {
		sinkWaitLines(t, path(f), len(want))
	}
	time.Sleep(200 * time.Millisecond) // room for a repeat to show
	stop()
	check()
}

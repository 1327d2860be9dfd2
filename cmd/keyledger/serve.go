package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/consumers"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/fleet"
	"github.com/keyledger/keyledger/freshness"
	"github.com/keyledger/keyledger/projections"
	"github.com/keyledger/keyledger/schemas"
	"github.com/keyledger/keyledger/sealer"
	"github.com/keyledger/keyledger/web"
)

// Config is everything `keyledger serve` reads, from flags or environment.
type Config struct {
	Data       string
	HTTPAddr   string
	NATSURL    string
	NATSListen string
	Stream     string
	KeyPrefix  string
	LogLevel   string
	AdminKey   string // from KEYLEDGER_ADMIN_KEY only, never a flag
	// MetricsToken is the bearer token /metrics requires, from
	// KEYLEDGER_METRICS_TOKEN only; empty: /metrics answers 404.
	MetricsToken string
	// ValidatorPassword is the embedded NATS server's "validator" user's
	// password, from KEYLEDGER_NATS_VALIDATOR_PASSWORD only.
	ValidatorPassword string
	// SubscriberPassword is the embedded NATS server's read-only
	// "subscriber" user's password (public subjects only), from
	// KEYLEDGER_NATS_SUBSCRIBER_PASSWORD only; empty: no such user.
	SubscriberPassword string

	// Webhooks: the SSRF allowlist, the retry schedule (empty: the
	// default), how long an endpoint may fail before it is disabled, and
	// the key that seals signing secrets (KEYLEDGER_WEBHOOK_SECRET_KEY).
	WebhookAllow        string
	WebhookSchedule     []time.Duration
	WebhookDisableAfter time.Duration
	WebhookSecretKey    string
	// WebhookTimeout bounds one delivery attempt (0: 15s); WebhookAckWait
	// is how long a delivery a node took may go unanswered before another
	// worker, or this node after a restart, takes it again (0: 2m). It must
	// exceed twice WebhookTimeout: a delivery may wait for one attempt
	// before its own.
	WebhookTimeout time.Duration
	WebhookAckWait time.Duration

	// The settings page: the key that signs widget tokens
	// (KEYLEDGER_WIDGET_KEY, else made once in the data folder), the
	// origins that may embed the page, and when a key counts as unused.
	WidgetKey        string
	UIFrameAncestors []string
	UIStaleDays      int

	// The sealer: its signing key (KEYLEDGER_SEAL_KEY, else SealKeyFile,
	// else made once in the data folder), and how often it seals.
	SealKey      string
	SealKeyFile  string
	SealEvery    int
	SealInterval time.Duration

	// StaleAfter is how long validations answer without a proof that the
	// projection is current (the ledger lost); then they fail closed.
	StaleAfter time.Duration
	// FollowStall is how long the projector's or the sealer's reader of the
	// ledger may read nothing while the ledger holds events it has not
	// read before it is replaced by a new one (0: 3s).
	FollowStall time.Duration

	// ValidationFailLimit rate limits failed validations per source
	// address (--validation-fail-limit); the zero value: off.
	ValidationFailLimit api.FailLimit

	// AuditSinks are audit sink specs (consumers.ParseSink): --audit-sink,
	// repeatable, else KEYLEDGER_AUDIT_SINKS, comma-separated.
	AuditSinks []string

	// MinFree is the free space the data folder's filesystem keeps:
	// below it commands are refused (507 storage_full) and validations
	// go on; 0 turns the check off. Ballast is the size of the file kept
	// in the data folder and given up when the disk fills anyway.
	MinFree uint64
	Ballast uint64

	// Node names this process in the fleet (--node); default: the host
	// name and a random suffix.
	Node string
}

// Validate checks a config, reporting every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Data == "" {
		errs = append(errs, errors.New("--data is required"))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("--http %q: %w", c.HTTPAddr, err))
	}
	if c.KeyPrefix != domain.PrefixLive && c.KeyPrefix != domain.PrefixTest {
		errs = append(errs, fmt.Errorf("--key-prefix must be %s or %s", domain.PrefixLive, domain.PrefixTest))
	}
	if c.NATSListen != "" && c.NATSURL == "" && len(c.ValidatorPassword) < 24 {
		errs = append(errs, errors.New("--nats-listen needs KEYLEDGER_NATS_VALIDATOR_PASSWORD (at least 24 characters): the password of the read-only NATS user embedded validators connect as"))
	}
	if c.SubscriberPassword != "" && len(c.SubscriberPassword) < 24 {
		errs = append(errs, errors.New("KEYLEDGER_NATS_SUBSCRIBER_PASSWORD must be at least 24 characters"))
	}
	if _, err := consumers.ParseSinks(c.AuditSinks); err != nil {
		errs = append(errs, fmt.Errorf("--audit-sink: %w", err))
	}
	for _, a := range c.UIFrameAncestors {
		if a != "'self'" && !strings.HasPrefix(a, "https://") && !strings.HasPrefix(a, "http://") {
			errs = append(errs, fmt.Errorf("--ui-frame-ancestors %q: want origins like https://app.example.com", a))
		}
	}
	if _, err := parseAllow(c.WebhookAllow); err != nil {
		errs = append(errs, err)
	}
	if c.AdminKey != "" && len(c.AdminKey) < 24 {
		errs = append(errs, errors.New("KEYLEDGER_ADMIN_KEY must be at least 24 characters"))
	}
	if c.Node != "" && !schemas.ValidNodeName(c.Node) {
		errs = append(errs, fmt.Errorf("--node %q: 1 to 128 printable bytes without '.', '*', '>' or spaces (it names the node's NATS subject)", c.Node))
	}
	if c.StaleAfter > fleet.MaxBound {
		errs = append(errs, fmt.Errorf("--stale-after %s: at most %s (a command waits that long for a node that lags)", c.StaleAfter, fleet.MaxBound))
	}
	if c.FollowStall < 0 {
		errs = append(errs, errors.New("--follow-stall cannot be negative"))
	}
	if c.WebhookTimeout < 0 || c.WebhookAckWait < 0 {
		errs = append(errs, errors.New("--webhook-timeout and --webhook-ack-wait cannot be negative"))
	}
	if timeout, wait := or(c.WebhookTimeout, 15*time.Second), or(c.WebhookAckWait, 2*time.Minute); wait <= 2*timeout {
		errs = append(errs, fmt.Errorf("--webhook-ack-wait %s must exceed twice --webhook-timeout %s: a delivery may wait for one attempt before its own, and would be taken again while in flight", wait, timeout))
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 24 {
		errs = append(errs, errors.New("KEYLEDGER_METRICS_TOKEN must be at least 24 characters"))
	}
	return errors.Join(errs...)
}

// Main is the service: its config, and the parts it opened, in the order
// they close.
type Main struct {
	Config Config
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger

	// Addr is the HTTP address actually bound, once Run has started.
	addrMu     sync.Mutex
	addr       string
	store      *eventstore.Store
	projection *projections.Projection
}

// NewMain returns a Main with the defaults.
func NewMain(stdout, stderr io.Writer) *Main {
	return &Main{stdout: stdout, stderr: stderr}
}

// or is d, or def when d is zero.
func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// ParseFlags reads flags, each with an environment variable as default.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("keyledger serve", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	c := &m.Config
	fs.StringVar(&c.Data, "data", env("KEYLEDGER_DATA", "./keyledger-data"), "data folder: the embedded JetStream store, the projection, the admin key hash (KEYLEDGER_DATA)")
	fs.StringVar(&c.HTTPAddr, "http", env("KEYLEDGER_HTTP_ADDR", "127.0.0.1:8080"), "HTTP API address (KEYLEDGER_HTTP_ADDR)")
	fs.StringVar(&c.NATSURL, "nats-url", env("KEYLEDGER_NATS_URL", ""), "use this NATS server instead of embedding one, comma-separated URLs (KEYLEDGER_NATS_URL)")
	fs.StringVar(&c.NATSListen, "nats-listen", env("KEYLEDGER_NATS_LISTEN", ""), "let NATS clients connect to the embedded server at host:port; empty: in-process only (KEYLEDGER_NATS_LISTEN)")
	fs.StringVar(&c.Stream, "stream", env("KEYLEDGER_STREAM", "KEYLEDGER"), "name of the ledger stream (KEYLEDGER_STREAM)")
	fs.StringVar(&c.KeyPrefix, "key-prefix", env("KEYLEDGER_KEY_PREFIX", domain.PrefixLive), "prefix of new keys, sk_live or sk_test (KEYLEDGER_KEY_PREFIX)")
	fs.StringVar(&c.LogLevel, "log-level", env("KEYLEDGER_LOG_LEVEL", "info"), "debug, info, warn or error (KEYLEDGER_LOG_LEVEL)")
	fs.StringVar(&c.WebhookAllow, "webhook-allow", env("KEYLEDGER_WEBHOOK_ALLOW", ""), "comma-separated CIDRs webhooks may reach although private, loopback or link-local (KEYLEDGER_WEBHOOK_ALLOW)")
	schedule := fs.String("webhook-retry-schedule", env("KEYLEDGER_WEBHOOK_RETRY_SCHEDULE", ""), "comma-separated delays between webhook attempts (default 5s,5m,30m,2h,5h,10h,10h) (KEYLEDGER_WEBHOOK_RETRY_SCHEDULE)")
	webhookTimeout := fs.String("webhook-timeout", env("KEYLEDGER_WEBHOOK_TIMEOUT", "15s"), "bound of one webhook delivery attempt, connecting included (KEYLEDGER_WEBHOOK_TIMEOUT)")
	webhookAckWait := fs.String("webhook-ack-wait", env("KEYLEDGER_WEBHOOK_ACK_WAIT", "2m"), "a webhook delivery in flight when its node died is taken again after this long; more than twice --webhook-timeout (KEYLEDGER_WEBHOOK_ACK_WAIT)")
	disableAfter := fs.String("webhook-disable-after", env("KEYLEDGER_WEBHOOK_DISABLE_AFTER", "120h"), "disable an endpoint failing continuously this long (KEYLEDGER_WEBHOOK_DISABLE_AFTER)")
	frameAncestors := fs.String("ui-frame-ancestors", env("KEYLEDGER_UI_FRAME_ANCESTORS", ""), "origins that may embed the settings page in a frame, space-separated, e.g. https://app.example.com (KEYLEDGER_UI_FRAME_ANCESTORS)")
	staleDays := fs.Int("ui-stale-days", 90, "the settings page flags keys unused for this many days (KEYLEDGER_UI_STALE_DAYS)")
	if v := os.Getenv("KEYLEDGER_UI_STALE_DAYS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			*staleDays = n
		}
	}
	fs.StringVar(&c.SealKeyFile, "seal-key-file", env("KEYLEDGER_SEAL_KEY_FILE", ""), "file holding the Ed25519 seed that signs checkpoints (KEYLEDGER_SEAL_KEY_FILE; default: made once in the data folder; KEYLEDGER_SEAL_KEY takes the seed itself)")
	fs.IntVar(&c.SealEvery, "seal-every", 1000, "seal a checkpoint after this many new events")
	fs.DurationVar(&c.SealInterval, "seal-interval", time.Minute, "seal whatever is new at least this often")
	fs.DurationVar(&c.StaleAfter, "stale-after", 10*time.Second, "validations fail closed (503) when this node cannot prove for this long that its projection is current with the ledger")
	fs.DurationVar(&c.FollowStall, "follow-stall", 3*time.Second, "a reader of the ledger (projector, sealer) that reads nothing for this long while the ledger holds events it has not read is replaced")
	failLimit := fs.String("validation-fail-limit", env("KEYLEDGER_VALIDATION_FAIL_LIMIT", "100/min"), "failed validations (not_found, malformed, revoked, expired) one source address may make, e.g. 100/min, 10/s or 20/30s; past it its further failed validations are answered 429 with Retry-After (valid keys never are); 0 turns it off (KEYLEDGER_VALIDATION_FAIL_LIMIT)")
	fs.StringVar(&c.Node, "node", env("KEYLEDGER_NODE", ""), "this node's name in the fleet, unique per process (KEYLEDGER_NODE; default: host name and a random suffix)")
	minFree := fs.String("min-free", env("KEYLEDGER_MIN_FREE", "64MiB"), "commands are refused (507 storage_full) while the data folder's disk has less free space than this; validations go on; 0 turns the check off (KEYLEDGER_MIN_FREE)")
	ballast := fs.String("ballast", env("KEYLEDGER_BALLAST", "16MiB"), "space held back in DATA/ballast and given up when the disk fills anyway, so that the stores can finish their writes; 0 for none (KEYLEDGER_BALLAST)")
	var sinks specList
	fs.Var(&sinks, "audit-sink", "audit sink, repeatable: file:PATH, syslog+udp://HOST[:PORT], syslog+tcp://HOST[:PORT] or stdout, then ?format=native|cloudevents|ocsf (KEYLEDGER_AUDIT_SINKS, comma-separated)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	c.AuditSinks = consumers.SplitSinkSpecs(os.Getenv("KEYLEDGER_AUDIT_SINKS"))
	if len(sinks) > 0 {
		c.AuditSinks = sinks
	}
	var err error
	if c.WebhookSchedule, err = parseSchedule(*schedule); err != nil {
		fmt.Fprintln(m.stderr, err)
		return errUsage
	}
	if c.WebhookDisableAfter, err = time.ParseDuration(*disableAfter); err != nil {
		fmt.Fprintf(m.stderr, "--webhook-disable-after: %v\n", err)
		return errUsage
	}
	if c.WebhookTimeout, err = time.ParseDuration(*webhookTimeout); err != nil {
		fmt.Fprintf(m.stderr, "--webhook-timeout: %v\n", err)
		return errUsage
	}
	if c.WebhookAckWait, err = time.ParseDuration(*webhookAckWait); err != nil {
		fmt.Fprintf(m.stderr, "--webhook-ack-wait: %v\n", err)
		return errUsage
	}
	if c.MinFree, err = parseSize(*minFree); err != nil {
		fmt.Fprintf(m.stderr, "--min-free: %v\n", err)
		return errUsage
	}
	if c.Ballast, err = parseSize(*ballast); err != nil {
		fmt.Fprintf(m.stderr, "--ballast: %v\n", err)
		return errUsage
	}
	if c.ValidationFailLimit, err = api.ParseFailLimit(*failLimit); err != nil {
		fmt.Fprintf(m.stderr, "--validation-fail-limit: %v\n", err)
		return errUsage
	}
	c.WebhookSecretKey = os.Getenv("KEYLEDGER_WEBHOOK_SECRET_KEY")
	c.WidgetKey = os.Getenv("KEYLEDGER_WIDGET_KEY")
	c.SealKey = os.Getenv("KEYLEDGER_SEAL_KEY")
	c.UIFrameAncestors = strings.Fields(*frameAncestors)
	c.UIStaleDays = *staleDays
	if fs.NArg() > 0 {
		fmt.Fprintf(m.stderr, "unexpected arguments: %v\n", fs.Args())
		return errUsage
	}
	c.AdminKey = os.Getenv("KEYLEDGER_ADMIN_KEY")
	// A secret, like the admin key: never a flag, which shows in the
	// process list.
	c.MetricsToken = os.Getenv("KEYLEDGER_METRICS_TOKEN")
	c.ValidatorPassword = os.Getenv("KEYLEDGER_NATS_VALIDATOR_PASSWORD")
	c.SubscriberPassword = os.Getenv("KEYLEDGER_NATS_SUBSCRIBER_PASSWORD")
	m.log = newLogger(m.stderr, c.LogLevel)
	return c.Validate()
}

// specList is a repeatable string flag.
type specList []string

func (l *specList) String() string     { return strings.Join(*l, ",") }
func (l *specList) Set(s string) error { *l = append(*l, s); return nil }

// sealLeaseTTL is how long a dead node holds the sealer lease: the
// longest another node waits to take sealing over.
const sealLeaseTTL = 10 * time.Second

// ledger is an open connection to the ledger: the embedded server if any,
// the connection, and the store.
type ledger struct {
	ns    *eventstore.Embedded
	nc    *nats.Conn
	store *eventstore.Store
}

func (m *Main) openLedger(ctx context.Context) (*ledger, error) {
	l := &ledger{}
	var err error
	if m.Config.NATSURL != "" {
		l.nc, err = eventstore.Connect(m.Config.NATSURL, m.log)
	} else {
		l.ns, err = eventstore.StartEmbedded(eventstore.EmbeddedConfig{
			Dir: m.Config.Data, Listen: m.Config.NATSListen, ValidatorPassword: m.Config.ValidatorPassword,
			SubscriberPassword: m.Config.SubscriberPassword, Stream: m.Config.Stream,
		}, m.log)
		if err == nil {
			l.nc, err = eventstore.ConnectEmbedded(l.ns)
		}
	}
	if err != nil {
		l.close()
		return nil, err
	}
	l.store, err = eventstore.Open(ctx, l.nc, eventstore.Config{Stream: m.Config.Stream, StallAfter: m.Config.FollowStall})
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// close drains the connection (flushing anything buffered) and shuts the
// embedded server down.
func (l *ledger) close() {
	if l.nc != nil {
		_ = l.nc.Drain()
		for i := 0; i < 100 && !l.nc.IsClosed(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		l.nc.Close()
	}
	if l.ns != nil {
		l.ns.Shutdown()
		l.ns.WaitForShutdown()
	}
}

// Addr returns the bound HTTP address, or "" before Run has bound it.
func (m *Main) Addr() string {
	m.addrMu.Lock()
	defer m.addrMu.Unlock()
	return m.addr
}

// proj returns the projection Run opened.
func (m *Main) proj() *projections.Projection {
	m.addrMu.Lock()
	defer m.addrMu.Unlock()
	return m.projection
}

// ledgerLastSeq returns the last sequence of the ledger Run opened.
func (m *Main) ledgerLastSeq() (uint64, error) {
	m.addrMu.Lock()
	st := m.store
	m.addrMu.Unlock()
	if st == nil {
		return 0, errors.New("not running")
	}
	return st.LastSeq(context.Background())
}

// Run serves until ctx ends, then shuts down in order: stop accepting and
// drain HTTP requests, stop the projector, close the projection, drain NATS
// and shut the embedded server down.
func (m *Main) Run(ctx context.Context) (err error) {
	if m.log == nil {
		m.log = newLogger(m.stderr, m.Config.LogLevel)
	}
	if err := os.MkdirAll(m.Config.Data, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	adminHash, err := m.adminKeyHash()
	if err != nil {
		return err
	}
	widgetKey, err := m.secretKey("KEYLEDGER_WIDGET_KEY", m.Config.WidgetKey, "widget_token.key")
	if err != nil {
		return err
	}
	sealKey, err := m.sealKey()
	if err != nil {
		return err
	}
	l, err := m.openLedger(ctx)
	if err != nil {
		return err
	}
	defer l.close()

	restart := make(chan struct{}, 1)
	guard := m.newDiskGuard(l, restart)
	proj, err := projections.Open(projections.Config{Dir: filepath.Join(m.Config.Data, "projection"), Log: m.log, OnDiskFull: guard.DiskFull})
	if err != nil {
		return err
	}
	defer proj.Close()
	// Last-used times from embedded validators in application services.
	usageSub, err := eventstore.SubscribeUsage(l.nc, m.log, proj.RecordUsage)
	if err != nil {
		return err
	}
	defer func() { _ = usageSub.Unsubscribe() }()

	guarded := guardedLedger{l.store, guard}
	staleAfter := m.Config.StaleAfter
	if staleAfter <= 0 {
		staleAfter = 10 * time.Second
	}
	node := m.Config.Node
	if node == "" {
		node = defaultNodeName()
	}
	fl := fleet.New(node, staleAfter, m.log)
	appliedSub, err := eventstore.SubscribeApplied(l.nc, m.log, func(r schemas.AppliedReport) {
		fl.Observe(fleet.Report{Node: r.Node, Applied: r.Applied, Leaving: r.Leaving, StaleAfter: time.Duration(r.StaleAfterMs) * time.Millisecond})
	})
	if err != nil {
		return err
	}
	defer func() { _ = appliedSub.Unsubscribe() }()
	view := fleetView{proj, fl}
	svc := domain.NewService(domain.ServiceConfig{
		Ledger: guarded, View: view, KeyPrefix: m.Config.KeyPrefix, NewID: eventstore.NewID,
		ReplayWindow: 2 * time.Minute,
	})
	fresh := freshness.New(l.store, proj, staleAfter, m.log)
	ready := func(ctx context.Context) error {
		last, err := l.store.LastSeq(ctx)
		if err != nil {
			return err
		}
		if applied := proj.Applied(); applied < last {
			return fmt.Errorf("projection at %d of %d", applied, last)
		}
		if !fresh.Current() {
			return errors.New("the projection is not yet proven current")
		}
		if !fl.Announced() {
			return errors.New("this node's applied report has not come back from NATS yet")
		}
		return nil
	}
	cpStream, err := eventstore.OpenCheckpoints(ctx, l.nc, 1)
	if err != nil {
		return err
	}
	// One node of the fleet seals; the others check its checkpoints and
	// prove events from them.
	sealLease, err := eventstore.OpenLease(ctx, l.nc, "sealer", node, sealLeaseTTL, 1, m.log)
	if err != nil {
		return err
	}
	seal := sealer.New(sealer.Config{
		Source: sealSource{l.store}, Store: sealStore{cpStream}, Key: sealKey, Stream: m.Config.Stream,
		Every: m.Config.SealEvery, Interval: m.Config.SealInterval, Log: m.log, Leader: sealLease.Held,
	})
	out, err := m.openOutbound(ctx, l, guarded, view, proj)
	if err != nil {
		return err
	}
	ui, err := fs.Sub(web.Files, "static")
	if err != nil {
		return err
	}
	staleDays := m.Config.UIStaleDays
	if staleDays <= 0 {
		staleDays = 90
	}
	metrics := newMetricsRegistry(proj.Applied, l.store.LastSeq)
	metrics.MustRegister(fleetMetrics(fl)...)
	// A node validates once proven current and known to the fleet.
	current := func() bool { return fresh.Current() && fl.Announced() }
	handler := api.New(api.Config{
		Metrics: metrics, MetricsToken: m.Config.MetricsToken,
		Commands: svc, Queries: proj, Feed: l.store,
		Proofs: proofs{seal, l.store.LastSeq}, Exporter: exporter{store: l.store, cps: sealStore{cpStream}, stream: m.Config.Stream, pub: sealKey.Public().(ed25519.PublicKey)},
		FailedValidationLimit: m.Config.ValidationFailLimit, Fresh: current,
		WidgetKey: widgetKey, Members: l.store, StaleAfterDays: staleDays, UI: ui, UIFrameAncestors: m.Config.UIFrameAncestors,
		Webhooks: out.svc, WebhookQueries: proj, Deliveries: deliveries{out.engine},
		AdminKeyHash: adminHash, Ready: ready, Log: m.log,
	})
	srv := api.NewHTTPServer(handler, m.log)
	ln, err := net.Listen("tcp", m.Config.HTTPAddr)
	if err != nil {
		out.nc.Close()
		return fmt.Errorf("http listen: %w", err)
	}
	m.addrMu.Lock()
	m.addr = ln.Addr().String()
	m.store = l.store
	m.projection = proj
	m.addrMu.Unlock()

	runCtx, stopWorkers := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	projErr := make(chan error, 1)
	workers.Add(2)
	go func() {
		defer workers.Done()
		if err := proj.Run(runCtx, l.store); err != nil {
			projErr <- err
		}
	}()
	// The outbound side stops before the projector: the webhook fan-out
	// waits on the projection.
	outCtx, stopOutbound := context.WithCancel(context.Background())
	outDone := make(chan error, 1)
	go func() { outDone <- out.run(outCtx, m) }()
	go func() {
		defer workers.Done()
		_ = proj.RunUsageFlusher(runCtx, 10*time.Second)
	}()
	workers.Add(3)
	go func() {
		defer workers.Done()
		fresh.Run(runCtx)
	}()
	go func() {
		defer workers.Done()
		guard.Run(runCtx)
	}()
	workers.Add(2)
	go func() {
		defer workers.Done()
		sealLease.Run(runCtx)
	}()
	go func() {
		defer workers.Done()
		eventstore.ReportApplied(runCtx, l.nc, node, proj, staleAfter, m.log)
	}()
	go func() {
		defer workers.Done()
		// A ledger that no longer matches its checkpoints stops the sealer,
		// loudly; the service goes on, and `keyledger audit verify` says
		// what changed.
		if err := seal.Run(runCtx); err != nil {
			m.log.Error("sealer stopped", "err", err)
		}
	}()
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	m.log.Info("keyledger serving", "seal_public_key", hex.EncodeToString(sealKey.Public().(ed25519.PublicKey)), "http", m.addr, "data", m.Config.Data, "nats", natsMode(m.Config), "node", node)

	select {
	case <-ctx.Done():
		m.log.Info("shutting down")
	case err = <-projErr:
		m.log.Error("projection stopped", "err", err)
	case <-restart:
		m.log.Warn("space is back after a write error: restarting the service (HTTP is away for a moment)")
		err = errRestart
	case err = <-httpErr:
		m.log.Error("http server stopped", "err", err)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutCtx); serr != nil {
		m.log.Warn("http shutdown", "err", serr)
	}
	stopOutbound()
	if oerr := <-outDone; oerr != nil {
		m.log.Warn("outbound stopped with an error", "err", oerr)
	}
	stopWorkers()
	workers.Wait()
	m.log.Info("stopped", "applied", proj.Applied())
	return err
}

func natsMode(c Config) string {
	if c.NATSURL != "" {
		return c.NATSURL
	}
	if c.NATSListen != "" {
		return "embedded, listening on " + c.NATSListen
	}
	return "embedded, in-process"
}

// adminKeyHash returns the SHA-256 of the admin key: KEYLEDGER_ADMIN_KEY
// when set, else the hash kept in the data folder, else a new key, printed
// once and of which only the hash is kept.
func (m *Main) adminKeyHash() ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	if m.Config.AdminKey != "" {
		return sha256.Sum256([]byte(m.Config.AdminKey)), nil
	}
	path := filepath.Join(m.Config.Data, "admin_key.sha256")
	b, err := os.ReadFile(path)
	if err == nil {
		n, err := hex.Decode(h[:], []byte(strings.TrimSpace(string(b))))
		if err != nil || n != len(h) {
			return h, fmt.Errorf("%s is corrupt; delete it to generate a new admin key", path)
		}
		return h, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return h, fmt.Errorf("admin key hash: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return h, err
	}
	key := "kl_admin_" + base64.RawURLEncoding.EncodeToString(raw)
	h = sha256.Sum256([]byte(key))
	if err := os.WriteFile(path, []byte(hex.EncodeToString(h[:])+"\n"), 0o600); err != nil {
		return h, fmt.Errorf("admin key hash: %w", err)
	}
	fmt.Fprintf(m.stdout, "\nkeyledger generated an admin key. It is shown only this once; only its hash is kept in %s:\n\n    KEYLEDGER_ADMIN_KEY=%s\n\n", path, key)
	return h, nil
}

// Rebuild rebuilds the projection from sequence 1 into a new folder and
// swaps it in once it has caught up with the ledger. The service must be
// stopped (the projection is locked while it runs).
func (m *Main) Rebuild(ctx context.Context) error {
	if m.log == nil {
		m.log = newLogger(m.stderr, m.Config.LogLevel)
	}
	l, err := m.openLedger(ctx)
	if err != nil {
		return err
	}
	defer l.close()
	last, err := l.store.LastSeq(ctx)
	if err != nil {
		return err
	}
	dir := filepath.Join(m.Config.Data, "projection")
	tmp := dir + ".rebuild"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	start := time.Now()
	// A bulk build: Pebble writes no log, as the folder is used only once
	// the rebuild is complete (a rebuild that fails starts over from a
	// fresh folder), and CatchUp and Close flush it to disk.
	proj, err := projections.Open(projections.Config{Dir: tmp, Log: m.log, Bulk: true})
	if err != nil {
		return err
	}
	if err := proj.CatchUp(ctx, l.store, last); err != nil {
		proj.Close()
		return fmt.Errorf("rebuild: %w", err)
	}
	if err := proj.Close(); err != nil {
		return err
	}
	// Carry last-used telemetry over: it is not in the ledger.
	if err := copyUsage(dir, tmp, m.log); err != nil {
		return err
	}
	old := dir + ".old"
	_ = os.RemoveAll(old)
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "rebuilt the projection from %d events in %s\n", last, time.Since(start).Round(time.Millisecond))
	return nil
}

func copyUsage(from, to string, log *slog.Logger) error {
	if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	src, err := projections.Open(projections.Config{Dir: from, Log: log})
	if err != nil {
		return fmt.Errorf("rebuild: open the old projection for its last-used times: %w", err)
	}
	defer src.Close()
	dst, err := projections.Open(projections.Config{Dir: to, Log: log})
	if err != nil {
		return err
	}
	defer dst.Close()
	return src.CopyUsageTo(dst)
}

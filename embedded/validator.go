package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/fleet"
	"github.com/keyledger/keyledger/freshness"
	"github.com/keyledger/keyledger/projections"
	"github.com/keyledger/keyledger/schemas"
)

// ErrStale is Validate's error when the validator cannot prove that its
// projection is current within Config.StaleAfter.
var ErrStale = errors.New("embedded: cannot prove the local projection of the ledger is current")

// Config configures a Validator.
type Config struct {
	// NATSURL is the NATS server (or comma-separated cluster URLs) holding
	// the ledger, e.g. nats://validator:<password>@127.0.0.1:4222 for
	// keyledger's embedded server. NATSOptions add credentials, TLS and
	// the like.
	NATSURL     string
	NATSOptions []nats.Option
	// Stream is the ledger stream (default KEYLEDGER).
	Stream string
	// Dir holds the local projection, which survives restarts; "" keeps
	// it in memory, rebuilt from the ledger at each start.
	Dir string
	// StaleAfter is how long the validator keeps answering without a fresh
	// proof that it is current (default 5 s, at most 20 s). It checks four
	// times as often.
	StaleAfter time.Duration
	// UsageInterval is how often last-used times are reported (default 10 s).
	UsageInterval time.Duration
	// Source names this validator in usage reports and, as a node of the
	// fleet, in applied reports (default host:pid): servers answer a
	// command only once this validator has applied it, or once StaleAfter
	// has passed and it has stopped validating.
	Source string
	Log    *slog.Logger
}

// Validator validates keys in-process. It is safe for concurrent use.
type Validator struct {
	cfg   Config
	log   *slog.Logger
	nc    *nats.Conn
	store *eventstore.Store
	proj  *projections.Projection

	fresh *freshness.Prover

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// Open connects to the ledger, opens the projection and starts following.
// It returns once the projection is proven current, or ctx ends.
func Open(ctx context.Context, cfg Config) (*Validator, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 5 * time.Second
	}
	if cfg.StaleAfter > fleet.MaxBound {
		// Servers wait no longer than this for a validator to apply a
		// command; one that validated on an older proof could answer
		// against a revoke they have already answered.
		return nil, fmt.Errorf("embedded: StaleAfter %s: at most %s", cfg.StaleAfter, fleet.MaxBound)
	}
	if cfg.UsageInterval <= 0 {
		cfg.UsageInterval = 10 * time.Second
	}
	if cfg.Source == "" {
		host, _ := os.Hostname()
		cfg.Source = schemas.NodeName(host + ":" + strconv.Itoa(os.Getpid()))
	}
	if !schemas.ValidNodeName(cfg.Source) {
		// It names this validator's applied reports' subject.
		return nil, fmt.Errorf("embedded: Source %q: 1 to 128 printable bytes without '.', '*', '>' or spaces", cfg.Source)
	}
	v := &Validator{cfg: cfg, log: cfg.Log}
	opts := append([]nats.Option{
		nats.Name("keyledger-embedded-validator"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.CustomInboxPrefix(eventstore.ValidatorInboxPrefix),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { cfg.Log.Warn("embedded: nats disconnected", "err", err) }),
		nats.ReconnectHandler(func(*nats.Conn) { cfg.Log.Info("embedded: nats reconnected") }),
	}, cfg.NATSOptions...)
	var err error
	if v.nc, err = nats.Connect(cfg.NATSURL, opts...); err != nil {
		return nil, fmt.Errorf("embedded: connect %s: %w", redact(cfg.NATSURL), err)
	}
	if v.store, err = eventstore.OpenExisting(ctx, v.nc, eventstore.Config{Stream: cfg.Stream}); err != nil {
		v.nc.Close()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	pc := projections.Config{Dir: cfg.Dir, Log: cfg.Log}
	if cfg.Dir == "" {
		pc.Dir, pc.FS = "projection", vfs.NewMem()
	}
	if v.proj, err = projections.Open(pc); err != nil {
		v.nc.Close()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	v.fresh = freshness.New(v.store, v.proj, cfg.StaleAfter, cfg.Log)
	runCtx, stop := context.WithCancel(context.Background())
	v.stop = stop
	v.wg.Add(4)
	go func() {
		defer v.wg.Done()
		if err := v.proj.Run(runCtx, v.store); err != nil {
			// Proofs stop too, so Validate fails closed.
			v.log.Error("embedded: the projection stopped", "err", err)
		}
	}()
	go func() {
		defer v.wg.Done()
		v.fresh.Run(runCtx)
	}()
	go func() {
		defer v.wg.Done()
		v.report(runCtx)
	}()
	go func() {
		defer v.wg.Done()
		eventstore.ReportApplied(runCtx, v.nc, cfg.Source, v.proj, cfg.StaleAfter, cfg.Log)
	}()
	if err := v.WaitCurrent(ctx); err != nil {
		v.Close()
		return nil, err
	}
	// Known to the servers before the first answer: a revoke answered just
	// before could otherwise miss this validator.
	if err := eventstore.AnnounceApplied(v.nc, cfg.Source, v.proj.Applied(), cfg.StaleAfter); err != nil {
		v.Close()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	return v, nil
}

// redact drops passwords from NATS URLs for messages.
func redact(urls string) string { return stripUserinfo(urls) }

// Validate answers whether value is a usable key, from the local
// projection. It returns ErrStale instead of an answer it cannot prove
// current.
func (v *Validator) Validate(_ context.Context, value string) (*schemas.ValidateResponse, error) {
	if !v.current() {
		return nil, ErrStale
	}
	var k domain.ValidKey
	if reason := v.proj.ValidateInto(value, &k); reason != "" {
		return &schemas.ValidateResponse{Reason: string(reason)}, nil
	}
	out := api.ValidKeyJSON(k, domain.ObfuscateKey(value))
	return &schemas.ValidateResponse{APIKey: &out}, nil
}

// current reports whether the last proof is younger than StaleAfter.
func (v *Validator) current() bool { return v.fresh.Current() }

// WaitCurrent waits until the projection is proven current.
func (v *Validator) WaitCurrent(ctx context.Context) error {
	if err := v.fresh.Wait(ctx); err != nil {
		return fmt.Errorf("embedded: applied %d: %w", v.proj.Applied(), err)
	}
	return nil
}

// Applied returns the last ledger sequence the projection applied.
func (v *Validator) Applied() uint64 { return v.proj.Applied() }

// report publishes the last-used times of keys validated since the last
// report, and once more when the validator closes.
func (v *Validator) report(ctx context.Context) {
	var since int64
	send := func() {
		var entries []schemas.UsageEntry
		next := v.proj.UsageSince(since, func(id string, at time.Time) {
			entries = append(entries, schemas.UsageEntry{ID: id, LastUsedAt: at})
		})
		if len(entries) == 0 {
			since = next
			return
		}
		if err := eventstore.PublishUsage(v.nc, v.cfg.Source, entries); err != nil {
			v.log.Warn("embedded: reporting last-used times failed", "err", err, "keys", len(entries))
			return // try again with the same since
		}
		since = next
	}
	t := time.NewTicker(v.cfg.UsageInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			send()
			return
		case <-t.C:
			send()
		}
	}
}

// Close stops following, reports usage a last time and closes the
// projection and the connection.
func (v *Validator) Close() error {
	v.stop()
	v.wg.Wait()
	err := v.proj.Close()
	v.nc.Close()
	if err != nil {
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}

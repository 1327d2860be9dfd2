package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/consumers"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections"
	"github.com/keyledger/keyledger/schemas"
	"github.com/keyledger/keyledger/webhooks"
)

// The outbound side: webhook endpoints and their delivery engine, and the
// Watermill router that fans the ledger out (webhooks, audit sinks, public
// subjects).

// parseAllow reads comma-separated CIDRs (or single addresses).
func parseAllow(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("--webhook-allow %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("--webhook-allow %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// parseSchedule reads comma-separated durations.
func parseSchedule(s string) ([]time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("--webhook-retry-schedule %q: want durations like 5s,5m,30m", f)
		}
		out = append(out, d)
	}
	return out, nil
}

// webhookSealer returns the sealer of webhook signing secrets: its key
// from KEYLEDGER_WEBHOOK_SECRET_KEY (base64 of 32 bytes; every node of a
// fleet needs the same), else from the data folder, made on first start.
func (m *Main) webhookSealer() (*webhooks.Sealer, error) {
	key, err := m.secretKey("KEYLEDGER_WEBHOOK_SECRET_KEY", m.Config.WebhookSecretKey, "webhook_secret.key")
	if err != nil {
		return nil, err
	}
	return webhooks.NewSealer(key)
}

// secretKey returns a 32-byte key: from the environment variable's value
// when set (base64), else from a file of the data folder, made on first
// start with mode 0600.
func (m *Main) secretKey(envName, envValue, file string) ([]byte, error) {
	if envValue != "" {
		key, err := base64.StdEncoding.DecodeString(envValue)
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("%s must be the base64 of 32 bytes", envName)
		}
		return key, nil
	}
	path := filepath.Join(m.Config.Data, file)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		raw = []byte(base64.StdEncoding.EncodeToString(key) + "\n")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%s is corrupt: want the base64 of 32 bytes", path)
	}
	return key, nil
}

// endpointRegistry is the projection's endpoints as the engine needs them,
// with their secrets opened.
type endpointRegistry struct {
	proj   *projections.Projection
	sealer *webhooks.Sealer
	log    *slog.Logger
	warned *sync.Map // endpoint id → struct{}: its unopenable secret was reported
}

func (r endpointRegistry) open(w *domain.WebhookEndpoint) (webhooks.Endpoint, error) {
	out := webhooks.Endpoint{ID: w.ID, URL: w.URL, Events: w.Events, Enabled: w.Enabled}
	for _, s := range w.CurrentSecrets(time.Now()) {
		secret, err := r.sealer.Open(s)
		if err != nil {
			return webhooks.Endpoint{}, fmt.Errorf("endpoint %s: %w", w.ID, err)
		}
		out.Secrets = append(out.Secrets, secret)
	}
	return out, nil
}

func (r endpointRegistry) Endpoint(ctx context.Context, id string) (webhooks.Endpoint, error) {
	w, err := r.proj.Endpoint(ctx, id)
	if err != nil {
		return webhooks.Endpoint{}, err
	}
	return r.open(w)
}

func (r endpointRegistry) Endpoints(ctx context.Context) ([]webhooks.Endpoint, error) {
	all, err := r.proj.Endpoints(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]webhooks.Endpoint, 0, len(all))
	for _, w := range all {
		e, err := r.open(w)
		if err != nil {
			// Its secret was sealed with another key (a node of the fleet
			// with its own KEYLEDGER_WEBHOOK_SECRET_KEY): this node cannot
			// sign for it, so it leaves its deliveries to nodes that can,
			// and serves every other endpoint.
			if _, seen := r.warned.LoadOrStore(w.ID, struct{}{}); !seen {
				r.log.Error("webhooks: cannot open an endpoint's signing secret; this node does not deliver to it (give every node the same KEYLEDGER_WEBHOOK_SECRET_KEY)", "endpoint", w.ID, "err", err)
			}
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// disabler records the engine's disabling of an endpoint in the ledger.
type disabler struct{ svc *domain.WebhookService }

func (d disabler) DisableEndpoint(ctx context.Context, id, reason string) error {
	_, err := d.svc.SetEndpointEnabled(ctx, domain.Actor{Type: domain.ActorSystem, ID: "webhooks"}, id, false, reason)
	return err
}

// deliveries is the engine's attempt log and recovery for the API.
type deliveries struct{ engine *webhooks.Engine }

func (d deliveries) Attempts(ctx context.Context, endpointID string, limit int) ([]schemas.WebhookAttempt, error) {
	as, err := d.engine.Attempts(ctx, endpointID, webhooks.AttemptQuery{Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]schemas.WebhookAttempt, 0, len(as))
	for _, a := range as {
		w := schemas.WebhookAttempt{Object: "webhook_attempt", EndpointID: a.EndpointID, EventID: a.EventID, Attempt: a.Attempt,
			AttemptedAt: a.At.UTC(), LatencyMs: a.LatencyMs, Error: a.Error, Final: a.Final, Delivered: a.Delivered}
		if a.Status != 0 {
			st := a.Status
			w.Status = &st
		}
		out = append(out, w)
	}
	return out, nil
}

func (d deliveries) Recover(ctx context.Context, endpointID string, since, until time.Time) (int, error) {
	return d.engine.Recover(ctx, endpointID, since, until)
}

// outbound is the assembled outbound side.
type outbound struct {
	svc      *domain.WebhookService
	engine   *webhooks.Engine
	registry endpointRegistry
	nc       *nats.Conn // the router's own connection
	sinks    []func() error
	routes   []consumers.Consumer
}

func (m *Main) openOutbound(ctx context.Context, l *ledger, ledger guardedLedger, view fleetView, proj *projections.Projection) (*outbound, error) {
	sealer, err := m.webhookSealer()
	if err != nil {
		return nil, err
	}
	allow, err := parseAllow(m.Config.WebhookAllow)
	if err != nil {
		return nil, err
	}
	o := &outbound{registry: endpointRegistry{proj: proj, sealer: sealer, log: m.log, warned: &sync.Map{}}}
	o.svc = domain.NewWebhookService(domain.WebhookServiceConfig{
		Ledger: ledger, View: view, NewID: eventstore.NewID,
		CheckURL:   func(ctx context.Context, u string) error { return webhooks.CheckURL(ctx, u, allow) },
		KnownEvent: func(t string) bool { return slices.Contains(schemas.EventTypes, t) },
		NewSecret:  sealer.NewSealedSecret,
	})
	queue, err := eventstore.NewDeliveryQueue(ctx, l.nc, eventstore.DeliveryConfig{AckWait: m.Config.WebhookAckWait, Log: m.log})
	if err != nil {
		return nil, err
	}
	o.engine, err = webhooks.NewEngine(webhooks.Config{
		Queue: queue, Endpoints: o.registry, Disabler: disabler{o.svc}, Allow: allow,
		Schedule: m.Config.WebhookSchedule, DisableAfter: m.Config.WebhookDisableAfter, Timeout: m.Config.WebhookTimeout, Log: m.log,
	})
	if err != nil {
		return nil, err
	}
	// Audit sinks, opened at start: one that cannot open stops the start.
	sinkCfgs, err := consumers.ParseSinks(m.Config.AuditSinks)
	if err != nil {
		return nil, err
	}
	for _, sc := range sinkCfgs {
		c, closer, err := consumers.NewSink(sc, m.stdout, m.log)
		if err != nil {
			o.closeSinks()
			return nil, err
		}
		o.sinks = append(o.sinks, closer.Close)
		o.routes = append(o.routes, c)
	}
	// The router drains its connection when it stops: one of its own.
	if l.ns != nil {
		o.nc, err = eventstore.ConnectEmbedded(l.ns)
	} else {
		o.nc, err = eventstore.Connect(m.Config.NATSURL, m.log)
	}
	if err != nil {
		o.closeSinks()
		return nil, err
	}
	o.routes = append(o.routes, consumers.WebhookFanOut(proj, o.engine), consumers.PublicSubjects(l.nc))
	return o, nil
}

// run runs the engine and the router until ctx ends.
func (o *outbound) run(ctx context.Context, m *Main) error {
	errc := make(chan error, 2)
	go func() { errc <- o.engine.Run(ctx) }()
	go func() {
		errc <- consumers.Run(ctx, consumers.Config{Conn: o.nc, Stream: m.Config.Stream, Log: m.log}, o.routes)
	}()
	err := errors.Join(<-errc, <-errc)
	o.nc.Close()
	return errors.Join(err, o.closeSinks())
}

func (o *outbound) closeSinks() error {
	var errs []error
	for _, c := range o.sinks {
		errs = append(errs, c())
	}
	o.sinks = nil
	return errors.Join(errs...)
}

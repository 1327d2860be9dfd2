package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Commands are the ledger commands the API issues.
type Commands interface {
	CreateKey(ctx context.Context, actor domain.Actor, cmd domain.CreateKey, idempotencyKey string) (*domain.Created, error)
	RevokeKey(ctx context.Context, actor domain.Actor, cmd domain.RevokeKey) (*domain.Key, error)
	RemoveMember(ctx context.Context, actor domain.Actor, cmd domain.RemoveMember) (domain.MemberRemoved, error)
	SetCatalogue(ctx context.Context, actor domain.Actor, perms []string) (*domain.Catalogue, error)
}

// Queries are the reads the API serves from this node's projection.
type Queries interface {
	ValidateInto(value string, out *domain.ValidKey) domain.ValidationReason
	Key(ctx context.Context, id string) (*domain.Key, error)
	List(ctx context.Context, q domain.KeyListQuery) (domain.KeyPage, error)
	Catalogue(ctx context.Context) (*domain.Catalogue, error)
	LastUsedOf(k *domain.Key) *time.Time
}

// Members tells when a user was last removed from an organization, so that
// a widget token issued before that stops working at once.
type Members interface {
	RemovedAt(ctx context.Context, org, userID string) (time.Time, bool, error)
}

// Feed reads the events feed from the ledger.
type Feed interface {
	Events(ctx context.Context, q schemas.EventsQuery) ([]schemas.PublicEvent, error)
}

// Webhooks are the webhook endpoint commands.
type Webhooks interface {
	CreateEndpoint(ctx context.Context, actor domain.Actor, c domain.EndpointChange) (*domain.WebhookEndpoint, string, error)
	UpdateEndpoint(ctx context.Context, actor domain.Actor, id string, c domain.EndpointChange) (*domain.WebhookEndpoint, error)
	SetEndpointEnabled(ctx context.Context, actor domain.Actor, id string, enabled bool, reason string) (*domain.WebhookEndpoint, error)
	DeleteEndpoint(ctx context.Context, actor domain.Actor, id string) error
	RotateSecret(ctx context.Context, actor domain.Actor, id string) (*domain.WebhookEndpoint, string, error)
}

// WebhookQueries read the endpoints from this node's projection.
type WebhookQueries interface {
	Endpoint(ctx context.Context, id string) (*domain.WebhookEndpoint, error)
	Endpoints(ctx context.Context) ([]*domain.WebhookEndpoint, error)
}

// Deliveries are the webhook delivery engine's log and recovery.
type Deliveries interface {
	Attempts(ctx context.Context, endpointID string, limit int) ([]schemas.WebhookAttempt, error)
	Recover(ctx context.Context, endpointID string, since, until time.Time) (int, error)
}

// Config assembles a Server.
type Config struct {
	Commands Commands
	Queries  Queries
	Feed     Feed
	// Webhooks, WebhookQueries and Deliveries serve /webhook_endpoints;
	// without them those routes answer 404.
	Webhooks       Webhooks
	WebhookQueries WebhookQueries
	Deliveries     Deliveries
	// AdminKeyHash is the SHA-256 of the admin key.
	AdminKeyHash [sha256.Size]byte
	// WidgetKey signs widget tokens (HMAC-SHA256); empty: no widget tokens.
	WidgetKey []byte
	// Members, when set, refuses widget tokens issued before their user
	// was removed from the organization.
	Members Members
	// StaleAfterDays is when the settings page flags a key as unused.
	StaleAfterDays int
	// UI is the settings page's files (index.html and its assets); nil:
	// no page. UIFrameAncestors are the origins that may embed it
	// (CSP frame-ancestors; empty: none).
	UI               fs.FS
	UIFrameAncestors []string
	// Proofs and Exporter serve the sealer's proofs and the ledger export;
	// nil: those routes answer 404.
	Proofs   Proofs
	Exporter Exporter
	// Fresh, when set, tells whether this node's projection is proven
	// current; validations answer 503 ledger_stale while it is not.
	Fresh func() bool
	// Now is the clock of widget token expiry (default time.Now).
	Now func() time.Time
	// Ready reports whether the projection has caught up with the ledger.
	Ready func(ctx context.Context) error
	Log   *slog.Logger
	// FailedValidationLimit rate limits failed validations per source
	// address (ratelimit.go); the zero value: no limit.
	FailedValidationLimit FailLimit
	// Metrics is the registry the API counts validations and commands in
	// and /metrics serves; MetricsToken is the bearer token /metrics
	// requires (empty, or no registry: /metrics answers 404).
	Metrics      *prometheus.Registry
	MetricsToken string
}

// Server is the HTTP API.
type Server struct {
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	table []Route
	fails *failLimiter // nil: failed validations are not limited
	// vm and commands are nil without a metrics registry.
	vm       *validationMetrics
	commands *commandMetrics
}

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 << 10

// New builds the API handler.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Log, mux: http.NewServeMux(), fails: newFailLimiter(cfg.FailedValidationLimit)}
	if cfg.Metrics != nil {
		s.vm = newValidationMetrics(cfg.Metrics)
		s.commands = newCommandMetrics(cfg.Metrics)
	}
	s.routes()
	return s
}

// Route is one route of the API: a method and a ServeMux path pattern.
type Route struct{ Method, Pattern string }

// Routes lists every route the API serves, in the order they are
// registered; the OpenAPI description is checked against it.
func (s *Server) Routes() []Route { return append([]Route(nil), s.table...) }

func (s *Server) routes() {
	handle := func(method, pattern string, h http.HandlerFunc) {
		s.table = append(s.table, Route{method, pattern})
		s.mux.HandleFunc(method+" "+pattern, h)
	}
	handle("GET", "/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	handle("GET", "/readyz", s.readyz)
	handle("GET", "/metrics", s.metrics())
	handle("POST", "/organizations/{org}/api_keys", s.command("create_key", s.adminOrWidget(s.createKey)))
	handle("GET", "/organizations/{org}/api_keys", s.adminOrWidget(s.listKeys))
	handle("GET", "/api_keys/{id}", s.adminOrWidget(s.getKey))
	handle("DELETE", "/api_keys/{id}", s.command("revoke_key", s.adminOrWidget(s.revokeKey)))
	handle("POST", "/api_keys/validations", s.admin(s.validate))
	handle("GET", "/api_key_permissions", s.admin(s.getCatalogue))
	handle("PUT", "/api_key_permissions", s.command("set_catalogue", s.admin(s.putCatalogue)))
	handle("DELETE", "/organizations/{org}/members/{user}", s.command("remove_member", s.admin(s.removeMember)))
	handle("GET", "/events", s.admin(s.listEvents))
	handle("GET", "/events/{id}/proof", s.admin(s.eventProof))
	handle("GET", "/ledger/export", s.admin(s.exportLedger))
	handle("POST", "/widgets/token", s.admin(s.mintWidgetToken))
	handle("GET", "/widgets/session", s.adminOrWidget(s.widgetSession))
	handle("GET", "/ui/api-keys", s.uiPage)
	handle("GET", "/ui/assets/{file}", s.uiAsset)
	handle("POST", "/webhook_endpoints", s.command("create_webhook_endpoint", s.admin(s.withWebhooks(s.createEndpoint))))
	handle("GET", "/webhook_endpoints", s.admin(s.withWebhooks(s.listEndpoints)))
	handle("GET", "/webhook_endpoints/{id}", s.admin(s.withWebhooks(s.getEndpoint)))
	handle("PATCH", "/webhook_endpoints/{id}", s.command("update_webhook_endpoint", s.admin(s.withWebhooks(s.updateEndpoint))))
	handle("DELETE", "/webhook_endpoints/{id}", s.command("delete_webhook_endpoint", s.admin(s.withWebhooks(s.deleteEndpoint))))
	handle("POST", "/webhook_endpoints/{id}/rotate_secret", s.command("rotate_webhook_secret", s.admin(s.withWebhooks(s.rotateSecret))))
	handle("GET", "/webhook_endpoints/{id}/attempts", s.admin(s.withWebhooks(s.listAttempts)))
	handle("POST", "/webhook_endpoints/{id}/recover", s.command("recover_webhook_deliveries", s.admin(s.withWebhooks(s.recoverDeliveries))))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "route_not_found", "no such route: "+r.Method+" "+r.URL.Path)
	})
}

// ServeHTTP serves the API, turning a panic into a 500 rather than a
// dropped connection.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("api: panic", "method", r.Method, "path", r.URL.Path, "panic", v)
			writeError(w, http.StatusInternalServerError, "internal", "internal error")
		}
	}()
	h := w.Header()
	h["Cache-Control"] = hdrNoStore
	h["X-Content-Type-Options"] = hdrNoSniff
	s.mux.ServeHTTP(w, r)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			// The cause stays in the log: /readyz needs no credential.
			s.log.Info("api: not ready", "err", err)
			writeError(w, http.StatusServiceUnavailable, "not_ready", "the projection has not caught up with the ledger, or the ledger is not reachable")
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

type handlerWithActor func(w http.ResponseWriter, r *http.Request, actor domain.Actor)

// admin authenticates the admin key: a bearer token whose SHA-256 equals
// the configured hash, compared in constant time.
func (s *Server) admin(h handlerWithActor) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keyledger"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "an admin API key is required (Authorization: Bearer ...)")
			return
		}
		sum := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(sum[:], s.cfg.AdminKeyHash[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keyledger", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "the API key is not valid")
			return
		}
		h(w, r, domain.Admin())
	}
}

// adminOrWidget authenticates the admin key, or a widget token: the user,
// organization and manage permissions it was minted for.
func (s *Server) adminOrWidget(h handlerWithActor) http.HandlerFunc {
	admin := s.admin(h)
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		if !ok || !strings.HasPrefix(token, schemas.WidgetTokenPrefix) {
			admin(w, r)
			return
		}
		c, err := s.verifyWidget(token)
		if err == nil && s.cfg.Members != nil {
			removed, ok, rerr := s.cfg.Members.RemovedAt(r.Context(), c.OrganizationID, c.UserID)
			switch {
			case rerr != nil:
				err = rerr
			case ok && removed.UnixMilli() >= c.IssuedAt:
				err = errWidgetRevoked
			}
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keyledger", error="invalid_token"`)
			s.fail(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), widgetClaimsKey{}, c)), c.actor())
	}
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

// NewHTTPServer wraps a handler in the http.Server keyledger serves with:
// bounded header, read, write and idle times (slow clients are cut off,
// never held), bounded headers, and server errors logged as warnings.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

package client

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/keyledger/keyledger/schemas"
)

// Validator answers whether a presented key is usable. *Client validates
// over HTTP; *embedded.Validator validates in-process from its own
// projection of the ledger. An error means no answer could be given (the
// server is unreachable, or the embedded validator cannot prove it is
// current): the middleware then fails closed with 503.
type Validator interface {
	Validate(ctx context.Context, value string) (*schemas.ValidateResponse, error)
}

// The middleware's error codes.
const (
	CodeAPIKeyRequired        = "api_key_required"
	CodeInvalidAPIKey         = "invalid_api_key"
	CodePermissionDenied      = "permission_denied"
	CodeValidationUnavailable = "validation_unavailable"
)

// Middleware authenticates requests with keyledger keys.
type Middleware struct {
	v   Validator
	log *slog.Logger
}

// NewMiddleware returns a middleware validating through v. log (may be nil)
// receives validator failures; the key is never logged.
func NewMiddleware(v Validator, log *slog.Logger) *Middleware {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Middleware{v: v, log: log}
}

type ctxKey struct{}

// KeyFromContext returns the validated key of the request, set by
// Authenticate: its id, organization, owner (user_id for a user key) and
// permissions.
func KeyFromContext(ctx context.Context) (*schemas.APIKey, bool) {
	k, ok := ctx.Value(ctxKey{}).(*schemas.APIKey)
	return k, ok
}

// Authenticate reads `Authorization: Bearer <key>`, validates the key and
// serves next with the key in the request's context. It answers 401 when
// the key is missing, malformed, unknown, revoked or expired, and 503 when
// the validator cannot answer.
func (m *Middleware) Authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		value, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
			writeError(w, http.StatusUnauthorized, CodeAPIKeyRequired, "an API key is required: Authorization: Bearer <key>")
			return
		}
		res, err := m.v.Validate(r.Context(), value)
		if err != nil {
			if r.Context().Err() != nil {
				return // the caller left
			}
			m.log.Warn("keyledger: cannot validate API keys", "method", r.Method, "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, CodeValidationUnavailable, "API keys cannot be validated right now; try again shortly")
			return
		}
		if res.APIKey == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, CodeInvalidAPIKey, invalidMessage(res.Reason))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, res.APIKey)))
	})
}

func invalidMessage(reason string) string {
	switch reason {
	case schemas.ReasonRevoked:
		return "the API key has been revoked"
	case schemas.ReasonExpired:
		return "the API key has expired"
	case schemas.ReasonMalformed:
		return "the API key is malformed"
	}
	return "the API key is not valid"
}

// RequirePermission serves next only to requests whose key carries perm,
// answering 403 otherwise. It goes inside Authenticate; a request that did
// not pass Authenticate gets 401.
func RequirePermission(perm string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			k, ok := KeyFromContext(r.Context())
			if !ok {
				writeError(w, http.StatusUnauthorized, CodeAPIKeyRequired, "an API key is required: Authorization: Bearer <key>")
				return
			}
			if !slices.Contains(k.Permissions, perm) {
				writeError(w, http.StatusForbidden, CodePermissionDenied, "the API key does not have the permission "+perm)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Protect is Authenticate(RequirePermission(perm)(next)).
func (m *Middleware) Protect(perm string, next http.Handler) http.Handler {
	return m.Authenticate(RequirePermission(perm)(next))
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	v := strings.TrimSpace(h[len(p):])
	return v, v != ""
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(schemas.Error{Code: code, Message: msg})
}

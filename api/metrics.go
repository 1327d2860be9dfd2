package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyledger/keyledger/domain"
)

// Metric labels never carry a key value, hash, id, organization or user:
// only fixed vocabularies (validation results, command kinds, outcomes).

// validationMetrics are counters obtained once, so that the validation hot
// path only does an atomic add: no label lookup, no allocation, no lock.
type validationMetrics struct {
	valid, notFound, revoked, expired, malformed, other prometheus.Counter
	rateLimited, stale, badRequest                      prometheus.Counter
}

func newValidationMetrics(reg prometheus.Registerer) *validationMetrics {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyledger_validations_total",
		Help: "Validations answered by this node, by result.",
	}, []string{"result"})
	reg.MustRegister(vec)
	return &validationMetrics{
		valid:       vec.WithLabelValues("valid"),
		notFound:    vec.WithLabelValues(string(domain.InvalidNotFound)),
		revoked:     vec.WithLabelValues(string(domain.InvalidRevoked)),
		expired:     vec.WithLabelValues(string(domain.InvalidExpired)),
		malformed:   vec.WithLabelValues(string(domain.InvalidMalformed)),
		other:       vec.WithLabelValues("other"),
		rateLimited: vec.WithLabelValues("rate_limited"),
		stale:       vec.WithLabelValues("stale"),
		badRequest:  vec.WithLabelValues("bad_request"),
	}
}

func (m *validationMetrics) reason(r domain.ValidationReason) {
	if m == nil {
		return
	}
	switch r {
	case "":
		m.valid.Inc()
	case domain.InvalidNotFound:
		m.notFound.Inc()
	case domain.InvalidRevoked:
		m.revoked.Inc()
	case domain.InvalidExpired:
		m.expired.Inc()
	case domain.InvalidMalformed:
		m.malformed.Inc()
	default:
		m.other.Inc()
	}
}

func (m *validationMetrics) inc(c func(*validationMetrics) prometheus.Counter) {
	if m != nil {
		c(m).Inc()
	}
}

// commandMetrics count the commands this node was asked for, by kind and
// outcome (ok: 2xx, rejected: 4xx, error: 5xx).
type commandMetrics struct{ vec *prometheus.CounterVec }

func newCommandMetrics(reg prometheus.Registerer) *commandMetrics {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyledger_commands_total",
		Help: "Commands received by this node's API, by kind and outcome (ok, rejected, error).",
	}, []string{"kind", "outcome"})
	reg.MustRegister(vec)
	return &commandMetrics{vec: vec}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// command wraps a command route so that its outcome is counted; the
// counters of a kind are obtained once, at registration.
func (s *Server) command(kind string, h http.HandlerFunc) http.HandlerFunc {
	if s.commands == nil {
		return h
	}
	ok := s.commands.vec.WithLabelValues(kind, "ok")
	rejected := s.commands.vec.WithLabelValues(kind, "rejected")
	failed := s.commands.vec.WithLabelValues(kind, "error")
	return func(w http.ResponseWriter, r *http.Request) {
		// The body's bound is set here, on net/http's own writer: past it,
		// MaxBytesReader tells the server to close the connection rather
		// than read the rest, which it cannot do through the recorder.
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		rec := &statusRecorder{ResponseWriter: w}
		h(rec, r)
		switch {
		case rec.status == 0 || rec.status < 400:
			ok.Inc()
		case rec.status < 500:
			rejected.Inc()
		default:
			failed.Inc()
		}
	}
}

// metrics serves the registry to a scraper holding the metrics token. With
// no token configured the route answers 404, as if it did not exist: the
// metrics describe the node's traffic and are not for anyone on the network.
func (s *Server) metrics() http.HandlerFunc {
	if s.cfg.Metrics == nil || s.cfg.MetricsToken == "" {
		return func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "route_not_found", "no such route: "+r.Method+" "+r.URL.Path+" (metrics need a metrics token)")
		}
	}
	want := sha256.Sum256([]byte(s.cfg.MetricsToken))
	h := promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{})
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		got := sha256.Sum256([]byte(token))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keyledger-metrics"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "the metrics token is required (Authorization: Bearer ...)")
			return
		}
		h.ServeHTTP(w, r)
	}
}

// Selectors for validationMetrics.inc: plain functions, so that counting
// allocates nothing.
func badRequest(m *validationMetrics) prometheus.Counter  { return m.badRequest }
func stale(m *validationMetrics) prometheus.Counter       { return m.stale }
func rateLimited(m *validationMetrics) prometheus.Counter { return m.rateLimited }

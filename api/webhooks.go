package api

import (
	"net/http"
	"strconv"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

func (s *Server) withWebhooks(h handlerWithActor) handlerWithActor {
	return func(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
		if s.cfg.Webhooks == nil || s.cfg.WebhookQueries == nil || s.cfg.Deliveries == nil {
			writeError(w, http.StatusNotFound, "route_not_found", "webhooks are not served here")
			return
		}
		h(w, r, actor)
	}
}

// endpointJSON renders an endpoint; secret is set only when one was just
// made.
func endpointJSON(e *domain.WebhookEndpoint, secret string) schemas.WebhookEndpoint {
	out := schemas.WebhookEndpoint{
		Object: schemas.ObjectWebhookEndpoint, ID: e.ID, URL: e.URL, Events: e.Events,
		Status: schemas.WebhookEnabled, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
	if out.Events == nil {
		out.Events = []string{}
	}
	if !e.Enabled {
		out.Status = schemas.WebhookDisabled
		reason := e.DisabledReason
		out.DisabledReason = &reason
	}
	if secret != "" {
		out.Secret = &secret
	}
	return out
}

func (s *Server) createEndpoint(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	var req schemas.CreateWebhookEndpointRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	c := domain.EndpointChange{Events: req.Events}
	if req.URL != "" {
		c.URL = &req.URL
	}
	e, secret, err := s.cfg.Webhooks.CreateEndpoint(r.Context(), actor, c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, endpointJSON(e, secret))
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	all, err := s.cfg.WebhookQueries.Endpoints(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := schemas.WebhookEndpointList{Object: schemas.ObjectList, Data: make([]schemas.WebhookEndpoint, 0, len(all))}
	for _, e := range all {
		out.Data = append(out.Data, endpointJSON(e, ""))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) endpointID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := domain.ValidateEndpointID(id); err != nil {
		s.fail(w, r, err)
		return "", false
	}
	return id, true
}

func (s *Server) getEndpoint(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	id, ok := s.endpointID(w, r)
	if !ok {
		return
	}
	e, err := s.cfg.WebhookQueries.Endpoint(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, endpointJSON(e, ""))
}

func (s *Server) updateEndpoint(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	id, ok := s.endpointID(w, r)
	if !ok {
		return
	}
	var req schemas.UpdateWebhookEndpointRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Status != nil && *req.Status != schemas.WebhookEnabled && *req.Status != schemas.WebhookDisabled {
		writeError(w, http.StatusBadRequest, "invalid_status", "status must be enabled or disabled")
		return
	}
	var (
		e   *domain.WebhookEndpoint
		err error
	)
	if req.URL != nil || req.Events != nil {
		if e, err = s.cfg.Webhooks.UpdateEndpoint(r.Context(), actor, id, domain.EndpointChange{URL: req.URL, Events: req.Events}); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if req.Status != nil {
		enabled := *req.Status == schemas.WebhookEnabled
		if e, err = s.cfg.Webhooks.SetEndpointEnabled(r.Context(), actor, id, enabled, domain.DisabledRequested); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if e == nil {
		if e, err = s.cfg.WebhookQueries.Endpoint(r.Context(), id); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, endpointJSON(e, ""))
}

func (s *Server) deleteEndpoint(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	id, ok := s.endpointID(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Webhooks.DeleteEndpoint(r.Context(), actor, id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, schemas.DeletedObject{Object: schemas.ObjectWebhookEndpoint, ID: id, Deleted: true})
}

func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	id, ok := s.endpointID(w, r)
	if !ok {
		return
	}
	e, secret, err := s.cfg.Webhooks.RotateSecret(r.Context(), actor, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, endpointJSON(e, secret))
}

func (s *Server) listAttempts(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	id, ok := s.endpointID(w, r)
	if !ok {
		return
	}
	if _, err := s.cfg.WebhookQueries.Endpoint(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "invalid_limit", "limit must be an integer from 1 to 1000")
			return
		}
		limit = n
	}
	attempts, err := s.cfg.Deliveries.Attempts(r.Context(), id, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if attempts == nil {
		attempts = []schemas.WebhookAttempt{}
	}
	writeJSON(w, http.StatusOK, schemas.WebhookAttemptList{Object: schemas.ObjectList, Data: attempts})
}

func (s *Server) recoverDeliveries(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	id, ok := s.endpointID(w, r)
	if !ok {
		return
	}
	var req schemas.RecoverRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.RangeStart.IsZero() || req.RangeEnd.IsZero() || !req.RangeStart.Before(req.RangeEnd) {
		writeError(w, http.StatusBadRequest, "invalid_range", "range_start and range_end are required, range_start first")
		return
	}
	if _, err := s.cfg.WebhookQueries.Endpoint(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.cfg.Deliveries.Recover(r.Context(), id, req.RangeStart, req.RangeEnd)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, schemas.RecoverResponse{Recovered: n})
}

package api

import (
	"net/http"
	"strconv"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

const maxIdempotencyKeyLen = 255

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	org := r.PathValue("org")
	if err := domain.ValidateOrganizationID(org); err != nil {
		s.fail(w, r, err)
		return
	}
	idem := r.Header.Get(schemas.HeaderIdempotencyKey)
	if len(idem) > maxIdempotencyKeyLen {
		writeError(w, http.StatusBadRequest, "invalid_idempotency_key", "Idempotency-Key is at most 255 bytes")
		return
	}
	var req schemas.CreateAPIKeyRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	created, err := s.cfg.Commands.CreateKey(r.Context(), actor, domain.CreateKey{
		OrganizationID: org, UserID: req.UserID, Name: req.Name, Permissions: req.Permissions, ExpiresAt: req.ExpiresAt,
	}, idem)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := keyJSON(created.Key, nil)
	if created.Value != "" {
		v := created.Value
		out.Value = &v
	}
	status := http.StatusCreated
	if created.Replayed {
		w.Header().Set(schemas.HeaderIdempotentReplayed, "true")
		if created.Value == "" {
			// Past the in-memory replay window the value is gone for good:
			// only its hash was ever stored.
			status = http.StatusOK
		}
	}
	writeJSON(w, status, out)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	org := r.PathValue("org")
	if err := domain.ValidateOrganizationID(org); err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	lq := domain.KeyListQuery{OrganizationID: org, Limit: 10, Visible: func(k *domain.Key) bool { return domain.CanSee(actor, k) }}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "invalid_limit", "limit must be an integer from 1 to 100")
			return
		}
		lq.Limit = n
	}
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		lq.Ascending = true
	default:
		writeError(w, http.StatusBadRequest, "invalid_order", "order must be asc or desc")
		return
	}
	if v := q.Get("user_id"); v != "" {
		if err := domain.ValidateUserID(v); err != nil {
			s.fail(w, r, err)
			return
		}
		lq.UserID = v
	}
	switch st := q.Get("status"); st {
	case "", "active", "revoked", "expired":
		lq.Status = st
	default:
		writeError(w, http.StatusBadRequest, "invalid_status", "status must be active, revoked or expired")
		return
	}
	switch ot := q.Get("owner_type"); ot {
	case "":
	case string(domain.OwnerUser), string(domain.OwnerOrganization):
		visible := lq.Visible
		lq.Visible = func(k *domain.Key) bool { return string(k.Owner.Type) == ot && visible(k) }
	default:
		writeError(w, http.StatusBadRequest, "invalid_owner_type", "owner_type must be user or organization")
		return
	}
	lq.Before, lq.After = q.Get("before"), q.Get("after")
	for _, c := range []string{lq.Before, lq.After} {
		if c != "" && domain.ValidateKeyID(c) != nil {
			writeError(w, http.StatusBadRequest, "invalid_cursor", "before and after must be API key ids")
			return
		}
	}
	if lq.Before != "" && lq.After != "" {
		writeError(w, http.StatusBadRequest, "invalid_cursor", "give before or after, not both")
		return
	}
	page, err := s.cfg.Queries.List(r.Context(), lq)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := schemas.APIKeyList{Object: schemas.ObjectList, Data: make([]schemas.APIKey, 0, len(page.Keys))}
	for _, k := range page.Keys {
		out.Data = append(out.Data, keyJSON(k, s.cfg.Queries.LastUsedOf(k)))
	}
	if page.Before != "" {
		out.ListMetadata.Before = &page.Before
	}
	if page.After != "" {
		out.ListMetadata.After = &page.After
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	id := r.PathValue("id")
	if err := domain.ValidateKeyID(id); err != nil {
		s.fail(w, r, err)
		return
	}
	k, err := s.cfg.Queries.Key(r.Context(), id)
	if err == nil && !domain.CanSee(actor, k) {
		err = domain.ErrNotFound
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, keyJSON(k, s.cfg.Queries.LastUsedOf(k)))
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	id := r.PathValue("id")
	if err := domain.ValidateKeyID(id); err != nil {
		s.fail(w, r, err)
		return
	}
	var req schemas.RevokeAPIKeyRequest
	if err := decode(w, r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	reason, err := domain.ParseRevokeReason(req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	k, err := s.cfg.Commands.RevokeKey(r.Context(), actor, domain.RevokeKey{KeyID: id, Reason: reason})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, keyJSON(k, s.cfg.Queries.LastUsedOf(k)))
}

func (s *Server) validate(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	s.validateFast(w, r)
}

func (s *Server) getCatalogue(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	cat, err := s.cfg.Queries.Catalogue(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, schemas.PermissionsBody{Permissions: cat.Permissions})
}

func (s *Server) putCatalogue(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	var req schemas.PermissionsBody
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Permissions == nil {
		writeError(w, http.StatusBadRequest, "invalid_permissions", "permissions is required (an empty list clears the catalogue)")
		return
	}
	cat, err := s.cfg.Commands.SetCatalogue(r.Context(), actor, req.Permissions)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, schemas.PermissionsBody{Permissions: cat.Permissions})
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	org, user := r.PathValue("org"), r.PathValue("user")
	removed, err := s.cfg.Commands.RemoveMember(r.Context(), actor, domain.RemoveMember{OrganizationID: org, UserID: user})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, schemas.MemberRemoval{OrganizationID: org, UserID: user, RevokedAPIKeyIDs: removed.RevokedKeyIDs})
}

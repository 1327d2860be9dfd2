package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// statusOf maps the domain's error kinds to HTTP: the only place this
// mapping exists.
func statusOf(k domain.Kind) int {
	switch k {
	case domain.KindInvalid:
		return http.StatusBadRequest
	case domain.KindUnprocessable:
		return http.StatusUnprocessableEntity
	case domain.KindUnauthorized:
		return http.StatusUnauthorized
	case domain.KindForbidden:
		return http.StatusForbidden
	case domain.KindNotFound:
		return http.StatusNotFound
	case domain.KindConflict:
		return http.StatusConflict
	case domain.KindUnavailable:
		return http.StatusServiceUnavailable
	case domain.KindStorageFull:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// fail writes err as the API's error JSON. Internal errors are logged here,
// once, and their text is not shown to the caller.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var de *domain.Error
	if errors.As(err, &de) {
		status := statusOf(de.Kind)
		if de.Kind == domain.KindUnavailable {
			s.log.Warn("api: dependency unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "1")
		}
		if de.Kind == domain.KindStorageFull {
			s.log.Warn("api: storage full", "method", r.Method, "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "30")
		}
		if status != http.StatusInternalServerError {
			writeError(w, status, de.Code, de.Message)
			return
		}
	}
	s.log.Error("api: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, schemas.Error{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = hdrJSON
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

var errBodyTooLarge = &domain.Error{Kind: domain.KindInvalid, Code: "body_too_large", Message: fmt.Sprintf("the request body is larger than %d bytes", MaxBodyBytes)}

// decode reads exactly one JSON object into v: bounded size, valid UTF-8, no
// unknown fields, no trailing data. optional allows an empty body.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	bp, err := readBody(w, r)
	if err != nil {
		return err
	}
	defer bufPool.Put(bp)
	if optional && len(bytes.TrimSpace(*bp)) == 0 {
		return nil
	}
	return decodeBytes(*bp, v)
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s", te.Field, te.Type.String())
		}
		return fmt.Sprintf("the body must be a JSON object, not %s", te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of body"
	}
	// Unknown fields and the like: json's message names the field only.
	return "malformed JSON: " + err.Error()
}

// keyJSON renders a key as the API shows it.
func keyJSON(k *domain.Key, lastUsed *time.Time) schemas.APIKey {
	out := schemas.APIKey{
		Object: schemas.ObjectAPIKey, ID: k.ID,
		Owner:          schemas.Owner{Type: string(k.Owner.Type), ID: k.Owner.ID},
		OrganizationID: k.OrganizationID, Name: k.Name, ObfuscatedValue: k.Obfuscated,
		LastUsedAt: lastUsed, Permissions: k.Permissions, Status: string(k.Status),
		ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, RevokeReason: string(k.RevokeReason),
		CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
	}
	if out.Permissions == nil {
		out.Permissions = []string{}
	}
	if k.Owner.Type == domain.OwnerUser {
		id := k.Owner.ID
		out.UserID = &id
	}
	if ok, reason := k.Validity(time.Now()); !ok && reason == domain.InvalidExpired {
		out.Status = "expired"
	}
	return out
}

// ValidKeyJSON renders a validated key as the API answers it: always
// active, never with its value. Embedded validators answer with it too, so
// both paths give the same answer.
func ValidKeyJSON(k domain.ValidKey, obfuscated string) schemas.APIKey {
	out := schemas.APIKey{
		Object: schemas.ObjectAPIKey, ID: k.ID,
		Owner:          schemas.Owner{Type: string(k.Owner.Type), ID: k.Owner.ID},
		OrganizationID: k.OrganizationID, Name: k.Name, ObfuscatedValue: obfuscated,
		Permissions: k.Permissions, Status: string(domain.StatusActive),
		CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
	}
	if out.Permissions == nil {
		out.Permissions = []string{}
	}
	if k.Owner.Type == domain.OwnerUser {
		id := k.Owner.ID
		out.UserID = &id
	}
	if !k.ExpiresAt.IsZero() {
		t := k.ExpiresAt
		out.ExpiresAt = &t
	}
	if !k.LastUsedAt.IsZero() {
		t := k.LastUsedAt
		out.LastUsedAt = &t
	}
	return out
}

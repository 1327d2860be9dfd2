package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Widget tokens let a host app's settings page act for one user of one
// organization, within the manage permissions the host granted, for
// minutes: "kwt_" + base64url(claims JSON) + "." + base64url(HMAC-SHA256).
// They are stateless: the signing key (Config.WidgetKey) is all a node
// needs to check one, and a fleet shares it.

// widgetClaims are what a widget token asserts.
type widgetClaims struct {
	Version         int      `json:"v"`
	OrganizationID  string   `json:"org"`
	UserID          string   `json:"sub"`
	Permissions     []string `json:"perms"`
	UserPermissions []string `json:"uperms,omitempty"`
	HasUserPerms    bool     `json:"has_uperms,omitempty"`
	IssuedAt        int64    `json:"iat"` // unix milliseconds
	ExpiresAt       int64    `json:"exp"` // unix milliseconds
	ID              string   `json:"jti"`
}

var (
	errWidgetRevoked = &domain.Error{Kind: domain.KindUnauthorized, Code: "widget_token_revoked", Message: "the user was removed from the organization after this widget token was issued"}
	errWidgetToken   = &domain.Error{Kind: domain.KindUnauthorized, Code: "invalid_widget_token", Message: "the widget token is not valid"}
	errWidgetExpired = &domain.Error{Kind: domain.KindUnauthorized, Code: "widget_token_expired", Message: "the widget token has expired; ask the host application for a new one"}
)

func (s *Server) signWidget(payload string) string {
	m := hmac.New(sha256.New, s.cfg.WidgetKey)
	m.Write([]byte(schemas.WidgetTokenPrefix + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) mintWidget(c widgetClaims) (string, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(raw)
	return schemas.WidgetTokenPrefix + payload + "." + s.signWidget(payload), nil
}

// verifyWidget checks a token's signature in constant time, then its
// claims and expiry.
func (s *Server) verifyWidget(token string) (widgetClaims, error) {
	var c widgetClaims
	body, ok := strings.CutPrefix(token, schemas.WidgetTokenPrefix)
	payload, sig, ok2 := strings.Cut(body, ".")
	if !ok || !ok2 || len(s.cfg.WidgetKey) == 0 {
		return c, errWidgetToken
	}
	want := s.signWidget(payload)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return c, errWidgetToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(raw, &c) != nil || c.Version != 1 {
		return c, errWidgetToken
	}
	if s.now().UnixMilli() >= c.ExpiresAt {
		return c, errWidgetExpired
	}
	return c, nil
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

func (c widgetClaims) actor() domain.Actor {
	a := domain.Actor{Type: domain.ActorUser, ID: c.UserID, OrganizationID: c.OrganizationID, ManagePermissions: c.Permissions}
	if c.HasUserPerms {
		a.UserPermissions = c.UserPermissions
		if a.UserPermissions == nil {
			a.UserPermissions = []string{}
		}
	}
	return a
}

var managePermissions = []string{domain.PermManageOrgKeys, domain.PermManageOwnUserKeys, domain.PermManageAllUserKeys}

// Widget token lifetimes: minutes, not days.
const (
	defaultWidgetTTL = 10 * time.Minute
	maxWidgetTTL     = time.Hour
)

func (s *Server) mintWidgetToken(w http.ResponseWriter, r *http.Request, _ domain.Actor) {
	if len(s.cfg.WidgetKey) == 0 {
		writeError(w, http.StatusNotFound, "route_not_found", "widget tokens are not served here")
		return
	}
	var req schemas.WidgetTokenRequest
	if err := decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := domain.ValidateOrganizationID(req.OrganizationID); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := domain.ValidateUserID(req.UserID); err != nil || req.UserID == "" {
		if err == nil {
			err = domain.Errorf(domain.KindInvalid, "invalid_user_id", "user_id is required")
		}
		s.fail(w, r, err)
		return
	}
	perms := slices.Clone(req.Permissions)
	slices.Sort(perms)
	perms = slices.Compact(perms)
	for _, p := range perms {
		if !slices.Contains(managePermissions, p) {
			writeError(w, http.StatusBadRequest, "invalid_permissions", "permissions are the manage permissions: "+strings.Join(managePermissions, ", "))
			return
		}
	}
	if perms == nil {
		perms = []string{}
	}
	ttl := defaultWidgetTTL
	if req.ExpiresIn != 0 {
		// Bounds first: the product overflows for large values.
		if req.ExpiresIn < 1 || req.ExpiresIn > int(maxWidgetTTL/time.Second) {
			writeError(w, http.StatusBadRequest, "invalid_expires_in", "expires_in is from 1 to 3600 seconds")
			return
		}
		ttl = time.Duration(req.ExpiresIn) * time.Second
	}
	c := widgetClaims{Version: 1, OrganizationID: req.OrganizationID, UserID: req.UserID, Permissions: perms, IssuedAt: s.now().UnixMilli()}
	if req.UserPermissions != nil {
		up, err := domain.NormalizePermissions(req.UserPermissions, 1000)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		c.UserPermissions, c.HasUserPerms = up, true
	}
	exp := s.now().Add(ttl)
	c.ExpiresAt = exp.UnixMilli()
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		s.fail(w, r, err)
		return
	}
	c.ID = base64.RawURLEncoding.EncodeToString(id[:])
	token, err := s.mintWidget(c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, schemas.WidgetToken{Token: token, ExpiresAt: time.UnixMilli(c.ExpiresAt).UTC()})
}

func (s *Server) widgetSession(w http.ResponseWriter, r *http.Request, actor domain.Actor) {
	c, ok := r.Context().Value(widgetClaimsKey{}).(widgetClaims)
	if !ok || actor.Type != domain.ActorUser {
		writeError(w, http.StatusUnauthorized, "invalid_widget_token", "this route takes a widget token")
		return
	}
	cat, err := s.cfg.Queries.Catalogue(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := schemas.WidgetSession{
		OrganizationID: c.OrganizationID, UserID: c.UserID, Permissions: c.Permissions,
		Catalogue: cat.Permissions, ExpiresAt: time.UnixMilli(c.ExpiresAt).UTC(), StaleAfterDays: s.cfg.StaleAfterDays,
	}
	if c.HasUserPerms {
		out.UserPermissions = actor.UserPermissions
	}
	writeJSON(w, http.StatusOK, out)
}

type widgetClaimsKey struct{}

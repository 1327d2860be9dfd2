package domain

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"time"
)

// A webhook endpoint receives lifecycle events, signed. Managing endpoints
// is recorded in the ledger like every other change of who learns what.

// WebhookEndpoint is the endpoint aggregate, rebuilt from its events.
type WebhookEndpoint struct {
	ID             string
	URL            string
	Events         []string // the event types it receives
	Enabled        bool
	DisabledReason string // requested, gone or failing
	// Secrets are sealed signing secrets, newest first. A rotated-out
	// secret stays until its ExpiresAt, so receivers can switch over.
	Secrets   []SealedSecret
	Deleted   bool
	CreatedAt time.Time
	UpdatedAt time.Time
	// CreatedSeq is the ledger sequence of the creation: the endpoint
	// receives only events that come after it.
	CreatedSeq uint64
	Version    uint64
}

// SealedSecret is a signing secret encrypted with the operator's key: the
// domain carries it and never opens it.
type SealedSecret struct {
	Sealed    string
	ExpiresAt *time.Time // nil: current
}

// Reasons an endpoint is disabled.
const (
	DisabledRequested = "requested" // by the admin
	DisabledGone      = "gone"      // it answered 410 Gone
	DisabledFailing   = "failing"   // it failed for longer than the bound
)

// Webhook endpoint events.
type (
	WebhookEndpointCreated struct {
		EndpointID string
		URL        string
		Events     []string
		Secret     string // sealed
	}
	WebhookEndpointUpdated struct {
		EndpointID string
		URL        string
		Events     []string
	}
	WebhookSecretRotated struct {
		EndpointID        string
		Secret            string // sealed
		PreviousExpiresAt time.Time
	}
	WebhookEndpointDisabled struct {
		EndpointID string
		Reason     string
	}
	WebhookEndpointEnabled struct{ EndpointID string }
	WebhookEndpointDeleted struct{ EndpointID string }
)

func (WebhookEndpointCreated) isEventData()  {}
func (WebhookEndpointUpdated) isEventData()  {}
func (WebhookSecretRotated) isEventData()    {}
func (WebhookEndpointDisabled) isEventData() {}
func (WebhookEndpointEnabled) isEventData()  {}
func (WebhookEndpointDeleted) isEventData()  {}

// Apply folds one event into the endpoint.
func (w *WebhookEndpoint) Apply(e Event) {
	switch d := e.Data.(type) {
	case WebhookEndpointCreated:
		*w = WebhookEndpoint{ID: d.EndpointID, URL: d.URL, Events: d.Events, Enabled: true,
			Secrets: []SealedSecret{{Sealed: d.Secret}}, CreatedAt: e.CreatedAt, CreatedSeq: e.Seq}
	case WebhookEndpointUpdated:
		w.URL, w.Events = d.URL, d.Events
	case WebhookSecretRotated:
		prev := d.PreviousExpiresAt
		keep := []SealedSecret{{Sealed: d.Secret}}
		if len(w.Secrets) > 0 {
			keep = append(keep, SealedSecret{Sealed: w.Secrets[0].Sealed, ExpiresAt: &prev})
		}
		w.Secrets = keep
	case WebhookEndpointDisabled:
		w.Enabled, w.DisabledReason = false, d.Reason
	case WebhookEndpointEnabled:
		w.Enabled, w.DisabledReason = true, ""
	case WebhookEndpointDeleted:
		w.Deleted, w.Enabled = true, false
	default:
		return
	}
	w.UpdatedAt = e.CreatedAt
	w.Version = e.Seq
}

// CurrentSecrets returns the sealed secrets that sign at now, newest first.
func (w *WebhookEndpoint) CurrentSecrets(now time.Time) []string {
	var out []string
	for _, s := range w.Secrets {
		if s.ExpiresAt == nil || now.Before(*s.ExpiresAt) {
			out = append(out, s.Sealed)
		}
	}
	return out
}

var endpointIDPattern = regexp.MustCompile(`^we_[0-9A-HJKMNP-TV-Z]{26}$`)

// ValidateEndpointID checks the shape of a webhook endpoint id.
func ValidateEndpointID(id string) error {
	if !endpointIDPattern.MatchString(id) {
		return Errorf(KindNotFound, "not_found", "no such webhook endpoint")
	}
	return nil
}

// MaxEndpointEvents bounds the event types one endpoint subscribes to.
const MaxEndpointEvents = 32

// WebhookLedger is the ledger as webhook commands need it.
type WebhookLedger interface {
	LoadEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error)
	Append(ctx context.Context, batch []Append) (AppendResult, error)
}

// WebhookView is this node's projection of the endpoints.
type WebhookView interface {
	WaitApplied(ctx context.Context, seq uint64) error
	Endpoint(ctx context.Context, id string) (*WebhookEndpoint, error)
}

// WebhookServiceConfig holds the webhook commands' collaborators.
type WebhookServiceConfig struct {
	Ledger WebhookLedger
	View   WebhookView
	NewID  func(prefix string) string
	Now    func() time.Time
	// CheckURL refuses URLs that may not receive webhooks (scheme, and
	// addresses that resolve to private networks).
	CheckURL func(ctx context.Context, url string) error
	// KnownEvent reports whether an event type may be subscribed to.
	KnownEvent func(string) bool
	// NewSecret makes a signing secret: its value, shown once, and its
	// sealed form, kept in the ledger.
	NewSecret func() (value, sealed string, err error)
	// RotationOverlap is how long a rotated-out secret still signs
	// (default 24 h).
	RotationOverlap time.Duration
}

// WebhookService runs the webhook endpoint commands.
type WebhookService struct{ cfg WebhookServiceConfig }

// NewWebhookService returns the service.
func NewWebhookService(cfg WebhookServiceConfig) *WebhookService {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RotationOverlap == 0 {
		cfg.RotationOverlap = 24 * time.Hour
	}
	return &WebhookService{cfg: cfg}
}

// EndpointChange is a create's or an update's input; nil fields of an
// update stay as they are.
type EndpointChange struct {
	URL    *string
	Events []string
}

func (s *WebhookService) checkChange(ctx context.Context, c EndpointChange, create bool) ([]string, error) {
	if c.URL == nil && create {
		return nil, Errorf(KindInvalid, "invalid_webhook_url", "url is required")
	}
	if c.URL != nil {
		if len(*c.URL) > 2048 {
			return nil, Errorf(KindInvalid, "invalid_webhook_url", "url is at most 2048 characters")
		}
		if err := s.cfg.CheckURL(ctx, *c.URL); err != nil {
			return nil, err
		}
	}
	if c.Events == nil {
		if create {
			return nil, Errorf(KindInvalid, "invalid_events", "events is required: the event types to receive")
		}
		return nil, nil
	}
	if len(c.Events) == 0 || len(c.Events) > MaxEndpointEvents {
		return nil, Errorf(KindInvalid, "invalid_events", "events lists 1 to %d event types", MaxEndpointEvents)
	}
	evs := slices.Clone(c.Events)
	slices.Sort(evs)
	evs = slices.Compact(evs)
	for _, t := range evs {
		if !s.cfg.KnownEvent(t) {
			return nil, Errorf(KindInvalid, "invalid_events", "unknown event type %q", t)
		}
	}
	return evs, nil
}

// CreateEndpoint creates an endpoint; the secret's value is returned only
// here and on rotation.
func (s *WebhookService) CreateEndpoint(ctx context.Context, actor Actor, c EndpointChange) (*WebhookEndpoint, string, error) {
	if actor.Type != ActorAdmin {
		return nil, "", Errorf(KindForbidden, "forbidden", "only the admin key manages webhook endpoints")
	}
	evs, err := s.checkChange(ctx, c, true)
	if err != nil {
		return nil, "", err
	}
	value, sealed, err := s.cfg.NewSecret()
	if err != nil {
		return nil, "", err
	}
	id := s.cfg.NewID("we_")
	ev := Event{ID: s.cfg.NewID("event_"), AggregateID: id, Actor: actor, CreatedAt: s.cfg.Now().UTC(),
		Data: WebhookEndpointCreated{EndpointID: id, URL: *c.URL, Events: evs, Secret: sealed}}
	w, err := s.append(ctx, nil, ev)
	return w, value, err
}

// UpdateEndpoint changes an endpoint's URL or events.
func (s *WebhookService) UpdateEndpoint(ctx context.Context, actor Actor, id string, c EndpointChange) (*WebhookEndpoint, error) {
	evs, err := s.checkChange(ctx, c, false)
	if err != nil {
		return nil, err
	}
	return s.change(ctx, actor, id, func(w *WebhookEndpoint) (EventData, error) {
		d := WebhookEndpointUpdated{EndpointID: w.ID, URL: w.URL, Events: w.Events}
		if c.URL != nil {
			d.URL = *c.URL
		}
		if evs != nil {
			d.Events = evs
		}
		if d.URL == w.URL && slices.Equal(d.Events, w.Events) {
			return nil, nil
		}
		return d, nil
	})
}

// SetEndpointEnabled enables or disables an endpoint; reason says why it
// is disabled.
func (s *WebhookService) SetEndpointEnabled(ctx context.Context, actor Actor, id string, enabled bool, reason string) (*WebhookEndpoint, error) {
	return s.change(ctx, actor, id, func(w *WebhookEndpoint) (EventData, error) {
		switch {
		case enabled && !w.Enabled:
			return WebhookEndpointEnabled{EndpointID: w.ID}, nil
		case !enabled && w.Enabled:
			return WebhookEndpointDisabled{EndpointID: w.ID, Reason: reason}, nil
		}
		return nil, nil
	})
}

// DeleteEndpoint deletes an endpoint: it receives nothing more.
func (s *WebhookService) DeleteEndpoint(ctx context.Context, actor Actor, id string) error {
	_, err := s.change(ctx, actor, id, func(w *WebhookEndpoint) (EventData, error) {
		return WebhookEndpointDeleted{EndpointID: w.ID}, nil
	})
	return err
}

// RotateSecret gives an endpoint a new secret and returns its value; the
// previous one keeps signing for RotationOverlap.
func (s *WebhookService) RotateSecret(ctx context.Context, actor Actor, id string) (*WebhookEndpoint, string, error) {
	var value string
	w, err := s.change(ctx, actor, id, func(w *WebhookEndpoint) (EventData, error) {
		v, sealed, err := s.cfg.NewSecret()
		if err != nil {
			return nil, err
		}
		value = v
		return WebhookSecretRotated{EndpointID: w.ID, Secret: sealed, PreviousExpiresAt: s.cfg.Now().UTC().Add(s.cfg.RotationOverlap)}, nil
	})
	return w, value, err
}

// change decides on the view's endpoint, and on the ledger's after a
// conflict, a bounded number of times. decide returning nil changes nothing.
func (s *WebhookService) change(ctx context.Context, actor Actor, id string, decide func(*WebhookEndpoint) (EventData, error)) (*WebhookEndpoint, error) {
	if actor.Type != ActorAdmin && actor.Type != ActorSystem {
		return nil, Errorf(KindForbidden, "forbidden", "only the admin key manages webhook endpoints")
	}
	if err := ValidateEndpointID(id); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		var (
			w   *WebhookEndpoint
			err error
		)
		if attempt == 1 {
			w, err = s.cfg.View.Endpoint(ctx, id)
		} else {
			w, err = s.cfg.Ledger.LoadEndpoint(ctx, id)
		}
		if err != nil {
			return nil, err
		}
		if w.Deleted {
			return nil, ErrNotFound
		}
		data, err := decide(w)
		if err != nil {
			return nil, err
		}
		if data == nil {
			return w, s.cfg.View.WaitApplied(ctx, w.Version)
		}
		ev := Event{ID: s.cfg.NewID("event_"), AggregateID: w.ID, Actor: actor, CreatedAt: s.cfg.Now().UTC(), Data: data}
		out, err := s.append(ctx, w, ev)
		if errors.Is(err, ErrConflict) && attempt < maxAttempts && pause(ctx, attempt) {
			continue
		}
		return out, err
	}
}

// append appends one event on top of w (nil: a new endpoint) and waits
// for this node's projection to apply it.
func (s *WebhookService) append(ctx context.Context, w *WebhookEndpoint, ev Event) (*WebhookEndpoint, error) {
	var expected uint64
	next := &WebhookEndpoint{}
	if w != nil {
		expected = w.Version
		cp := *w
		next = &cp
	}
	res, err := s.cfg.Ledger.Append(ctx, []Append{{Event: ev, Expected: expected, MsgID: ev.ID}})
	if err != nil {
		return nil, err
	}
	if err := s.cfg.View.WaitApplied(ctx, res.Seq); err != nil {
		return nil, err
	}
	ev.Seq = res.Seq
	next.Apply(ev)
	return next, nil
}

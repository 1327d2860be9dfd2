package domain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Append is one event to append, with the aggregate version it expects
// (0 for a new aggregate) and the message id that makes a retry a no-op.
type Append struct {
	Event    Event
	Expected uint64
	MsgID    string
}

// AppendResult tells where the last event of a batch landed. Duplicate is
// true when the ledger had already seen the batch's message id: nothing was
// appended and Seq is the original's.
type AppendResult struct {
	Seq       uint64
	Duplicate bool
}

// Ledger is the port to the event store. Append appends all events of the
// batch or none; a wrong expected version is ErrConflict.
type Ledger interface {
	LoadKey(ctx context.Context, org, keyID string) (*Key, error)
	LoadCatalogue(ctx context.Context) (*Catalogue, error)
	MemberVersion(ctx context.Context, org, userID string) (uint64, error)
	EventAt(ctx context.Context, seq uint64) (Event, error)
	Append(ctx context.Context, batch []Append) (AppendResult, error)
}

// View is the port to this node's projection. Commands decide from it first
// (reading the ledger costs a round trip that waits behind its fsyncs), and
// their appends carry the version they decided on: when the view was
// behind, the ledger refuses the append as a conflict and the command
// reloads from the ledger itself. Commands also wait on the view, so that
// their answer is never ahead of what validation serves.
type View interface {
	WaitApplied(ctx context.Context, seq uint64) error
	Key(ctx context.Context, keyID string) (*Key, error)
	Catalogue(ctx context.Context) (*Catalogue, error)
	ActiveUserKeyIDs(ctx context.Context, org, userID string) ([]string, error)
}

// ServiceConfig holds the service's collaborators and settings.
type ServiceConfig struct {
	Ledger    Ledger
	View      View
	KeyPrefix string                     // PrefixLive or PrefixTest
	NewID     func(prefix string) string // prefix + a sortable unique id
	Now       func() time.Time
	// ReplayWindow is how long a created key's value is kept in memory, and
	// only in memory, so that a create retried with the same Idempotency-Key
	// can return it again. It should equal the ledger's duplicate window.
	ReplayWindow time.Duration
}

// Service runs commands: load, decide, append with optimistic concurrency,
// retry on conflict, and answer once this node's projection has applied the
// result.
type Service struct {
	cfg     ServiceConfig
	mu      sync.Mutex
	replays map[string]replay
	swept   time.Time
}

type replay struct {
	value   string
	expires time.Time
}

const (
	maxAttempts = 5
	maxReplays  = 10000
)

// NewService builds a Service.
func NewService(cfg ServiceConfig) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = PrefixLive
	}
	return &Service{cfg: cfg, replays: map[string]replay{}}
}

// Created is the answer to a create: the key, and its value when this is the
// first answer (or a replay inside the replay window). Replayed is true when
// the command had already been carried out.
type Created struct {
	Key      *Key
	Value    string
	Replayed bool
}

// CreateKey creates a key. idempotencyKey, when not empty, makes a retried
// create append nothing and return the same key.
func (s *Service) CreateKey(ctx context.Context, actor Actor, cmd CreateKey, idempotencyKey string) (*Created, error) {
	cat, err := s.cfg.View.Catalogue(ctx)
	if err != nil {
		return nil, err
	}
	value, err := GenerateKey(s.cfg.KeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("domain: generate key: %w", err)
	}
	now := s.cfg.Now().UTC()
	keyID := s.cfg.NewID("api_key_")
	data, err := DecideCreate(actor, cmd, cat, keyID, HashKey(value), ObfuscateKey(value), now)
	if err != nil {
		return nil, err
	}
	ev := Event{
		ID: s.cfg.NewID("event_"), OrganizationID: cmd.OrganizationID, AggregateID: keyID,
		Actor: actor, CreatedAt: now, Data: data,
	}
	msgID := ev.ID
	if idempotencyKey != "" {
		msgID = commandID("create", cmd.OrganizationID, string(actor.Type), actor.ID, idempotencyKey)
	}
	res, err := s.cfg.Ledger.Append(ctx, []Append{{Event: ev, Expected: 0, MsgID: msgID}})
	if err != nil {
		return nil, err
	}
	if res.Duplicate {
		return s.replayCreate(ctx, msgID, cmd, data, res.Seq)
	}
	// Remember the value as soon as the key is in the ledger: if the wait
	// below fails, the caller's retry must still be able to get it.
	if idempotencyKey != "" {
		s.remember(msgID, value, now)
	}
	if err := s.cfg.View.WaitApplied(ctx, res.Seq); err != nil {
		return nil, err
	}
	ev.Seq = res.Seq
	k := &Key{}
	k.Apply(ev)
	return &Created{Key: k, Value: value}, nil
}

func (s *Service) replayCreate(ctx context.Context, msgID string, cmd CreateKey, want KeyCreated, seq uint64) (*Created, error) {
	orig, err := s.cfg.Ledger.EventAt(ctx, seq)
	if err != nil {
		return nil, err
	}
	d, ok := orig.Data.(KeyCreated)
	if !ok || orig.OrganizationID != cmd.OrganizationID || d.Name != want.Name || d.Owner != want.Owner ||
		!slices.Equal(d.Permissions, want.Permissions) || !sameTime(d.ExpiresAt, want.ExpiresAt) {
		return nil, Errorf(KindUnprocessable, "idempotency_key_reused", "this Idempotency-Key was used for a different request")
	}
	if err := s.cfg.View.WaitApplied(ctx, seq); err != nil {
		return nil, err
	}
	k := &Key{}
	k.Apply(orig)
	return &Created{Key: k, Value: s.recall(msgID), Replayed: true}, nil
}

// RevokeKey revokes a key and answers once the revocation is applied here.
// Revoking a revoked key changes nothing and returns it.
func (s *Service) RevokeKey(ctx context.Context, actor Actor, cmd RevokeKey) (*Key, error) {
	if err := ValidateKeyID(cmd.KeyID); err != nil {
		return nil, err
	}
	seen, err := s.cfg.View.Key(ctx, cmd.KeyID)
	if err != nil {
		return nil, err
	}
	org := seen.OrganizationID
	for attempt := 1; ; attempt++ {
		k := seen
		if attempt > 1 {
			if k, err = s.ledgerKey(ctx, org, cmd.KeyID); err != nil {
				return nil, err
			}
		}
		rev, err := DecideRevoke(actor, k, cmd.Reason)
		if err != nil {
			return nil, err
		}
		if rev == nil {
			// Already revoked: the revocation may have come from another node,
			// so make sure this one has applied it before answering.
			if err := s.cfg.View.WaitApplied(ctx, k.Version); err != nil {
				return nil, err
			}
			return k, nil
		}
		ev := Event{
			ID: s.cfg.NewID("event_"), OrganizationID: k.OrganizationID, AggregateID: k.ID,
			Actor: actor, CreatedAt: s.cfg.Now().UTC(), Data: *rev,
		}
		res, err := s.cfg.Ledger.Append(ctx, []Append{{Event: ev, Expected: k.Version, MsgID: "revoke." + k.ID}})
		if errors.Is(err, ErrConflict) && attempt < maxAttempts && pause(ctx, attempt) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if res.Duplicate {
			// Another command revoked the key first under the same message
			// id: answer with the revocation the ledger holds, not this one.
			if k, err = s.ledgerKey(ctx, org, cmd.KeyID); err != nil {
				return nil, err
			}
			if err := s.cfg.View.WaitApplied(ctx, k.Version); err != nil {
				return nil, err
			}
			return k, nil
		}
		if err := s.cfg.View.WaitApplied(ctx, res.Seq); err != nil {
			return nil, err
		}
		ev.Seq = res.Seq
		k.Apply(ev)
		return k, nil
	}
}

// RemoveMember records that a user left an organization and revokes every
// active key of theirs there, in one atomic batch. It repeats until no active
// key of the user is left, so a key created concurrently with the removal is
// revoked too.
func (s *Service) RemoveMember(ctx context.Context, actor Actor, cmd RemoveMember) (MemberRemoved, error) {
	total := MemberRemoved{UserID: cmd.UserID, RevokedKeyIDs: []string{}}
	if _, _, err := DecideRemoveMember(actor, cmd, nil); err != nil {
		return total, err
	}
	first := true
	for attempt := 1; ; attempt++ {
		ids, err := s.cfg.View.ActiveUserKeyIDs(ctx, cmd.OrganizationID, cmd.UserID)
		if err != nil {
			return total, err
		}
		if len(ids) == 0 && !first {
			return total, nil
		}
		keys := make([]*Key, 0, len(ids))
		for _, id := range ids {
			k, err := s.loadKey(ctx, attempt, cmd.OrganizationID, id)
			if err != nil {
				return total, err
			}
			keys = append(keys, k)
		}
		removed, revs, err := DecideRemoveMember(actor, cmd, keys)
		if err != nil {
			return total, err
		}
		version, err := s.cfg.Ledger.MemberVersion(ctx, cmd.OrganizationID, cmd.UserID)
		if err != nil {
			return total, err
		}
		now := s.cfg.Now().UTC()
		batch := []Append{{
			Event: Event{ID: s.cfg.NewID("event_"), OrganizationID: cmd.OrganizationID, AggregateID: cmd.UserID,
				Actor: actor, CreatedAt: now, Data: removed},
			Expected: version,
		}}
		batch[0].MsgID = batch[0].Event.ID
		byID := map[string]*Key{}
		for _, k := range keys {
			byID[k.ID] = k
		}
		for _, r := range revs {
			ev := Event{ID: s.cfg.NewID("event_"), OrganizationID: cmd.OrganizationID, AggregateID: r.KeyID,
				Actor: actor, CreatedAt: now, Data: r}
			batch = append(batch, Append{Event: ev, Expected: byID[r.KeyID].Version, MsgID: ev.ID})
		}
		res, err := s.cfg.Ledger.Append(ctx, batch)
		if errors.Is(err, ErrConflict) && attempt < maxAttempts && pause(ctx, attempt) {
			continue
		}
		if err != nil {
			return total, err
		}
		if err := s.cfg.View.WaitApplied(ctx, res.Seq); err != nil {
			return total, err
		}
		total.RevokedKeyIDs = append(total.RevokedKeyIDs, removed.RevokedKeyIDs...)
		first = false
		if attempt >= maxAttempts {
			return total, nil
		}
	}
}

// SetCatalogue replaces the permission catalogue.
func (s *Service) SetCatalogue(ctx context.Context, actor Actor, perms []string) (*Catalogue, error) {
	for attempt := 1; ; attempt++ {
		var (
			cur *Catalogue
			err error
		)
		if attempt == 1 {
			cur, err = s.cfg.View.Catalogue(ctx)
		} else {
			cur, err = s.cfg.Ledger.LoadCatalogue(ctx)
		}
		if err != nil {
			return nil, err
		}
		data, err := DecideSetCatalogue(actor, perms, cur)
		if err != nil {
			return nil, err
		}
		ev := Event{ID: s.cfg.NewID("event_"), AggregateID: CatalogueAggregateID, Actor: actor,
			CreatedAt: s.cfg.Now().UTC(), Data: data}
		res, err := s.cfg.Ledger.Append(ctx, []Append{{Event: ev, Expected: cur.Version, MsgID: ev.ID}})
		if errors.Is(err, ErrConflict) && attempt < maxAttempts && pause(ctx, attempt) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := s.cfg.View.WaitApplied(ctx, res.Seq); err != nil {
			return nil, err
		}
		return &Catalogue{Permissions: data.Permissions, Version: res.Seq}, nil
	}
}

// pause waits a random moment, growing with the attempt, before a command
// retries after a conflict, so that writers racing for one aggregate spread
// out instead of colliding again. It reports false if ctx ended.
func pause(ctx context.Context, attempt int) bool {
	d := time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// loadKey reads a key from the view on a command's first attempt and from
// the ledger after a conflict showed the view was behind.
func (s *Service) loadKey(ctx context.Context, attempt int, org, id string) (*Key, error) {
	if attempt == 1 {
		k, err := s.cfg.View.Key(ctx, id)
		if err != nil {
			return nil, err
		}
		if k.OrganizationID != org {
			return nil, ErrNotFound
		}
		return k, nil
	}
	return s.ledgerKey(ctx, org, id)
}

// ledgerKey reads a key from the ledger, with the permissions the current
// catalogue lets it use, as the view shows them (Catalogue.Ceiling).
func (s *Service) ledgerKey(ctx context.Context, org, id string) (*Key, error) {
	k, err := s.cfg.Ledger.LoadKey(ctx, org, id)
	if err != nil {
		return nil, err
	}
	cat, err := s.cfg.View.Catalogue(ctx)
	if err != nil {
		return nil, err
	}
	k.Permissions = cat.Ceiling(k.Permissions)
	return k, nil
}

func (s *Service) remember(msgID, value string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Sweep expired values a few times per window (not on every create,
	// which would cost a pass over the map each time), so that no value
	// stays in memory much past its window.
	if now.Sub(s.swept) >= s.cfg.ReplayWindow/4 || len(s.replays) >= maxReplays {
		s.swept = now
		for id, r := range s.replays {
			if now.After(r.expires) {
				delete(s.replays, id)
			}
		}
	}
	if len(s.replays) >= maxReplays {
		return
	}
	s.replays[msgID] = replay{value: value, expires: now.Add(s.cfg.ReplayWindow)}
}

func (s *Service) recall(msgID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.replays[msgID]
	if !ok || s.cfg.Now().After(r.expires) {
		return ""
	}
	return r.value
}

// commandID derives a stable message id from a command's identity, so a
// retried command is recognised by the ledger's duplicate window.
func commandID(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + "." + hex.EncodeToString(h.Sum(nil)[:16])
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// KeyListQuery selects a page of an organization's keys.
type KeyListQuery struct {
	OrganizationID string
	UserID         string // only this user's keys
	Status         string // "", "active", "revoked" or "expired"
	Limit          int
	Before, After  string // key id cursors, exclusive
	Ascending      bool   // oldest first; the default is newest first
	// Visible, when set, hides keys the caller may not see.
	Visible func(*Key) bool
}

// KeyPage is one page of keys; Before and After are the cursors of the
// neighbouring pages, empty when there is none.
type KeyPage struct {
	Keys          []*Key
	Before, After string
}

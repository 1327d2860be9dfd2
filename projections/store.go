package projections

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/keyledger/keyledger/domain"
)

// Pebble key layout. Organization and user ids cannot contain '/', so the
// separators are unambiguous; key ids are ULIDs, so the org and user indexes
// sort by creation time.
const (
	prefixKey       = "k/" // k/<key id> → record JSON
	prefixHash      = "h/" // h/<32-byte sha256> → key id
	prefixOrg       = "o/" // o/<org>/<key id> → ""
	prefixUser      = "u/" // u/<org>/<user>/<key id> → ""
	prefixLastUsed  = "l/" // l/<key id> → unix nanos (telemetry, outside the checkpoint)
	keyApplied      = "m/applied"
	keyCatalogue    = "c/catalogue"
	defaultWaitTime = 10 * time.Second
)

// record is the stored form of a key.
type record struct {
	ID             string     `json:"id"`
	OrganizationID string     `json:"organization_id"`
	OwnerType      string     `json:"owner_type"`
	OwnerID        string     `json:"owner_id"`
	Name           string     `json:"name"`
	Permissions    []string   `json:"permissions"`
	Hash           string     `json:"hash"`
	Obfuscated     string     `json:"obfuscated_value"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	Status         string     `json:"status"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	RevokeReason   string     `json:"revoke_reason,omitempty"`
	Version        uint64     `json:"version"`
}

func toRecord(k *domain.Key) record {
	return record{
		ID: k.ID, OrganizationID: k.OrganizationID, OwnerType: string(k.Owner.Type), OwnerID: k.Owner.ID,
		Name: k.Name, Permissions: k.Permissions, Hash: hex.EncodeToString(k.Hash[:]), Obfuscated: k.Obfuscated,
		CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt, ExpiresAt: k.ExpiresAt, Status: string(k.Status),
		RevokedAt: k.RevokedAt, RevokeReason: string(k.RevokeReason), Version: k.Version,
	}
}

func (r record) key() (*domain.Key, error) {
	k := &domain.Key{
		ID: r.ID, OrganizationID: r.OrganizationID, Owner: domain.Owner{Type: domain.OwnerType(r.OwnerType), ID: r.OwnerID},
		Name: r.Name, Permissions: r.Permissions, Obfuscated: r.Obfuscated, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		ExpiresAt: r.ExpiresAt, Status: domain.KeyStatus(r.Status), RevokedAt: r.RevokedAt,
		RevokeReason: domain.RevokeReason(r.RevokeReason), Version: r.Version,
	}
	if n, err := hex.Decode(k.Hash[:], []byte(r.Hash)); err != nil || n != len(k.Hash) {
		return nil, fmt.Errorf("projections: corrupt hash of %s", r.ID)
	}
	return k, nil
}

// catalogueRecord is the stored form of the permission catalogue.
type catalogueRecord struct {
	Permissions []string `json:"permissions"`
	Version     uint64   `json:"version"`
}

// Config configures a projection.
type Config struct {
	Dir string // folder of the Pebble database
	FS  vfs.FS // nil for the real disk; vfs.NewMem() in tests
	Log *slog.Logger
	// Now is the clock validation checks expiry against.
	Now func() time.Time
	// WaitTimeout bounds WaitApplied when the context has no deadline.
	WaitTimeout time.Duration
}

// Projection is the Pebble projection of the ledger and its in-memory
// validation index.
type Projection struct {
	cfg Config
	db  *pebble.DB
	log *slog.Logger

	catalogue atomic.Pointer[domain.Catalogue]

	// applyMu makes Apply single-writer, as the index requires.
	applyMu sync.Mutex
	idx     *index

	mu      sync.RWMutex
	applied uint64
	notify  chan struct{} // closed and replaced whenever applied advances

	clock    *clock
	usageNow func() int64 // unix seconds for last-used times
	flushMu  sync.Mutex
	flushed  int64 // last-used times older than this are in Pebble
}

// Open opens (or creates) the projection and loads the validation index from
// its last checkpoint.
func Open(cfg Config) (*Projection, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	custom := cfg.Now != nil
	if !custom {
		cfg.Now = time.Now
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = defaultWaitTime
	}
	opts := &pebble.Options{FS: cfg.FS, Logger: pebbleLogger{cfg.Log}}
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("projections: open %s: %w", cfg.Dir, err)
	}
	p := &Projection{cfg: cfg, db: db, log: cfg.Log, idx: newIndex(), notify: make(chan struct{})}
	if custom {
		p.usageNow = func() int64 { return cfg.Now().Unix() }
	} else {
		p.clock = startClock()
		p.usageNow = p.clock.now.Load
	}
	if err := p.load(); err != nil {
		p.stopClock()
		db.Close()
		return nil, err
	}
	return p, nil
}

func (p *Projection) load() error {
	v, closer, err := p.db.Get([]byte(keyApplied))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("projections: read checkpoint: %w", err)
	default:
		p.applied = binary.BigEndian.Uint64(v)
		closer.Close()
	}
	cat := &domain.Catalogue{Permissions: []string{}}
	if v, closer, err := p.db.Get([]byte(keyCatalogue)); err == nil {
		var r catalogueRecord
		err = json.Unmarshal(v, &r)
		closer.Close()
		if err != nil {
			return fmt.Errorf("projections: corrupt catalogue: %w", err)
		}
		cat = &domain.Catalogue{Permissions: r.Permissions, Version: r.Version}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("projections: read catalogue: %w", err)
	}
	p.catalogue.Store(cat)
	used := map[string]int64{}
	if err := p.scan(prefixLastUsed, func(k, v []byte) error {
		if len(v) == 8 {
			used[string(k[len(prefixLastUsed):])] = time.Unix(0, int64(binary.BigEndian.Uint64(v))).Unix()
		}
		return nil
	}); err != nil {
		return err
	}
	return p.scan(prefixKey, func(_, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("projections: corrupt record: %w", err)
		}
		k, err := r.key()
		if err != nil {
			return err
		}
		s := p.idx.put(k)
		if t, ok := used[k.ID]; ok {
			s.lastUsed.Store(t)
		}
		return nil
	})
}

func (p *Projection) stopClock() {
	if p.clock != nil {
		p.clock.close()
	}
}

// Close flushes telemetry and closes Pebble.
func (p *Projection) Close() error {
	err := p.FlushUsage()
	p.stopClock()
	return errors.Join(err, p.db.Close())
}

// Applied returns the ledger sequence the projection has applied.
func (p *Projection) Applied() uint64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.applied
}

// WaitApplied returns once the projection has applied seq, or fails when ctx
// ends (or after the configured timeout) with domain.ErrUnavailable.
func (p *Projection) WaitApplied(ctx context.Context, seq uint64) error {
	var timer <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := time.NewTimer(p.cfg.WaitTimeout)
		defer t.Stop()
		timer = t.C
	}
	for {
		p.mu.RLock()
		applied, ch := p.applied, p.notify
		p.mu.RUnlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("projections: waiting for seq %d (applied %d): %w", seq, applied, domain.ErrUnavailable)
		case <-timer:
			return fmt.Errorf("projections: waiting for seq %d (applied %d): %w", seq, applied, domain.ErrUnavailable)
		}
	}
}

func (p *Projection) scan(prefix string, fn func(k, v []byte) error) error {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("projections: iterate: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("projections: iterate: %w", err)
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	return it.Error()
}

func (p *Projection) getRecord(id string) (*domain.Key, error) {
	v, closer, err := p.db.Get([]byte(prefixKey + id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, domain.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("projections: get %s: %w", id, err)
	}
	defer closer.Close()
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("projections: corrupt record %s: %w", id, err)
	}
	return r.key()
}

func prefixEnd(prefix string) []byte {
	b := []byte(prefix)
	b[len(b)-1]++
	return b
}

type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

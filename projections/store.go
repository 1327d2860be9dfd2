package projections

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/keyledger/keyledger/domain"
)

// Pebble key layout. Organization and user ids cannot contain '/', so the
// separators are unambiguous; key ids are ULIDs, so the org and user indexes
// sort by creation time. There is no index by hash: validation looks hashes
// up in the in-memory index, loaded from the records, which hold the hash.
// (Earlier versions wrote one, h/<sha256> → key id, which nothing read; its
// keys fall at random places, so every table overlapped every other, and
// compactions took a third of a rebuild's CPU. Open deletes it.)
const (
	prefixKey       = "k/" // k/<key id> → record JSON
	prefixOldHash   = "h/" // no longer written; see above
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

// toRecord is k in its stored form; appendRecord writes what json.Marshal
// makes of it (the tests hold them to that).
func toRecord(k *domain.Key) record {
	return record{
		ID: k.ID, OrganizationID: k.OrganizationID, OwnerType: string(k.Owner.Type), OwnerID: k.Owner.ID,
		Name: k.Name, Permissions: k.Permissions, Hash: hex.EncodeToString(k.Hash[:]), Obfuscated: k.Obfuscated,
		CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt, ExpiresAt: k.ExpiresAt, Status: string(k.Status),
		RevokedAt: k.RevokedAt, RevokeReason: string(k.RevokeReason), Version: k.Version,
	}
}

// appendRecord appends the stored form of k to b: the bytes
// json.Marshal(toRecord(k)) gives, without reflection.
func appendRecord(b []byte, k *domain.Key) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = appendJSONString(b, k.ID)
	b = append(b, `,"organization_id":`...)
	b = appendJSONString(b, k.OrganizationID)
	b = append(b, `,"owner_type":`...)
	b = appendJSONString(b, string(k.Owner.Type))
	b = append(b, `,"owner_id":`...)
	b = appendJSONString(b, k.Owner.ID)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, k.Name)
	b = append(b, `,"permissions":`...)
	if k.Permissions == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, perm := range k.Permissions {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, perm)
		}
		b = append(b, ']')
	}
	b = append(b, `,"hash":"`...)
	b = hex.AppendEncode(b, k.Hash[:])
	b = append(b, `","obfuscated_value":`...)
	b = appendJSONString(b, k.Obfuscated)
	b = append(b, `,"created_at":`...)
	if b, err = appendJSONTime(b, k.CreatedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"updated_at":`...)
	if b, err = appendJSONTime(b, k.UpdatedAt); err != nil {
		return nil, err
	}
	if k.ExpiresAt != nil {
		b = append(b, `,"expires_at":`...)
		if b, err = appendJSONTime(b, *k.ExpiresAt); err != nil {
			return nil, err
		}
	}
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(k.Status))
	if k.RevokedAt != nil {
		b = append(b, `,"revoked_at":`...)
		if b, err = appendJSONTime(b, *k.RevokedAt); err != nil {
			return nil, err
		}
	}
	if k.RevokeReason != "" {
		b = append(b, `,"revoke_reason":`...)
		b = appendJSONString(b, string(k.RevokeReason))
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, k.Version, 10)
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json writes it. Strings it would
// escape (quotes, backslashes, control and HTML characters, invalid UTF-8,
// U+2028 and U+2029) are left to it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return appendEscaped(b, s)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			return appendEscaped(b, s)
		}
		i += size
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendEscaped(b []byte, s string) []byte {
	v, _ := json.Marshal(s) // a string always marshals
	return append(b, v...)
}

// appendJSONTime appends t as encoding/json writes it (time.Time's
// MarshalJSON: RFC 3339 with nanoseconds, quoted), and fails where it fails.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, fmt.Errorf("projections: record time: %w", err)
	}
	return append(b, '"'), nil
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

// decodeRecordFast reads a record as appendRecord writes it (its fields in
// that order, strings without escapes), without reflection. It reports
// false for anything else, and for every record that json.Unmarshal and
// record.key would refuse, so that the caller then takes that path: when it
// reports true, the key is the one that path gives.
func decodeRecordFast(v []byte) (*domain.Key, bool) {
	d := recordDecoder{s: string(v), ok: true}
	k := &domain.Key{}
	var hash string
	d.lit(`{"id":`)
	k.ID = d.str()
	d.lit(`,"organization_id":`)
	k.OrganizationID = d.str()
	d.lit(`,"owner_type":`)
	k.Owner.Type = domain.OwnerType(d.str())
	d.lit(`,"owner_id":`)
	k.Owner.ID = d.str()
	d.lit(`,"name":`)
	k.Name = d.str()
	d.lit(`,"permissions":`)
	switch {
	case d.opt("null"):
	case d.opt("[]"):
		k.Permissions = []string{}
	default:
		d.lit("[")
		for d.ok {
			k.Permissions = append(k.Permissions, d.str())
			if !d.opt(",") {
				break
			}
		}
		d.lit("]")
	}
	d.lit(`,"hash":`)
	hash = d.str()
	d.lit(`,"obfuscated_value":`)
	k.Obfuscated = d.str()
	d.lit(`,"created_at":`)
	k.CreatedAt = d.time()
	d.lit(`,"updated_at":`)
	k.UpdatedAt = d.time()
	if d.opt(`,"expires_at":`) {
		t := d.time()
		k.ExpiresAt = &t
	}
	d.lit(`,"status":`)
	k.Status = domain.KeyStatus(d.str())
	if d.opt(`,"revoked_at":`) {
		t := d.time()
		k.RevokedAt = &t
	}
	if d.opt(`,"revoke_reason":`) {
		k.RevokeReason = domain.RevokeReason(d.str())
	}
	d.lit(`,"version":`)
	k.Version = d.uint()
	d.lit("}")
	if !d.ok || d.i != len(d.s) || len(hash) != hex.EncodedLen(len(k.Hash)) {
		return nil, false
	}
	var hb [64]byte
	if n, err := hex.Decode(k.Hash[:], hb[:copy(hb[:], hash)]); err != nil || n != len(k.Hash) {
		return nil, false
	}
	return k, true
}

// recordDecoder reads the fields of a record in order; ok turns false at
// the first thing it does not expect. Its strings are slices of s, the
// record copied once.
type recordDecoder struct {
	s  string
	i  int
	ok bool
}

// lit reads exactly l.
func (d *recordDecoder) lit(l string) {
	if !d.opt(l) {
		d.ok = false
	}
}

// opt reads l if it comes next.
func (d *recordDecoder) opt(l string) bool {
	if d.ok && strings.HasPrefix(d.s[d.i:], l) {
		d.i += len(l)
		return true
	}
	return false
}

// str reads a string that encoding/json would decode to exactly its bytes:
// no escapes, no control characters, valid UTF-8.
func (d *recordDecoder) str() string {
	if !d.opt(`"`) {
		d.ok = false
		return ""
	}
	n := strings.IndexByte(d.s[d.i:], '"')
	if n < 0 {
		d.ok = false
		return ""
	}
	v := d.s[d.i : d.i+n]
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\\' || c < 0x20 {
			d.ok = false
			return ""
		}
	}
	if !utf8.ValidString(v) {
		d.ok = false
		return ""
	}
	d.i += n + 1
	return v
}

// time reads a time as encoding/json does: time.Time.UnmarshalJSON on the
// quoted string as it stands.
func (d *recordDecoder) time() time.Time {
	start := d.i
	d.str()
	var t time.Time
	if d.ok {
		var buf [64]byte
		if err := t.UnmarshalJSON(append(buf[:0], d.s[start:d.i]...)); err != nil {
			d.ok = false
		}
	}
	return t
}

// uint reads a uint64 in digits, without a leading zero.
func (d *recordDecoder) uint() uint64 {
	start := d.i
	var n uint64
	for d.ok && d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		c := uint64(d.s[d.i] - '0')
		if n > (math.MaxUint64-c)/10 {
			d.ok = false
			return 0
		}
		n = n*10 + c
		d.i++
	}
	if digits := d.i - start; digits == 0 || (digits > 1 && d.s[start] == '0') {
		d.ok = false
	}
	return n
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
	// Bulk builds the projection from the ledger in a folder that is used
	// only once it is complete (a rebuild): Pebble then writes no log and
	// buffers more before it flushes and compacts. Everything it holds is
	// re-read from the ledger if the build is lost, and CatchUp and Close
	// flush it to disk, so that a completed build is durable when it is
	// swapped in. Never for a projection that serves.
	Bulk bool
	// OnDiskFull, when set, is called when a write to the projection's disk
	// fails for lack of space, before the write is tried once more: it may
	// free space (a ballast file). Pebble cannot carry on after a failed
	// commit, so the retry is what keeps the projector alive.
	OnDiskFull func()
}

// Pebble settings of a bulk build: no write-ahead log; 64 MB memtables,
// so that L0 gets fewer, larger tables; and L0 allowed to grow further
// before it is compacted (the hash index's random keys make every table
// overlap every other) or stops writes.
const (
	bulkMemTableSize          = 64 << 20
	bulkL0CompactionThreshold = 8
	bulkL0StopWritesThreshold = 48
)

func pebbleOptions(cfg Config) *pebble.Options {
	opts := &pebble.Options{FS: cfg.FS, Logger: pebbleLogger{cfg.Log}}
	if cfg.OnDiskFull != nil {
		fs := cfg.FS
		if fs == nil {
			fs = vfs.Default
		}
		opts.FS = vfs.OnDiskFull(fs, cfg.OnDiskFull)
	}
	if cfg.Bulk {
		opts.DisableWAL = true
		opts.MemTableSize = bulkMemTableSize
		opts.L0CompactionThreshold = bulkL0CompactionThreshold
		opts.L0StopWritesThreshold = bulkL0StopWritesThreshold
	}
	return opts
}

// Projection is the Pebble projection of the ledger and its in-memory
// validation index.
type Projection struct {
	cfg Config
	db  *pebble.DB
	log *slog.Logger

	catalogue atomic.Pointer[domain.Catalogue]
	endpoints atomic.Pointer[map[string]*domain.WebhookEndpoint]
	epChanged map[string]*domain.WebhookEndpoint // endpoints a run changes

	// applyMu makes Apply single-writer, as the index requires; it guards
	// what Apply reuses from run to run.
	applyMu  sync.Mutex
	idx      *index
	changed  map[string]*domain.Key // keys a run changes
	buf      []byte                 // scratch for Pebble keys and values
	orgKeys  keyList                // o/ entries a run adds
	userKeys keyList                // u/ entries a run adds

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
	db, err := pebble.Open(cfg.Dir, pebbleOptions(cfg))
	if err != nil {
		return nil, fmt.Errorf("projections: open %s: %w", cfg.Dir, err)
	}
	p := &Projection{cfg: cfg, db: db, log: cfg.Log, idx: newIndex(), notify: make(chan struct{}), changed: map[string]*domain.Key{},
		epChanged: map[string]*domain.WebhookEndpoint{}}
	if custom {
		p.usageNow = func() int64 { return cfg.Now().Unix() }
	} else {
		p.clock = startClock()
		p.usageNow = p.clock.now.Load
	}
	if err := p.dropOldHashIndex(); err != nil {
		p.stopClock()
		db.Close()
		return nil, err
	}
	if err := p.load(); err != nil {
		p.stopClock()
		db.Close()
		return nil, err
	}
	return p, nil
}

// dropOldHashIndex deletes the index by hash earlier versions wrote, so
// that a projection they built holds what a rebuild holds.
func (p *Projection) dropOldHashIndex() error {
	lo, hi := []byte(prefixOldHash), prefixEnd(prefixOldHash)
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("projections: iterate: %w", err)
	}
	found := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("projections: iterate: %w", err)
	}
	if !found {
		return nil
	}
	if err := p.db.DeleteRange(lo, hi, pebble.Sync); err != nil {
		return fmt.Errorf("projections: drop the old hash index: %w", err)
	}
	return nil
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
	p.idx.setCeiling(cat)
	if err := p.loadEndpoints(); err != nil {
		return err
	}
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
		k, ok := decodeRecordFast(v)
		if !ok {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("projections: corrupt record: %w", err)
			}
			var err error
			if k, err = r.key(); err != nil {
				return err
			}
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

// Close flushes telemetry and closes Pebble; a bulk build is flushed to
// disk first.
func (p *Projection) Close() error {
	err := p.FlushUsage()
	if p.cfg.Bulk {
		if ferr := p.db.Flush(); ferr != nil {
			err = errors.Join(err, fmt.Errorf("projections: flush: %w", ferr))
		}
	}
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
	if k, ok := decodeRecordFast(v); ok {
		return k, nil
	}
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
	l.log.Error("pebble: fatal: " + fmt.Sprintf(format, args...))
	panic(fmt.Sprintf("pebble: "+format, args...))
}

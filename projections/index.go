package projections

import (
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keyledger/keyledger/domain"
)

// index is the in-memory validation index, built for a million keys in
// about two hundred bytes each and lookups that take no lock.
//
// A table of 8-byte buckets, open addressing with linear probing, maps the
// first 32 bits of a key hash to a slot number. Slots live inline in
// fixed-size chunks that never move, so a hit touches the bucket, the slot
// and the key's text, and nothing else. A slot's identity (hash, id, name,
// organization, owner, creation) is written once, before the slot is
// published in the table, and never changes; what can change (revoked,
// expiry, permissions) and the last-used time are atomic fields. One
// writer, the projector, inserts and updates; readers load atomically.
// Slots are never removed: a revoked key stays, marked revoked, so
// validation can say why. The table grows by building a bigger copy and
// swapping the pointer; readers of the old table reach the same slots, so a
// revocation shows in both.
type index struct {
	table  atomic.Pointer[table]
	chunks atomic.Pointer[[]*slotChunk]
	count  atomic.Uint32 // slots in use

	// intern shares organization ids, owner ids and permission sets between
	// keys: with a million keys they repeat a lot. Writer only.
	strs   map[string]string
	perms  map[string]*permSet
	keyBuf []byte
	// ceiling is the catalogue every permission set is held under. Writer
	// only.
	ceiling *domain.Catalogue
}

// permSet is one set of permissions keys were granted, shared by every key
// granted the same, with what the catalogue lets them use now. Narrowing
// the catalogue rewrites the few sets, not the million slots.
type permSet struct {
	granted   []string
	effective atomic.Pointer[[]string]
}

type table struct {
	buckets []atomic.Uint64 // fingerprint<<32 | slot+1; 0 is empty
	mask    uint64
}

const (
	chunkBits = 14
	chunkSize = 1 << chunkBits
)

type slotChunk [chunkSize]slot

// slot is one key.
type slot struct {
	// Written once, before the slot is published.
	hash domain.KeyHash
	// The id and the name, inline when they fit, so that a hit reads them
	// from the cache lines it already loaded; else in text.
	inline    [inlineText]byte
	text      string
	nameLen   uint8
	org       string
	ownerID   string
	created   int64 // unix nanos; also the last update of an active key
	idLen     uint8
	ownerUser bool

	// Changed by the projector, in ledger order.
	revoked atomic.Bool
	expires atomic.Int64 // unix nanos, 0: never
	perms   atomic.Pointer[permSet]

	// Written by validations: unix seconds.
	lastUsed atomic.Int64
}

const (
	minTableSize = 1 << 10
	inlineText   = 64
)

func newIndex() *index {
	ix := &index{strs: map[string]string{}, perms: map[string]*permSet{}}
	ix.table.Store(newTable(minTableSize))
	ix.chunks.Store(&[]*slotChunk{})
	return ix
}

func newTable(size int) *table {
	return &table{buckets: make([]atomic.Uint64, size), mask: uint64(size - 1)}
}

func fingerprint(h *domain.KeyHash) uint32 {
	return binary.LittleEndian.Uint32(h[:4])
}

// home is where a hash's probe sequence starts: other bits than the
// fingerprint's, so hashes that share a fingerprint do not also share a
// probe sequence.
func home(h *domain.KeyHash, t *table) uint64 {
	return binary.LittleEndian.Uint64(h[8:16]) & t.mask
}

func (ix *index) slotAt(n uint32) *slot {
	chunks := *ix.chunks.Load()
	return &chunks[n>>chunkBits][n&(chunkSize-1)]
}

// lookup finds the slot of a hash, or nil. Lock-free.
func (ix *index) lookup(h *domain.KeyHash) *slot {
	t := ix.table.Load()
	fp := fingerprint(h)
	for i := home(h, t); ; i = (i + 1) & t.mask {
		b := t.buckets[i].Load()
		if b == 0 {
			return nil
		}
		if uint32(b>>32) == fp {
			if s := ix.slotAt(uint32(b) - 1); s.hash == *h {
				return s
			}
		}
	}
}

// put stores a key's state, creating its slot when new. Writer only.
func (ix *index) put(k *domain.Key) *slot {
	s := ix.lookup(&k.Hash)
	if s == nil {
		n := ix.count.Load()
		chunks := *ix.chunks.Load()
		if int(n>>chunkBits) == len(chunks) {
			grown := append(chunks[:len(chunks):len(chunks)], new(slotChunk))
			ix.chunks.Store(&grown)
		}
		s = ix.slotAt(n)
		s.hash = k.Hash
		s.idLen, s.nameLen = uint8(len(k.ID)), uint8(len(k.Name))
		if len(k.ID)+len(k.Name) <= inlineText {
			copy(s.inline[copy(s.inline[:], k.ID):], k.Name)
		} else {
			s.text = k.ID + k.Name
		}
		s.org = ix.intern(k.OrganizationID)
		s.ownerID = ix.intern(k.Owner.ID)
		s.ownerUser = k.Owner.Type == domain.OwnerUser
		s.created = k.CreatedAt.UnixNano()
		ix.update(s, k)
		t := ix.table.Load()
		if (int(n)+1)*4 > len(t.buckets)*3 {
			t = ix.resize(t, len(t.buckets)*2)
		}
		insert(t, &s.hash, n)
		ix.count.Store(n + 1)
		return s
	}
	ix.update(s, k)
	return s
}

// update writes what can change about a key. Revocation goes last, so a
// reader that sees it sees the rest.
func (ix *index) update(s *slot, k *domain.Key) {
	s.perms.Store(ix.internPerms(k.Permissions))
	var exp int64
	if k.ExpiresAt != nil {
		exp = k.ExpiresAt.UnixNano()
	}
	s.expires.Store(exp)
	s.revoked.Store(k.Status == domain.StatusRevoked)
}

func insert(t *table, h *domain.KeyHash, n uint32) {
	b := uint64(fingerprint(h))<<32 | uint64(n+1)
	for i := home(h, t); ; i = (i + 1) & t.mask {
		if t.buckets[i].Load() == 0 {
			t.buckets[i].Store(b)
			return
		}
	}
}

func (ix *index) resize(old *table, size int) *table {
	t := newTable(size)
	for n := uint32(0); n < ix.count.Load(); n++ {
		insert(t, &ix.slotAt(n).hash, n)
	}
	ix.table.Store(t)
	return t
}

func (ix *index) intern(s string) string {
	if v, ok := ix.strs[s]; ok {
		return v
	}
	s = strings.Clone(s)
	ix.strs[s] = s
	return s
}

// setCeiling holds every permission set under cat from now on. Writer only;
// readers see each set change at once.
func (ix *index) setCeiling(cat *domain.Catalogue) {
	ix.ceiling = cat
	for _, ps := range ix.perms {
		ps.limit(cat)
	}
}

func (ps *permSet) limit(cat *domain.Catalogue) {
	eff := cat.Ceiling(ps.granted)
	ps.effective.Store(&eff)
}

func (ix *index) internPerms(p []string) *permSet {
	// The lookup key is built in a reused buffer; a map lookup with
	// string(bytes) does not allocate.
	ix.keyBuf = ix.keyBuf[:0]
	for _, s := range p {
		ix.keyBuf = append(append(ix.keyBuf, s...), 0)
	}
	if v, ok := ix.perms[string(ix.keyBuf)]; ok {
		return v
	}
	key := string(ix.keyBuf)
	ps := &permSet{granted: make([]string, len(p))}
	for i, s := range p {
		ps.granted[i] = ix.intern(s)
	}
	ps.limit(ix.ceiling)
	ix.perms[key] = ps
	return ps
}

// id and name return the slot's text. Inline, they are strings over the
// slot's own bytes, which are written once before the slot is published and
// never again, and live as long as the index.
func (s *slot) id() string {
	if s.text != "" {
		return s.text[:s.idLen]
	}
	return unsafe.String(&s.inline[0], int(s.idLen))
}

func (s *slot) name() string {
	if s.text != "" {
		return s.text[s.idLen:]
	}
	if s.nameLen == 0 {
		return ""
	}
	return unsafe.String(&s.inline[s.idLen], int(s.nameLen))
}

// fill writes the key into v for a validation answer.
func (s *slot) fill(v *domain.ValidKey, expires, lastUsed int64) {
	created := time.Unix(0, s.created).UTC()
	v.ID = s.id()
	v.OrganizationID = s.org
	v.Owner = domain.Owner{Type: domain.OwnerOrganization, ID: s.ownerID}
	if s.ownerUser {
		v.Owner.Type = domain.OwnerUser
	}
	v.Name = s.name()
	v.Permissions = *s.perms.Load().effective.Load()
	v.CreatedAt, v.UpdatedAt = created, created
	v.ExpiresAt, v.LastUsedAt = time.Time{}, time.Time{}
	if expires != 0 {
		v.ExpiresAt = time.Unix(0, expires).UTC()
	}
	if lastUsed != 0 {
		v.LastUsedAt = time.Unix(lastUsed, 0).UTC()
	}
}

// clock is a coarse clock, advanced every 100 ms, for last-used times:
// time.Now costs more than the rest of a validation. Expiry never uses it.
type clock struct {
	now  atomic.Int64 // unix seconds
	stop chan struct{}
	once sync.Once
}

func startClock() *clock {
	c := &clock{stop: make(chan struct{})}
	c.now.Store(time.Now().Unix())
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case now := <-t.C:
				c.now.Store(now.Unix())
			}
		}
	}()
	return c
}

func (c *clock) close() { c.once.Do(func() { close(c.stop) }) }

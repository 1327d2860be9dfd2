package projections

import (
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// index is the in-memory validation index, built for a million keys in a
// few hundred bytes each and lookups that take no lock.
//
// A table of 8-byte buckets, open addressing with linear probing, maps the
// first 32 bits of a key hash to a slot number; slots live in fixed-size
// chunks that never move. Each slot holds the key's current state (an
// immutable keyState, replaced as a whole by the projector) and its
// last-used time (written by validations). One writer, the projector,
// inserts and replaces; readers load atomically. Entries are never removed:
// a revoked key stays, marked revoked, so validation can say why. The table
// grows by building a bigger copy and swapping the pointer; readers of the
// old table still reach the same slots, so a revocation shows in both.
type index struct {
	table  atomic.Pointer[table]
	chunks atomic.Pointer[[]*slotChunk]
	count  uint32 // slots in use; written by the writer only

	// intern shares organization ids, owner ids and permission sets between
	// keys: with a million keys they repeat a lot. Writer only.
	strs  map[string]string
	perms map[string]*[]string
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

// slot holds one key: its current state and its last-used time (unix
// seconds).
type slot struct {
	state    atomic.Pointer[keyState]
	lastUsed atomic.Int64
}

// keyState is a compact, immutable form of a key: what validation needs,
// with strings interned or packed into one allocation. The obfuscated value
// is not kept: whoever validates holds the value and can derive it.
type keyState struct {
	hash    domain.KeyHash
	text    string // id + name
	org     string
	ownerID string
	perms   *[]string
	created int64 // unix nanos; also the last update of an active key
	expires int64 // unix nanos, 0: never
	idLen   uint8
	flags   uint8
}

const (
	flagOwnerUser = 1 << iota
	flagRevoked
)

const minTableSize = 1 << 10

func newIndex() *index {
	ix := &index{strs: map[string]string{}, perms: map[string]*[]string{}}
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

// countLoad returns how many slots are in use, for readers.
func (ix *index) countLoad() int { return int(atomic.LoadUint32(&ix.count)) }

func (ix *index) slotAt(n uint32) *slot {
	chunks := *ix.chunks.Load()
	return &chunks[n>>chunkBits][n&(chunkSize-1)]
}

// lookup finds the slot of a hash, or nil. Lock-free.
func (ix *index) lookup(h *domain.KeyHash) *slot {
	t := ix.table.Load()
	fp := fingerprint(h)
	// Start from other bits than the fingerprint's, so keys that share a
	// fingerprint do not also share a probe sequence.
	for i := binary.LittleEndian.Uint64(h[8:16]) & t.mask; ; i = (i + 1) & t.mask {
		b := t.buckets[i].Load()
		if b == 0 {
			return nil
		}
		if uint32(b>>32) == fp {
			s := ix.slotAt(uint32(b) - 1)
			if st := s.state.Load(); st.hash == *h {
				return s
			}
		}
	}
}

// put stores the state of a key, creating its slot when new. Writer only.
func (ix *index) put(k *domain.Key) *slot {
	st := ix.compact(k)
	if s := ix.lookup(&st.hash); s != nil {
		s.state.Store(st)
		return s
	}
	n := ix.count
	chunks := *ix.chunks.Load()
	if int(n>>chunkBits) == len(chunks) {
		grown := append(chunks[:len(chunks):len(chunks)], new(slotChunk))
		ix.chunks.Store(&grown)
	}
	s := ix.slotAt(n)
	s.state.Store(st)
	t := ix.table.Load()
	if (int(n)+1)*4 > len(t.buckets)*3 {
		t = ix.resize(t, len(t.buckets)*2)
	}
	insert(t, &st.hash, n)
	atomic.StoreUint32(&ix.count, n+1)
	return s
}

func insert(t *table, h *domain.KeyHash, n uint32) {
	b := uint64(fingerprint(h))<<32 | uint64(n+1)
	for i := binary.LittleEndian.Uint64(h[8:16]) & t.mask; ; i = (i + 1) & t.mask {
		if t.buckets[i].Load() == 0 {
			t.buckets[i].Store(b)
			return
		}
	}
}

func (ix *index) resize(old *table, size int) *table {
	t := newTable(size)
	for n := uint32(0); n < ix.count; n++ {
		insert(t, &ix.slotAt(n).state.Load().hash, n)
	}
	ix.table.Store(t)
	return t
}

// reserve sizes the table for n keys up front (loading at start-up).
func (ix *index) reserve(n int) {
	size := minTableSize
	for size*3 < n*4 {
		size *= 2
	}
	if t := ix.table.Load(); size > len(t.buckets) {
		ix.resize(t, size)
	}
}

func (ix *index) intern(s string) string {
	if v, ok := ix.strs[s]; ok {
		return v
	}
	s = strings.Clone(s)
	ix.strs[s] = s
	return s
}

func (ix *index) internPerms(p []string) *[]string {
	key := strings.Join(p, "\x00")
	if v, ok := ix.perms[key]; ok {
		return v
	}
	v := make([]string, len(p))
	for i, s := range p {
		v[i] = ix.intern(s)
	}
	ix.perms[key] = &v
	return &v
}

func (ix *index) compact(k *domain.Key) *keyState {
	st := &keyState{
		hash:    k.Hash,
		text:    k.ID + k.Name,
		idLen:   uint8(len(k.ID)),
		org:     ix.intern(k.OrganizationID),
		ownerID: ix.intern(k.Owner.ID),
		perms:   ix.internPerms(k.Permissions),
		created: k.CreatedAt.UnixNano(),
	}
	if k.Owner.Type == domain.OwnerUser {
		st.flags |= flagOwnerUser
	}
	if k.Status == domain.StatusRevoked {
		st.flags |= flagRevoked
	}
	if k.ExpiresAt != nil {
		st.expires = k.ExpiresAt.UnixNano()
	}
	return st
}

func (st *keyState) revoked() bool { return st.flags&flagRevoked != 0 }

func (st *keyState) id() string { return st.text[:st.idLen] }

func (st *keyState) fill(v *domain.ValidKey, lastUsed int64) {
	created := time.Unix(0, st.created).UTC()
	v.ID = st.text[:st.idLen]
	v.OrganizationID = st.org
	v.Owner = domain.Owner{Type: domain.OwnerOrganization, ID: st.ownerID}
	if st.flags&flagOwnerUser != 0 {
		v.Owner.Type = domain.OwnerUser
	}
	v.Name = st.text[st.idLen:]
	v.Permissions = *st.perms
	v.CreatedAt, v.UpdatedAt = created, created
	v.ExpiresAt, v.LastUsedAt = time.Time{}, time.Time{}
	if st.expires != 0 {
		v.ExpiresAt = time.Unix(0, st.expires).UTC()
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

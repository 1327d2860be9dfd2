package projections

import (
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// index is the in-memory validation index: an open-addressing hash table
// keyed by the key hash, with one writer (the projector) and lock-free
// readers. Entries are never removed (a revoked key stays, marked revoked,
// so validation can say why); a changed key gets a new entry value swapped
// in atomically. The table grows by building a bigger copy and swapping
// the pointer; readers holding the old table still see every entry they
// could see before, and the same *slot, so a revocation shows in both.
type index struct {
	table atomic.Pointer[table]
	count int // writer only

	// intern shares organization ids, owner ids and permission sets between
	// keys: with a million keys they repeat a lot. Writer only.
	strs  map[string]string
	perms map[string][]string
}

type table struct {
	buckets []bucket
	mask    uint64
}

// bucket pairs the first 8 bytes of a hash (0: empty) with its slot. The
// slot is stored before the fingerprint, so a reader that sees the
// fingerprint finds the slot.
type bucket struct {
	fp   atomic.Uint64
	slot atomic.Pointer[slot]
}

// slot holds one key: its current state, replaced as a whole on change, and
// its last-used time (unix seconds), written by validations.
type slot struct {
	state    atomic.Pointer[keyState]
	lastUsed atomic.Int64
}

// keyState is a compact, immutable form of a key: what validation needs,
// with strings interned or packed into one allocation.
type keyState struct {
	hash      domain.KeyHash
	text      string // id + obfuscated value + name, packed
	idEnd     uint16
	obfEnd    uint16
	org       string
	ownerID   string
	ownerUser bool
	revoked   bool
	perms     []string
	created   int64 // unix nanos
	updated   int64
	expires   int64 // 0: never
}

const minTableSize = 1 << 10

func newIndex() *index {
	ix := &index{strs: map[string]string{}, perms: map[string][]string{}}
	ix.table.Store(newTable(minTableSize))
	return ix
}

func newTable(size int) *table {
	return &table{buckets: make([]bucket, size), mask: uint64(size - 1)}
}

func fingerprint(h *domain.KeyHash) uint64 {
	fp := binary.LittleEndian.Uint64(h[:8])
	if fp == 0 {
		fp = 1 // 0 marks an empty bucket
	}
	return fp
}

// lookup finds the slot of a hash, or nil. Lock-free.
func (ix *index) lookup(h *domain.KeyHash) *slot {
	t := ix.table.Load()
	fp := fingerprint(h)
	for i := fp & t.mask; ; i = (i + 1) & t.mask {
		b := &t.buckets[i]
		f := b.fp.Load()
		if f == 0 {
			return nil
		}
		if f == fp {
			if s := b.slot.Load(); s != nil {
				if st := s.state.Load(); st != nil && st.hash == *h {
					return s
				}
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
	s := &slot{}
	s.state.Store(st)
	t := ix.table.Load()
	if (ix.count+1)*4 > len(t.buckets)*3 {
		t = ix.grow(t)
	}
	insert(t, fingerprint(&st.hash), s)
	ix.count++
	return s
}

func insert(t *table, fp uint64, s *slot) {
	for i := fp & t.mask; ; i = (i + 1) & t.mask {
		b := &t.buckets[i]
		if b.fp.Load() == 0 {
			b.slot.Store(s)
			b.fp.Store(fp)
			return
		}
	}
}

func (ix *index) grow(old *table) *table {
	t := newTable(len(old.buckets) * 2)
	for i := range old.buckets {
		b := &old.buckets[i]
		if fp := b.fp.Load(); fp != 0 {
			insert(t, fp, b.slot.Load())
		}
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
		nt := newTable(size)
		for i := range t.buckets {
			if fp := t.buckets[i].fp.Load(); fp != 0 {
				insert(nt, fp, t.buckets[i].slot.Load())
			}
		}
		ix.table.Store(nt)
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

func (ix *index) internPerms(p []string) []string {
	key := strings.Join(p, "\x00")
	if v, ok := ix.perms[key]; ok {
		return v
	}
	v := make([]string, len(p))
	for i, s := range p {
		v[i] = ix.intern(s)
	}
	ix.perms[key] = v
	return v
}

func (ix *index) compact(k *domain.Key) *keyState {
	st := &keyState{
		hash:      k.Hash,
		text:      k.ID + k.Obfuscated + k.Name,
		idEnd:     uint16(len(k.ID)),
		obfEnd:    uint16(len(k.ID) + len(k.Obfuscated)),
		org:       ix.intern(k.OrganizationID),
		ownerID:   ix.intern(k.Owner.ID),
		ownerUser: k.Owner.Type == domain.OwnerUser,
		revoked:   k.Status == domain.StatusRevoked,
		perms:     ix.internPerms(k.Permissions),
		created:   k.CreatedAt.UnixNano(),
		updated:   k.UpdatedAt.UnixNano(),
	}
	if k.ExpiresAt != nil {
		st.expires = k.ExpiresAt.UnixNano()
	}
	return st
}

func (st *keyState) validKey(lastUsed int64) domain.ValidKey {
	v := domain.ValidKey{
		ID:             st.text[:st.idEnd],
		OrganizationID: st.org,
		Owner:          domain.Owner{Type: domain.OwnerOrganization, ID: st.ownerID},
		Name:           st.text[st.obfEnd:],
		Permissions:    st.perms,
		Obfuscated:     st.text[st.idEnd:st.obfEnd],
		CreatedAt:      time.Unix(0, st.created).UTC(),
		UpdatedAt:      time.Unix(0, st.updated).UTC(),
	}
	if st.ownerUser {
		v.Owner.Type = domain.OwnerUser
	}
	if st.expires != 0 {
		v.ExpiresAt = time.Unix(0, st.expires).UTC()
	}
	if lastUsed != 0 {
		v.LastUsedAt = time.Unix(lastUsed, 0).UTC()
	}
	return v
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

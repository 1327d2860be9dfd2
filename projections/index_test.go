package projections

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// The index has one writer and lock-free readers: while the writer inserts
// (growing the table several times) and then revokes, every reader finds
// every key inserted before it looked, and never sees a revoked key active
// again.
func TestIndexConcurrentReadersDuringGrowthAndRevocation(t *testing.T) {
	ix := newIndex()
	const n = 20_000
	keys := make([]*domain.Key, n)
	for i := range keys {
		keys[i] = &domain.Key{ID: fmt.Sprintf("api_key_%026d", i), OrganizationID: "org_a", Owner: domain.Owner{Type: domain.OwnerOrganization, ID: "org_a"},
			Name: "k", Permissions: []string{"a:b"}, Hash: domain.HashKey(fmt.Sprint("value ", i)), Status: domain.StatusActive,
			CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0)}
	}
	var inserted, revoked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures atomic.Int64
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for j := r; ; j += 7 {
				select {
				case <-stop:
					return
				default:
				}
				ins, rev := int(inserted.Load()), int(revoked.Load())
				if ins == 0 {
					continue
				}
				i := j % ins
				s := ix.lookup(&keys[i].Hash)
				if s == nil {
					failures.Add(1)
					continue
				}
				if s.id() != keys[i].ID {
					failures.Add(1)
				}
				if i < rev && !s.revoked.Load() {
					failures.Add(1)
				}
			}
		}(r)
	}
	for i, k := range keys {
		ix.put(k)
		inserted.Store(int64(i + 1))
	}
	for i, k := range keys {
		rk := *k
		rk.Status = domain.StatusRevoked
		ix.put(&rk)
		revoked.Store(int64(i + 1))
	}
	close(stop)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d lookups saw a wrong state", f)
	}
	if ix.count.Load() != n {
		t.Fatalf("count %d, want %d (a revocation must replace, not add)", ix.count.Load(), n)
	}
	if got := len(ix.table.Load().buckets); got < n*4/3 {
		t.Fatalf("table of %d buckets for %d keys: load factor above 3/4", got, n)
	}
	var unknown domain.KeyHash
	if ix.lookup(&unknown) != nil {
		t.Fatal("found a hash that was never put")
	}
}

// Interning shares organization ids and permission sets between keys.
func TestIndexInterns(t *testing.T) {
	ix := newIndex()
	a := ix.put(&domain.Key{ID: "a", Hash: domain.HashKey("a"), OrganizationID: string([]byte("org_x")), Owner: domain.Owner{Type: domain.OwnerOrganization, ID: "org_x"}, Permissions: []string{"p:r", "p:w"}})
	b := ix.put(&domain.Key{ID: "b", Hash: domain.HashKey("b"), OrganizationID: string([]byte("org_x")), Owner: domain.Owner{Type: domain.OwnerOrganization, ID: "org_x"}, Permissions: []string{"p:r", "p:w"}})
	if a.perms.Load() != b.perms.Load() || a.org != b.org {
		t.Fatal("equal permission sets are not shared")
	}
	if len(ix.strs) != 3 {
		t.Fatalf("interned %d strings, want 3 (org and two permissions)", len(ix.strs))
	}
}

// Ids and names are kept inline when they fit and spill to a string when
// they do not; either way they read back exactly.
func TestIndexTextInlineAndSpilled(t *testing.T) {
	ix := newIndex()
	for i, name := range []string{"", "ci", "a name that is exactly long enough..", "ünïcødé ✓ " + string(make([]byte, 20)), string(make([]byte, 200))} {
		k := &domain.Key{ID: fmt.Sprintf("api_key_%026d", i), Name: name, Hash: domain.HashKey(fmt.Sprint(i)), Permissions: []string{}}
		s := ix.put(k)
		if got := ix.lookup(&k.Hash); got != s || got.id() != k.ID || got.name() != name {
			t.Fatalf("key %d: read back id %q name %q, want %q %q", i, got.id(), got.name(), k.ID, name)
		}
		var v domain.ValidKey
		s.fill(&v, 0, 0)
		if v.ID != k.ID || v.Name != name {
			t.Fatalf("key %d: validation answers %q %q", i, v.ID, v.Name)
		}
	}
}

package projections

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/keyledger/keyledger/domain"
)

// TestBulkBuild: a bulk build (no write-ahead log) equals a projection fed
// incrementally, and what CatchUp and Close return from is on disk: a crash
// right after either loses nothing.
func TestBulkBuild(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 42))
	ev := randomLedger(r, 1500).events
	target := ev[len(ev)-300].Seq

	live, _ := openMem(t)
	apply(t, live, ev[:target])

	fs := vfs.NewCrashableMem()
	b, err := Open(Config{Dir: "b", FS: fs, Now: fixedClock, Bulk: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.CatchUp(ctx, &memSource{events: ev, runs: func() int { return 50 }}, target); err != nil {
		t.Fatalf("CatchUp: %v", err)
	}
	got := b.Applied()
	if got < target || got >= ev[len(ev)-1].Seq {
		t.Fatalf("Applied() = %d after CatchUp(%d) in runs of 50", got, target)
	}
	// CatchUp applies whole runs, so it may go past the target.
	apply(t, live, ev[target:got])
	crashed := reopenCrashed(t, fs)
	if crashed.Applied() != got {
		t.Fatalf("after a crash following CatchUp: Applied() = %d, want %d", crashed.Applied(), got)
	}
	if d, want := dump(t, crashed), dump(t, live); d != want {
		t.Fatalf("after a crash following CatchUp, the bulk build differs from the live projection:\n%s\nwant\n%s", d, want)
	}
	closeProj(t, crashed)

	// Applied after CatchUp, without a log: Close flushes it.
	apply(t, b, ev[got:])
	apply(t, live, ev[got:])
	closeProj(t, b)
	crashed = reopenCrashed(t, fs)
	if d, want := dump(t, crashed), dump(t, live); d != want {
		t.Fatalf("after a crash following Close, the bulk build differs from the live projection:\n%s\nwant\n%s", d, want)
	}
	for n := 1; n <= 20; n++ {
		_, want := live.Validate(fixedValue(n))
		if _, reason := crashed.Validate(fixedValue(n)); reason != want {
			t.Errorf("key %d: Validate = %q, want %q", n, reason, want)
		}
	}
}

// reopenCrashed opens, without Bulk, what fs would hold after a crash now.
func reopenCrashed(t *testing.T, fs *vfs.MemFS) *Projection {
	t.Helper()
	return openAt(t, "b", fs.CrashClone(vfs.CrashCloneCfg{}))
}

// TestOpenDropsOldHashIndex: the index by hash earlier versions wrote is
// deleted on open, so that their projection holds what a rebuild holds.
func TestOpenDropsOldHashIndex(t *testing.T) {
	fs := vfs.NewMem()
	p := openAt(t, "p", fs)
	apply(t, p, scenario(fixedValue).events)
	want := dump(t, p)
	for n := 1; n <= 8; n++ {
		h := domain.HashKey(fixedValue(n))
		if err := p.db.Set(append([]byte(prefixOldHash), h[:]...), []byte(keyID(n)), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(dump(t, p), `"h/`) {
		t.Fatal("the old index was not written")
	}
	closeProj(t, p)
	q := openAt(t, "p", fs)
	if got := dump(t, q); got != want {
		t.Fatalf("Dump after reopening a projection with the old index:\n%s\nwant\n%s", got, want)
	}
}

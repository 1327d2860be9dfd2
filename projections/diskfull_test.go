//go:build linux

package projections

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/internal/ledgertest"
)

// On a full disk Pebble's commit cannot fail and carry on (it calls
// Fatalf); OnDiskFull is called first, and the space it frees (a ballast)
// lets the retried write through, so the projector keeps applying.
func TestOnDiskFullLetsTheWriteThrough(t *testing.T) {
	mnt := ledgertest.Tmpfs(t, 24<<20)
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	p, err := Open(Config{Dir: filepath.Join(mnt, "projection"), Now: fixedClock, OnDiskFull: func() {
		calls.Add(1)
		_ = os.Remove(ballast)
	}})
	if err != nil {
		t.Fatal(err)
	}
	hung := false
	t.Cleanup(func() {
		if !hung {
			p.Close()
		}
	})
	ledgertest.FillDisk(t, mnt)

	// Without the retry Pebble stalls for good on the full disk: the
	// writes run on their own goroutine so that a stall fails the test.
	l := &ledger{}
	done := make(chan error, 1)
	go func() {
		for n := 1; calls.Load() == 0; n++ {
			if n > 200000 {
				done <- fmt.Errorf("200000 keys applied to a full disk without a disk-full call")
				return
			}
			// Sizeable names, so that the log outgrows what Pebble set aside.
			e := l.create(keySpec{n: n, org: "org_full", name: fmt.Sprintf("%0500d", n), perms: []string{"projects:read"}, value: fixedValue(n)})
			if err := p.Apply([]domain.Event{e}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		hung = true
		t.Fatal("the projection stalled on the full disk")
	}
	last := len(l.events)
	k, err := p.Key(t.Context(), keyID(last))
	if err != nil || k.ID != keyID(last) {
		t.Fatalf("the key applied across the full disk: %v %v", k, err)
	}
}

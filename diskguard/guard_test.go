//go:build linux

package diskguard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/internal/ledgertest"
)

func ballastSize(t *testing.T, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, BallastName))
	if errors.Is(err, os.ErrNotExist) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestReserveRefusesCommandsWhileTheDiskIsFull(t *testing.T) {
	mnt := ledgertest.Tmpfs(t, 16<<20)
	g := New(Config{Dir: mnt, MinFree: 4 << 20, Ballast: 2 << 20})
	if got := ballastSize(t, mnt); got != 2<<20 {
		t.Fatalf("ballast of %d bytes, want %d", got, 2<<20)
	}
	if err := g.Check(); err != nil {
		t.Fatalf("Check on an empty disk: %v", err)
	}
	filler := ledgertest.FillDisk(t, mnt)
	if err := g.Check(); !errors.Is(err, domain.ErrStorageFull) {
		t.Fatalf("Check on a full disk: %v, want storage_full", err)
	}
	if got := ballastSize(t, mnt); got != 2<<20 {
		t.Fatalf("the reserve alone gave up the ballast: %d bytes", got)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := g.Check(); err != nil {
		t.Fatalf("Check once the space is freed: %v", err)
	}
}

func TestBallastIsGivenUpAndLaidAgain(t *testing.T) {
	mnt := ledgertest.Tmpfs(t, 16<<20)
	g := New(Config{Dir: mnt, MinFree: 1 << 20, Ballast: 4 << 20})
	filler := ledgertest.FillDisk(t, mnt)
	g.DiskFull() // a store met the full disk
	if got := ballastSize(t, mnt); got != -1 {
		t.Fatalf("ballast still there (%d bytes) after DiskFull", got)
	}
	if err := g.Check(); !errors.Is(err, domain.ErrStorageFull) {
		t.Fatalf("Check with the ballast spent: %v, want storage_full", err)
	}
	// The store took the ballast's space; a look with the disk still full
	// changes nothing.
	if err := os.Mkdir(filepath.Join(mnt, "more"), 0o700); err != nil {
		t.Fatal(err)
	}
	ledgertest.FillDisk(t, filepath.Join(mnt, "more"))
	g.look(context.Background())
	if err := g.Check(); !errors.Is(err, domain.ErrStorageFull) {
		t.Fatalf("Check with the disk still full: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(mnt, "more")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	g.look(context.Background())
	if got := ballastSize(t, mnt); got != 4<<20 {
		t.Fatalf("ballast of %d bytes once space is back, want %d", got, 4<<20)
	}
	if err := g.Check(); err != nil {
		t.Fatalf("Check once space is back: %v", err)
	}
}

// A store stopped by a write error refuses commands (the append that met it
// is reported as storage_full, not unavailable) and is restarted only once
// there is room again.
func TestStalledStoreIsRestartedWhenSpaceIsBack(t *testing.T) {
	mnt := ledgertest.Tmpfs(t, 32<<20)
	var werr error
	restarts := 0
	g := New(Config{Dir: mnt,
		Stalled: func() error { return werr },
		Recover: func(context.Context) error { restarts++; werr = nil; return nil },
	})
	if err := g.Check(); err != nil {
		t.Fatalf("Check with the reserve off: %v", err)
	}
	timeout := fmt.Errorf("eventstore: append: timeout: %w", domain.ErrUnavailable)
	if err := g.Explain(timeout); err != timeout {
		t.Fatalf("Explain with no write error: %v", err)
	}
	filler := ledgertest.FillDisk(t, mnt)
	werr = errors.New("write error: no space left on device")
	if err := g.Explain(timeout); !errors.Is(err, domain.ErrStorageFull) {
		t.Fatalf("Explain after a write error: %v, want storage_full", err)
	}
	if err := g.Check(); !errors.Is(err, domain.ErrStorageFull) {
		t.Fatalf("Check after a write error: %v, want storage_full", err)
	}
	g.look(context.Background())
	if restarts != 0 {
		t.Fatal("restarted with the disk still full")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	g.look(context.Background())
	if restarts != 1 {
		t.Fatalf("%d restarts once space is back, want 1", restarts)
	}
	if err := g.Check(); err != nil {
		t.Fatalf("Check after the restart: %v", err)
	}
}

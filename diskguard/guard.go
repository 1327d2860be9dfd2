package diskguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// BallastName is the ballast file's name in the data folder.
const BallastName = "ballast"

// restartFree is the least free space a stopped store is restarted with:
// recovering JetStream's streams writes, and a restart on a full disk
// leaves them unrecovered.
const restartFree = 8 << 20

// Config configures a Guard.
type Config struct {
	// Dir is the data folder; its filesystem is the one watched, and the
	// ballast lives in it.
	Dir string
	// MinFree is the reserve: commands are refused while the filesystem has
	// less free space than this. 0 turns the check off (a write error still
	// refuses commands until space is back).
	MinFree uint64
	// Ballast is the size of Dir/ballast, space held back for the stores
	// to finish their writes when the disk fills up under them; 0 for none.
	Ballast uint64
	// Interval is how often Run looks at the disk; default 1s.
	Interval time.Duration
	// Stalled reports a write error that stopped a store (the embedded
	// JetStream stops storing after one), or nil. Nil when there is no such
	// store to watch.
	Stalled func() error
	// Recover starts the recovery of what Stalled reported, once space is
	// back (keyledger restarts its service); Run calls it again while
	// Stalled still reports.
	Recover func(context.Context) error
	Log     *slog.Logger
}

// Guard watches the data folder's free space. Check is safe for concurrent
// use; Run is one goroutine.
type Guard struct {
	cfg     Config
	ballast string
	// stalled: a store met a write error and waits for Recover.
	stalled atomic.Bool
	// spent: the ballast was given up to a store that met a full disk.
	spent atomic.Bool
	low   bool // Run's view: below MinFree at the last look
}

// New returns a guard and lays down the ballast when there is room for it.
func New(cfg Config) *Guard {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{cfg: cfg, ballast: filepath.Join(cfg.Dir, BallastName)}
	if cfg.Ballast > 0 {
		if err := g.layBallast(); err != nil {
			cfg.Log.Warn("diskguard: no ballast yet", "err", err)
		}
	} else {
		// A ballast left by an earlier run with a ballast is space for nothing.
		_ = os.Remove(g.ballast)
	}
	return g
}

// Check returns nil when a command may write: no store is stopped by a
// write error, the ballast is in place, and the free space is above the
// reserve. Otherwise it returns an error that is domain.ErrStorageFull.
func (g *Guard) Check() error {
	if g.stalled.Load() {
		return fmt.Errorf("diskguard: a store stopped on a write error; commands resume once space is freed: %w", domain.ErrStorageFull)
	}
	if g.spent.Load() {
		return fmt.Errorf("diskguard: the disk filled up and the ballast is spent: %w", domain.ErrStorageFull)
	}
	if g.cfg.MinFree == 0 {
		return nil
	}
	free, err := freeSpace(g.cfg.Dir)
	if err != nil {
		return nil // cannot tell: the write itself will say
	}
	if free < g.cfg.MinFree {
		return fmt.Errorf("diskguard: %d bytes free, below the %d reserved: %w", free, g.cfg.MinFree, domain.ErrStorageFull)
	}
	return nil
}

// Explain turns a failed write's error into domain.ErrStorageFull when a
// store has stopped on a write error: the embedded JetStream does not
// answer a publish it failed to store, so the caller saw a timeout.
func (g *Guard) Explain(err error) error {
	if err == nil || g.cfg.Stalled == nil || !errors.Is(err, domain.ErrUnavailable) {
		return err
	}
	if werr := g.cfg.Stalled(); werr != nil {
		g.markStalled(werr)
		return fmt.Errorf("diskguard: %v: %w", werr, domain.ErrStorageFull)
	}
	return err
}

// markStalled records that a store stopped on a write error, logging it
// once, whether an append or Run saw it first.
func (g *Guard) markStalled(err error) {
	if !g.stalled.Swap(true) {
		g.cfg.Log.Error("diskguard: a store stopped on a write error; commands are refused until space is freed", "err", err)
	}
}

// DiskFull is called by a store that met a full disk, before it retries
// its write: the ballast is removed to make room for that retry, and
// commands are refused until there is room for the ballast again.
func (g *Guard) DiskFull() {
	if g.spent.Swap(true) {
		return
	}
	err := os.Remove(g.ballast)
	g.cfg.Log.Error("diskguard: the disk is full; ballast released, commands are refused until space is freed", "ballast_removed", err == nil)
}

// Run looks at the disk every Interval until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	for {
		g.look(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *Guard) look(ctx context.Context) {
	if g.cfg.Stalled != nil && !g.stalled.Load() {
		if err := g.cfg.Stalled(); err != nil {
			g.markStalled(err)
		}
	}
	free, err := freeSpace(g.cfg.Dir)
	if err != nil {
		return
	}
	if low := g.cfg.MinFree > 0 && free < g.cfg.MinFree; low != g.low {
		g.low = low
		if low {
			g.cfg.Log.Warn("diskguard: free space below the reserve; commands are refused", "free", free, "reserve", g.cfg.MinFree)
		} else if !g.stalled.Load() && !g.spent.Load() {
			g.cfg.Log.Info("diskguard: free space above the reserve again; commands are accepted", "free", free, "reserve", g.cfg.MinFree)
		}
	}
	missing := g.cfg.Ballast > 0 && !g.ballastInPlace()
	need := g.cfg.MinFree
	if need < restartFree && g.stalled.Load() {
		need = restartFree
	}
	if missing {
		need += g.cfg.Ballast
	}
	if free < need || (!g.stalled.Load() && !g.spent.Load() && !missing) {
		return
	}
	if g.stalled.Load() {
		if err := g.cfg.Recover(ctx); err != nil {
			g.cfg.Log.Error("diskguard: recovery after a write error failed; trying again", "err", err)
			return
		}
		if g.cfg.Stalled() != nil {
			return // recovering: look again next time
		}
		g.stalled.Store(false)
		g.cfg.Log.Info("diskguard: space is back and the ledger recovered; commands are accepted")
	}
	if missing {
		if err := g.layBallast(); err != nil {
			g.cfg.Log.Warn("diskguard: cannot lay the ballast", "err", err)
		}
	}
	if g.spent.Swap(false) {
		g.cfg.Log.Info("diskguard: space is back; commands are accepted", "free", free)
	}
}

func (g *Guard) ballastInPlace() bool {
	fi, err := os.Stat(g.ballast)
	return err == nil && uint64(fi.Size()) >= g.cfg.Ballast
}

// layBallast makes Dir/ballast Ballast bytes long, with its blocks
// allocated, if the free space allows it and the reserve.
func (g *Guard) layBallast() error {
	if g.ballastInPlace() {
		return nil
	}
	free, err := freeSpace(g.cfg.Dir)
	if err != nil {
		return err
	}
	if free < g.cfg.MinFree+g.cfg.Ballast {
		return fmt.Errorf("diskguard: %d bytes free, not enough for a %d-byte ballast above the %d reserved", free, g.cfg.Ballast, g.cfg.MinFree)
	}
	f, err := os.OpenFile(g.ballast, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("diskguard: %w", err)
	}
	err = allocate(f, int64(g.cfg.Ballast))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(g.ballast)
		return fmt.Errorf("diskguard: ballast: %w", err)
	}
	return nil
}

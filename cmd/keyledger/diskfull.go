package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/keyledger/keyledger/diskguard"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

// guardedLedger is the ledger as commands see it: an append is refused
// (507 storage_full) before it is tried while the disk is full, and one
// the embedded JetStream failed to store on a full disk says so instead of
// timing out as unavailable.
type guardedLedger struct {
	*eventstore.Store
	guard *diskguard.Guard
}

func (l guardedLedger) Append(ctx context.Context, batch []domain.Append) (domain.AppendResult, error) {
	if err := l.guard.Check(); err != nil {
		return domain.AppendResult{}, err
	}
	res, err := l.Store.Append(ctx, batch)
	return res, l.guard.Explain(err)
}

// errRestart ends Run so that serve starts the service again, in the same
// process: the embedded server stops storing after a write error until it
// starts anew.
var errRestart = errors.New("restart to recover the embedded JetStream after a write error")

// newDiskGuard watches the data folder. On the embedded server it also
// watches JetStream for a write error and, once space is back, has the
// service restart (restart is signalled); an external NATS server looks
// after its own disk.
func (m *Main) newDiskGuard(l *ledger, restart chan<- struct{}) *diskguard.Guard {
	cfg := diskguard.Config{Dir: m.Config.Data, MinFree: m.Config.MinFree, Ballast: m.Config.Ballast, Log: m.log}
	if l.ns != nil {
		cfg.Stalled = l.ns.WriteError
		cfg.Recover = func(context.Context) error {
			select {
			case restart <- struct{}{}:
			default: // already asked
			}
			return nil
		}
	}
	return diskguard.New(cfg)
}

// parseSize reads a size in bytes: a number, optionally followed by KiB,
// MiB or GiB (or KB, MB, GB, as powers of 1000).
func parseSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := strings.TrimSpace(s), uint64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || (n > 0 && n*mult/mult != n) {
		return 0, fmt.Errorf("%q is not a size (e.g. 64MiB, 1GiB, 0)", s)
	}
	return n * mult, nil
}

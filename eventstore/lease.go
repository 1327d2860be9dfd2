package eventstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket is the key-value bucket of the fleet's leases.
const LeaseBucket = "KEYLEDGER_LEASES"

// Lease is one holder at a time across the fleet for a job (the sealer),
// kept in a JetStream key-value bucket whose entries expire after ttl: the
// holder renews every ttl/3; when it dies, its entry expires and another
// node takes the lease. Two holders can overlap by at most ttl/3 (a holder
// cut off learns it lost the lease at its next renewal), so what a lease
// guards must also be safe against a second writer on its own (the
// checkpoint stream's expected sequence).
type Lease struct {
	kv     jetstream.KeyValue
	name   string
	holder string
	ttl    time.Duration
	log    *slog.Logger

	mu      sync.Mutex
	rev     uint64    // the entry's revision while held; 0: not held
	renewed time.Time // last successful create or renewal
}

// OpenLease opens (creating the bucket if needed) the lease name, to be
// held as holder.
func OpenLease(ctx context.Context, nc *nats.Conn, name, holder string, ttl time.Duration, replicas int, log *slog.Logger) (*Lease, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kv, err := askAgain(ctx, 5*time.Second, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: LeaseBucket, Description: "keyledger: which node runs a fleet-wide job (the sealer)",
			History: 1, TTL: ttl, Storage: jetstream.FileStorage, Replicas: replicasFor(nc, replicas),
		})
	})
	if err != nil {
		return nil, mapErr("lease bucket", err)
	}
	return &Lease{kv: kv, name: name, holder: holder, ttl: ttl, log: log}, nil
}

// Held reports whether this node holds the lease: it took or renewed it
// less than ttl ago.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev != 0 && time.Since(l.renewed) < l.ttl
}

// Holder returns who holds the lease according to the bucket, "" if nobody.
func (l *Lease) Holder(ctx context.Context) (string, error) {
	e, err := l.kv.Get(ctx, l.name)
	if err == jetstream.ErrKeyNotFound {
		return "", nil
	}
	if err != nil {
		return "", mapErr("lease", err)
	}
	return string(e.Value()), nil
}

// Run takes the lease when it is free and renews it while held, until ctx
// ends; then it gives the lease up, so that another node takes it at once.
func (l *Lease) Run(ctx context.Context) {
	every := max(l.ttl/3, 10*time.Millisecond)
	for {
		l.step(ctx)
		select {
		case <-ctx.Done():
			l.release()
			return
		case <-time.After(every):
		}
	}
}

func (l *Lease) step(ctx context.Context) {
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, l.ttl/3+time.Second)
	defer cancel()
	var (
		next uint64
		err  error
	)
	if rev == 0 {
		next, err = l.kv.Create(rctx, l.name, []byte(l.holder))
	} else {
		next, err = l.kv.Update(rctx, l.name, []byte(l.holder), rev)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		if rev == 0 {
			l.log.Info("eventstore: lease taken", "lease", l.name, "holder", l.holder)
		}
		l.rev, l.renewed = next, time.Now()
	case rev != 0:
		l.log.Warn("eventstore: lease lost", "lease", l.name, "err", err)
		l.rev = 0
	}
}

func (l *Lease) release() {
	l.mu.Lock()
	rev := l.rev
	l.rev = 0
	l.mu.Unlock()
	if rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.kv.Delete(ctx, l.name, jetstream.LastRevision(rev)); err != nil {
		l.log.Warn("eventstore: lease not given up; it expires", "lease", l.name, "err", err)
	}
}

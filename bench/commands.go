package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections"
	"github.com/keyledger/keyledger/schemas"
)

// The commands scenario's fixtures: the organization keys are created in,
// the catalogue they draw from, and the raw stream the reference appends to.
const (
	benchOrg       = "org_bench"
	rawStreamName  = "BENCHRAW"
	rawSubjectRoot = "benchraw"
	// The floor rows' stream: raw appends to a stream one reader follows.
	readStreamName  = "BENCHREAD"
	readSubjectRoot = "benchread"
	// opTimeout bounds one append of the reference, as Store.Append bounds
	// one append of the ledger when its context has no deadline.
	opTimeout = 5 * time.Second
)

var benchPerms = []string{"projects:read"}

// rig is the ledger assembled the way `keyledger serve` assembles it: an
// embedded JetStream server (fsync on every write), the ledger stream, the
// projection with its projector running, and the Service.
type rig struct {
	ns    *eventstore.Embedded
	nc    *nats.Conn
	store *eventstore.Store
	proj  *projections.Projection
	svc   *domain.Service

	stopProj context.CancelFunc
	projDone chan struct{}
}

// openRig starts a ledger in dir, with the projection, its projector and
// the Service when withProjector is set. failed, when not nil, is called
// with the projector's error if it stops on one.
func openRig(ctx context.Context, dir string, log *slog.Logger, withProjector bool, failed context.CancelCauseFunc) (r *rig, err error) {
	r = &rig{}
	defer func() {
		if err != nil {
			_ = r.close()
			r = nil
		}
	}()
	if r.ns, err = eventstore.StartEmbedded(eventstore.EmbeddedConfig{Dir: filepath.Join(dir, "nats")}, log); err != nil {
		return r, err
	}
	if r.nc, err = eventstore.ConnectEmbedded(r.ns); err != nil {
		return r, err
	}
	if r.store, err = eventstore.Open(ctx, r.nc, eventstore.Config{}); err != nil {
		return r, err
	}
	if !withProjector {
		return r, nil
	}
	if r.proj, err = projections.Open(projections.Config{Dir: filepath.Join(dir, "projection"), Log: log}); err != nil {
		return r, err
	}
	r.svc = domain.NewService(domain.ServiceConfig{
		Ledger: r.store, View: r.proj, KeyPrefix: domain.PrefixLive, NewID: eventstore.NewID,
		ReplayWindow: 2 * time.Minute,
	})
	runCtx, stop := context.WithCancel(context.Background())
	r.stopProj, r.projDone = stop, make(chan struct{})
	go func() {
		defer close(r.projDone)
		if err := r.proj.Run(runCtx, r.store); err != nil && failed != nil {
			failed(fmt.Errorf("projector stopped: %w", err))
		}
	}()
	return r, nil
}

// close stops the projector, closes the projection and the connection, and
// shuts the server down, in that order.
func (r *rig) close() error {
	var errs []error
	if r.stopProj != nil {
		r.stopProj()
		<-r.projDone
		r.stopProj = nil
	}
	if r.proj != nil {
		if err := r.proj.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close projection: %w", err))
		}
		r.proj = nil
	}
	if r.nc != nil {
		r.nc.Close()
		r.nc = nil
	}
	if r.ns != nil {
		r.ns.Shutdown()
		r.ns.WaitForShutdown()
		r.ns = nil
	}
	return errors.Join(errs...)
}

func logOf(o Options) *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.New(slog.DiscardHandler)
}

// drive runs op on workers goroutines until d has passed (d <= 0: no time
// limit) or op reports that it has nothing left to do, and returns how many
// operations were done, how long it took, and each operation's latency. A
// failing op stops every worker; the first error is returned.
func drive(ctx context.Context, workers int, d time.Duration, op func(ctx context.Context, w int) (bool, error)) (Sample, error) {
	workers = max(workers, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		lats     = make([][]time.Duration, workers)
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && (d <= 0 || time.Now().Before(deadline)) {
				t := time.Now()
				did, err := op(ctx, w)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				if !did {
					return
				}
				lats[w] = append(lats[w], time.Since(t))
			}
		}()
	}
	wg.Wait()
	s := Sample{Elapsed: time.Since(start)}
	if firstErr != nil {
		return s, firstErr
	}
	// Only the caller's context can have ended here.
	if err := ctx.Err(); err != nil {
		return s, err
	}
	n := 0
	for _, l := range lats {
		n += len(l)
	}
	s.Latencies = make([]time.Duration, 0, n)
	for _, l := range lats {
		s.Latencies = append(s.Latencies, l...)
	}
	s.Ops = int64(n)
	return s, nil
}

// rawAppend is one aggregate on the reference stream: the subjects its
// messages match and the sequence of its last one.
type rawAppend struct {
	aggregate string // rawSubjectRoot.<org>.<key id>
	seq       uint64
}

// rawPublish appends one message to the reference stream, as Store.Append
// appends an event to the ledger: on the subject <aggregate>.<eventType>,
// expecting the last sequence of the subjects <aggregate>.> (the design's
// per-aggregate optimistic concurrency) to be expected, with a message id
// and the per-call timeout Store.Append uses.
func rawPublish(ctx context.Context, js jetstream.JetStream, aggregate, eventType string, expected uint64, body []byte) (uint64, error) {
	m := nats.NewMsg(aggregate + "." + eventType)
	m.Data = body
	m.Header.Set(schemas.HeaderMsgID, eventstore.NewID("event_"))
	m.Header.Set(schemas.HeaderExpectedLastSubjSeq, strconv.FormatUint(expected, 10))
	m.Header.Set(schemas.HeaderExpectedLastSubjSeqSubj, aggregate+".>")
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("raw append to %s: %w", m.Subject, err)
	}
	return ack.Sequence, nil
}

// sampleBodies encodes a realistic api_key.created and api_key.revoked, as
// the ledger stores them, for the reference's message bodies. ledgerSubject
// gives, for a reference subject (<root>.<org>.<aggregate>.<event type>),
// the ledger subject its body was encoded for, so that a reader can decode
// it as a ledger event.
func sampleBodies() (created, revoked []byte, ledgerSubject func(string) string, err error) {
	v, err := domain.GenerateKey(domain.PrefixLive)
	if err != nil {
		return nil, nil, nil, err
	}
	id := eventstore.NewID("api_key_")
	now := time.Now().UTC()
	createdSubj, created, err := eventstore.Encode(domain.Event{
		ID: eventstore.NewID("event_"), OrganizationID: benchOrg, AggregateID: id, Actor: domain.Admin(), CreatedAt: now,
		Data: domain.KeyCreated{KeyID: id, Name: "bench", Owner: domain.Owner{Type: domain.OwnerOrganization, ID: benchOrg},
			Permissions: benchPerms, Hash: domain.HashKey(v), Obfuscated: domain.ObfuscateKey(v)},
	})
	if err != nil {
		return nil, nil, nil, err
	}
	revokedSubj, revoked, err := eventstore.Encode(domain.Event{
		ID: eventstore.NewID("event_"), OrganizationID: benchOrg, AggregateID: id, Actor: domain.Admin(), CreatedAt: now,
		Data: domain.KeyRevoked{KeyID: id, Reason: domain.ReasonRequested},
	})
	ledgerSubject = func(subject string) string {
		if strings.HasSuffix(subject, "."+schemas.EventAPIKeyRevoked) {
			return revokedSubj
		}
		return createdSubj
	}
	return created, revoked, ledgerSubject, err
}

// commands measures creates and revokes through the Service, with the
// ledger's durability (fsync on every write) and the wait for this node's
// projection, against raw JetStream appends with the same per-subject
// expected sequence to a stream with the same settings on the same server.
func commands(ctx context.Context, o Options, p Progress) (_ []Result, err error) {
	dir := filepath.Join(o.Dir, "commands")
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", dir, rerr)
		}
	}()
	// A projector that stops on an error ends the rounds with its cause.
	ctx, failed := context.WithCancelCause(ctx)
	defer failed(nil)
	withCause := func(err error) error {
		if err == nil {
			return nil
		}
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && ctx.Err() != nil {
			return fmt.Errorf("%w (%v)", cause, err)
		}
		return err
	}
	if p != nil {
		p("starting the ledger", 0, phases)
	}
	r, err := openRig(ctx, dir, logOf(o), true, failed)
	if err != nil {
		return nil, fmt.Errorf("start the ledger: %w", err)
	}
	defer func() {
		if cerr := r.close(); cerr != nil && err == nil {
			err = fmt.Errorf("shut the ledger down: %w", cerr)
		}
	}()
	admin := domain.Admin()
	if _, err := r.svc.SetCatalogue(ctx, admin, benchPerms); err != nil {
		return nil, withCause(fmt.Errorf("set the catalogue: %w", err))
	}

	js, err := jetstream.New(r.nc)
	if err != nil {
		return nil, fmt.Errorf("raw jetstream: %w", err)
	}
	rawCfg := eventstore.StreamConfig(eventstore.Config{Stream: rawStreamName})
	rawCfg.Description = "keyledger bench: raw appends, the ledger's settings"
	rawCfg.Subjects = []string{rawSubjectRoot + ".>"}
	if _, err := js.CreateStream(ctx, rawCfg); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", rawStreamName, err)
	}
	// The floor rows append to a stream of their own that one reader
	// follows the whole time, as the projector follows the ledger.
	readCfg := rawCfg
	readCfg.Name, readCfg.Description = readStreamName, "keyledger bench: raw appends to a stream with a reader"
	readCfg.Subjects = []string{readSubjectRoot + ".>"}
	readStream, err := js.CreateStream(ctx, readCfg)
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", readStreamName, err)
	}
	createdBody, revokedBody, ledgerSubject, err := sampleBodies()
	if err != nil {
		return nil, fmt.Errorf("sample events: %w", err)
	}
	stopReader, err := follow(ctx, readStream, ledgerSubject)
	if err != nil {
		return nil, fmt.Errorf("follow stream %s: %w", readStreamName, err)
	}
	defer func() {
		if rerr := stopReader(); rerr != nil && err == nil {
			err = fmt.Errorf("the floor's reader of %s: %w", readStreamName, rerr)
		}
	}()
	workers := max(o.Conns, 1)

	// What a create side appends is what its revoke side revokes.
	keys, raws := &pool[string]{}, &pool[rawAppend]{}
	createKey := func(ctx context.Context) (string, error) {
		c, err := r.svc.CreateKey(ctx, admin, domain.CreateKey{OrganizationID: benchOrg, Name: "bench", Permissions: benchPerms}, "")
		if err != nil {
			return "", fmt.Errorf("create key: %w", err)
		}
		return c.Key.ID, nil
	}
	rawCreateOn := func(root string) func(context.Context) (rawAppend, error) {
		return func(ctx context.Context) (rawAppend, error) {
			agg := root + "." + benchOrg + "." + eventstore.NewID("api_key_")
			seq, err := rawPublish(ctx, js, agg, schemas.EventAPIKeyCreated, 0, createdBody)
			return rawAppend{agg, seq}, err
		}
	}
	rawCreate, readCreate := rawCreateOn(rawSubjectRoot), rawCreateOn(readSubjectRoot)
	refC, subjC, err := Alternate(ctx, o, phase(p, 1, phases), "creates",
		"raw jetstream append", createSide(workers, raws, rawCreate, withCause),
		"keyledger create", createSide(workers, keys, createKey, withCause))
	if err != nil {
		return nil, withCause(err)
	}
	create := Result{
		Scenario: "commands-create", Subject: subjC, Reference: refC, Ratio: ratio(subjC.OpsPerSec, refC.OpsPerSec),
		RatioOf: "creates/s ÷ raw JetStream appends/s", Target: "≥ 0.90×",
		Notes: []string{fmt.Sprintf("create p50 %.3f ms, p99 %.3f ms (includes the wait for the projection); raw append p50 %.3f ms, p99 %.3f ms; %d workers, fsync on every write",
			subjC.P50Ms, subjC.P99Ms, refC.P50Ms, refC.P99Ms, workers)},
	}
	create.Met = Met(create.Ratio >= 0.9)
	create.Notes = append(create.Notes, roundRatiosNote(subjC, refC))

	revokeKey := func(ctx context.Context, id string) error {
		if _, err := r.svc.RevokeKey(ctx, admin, domain.RevokeKey{KeyID: id, Reason: domain.ReasonRequested}); err != nil {
			return fmt.Errorf("revoke key %s: %w", id, err)
		}
		return nil
	}
	rawRevoke := func(ctx context.Context, a rawAppend) error {
		_, err := rawPublish(ctx, js, a.aggregate, schemas.EventAPIKeyRevoked, a.seq, revokedBody)
		return err
	}
	// Each revoke round first tops its pool up, untimed, to what it may
	// take at the fastest rate seen so far (the creates' to begin with).
	refR, subjR, err := Alternate(ctx, o, phase(p, 2, phases), "revokes",
		"raw jetstream append, existing subject", revokeSide(workers, raws, fastest(refC), rawCreate, rawRevoke, withCause),
		"keyledger revoke", revokeSide(workers, keys, fastest(subjC), createKey, revokeKey, withCause))
	if err != nil {
		return nil, withCause(err)
	}
	revoke := Result{
		Scenario: "commands-revoke", Subject: subjR, Reference: refR, Ratio: ratio(subjR.OpsPerSec, refR.OpsPerSec),
		RatioOf: "revokes/s ÷ raw JetStream appends/s", Target: "≥ 0.90×",
		Notes: []string{fmt.Sprintf("revoke p50 %.3f ms, p99 %.3f ms (includes the wait for the projection); raw append p50 %.3f ms, p99 %.3f ms; %d workers, fsync on every write",
			subjR.P50Ms, subjR.P99Ms, refR.P50Ms, refR.P99Ms, workers)},
	}
	revoke.Met = Met(revoke.Ratio >= 0.9)
	revoke.Notes = append(revoke.Notes, roundRatiosNote(subjR, refR))
	if keys.dry || raws.dry {
		revoke.Notes = append(revoke.Notes, fmt.Sprintf("a round ran out of keys to revoke and stopped early (keyledger %v, raw %v)", keys.dry, raws.dry))
	}

	// How long a revoke takes to be in force, from the command to the
	// projection refusing the key, when revokes are not queueing behind 15
	// other writers: one revoker at a time, against one raw appender.
	refL, subjL, err := Alternate(ctx, o, phase(p, 3, phases), "revoke latency",
		"raw jetstream append, one writer", revokeSide(1, raws, fastest(refR)/4, rawCreate, rawRevoke, withCause),
		"keyledger revoke, one writer", revokeSide(1, keys, fastest(subjR)/4, createKey, revokeKey, withCause))
	if err != nil {
		return nil, withCause(err)
	}
	latency := Result{
		Scenario: "commands-revoke-latency", Subject: subjL, Reference: refL, Ratio: subjL.P99Ms / refL.P99Ms,
		RatioOf: "revoke p99 ÷ raw append p99, one writer", Target: "revoke p99 < 5 ms",
		Notes: []string{fmt.Sprintf("one writer: revoke p50 %.3f ms, p99 %.3f ms, from the command to the projection having applied it; raw append p50 %.3f ms, p99 %.3f ms",
			subjL.P50Ms, subjL.P99Ms, refL.P50Ms, refL.P99Ms)},
	}
	latency.Met = Met(subjL.P99Ms < 5)

	// The floor of a ledger that a projection reads: the same raw appends,
	// to a stream that one reader follows, decoding every event as the
	// projector does. keyledger's stream always has that reader, and the
	// server's work delivering to it lands on every append.
	reads := &pool[rawAppend]{}
	refCF, subjCF, err := Alternate(ctx, o, phase(p, 4, phases), "creates, floor",
		"raw jetstream append, stream with a reader", createSide(workers, reads, readCreate, withCause),
		"keyledger create", createSide(workers, keys, createKey, withCause))
	if err != nil {
		return nil, withCause(err)
	}
	refRF, subjRF, err := Alternate(ctx, o, phase(p, 5, phases), "revokes, floor",
		"raw jetstream append, existing subject, stream with a reader", revokeSide(workers, reads, fastest(refCF), readCreate, rawRevoke, withCause),
		"keyledger revoke", revokeSide(workers, keys, fastest(subjCF), createKey, revokeKey, withCause))
	if err != nil {
		return nil, withCause(err)
	}
	floor := func(scenario, what string, subj, ref Measure) Result {
		return Result{
			Scenario: scenario, Subject: subj, Reference: ref, Ratio: ratio(subj.OpsPerSec, ref.OpsPerSec),
			RatioOf: what + "/s ÷ raw appends/s to a stream one reader follows", Target: "(reported: the floor of a ledger a projection reads)",
			Notes: []string{fmt.Sprintf("raw append to a stream with a reader p50 %.3f ms, p99 %.3f ms; %d workers, fsync on every write; the reader decodes every event, as the projector does",
				ref.P50Ms, ref.P99Ms, workers), roundRatiosNote(subj, ref)},
		}
	}
	return []Result{create, revoke, latency,
		floor("commands-create-floor", "creates", subjCF, refCF),
		floor("commands-revoke-floor", "revokes", subjRF, refRF)}, nil
}

// phases is how many steps the commands scenario shows on the progress bar.
const phases = 6

// follow reads stream from its start until the returned stop is called (or
// ctx ends), decoding every message as the ledger event its body is (see
// sampleBodies): the work the projector asks of the server and of the
// client, without the projection. stop returns the first error the reader
// met.
func follow(ctx context.Context, stream jetstream.Stream, ledgerSubject func(string) string) (stop func() error, err error) {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var readErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				if ctx.Err() == nil {
					readErr = err
				}
				return
			}
			meta, err := msg.Metadata()
			if err == nil {
				_, err = eventstore.Decode(ledgerSubject(msg.Subject()), msg.Data(), meta.Sequence.Stream)
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()
	return func() error {
		cancel()
		it.Stop()
		<-done
		return readErr
	}, nil
}

// roundRatiosNote says how far the ratio moved from round to round: on a
// shared disk the fsync time drifts by more than the margins the targets
// test.
func roundRatiosNote(subj, ref Measure) string {
	lo, med, hi := RoundRatios(subj, ref)
	return fmt.Sprintf("round by round the ratio was %.2f× to %.2f× (median %.2f×) over %d rounds", lo, hi, med, len(subj.RoundsPerOp))
}

// pool holds what a create side made and its revoke side consumes. Workers
// take from it concurrently during a round; it grows only between rounds.
type pool[T any] struct {
	items []T
	next  atomic.Int64
	dry   bool // a round ran out
}

func (p *pool[T]) take() (T, bool) {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.items)) {
		var zero T
		return zero, false
	}
	return p.items[i], true
}

func (p *pool[T]) left() int { return max(len(p.items)-int(p.next.Load()), 0) }

// produce runs mk on workers goroutines for about d, or, with d <= 0,
// until it has made n, and adds what it made to into.
func produce[T any](ctx context.Context, workers int, d time.Duration, n int, into *pool[T], mk func(context.Context) (T, error)) (Sample, error) {
	made := make([][]T, workers)
	var started atomic.Int64
	s, err := drive(ctx, workers, d, func(ctx context.Context, w int) (bool, error) {
		if d <= 0 && started.Add(1) > int64(n) {
			return false, nil
		}
		v, err := mk(ctx)
		if err != nil {
			return false, err
		}
		made[w] = append(made[w], v)
		return true, nil
	})
	for _, m := range made {
		into.items = append(into.items, m...)
	}
	return s, err
}

// createSide is a side that makes things for d and keeps them for later.
func createSide[T any](workers int, into *pool[T], mk func(context.Context) (T, error), wrap func(error) error) Side {
	return func(ctx context.Context, d time.Duration) (Sample, error) {
		s, err := produce(ctx, workers, d, 0, into, mk)
		return s, wrap(err)
	}
}

// revokeSide is a side that consumes from its pool for d. Before the timer
// starts it refills the pool with mk to what the round may take at the
// fastest rate seen (rate to begin with) and a margin; a round that runs out
// anyway stops early and counts what it did.
func revokeSide[T any](workers int, from *pool[T], rate float64, mk func(context.Context) (T, error), op func(context.Context, T) error, wrap func(error) error) Side {
	return func(ctx context.Context, d time.Duration) (Sample, error) {
		want := int(math.Ceil(rate*1.5*d.Seconds())) + 2*workers
		if n := want - from.left(); n > 0 {
			// Compact what was taken, then refill, with more workers: the
			// refill is not measured.
			from.items = append([]T(nil), from.items[min(int(from.next.Load()), len(from.items)):]...)
			from.next.Store(0)
			if _, err := produce(ctx, 2*workers, 0, n, from, mk); err != nil {
				return Sample{}, wrap(fmt.Errorf("refill: %w", err))
			}
		}
		ranOut := atomic.Bool{}
		s, err := drive(ctx, workers, d, func(ctx context.Context, _ int) (bool, error) {
			v, ok := from.take()
			if !ok {
				ranOut.Store(true)
				return false, nil
			}
			return true, op(ctx, v)
		})
		if err != nil {
			return s, wrap(err)
		}
		if s.Elapsed > 0 {
			rate = max(rate, float64(s.Ops)/s.Elapsed.Seconds())
		}
		if ranOut.Load() {
			from.dry = true
			rate *= 2
		}
		return s, nil
	}
}

// fastest is the fastest round of a measure, in operations per second.
func fastest(m Measure) float64 {
	f := 0.0
	for _, x := range m.RoundsPerOp {
		f = max(f, x)
	}
	return f
}

func ratio(subject, reference float64) float64 {
	if reference <= 0 {
		return 0
	}
	return subject / reference
}

// rebuild measures rebuilding the projection from the ledger, events per
// second, against reading the same stream with an ordered consumer and
// doing nothing with the messages.
func rebuild(ctx context.Context, o Options, p Progress) (_ []Result, err error) {
	dir := filepath.Join(o.Dir, "rebuild")
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", dir, rerr)
		}
	}()
	log := logOf(o)
	fillP, roundsP := phase(p, 0, 2), phase(p, 1, 2)
	fillStart := time.Now()
	if err := fillLedger(ctx, dir, log, o.Keys, fillP); err != nil {
		return nil, fmt.Errorf("fill the ledger: %w", err)
	}
	fillTook := time.Since(fillStart)
	// The rounds read the ledger from the server as `keyledger serve` runs
	// it.
	r, err := openRig(ctx, dir, log, false, nil)
	if err != nil {
		return nil, fmt.Errorf("start the ledger: %w", err)
	}
	defer func() {
		if cerr := r.close(); cerr != nil && err == nil {
			err = fmt.Errorf("shut the ledger down: %w", cerr)
		}
	}()
	last, err := r.store.LastSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("fill the ledger: %w", err)
	}
	if last < uint64(o.Keys) {
		return nil, fmt.Errorf("fill the ledger: %d events in the stream, want %d", last, o.Keys)
	}
	js, err := jetstream.New(r.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.Stream(ctx, r.store.StreamName())
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", r.store.StreamName(), err)
	}

	round := 0
	rebuildSide := func(ctx context.Context, _ time.Duration) (Sample, error) {
		round++
		pdir := filepath.Join(dir, fmt.Sprintf("projection-%d", round))
		proj, err := projections.Open(projections.Config{Dir: pdir, Log: log, Bulk: true})
		if err != nil {
			return Sample{}, err
		}
		start := time.Now()
		err = proj.CatchUp(ctx, r.store, last)
		elapsed := time.Since(start)
		applied := proj.Applied()
		if cerr := proj.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close projection: %w", cerr)
		}
		if rerr := os.RemoveAll(pdir); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", pdir, rerr)
		}
		if err != nil {
			return Sample{}, fmt.Errorf("catch up to %d: %w", last, err)
		}
		if applied < last {
			return Sample{}, fmt.Errorf("catch up returned at %d of %d", applied, last)
		}
		return Sample{Ops: int64(last), Elapsed: elapsed}, nil
	}
	readSide := func(ctx context.Context, _ time.Duration) (Sample, error) {
		start := time.Now()
		n, err := readStream(ctx, stream, last)
		elapsed := time.Since(start)
		if err != nil {
			return Sample{}, err
		}
		return Sample{Ops: int64(n), Elapsed: elapsed}, nil
	}
	ro := o
	if !o.Quick && o.Keys >= 200_000 {
		// A rebuild of a large ledger takes seconds; a few rounds are
		// enough for a median.
		ro.Rounds = min(o.Rounds, 3)
	}
	ro.Rounds = max(ro.Rounds, 1)
	ref, subj, err := Alternate(ctx, ro, roundsP, "rebuild vs read", "ordered consumer read", readSide, "rebuild", rebuildSide)
	if err != nil {
		return nil, err
	}
	res := Result{
		Scenario: "rebuild", Subject: subj, Reference: ref, Ratio: ratio(subj.OpsPerSec, ref.OpsPerSec),
		RatioOf: "rebuild events/s ÷ ordered-consumer read events/s", Target: "≥ 0.50×",
		Notes: []string{fmt.Sprintf("%d api_key.created events (filled in %s without fsync, read from the server as serve runs it); median of %d rounds; both read with an ordered consumer pulling %d at a time",
			last, fillTook.Round(time.Millisecond), ro.Rounds, readBatch)},
	}
	res.Met = Met(res.Ratio >= 0.5)
	return []Result{res}, nil
}

// readBatch is how many messages the reference keeps buffered: the same as
// the projector's Follow (projections' runSize), so that the two read alike.
const readBatch = 512

// readStream reads the ledger from sequence 1 to last with an ordered
// consumer, as the projector's Follow does, and does nothing with the
// messages. It returns how many it read.
func readStream(ctx context.Context, stream jetstream.Stream, last uint64) (uint64, error) {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{schemas.SubjectRoot + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    1,
	})
	if err != nil {
		return 0, fmt.Errorf("ordered consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(readBatch))
	if err != nil {
		return 0, fmt.Errorf("ordered consumer: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	var n uint64
	var msg jetstream.Msg
	for n < last {
		if msg, err = it.Next(); err != nil {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			return n, fmt.Errorf("read message %d of %d: %w", n+1, last, err)
		}
		n++
	}
	// The stream never deletes, so the last-th message is at sequence last.
	meta, err := msg.Metadata()
	if err != nil {
		return n, fmt.Errorf("read: %w", err)
	}
	if meta.Sequence.Stream != last {
		return n, fmt.Errorf("read: message %d is at sequence %d", n, meta.Sequence.Stream)
	}
	return n, nil
}

// fillLedger appends n api_key.created events to the ledger stream in dir,
// as Store.Append would (subject, message id, expected version 0 on the
// aggregate), with asynchronous publishes and a bounded number in flight.
//
// With fsync on every write JetStream syncs each message on its own (about
// 1.5k appends/s on a VM disk), which would make a 1M-event fill take
// minutes; and how the events were written does not change how they are
// read. So the fill runs on a server like StartEmbedded's, on the same
// folder, without SyncAlways, which is shut down (flushing its files) before
// the rounds start the real one.
func fillLedger(ctx context.Context, dir string, log *slog.Logger, n int, p Progress) (err error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "keyledger",
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "nats", "jetstream"), // as StartEmbedded lays it out
		SyncAlways: false,
		NoSigs:     true,
		NoLog:      true,
		DontListen: true,
	})
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	go ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(30 * time.Second) {
		return errors.New("nats did not start")
	}
	nc, err := eventstore.ConnectEmbedded(&eventstore.Embedded{Server: ns})
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := eventstore.Open(ctx, nc, eventstore.Config{}); err != nil {
		return err
	}
	const inFlight = 4096
	var (
		errMu    sync.Mutex
		firstErr error
	)
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(inFlight),
		jetstream.WithPublishAsyncTimeout(30*time.Second),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			errMu.Lock()
			defer errMu.Unlock()
			if firstErr == nil {
				firstErr = fmt.Errorf("append to %s: %w", m.Subject, err)
			}
		}))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	failed := func() error {
		errMu.Lock()
		defer errMu.Unlock()
		return firstErr
	}
	owner := domain.Owner{Type: domain.OwnerOrganization, ID: benchOrg}
	now := time.Now().UTC()
	step := fmt.Sprintf("filling the ledger with %d events", n)
	for i := 0; i < n; i++ {
		v, err := domain.GenerateKey(domain.PrefixLive)
		if err != nil {
			return err
		}
		id := eventstore.NewID("api_key_")
		e := domain.Event{
			ID: eventstore.NewID("event_"), OrganizationID: benchOrg, AggregateID: id, Actor: domain.Admin(), CreatedAt: now,
			Data: domain.KeyCreated{KeyID: id, Name: "bench", Owner: owner, Permissions: benchPerms,
				Hash: domain.HashKey(v), Obfuscated: domain.ObfuscateKey(v)},
		}
		subj, body, err := eventstore.Encode(e)
		if err != nil {
			return err
		}
		m := nats.NewMsg(subj)
		m.Data = body
		m.Header.Set(schemas.HeaderMsgID, e.ID)
		m.Header.Set(schemas.HeaderExpectedLastSubjSeq, "0")
		m.Header.Set(schemas.HeaderExpectedLastSubjSeqSubj, schemas.AggregateSubjects(benchOrg, id))
		for {
			_, err := js.PublishMsgAsync(m)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				return fmt.Errorf("append event %d: %w", i+1, err)
			}
			// Every slot is taken and none freed for a while: go on waiting
			// unless the run is over or an append failed.
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := failed(); err != nil {
				return err
			}
		}
		if (i+1)%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := failed(); err != nil {
				return err
			}
			if p != nil {
				p(step, i+1, n)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := failed(); err != nil {
		return err
	}
	if p != nil {
		p(step, n, n)
	}
	return nil
}

// phase returns a Progress that reports steps of phase i of n as the i-th
// n-th of p's bar, so that a scenario's bar never goes backwards.
func phase(p Progress, i, n int) Progress {
	if p == nil {
		return nil
	}
	return func(step string, done, total int) {
		if total <= 0 {
			p(step, i, n)
			return
		}
		p(step, i*total+min(done, total), n*total)
	}
}

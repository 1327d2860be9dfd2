package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Config configures the ledger stream.
type Config struct {
	Stream   string        // default schemas.DefaultStreamName
	Replicas int           // 0 or 1: 1 on one server, up to 3 on a cluster (ClusterReplicas)
	Dedupe   time.Duration // duplicate window, at least 2 minutes
	Timeout  time.Duration // per request when the context has no deadline
	// StallAfter ends a follow that has read nothing for this long while
	// the ledger holds events it has not read, so that its caller follows
	// again on a new consumer (default 3 s).
	StallAfter time.Duration
}

func (c *Config) withDefaults() {
	if c.Stream == "" {
		c.Stream = schemas.DefaultStreamName
	}
	if c.StallAfter == 0 {
		c.StallAfter = 3 * time.Second
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Dedupe < 2*time.Minute {
		c.Dedupe = 2 * time.Minute
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
}

// Store is the ledger on JetStream.
type Store struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
}

var _ domain.Ledger = (*Store)(nil)

// StreamConfig is the ledger stream as the design specifies it: file
// storage, refuse writes when full rather than drop history, no delete or
// purge, no age limit, a duplicate window, direct gets for aggregate loads,
// and atomic batches for cascades.
func StreamConfig(cfg Config) jetstream.StreamConfig {
	cfg.withDefaults()
	return jetstream.StreamConfig{
		Name:               cfg.Stream,
		Description:        "keyledger: the ledger of API key lifecycle events",
		Subjects:           []string{schemas.SubjectRoot + ".>"},
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardNew,
		DenyDelete:         true,
		DenyPurge:          true,
		MaxAge:             0,
		MaxMsgSize:         64 << 10,
		Duplicates:         cfg.Dedupe,
		Replicas:           cfg.Replicas,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	}
}

// Open creates the ledger stream, or adopts an existing one.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	cfg.withDefaults()
	js, st, err := createStream(ctx, nc, cfg.Timeout, StreamConfig(cfg))
	if err != nil {
		return nil, err
	}
	return &Store{cfg: cfg, nc: nc, js: js, stream: st}, nil
}

// createStream creates or adopts one of keyledger's streams (the ledger,
// webhook deliveries, checkpoints).
func createStream(ctx context.Context, nc *nats.Conn, timeout time.Duration, sc jetstream.StreamConfig) (jetstream.JetStream, jetstream.Stream, error) {
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(timeout))
	if err != nil {
		return nil, nil, fmt.Errorf("eventstore: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// On a cluster every stream is replicated (an existing one with fewer
	// replicas is scaled up when adopted).
	sc.Replicas = replicasFor(nc, sc.Replicas)
	st, err := askAgain(ctx, timeout, func(ctx context.Context) (jetstream.Stream, error) {
		// A stream that already is as asked is adopted without an update:
		// every node starting would otherwise update it while the others
		// create consumers on it, which nats-server v2.15.2 does not
		// guard (the race detector caught fileStore.UpdateConfig against
		// ConsumerStore in TestFleetPartitionedNodeFailsClosed).
		st, err := js.Stream(ctx, sc.Name)
		if err == nil && configHolds(st.CachedInfo().Config, sc) {
			return st, nil
		}
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, err
		}
		return js.CreateOrUpdateStream(ctx, sc)
	})
	if err != nil {
		return nil, nil, mapErr("create stream "+sc.Name, err)
	}
	return js, st, nil
}

// configHolds reports whether the stream's configuration cur has every
// setting want gives (those its JSON carries; a zero limit is the server's
// -1), and want's age limit, which is zero for the ledger (kept for ever).
func configHolds(cur, want jetstream.StreamConfig) bool {
	if cur.MaxAge != want.MaxAge {
		return false
	}
	var c, w map[string]any
	rc, err1 := json.Marshal(cur)
	rw, err2 := json.Marshal(want)
	if err1 != nil || err2 != nil || json.Unmarshal(rc, &c) != nil || json.Unmarshal(rw, &w) != nil {
		return false
	}
	for k, v := range w {
		if v == float64(0) && c[k] == float64(-1) {
			continue // the server's way of writing "no limit"
		}
		if !reflect.DeepEqual(c[k], v) {
			return false
		}
	}
	return true
}

// askAgain runs req, asking again each time no answer comes within
// timeout, until ctx ends. On a new three-server cluster, with two nodes
// starting at once (docker compose up), a create has been seen to get no
// answer at all though the stream or bucket was made, and the node then
// waited for ever (TestComposeFileOnLoopback). The requests it is used
// for create or adopt, so asking twice is harmless.
func askAgain[T any](ctx context.Context, timeout time.Duration, req func(context.Context) (T, error)) (T, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		v, err := req(actx)
		cancel()
		unanswered := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
		if err == nil || !unanswered || ctx.Err() != nil {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// OpenExisting binds to the ledger stream without creating or changing it:
// for readers (embedded validators) whose NATS user may not manage streams.
func OpenExisting(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	cfg.withDefaults()
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	st, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, mapErr("find stream "+cfg.Stream, err)
	}
	return &Store{cfg: cfg, nc: nc, js: js, stream: st}, nil
}

// Conn returns the NATS connection.
func (s *Store) Conn() *nats.Conn { return s.nc }

// StreamName returns the ledger stream's name.
func (s *Store) StreamName() string { return s.cfg.Stream }

// LastSeq returns the sequence of the last event in the ledger.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, mapErr("stream info", err)
	}
	return info.State.LastSeq, nil
}

// Append appends a batch of events, all or none. One event is a plain
// publish; several are one JetStream atomic batch. Each event expects its
// aggregate's last sequence to be e.Expected (0 for a new aggregate).
func (s *Store) Append(ctx context.Context, batch []domain.Append) (domain.AppendResult, error) {
	if len(batch) == 0 {
		return domain.AppendResult{}, fmt.Errorf("eventstore: append: empty batch")
	}
	// Fail fast while NATS is away: nats.go would buffer the publish and
	// the command would wait its whole timeout for an acknowledgement.
	if st := s.nc.Status(); st != nats.CONNECTED {
		return domain.AppendResult{}, fmt.Errorf("eventstore: append: nats is %s: %w", st, domain.ErrUnavailable)
	}
	msgs := make([]*nats.Msg, len(batch))
	for i, a := range batch {
		subj, body, err := Encode(a.Event)
		if err != nil {
			return domain.AppendResult{}, err
		}
		m := nats.NewMsg(subj)
		m.Data = body
		m.Header.Set(schemas.HeaderMsgID, a.MsgID)
		m.Header.Set(schemas.HeaderExpectedLastSubjSeq, strconv.FormatUint(a.Expected, 10))
		m.Header.Set(schemas.HeaderExpectedLastSubjSeqSubj, schemas.AggregateSubjects(a.Event.OrganizationID, a.Event.AggregateID))
		msgs[i] = m
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
	}
	var err error
	if len(msgs) == 1 {
		ack, perr := s.js.PublishMsg(ctx, msgs[0])
		if perr == nil {
			return domain.AppendResult{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
		}
		err = mapErr("append", perr)
	} else {
		var res domain.AppendResult
		if res, err = s.appendAtomic(ctx, batch[0].Event.ID, msgs); err == nil {
			return res, nil
		}
	}
	var apiErr *jetstream.APIError
	if errors.Is(err, domain.ErrConflict) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeBatchDuplicateMsgID) {
		if seq, ok := s.duplicateOf(ctx, batch[len(batch)-1]); ok {
			return domain.AppendResult{Seq: seq, Duplicate: true}, nil
		}
	}
	return domain.AppendResult{}, err
}

// jsErrCodeBatchDuplicateMsgID: an atomic batch holds a message id the
// stream has already seen.
const jsErrCodeBatchDuplicateMsgID jetstream.ErrorCode = 10201

// duplicateOf reports whether a, the last event of a refused batch, is
// already the last event of its aggregate, with the same message id, inside
// the duplicate window: the batch is a retry whose original was stored. A
// single server checks the expected version before the message id, so it
// refuses such a retry as a conflict (and an atomic batch as holding a
// duplicate id) where a cluster acknowledges it as a duplicate.
func (s *Store) duplicateOf(ctx context.Context, a domain.Append) (uint64, bool) {
	if a.MsgID == "" {
		return 0, false
	}
	msg, err := s.stream.GetLastMsgForSubject(ctx, schemas.AggregateSubjects(a.Event.OrganizationID, a.Event.AggregateID))
	if err != nil || msg.Header.Get(schemas.HeaderMsgID) != a.MsgID || time.Since(msg.Time) >= s.cfg.Dedupe {
		return 0, false
	}
	return msg.Sequence, true
}

// appendAtomic publishes msgs as one atomic batch (ADR-50): every message
// carries the batch id and its position, the last also the commit marker,
// and only the commit is acknowledged, for the whole batch.
func (s *Store) appendAtomic(ctx context.Context, batchID string, msgs []*nats.Msg) (domain.AppendResult, error) {
	if len(batchID) > 64 {
		batchID = batchID[:64]
	}
	for i, m := range msgs {
		m.Header.Set(schemas.HeaderBatchID, batchID)
		m.Header.Set(schemas.HeaderBatchSeq, strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := s.nc.PublishMsg(m); err != nil {
				return domain.AppendResult{}, mapErr("append batch", err)
			}
		}
	}
	commit := msgs[len(msgs)-1]
	commit.Header.Set(schemas.HeaderBatchCommit, "1")
	reply, err := s.nc.RequestMsgWithContext(ctx, commit)
	if err != nil {
		return domain.AppendResult{}, mapErr("append batch", err)
	}
	var resp struct {
		jetstream.PubAck
		Error *jetstream.APIError `json:"error,omitempty"`
		Count int                 `json:"count,omitempty"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return domain.AppendResult{}, fmt.Errorf("eventstore: append batch: bad ack: %w", err)
	}
	if resp.Error != nil {
		return domain.AppendResult{}, mapErr("append batch", resp.Error)
	}
	if resp.Count != len(msgs) {
		return domain.AppendResult{}, fmt.Errorf("eventstore: append batch: %d of %d events acknowledged", resp.Count, len(msgs))
	}
	return domain.AppendResult{Seq: resp.Sequence, Duplicate: resp.Duplicate}, nil
}

// LoadKey rebuilds a key from its events. A key that is not in the ledger is
// domain.ErrNotFound.
func (s *Store) LoadKey(ctx context.Context, org, keyID string) (*domain.Key, error) {
	k := &domain.Key{}
	found := false
	err := s.aggregateEvents(ctx, org, keyID, func(e domain.Event) {
		found = true
		k.Apply(e)
	})
	if err != nil {
		return nil, err
	}
	if !found || k.ID != keyID {
		return nil, domain.ErrNotFound
	}
	return k, nil
}

// LoadEndpoint rebuilds a webhook endpoint from its events; one that is not
// in the ledger is domain.ErrNotFound.
func (s *Store) LoadEndpoint(ctx context.Context, id string) (*domain.WebhookEndpoint, error) {
	w := &domain.WebhookEndpoint{}
	err := s.aggregateEvents(ctx, "", id, func(e domain.Event) { w.Apply(e) })
	if err != nil {
		return nil, err
	}
	if w.ID != id {
		return nil, domain.ErrNotFound
	}
	return w, nil
}

// LoadCatalogue returns the permission catalogue (empty when never set).
func (s *Store) LoadCatalogue(ctx context.Context) (*domain.Catalogue, error) {
	c := &domain.Catalogue{Permissions: []string{}}
	msg, err := s.stream.GetLastMsgForSubject(ctx, schemas.AggregateSubjects("", domain.CatalogueAggregateID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return c, nil
	}
	if err != nil {
		return nil, mapErr("load catalogue", err)
	}
	e, err := Decode(msg.Subject, msg.Data, msg.Sequence)
	if err != nil {
		return nil, err
	}
	c.Apply(e)
	return c, nil
}

// MemberVersion returns the sequence of the last event about a member of an
// organization, 0 when there is none.
func (s *Store) MemberVersion(ctx context.Context, org, userID string) (uint64, error) {
	msg, err := s.stream.GetLastMsgForSubject(ctx, schemas.AggregateSubjects(org, userID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, mapErr("load member", err)
	}
	return msg.Sequence, nil
}

// RemovedAt returns when a user was last removed from an organization, and
// whether they ever were.
func (s *Store) RemovedAt(ctx context.Context, org, userID string) (time.Time, bool, error) {
	msg, err := s.stream.GetLastMsgForSubject(ctx, schemas.Subject(org, userID, schemas.EventMemberRemoved))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, mapErr("member removal", err)
	}
	e, err := Decode(msg.Subject, msg.Data, msg.Sequence)
	if err != nil {
		return time.Time{}, false, err
	}
	return e.CreatedAt, true, nil
}

// EventAt returns the event at a sequence.
func (s *Store) EventAt(ctx context.Context, seq uint64) (domain.Event, error) {
	msg, err := s.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return domain.Event{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Event{}, mapErr("get event", err)
	}
	return Decode(msg.Subject, msg.Data, msg.Sequence)
}

// aggregateEvents calls fn for every event of one aggregate, in order, using
// direct gets of the next message on the aggregate's subjects.
func (s *Store) aggregateEvents(ctx context.Context, org, aggregate string, fn func(domain.Event)) error {
	filter := schemas.AggregateSubjects(org, aggregate)
	seq := uint64(1)
	for {
		msg, err := s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return mapErr("load "+aggregate, err)
		}
		e, err := Decode(msg.Subject, msg.Data, msg.Sequence)
		if err != nil {
			return err
		}
		fn(e)
		seq = msg.Sequence + 1
	}
}

// Follow reads the ledger from sequence from onwards, in order, and calls fn
// with runs of events: a run ends when the reader has caught up with the
// stream or holds max events. It returns when ctx ends or fn fails.
//
// Reading and decoding run on their own goroutine, ahead of fn by at most
// two runs, so that a slow fn (a projector writing to disk) and the reader
// use two cores. fn is called on the caller's goroutine, one run at a time;
// it owns the run only until it returns.
func (s *Store) Follow(ctx context.Context, from uint64, max int, fn func([]domain.Event) error) error {
	if from == 0 {
		from = 1
	}
	cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{schemas.SubjectRoot + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return mapErr("follow", err)
	}
	// Pull in batches of at least 64 whatever the run size: nats.go's pull
	// iterator has been seen to stall with very small batches under load.
	pull := 64
	if max > pull {
		pull = max
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(pull))
	if err != nil {
		return mapErr("follow", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	// A reconnect ends the follow, for the caller to start again from what
	// it applied: after the cluster server it was connected to was killed,
	// the ordered consumer has been seen to stay stalled for minutes
	// (TestClusterThreeNATSTwoNodes with -cluster.rounds).
	var reconnected atomic.Bool
	status := s.nc.StatusChanged(nats.CONNECTED)
	defer s.nc.RemoveStatusListener(status)
	go func() {
		select {
		case _, ok := <-status:
			if ok {
				reconnected.Store(true)
				cancel()
			}
		case <-ctx.Done():
		}
	}()

	read := s.watchStalls(ctx, from, cancel)

	const ahead = 2
	runs := make(chan []domain.Event, ahead-1) // full runs, in order
	free := make(chan []domain.Event, ahead)   // runs fn has finished with
	for range ahead {
		free <- make([]domain.Event, 0, max)
	}
	var readErr error
	go func() {
		defer close(runs)
		readErr = readRuns(ctx, it, max, runs, free, read)
	}()
	for run := range runs {
		if ctx.Err() != nil {
			break
		}
		if err := fn(run); err != nil {
			cancel()
			for range runs { // wait for the reader to stop
			}
			s.deleteConsumer(cons)
			return err
		}
		clear(run) // let the events go
		free <- run[:0]
	}
	cancel()
	for range runs {
	}
	// Stopping the iterator deletes its consumer, but not when it was
	// stopped while the ordered consumer was recreating it: that one would
	// go on pulling messages nobody reads until the connection closes.
	s.deleteConsumer(cons)
	if reconnected.Load() {
		return fmt.Errorf("eventstore: follow: reconnected to NATS: %w", domain.ErrUnavailable)
	}
	if err := read.stallErr("follow"); err != nil {
		return err
	}
	// The reader has returned (it closed runs), so readErr is set.
	return readErr
}

// followProgress is what a follow's reader has done, for watchStall.
type followProgress struct {
	next    atomic.Uint64 // the sequence the reader waits for
	waiting atomic.Bool   // in Next, not held up by a slow fn
	stalled atomic.Bool   // watchStall ended the follow
	after   time.Duration
}

// stallErr is the error a follow ends with when watchStall ended it, or nil.
func (p *followProgress) stallErr(op string) error {
	if !p.stalled.Load() {
		return nil
	}
	return fmt.Errorf("eventstore: %s: read nothing for %v from sequence %d while the ledger holds it: %w", op, p.after, p.next.Load(), domain.ErrUnavailable)
}

// watchStalls watches a follow's reader, which waits for sequence from
// first, until ctx ends: see watchStall. stop ends the follow.
func (s *Store) watchStalls(ctx context.Context, from uint64, stop context.CancelFunc) *followProgress {
	read := &followProgress{after: s.cfg.StallAfter}
	read.next.Store(max(from, 1))
	go s.watchStall(ctx, read, func() { read.stalled.Store(true); stop() })
	return read
}

// watchStall calls stall when the reader has waited in Next for the same
// sequence for StallAfter while the ledger already holds it. nats.go's
// ordered consumer has been seen to sit silent like that on a new
// cluster (a fleet's first command waited 10 s for a node whose projector
// had not read sequence 1); a new consumer reads on.
func (s *Store) watchStall(ctx context.Context, read *followProgress, stall func()) {
	every := max(s.cfg.StallAfter/3, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var since time.Time // when the reader was first seen waiting for next
	var next uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := read.next.Load()
		if !read.waiting.Load() || n != next {
			next, since = n, time.Time{}
			continue
		}
		if since.IsZero() {
			since = time.Now()
			continue
		}
		if time.Since(since) < s.cfg.StallAfter {
			continue
		}
		last, err := s.LastSeq(ctx)
		if err != nil || last < n {
			since = time.Now() // nothing to read, or no telling: not a stall
			continue
		}
		if read.next.Load() == n && read.waiting.Load() {
			stall()
			return
		}
	}
}

// readRuns reads messages into runs taken from free and sends each run
// that ends (caught up, or max events) on runs, until ctx ends or a message
// cannot be read or decoded.
func readRuns(ctx context.Context, it jetstream.MessagesContext, max int, runs, free chan []domain.Event, read *followProgress) error {
	var run []domain.Event
	select {
	case run = <-free:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		// With ctx: Stop alone does not always end Next. The ordered
		// consumer may be recreating its inner consumer when Stop comes,
		// and then waits on the new one, which nothing stops.
		read.waiting.Store(true)
		msg, err := it.Next(jetstream.NextContext(ctx))
		read.waiting.Store(false)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return mapErr("follow", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("eventstore: follow: %w", err)
		}
		read.next.Store(meta.Sequence.Stream + 1)
		e, err := Decode(msg.Subject(), msg.Data(), meta.Sequence.Stream)
		if err != nil {
			return err
		}
		run = append(run, e)
		if meta.NumPending == 0 || len(run) >= max {
			select {
			case runs <- run:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case run = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// mapErr turns NATS errors into the domain's vocabulary.
func mapErr(op string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return fmt.Errorf("eventstore: %s: %w", op, domain.ErrConflict)
		}
		if apiErr.Code == 503 || apiErr.Code == 500 {
			return fmt.Errorf("eventstore: %s: %v: %w", op, apiErr, domain.ErrUnavailable)
		}
		return fmt.Errorf("eventstore: %s: %w", op, err)
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("eventstore: %s: %v: %w", op, err, domain.ErrUnavailable)
	}
	return fmt.Errorf("eventstore: %s: %w", op, err)
}

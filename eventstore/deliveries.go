package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// The webhook delivery stream: a queue of deliveries per endpoint, and the
// endpoint's attempt log, side by side.
const (
	// DefaultDeliveryStream is the stream's default name.
	DefaultDeliveryStream = "KEYLEDGER_WEBHOOKS"
	// SubjectDeliveries + "." + endpoint id holds the endpoint's queued
	// deliveries: one message per scheduled attempt.
	SubjectDeliveries = "keyledger.webhooks.deliveries"
	// SubjectAttempts + "." + endpoint id holds the endpoint's attempt log.
	SubjectAttempts = "keyledger.webhooks.attempts"
	// DeliveryConsumerPrefix + endpoint id is the durable consumer that
	// delivers to an endpoint, shared by every keyledger node.
	DeliveryConsumerPrefix = "keyledger_webhook_"
)

// DeliveryConfig configures the webhook delivery stream.
type DeliveryConfig struct {
	Stream   string        // default DefaultDeliveryStream
	Replicas int           // 1 on one server, 3 on a cluster
	Dedupe   time.Duration // duplicate window, at least 2 minutes
	// MaxAge is how long queued deliveries and attempts are kept: a
	// delivery waiting longer (its endpoint disabled) is dropped, and older
	// attempts leave the log. Default 30 days.
	MaxAge time.Duration
	// AckWait is how long a delivery handed to a worker may stay
	// unanswered before another worker gets it (a crashed node). A
	// delivery may wait for a free slot for one attempt before its own, so
	// keep it above twice the engine's Timeout plus 30s. Default 2 minutes.
	AckWait time.Duration
	// MaxAckPending bounds, per endpoint, the deliveries in flight or
	// waiting for a retry; beyond it the endpoint's new deliveries wait.
	// Default 10000.
	MaxAckPending int
	Timeout       time.Duration // per request when the context has no deadline
	Log           *slog.Logger
}

func (c *DeliveryConfig) withDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultDeliveryStream
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Dedupe < 2*time.Minute {
		c.Dedupe = 2 * time.Minute
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 30 * 24 * time.Hour
	}
	c.Dedupe = min(c.Dedupe, c.MaxAge)
	if c.AckWait <= 0 {
		c.AckWait = 2 * time.Minute
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 10000
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// DeliveryStreamConfig is the delivery stream: file storage, a duplicate
// window for idempotent enqueues, kept for MaxAge, and direct gets for the
// attempt log.
func DeliveryStreamConfig(cfg DeliveryConfig) jetstream.StreamConfig {
	cfg.withDefaults()
	return jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "keyledger: webhook deliveries and their attempt log",
		Subjects:    []string{SubjectDeliveries + ".*", SubjectAttempts + ".*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.Dedupe,
		Replicas:    cfg.Replicas,
		AllowDirect: true,
	}
}

// DeliveryQueue is the webhook delivery queue and attempt log on
// JetStream; it implements webhooks.Queue. Each endpoint has a durable
// consumer (DeliveryConsumerPrefix + id) with explicit acks: a delivery is
// acknowledged once done, and one handed back with a delay (a retry not due
// yet) waits in the server without holding back the endpoint's others.
// Listing the attempt log needs NATS Server 2.11 or later.
type DeliveryQueue struct {
	cfg    DeliveryConfig
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
}

// NewDeliveryQueue creates the delivery stream, or adopts an existing one.
func NewDeliveryQueue(ctx context.Context, nc *nats.Conn, cfg DeliveryConfig) (*DeliveryQueue, error) {
	cfg.withDefaults()
	js, st, err := createStream(ctx, nc, cfg.Timeout, DeliveryStreamConfig(cfg))
	if err != nil {
		return nil, err
	}
	return &DeliveryQueue{cfg: cfg, nc: nc, js: js, stream: st}, nil
}

// StreamName returns the delivery stream's name.
func (q *DeliveryQueue) StreamName() string { return q.cfg.Stream }

// DeliveryConsumer returns the name of an endpoint's durable consumer.
func DeliveryConsumer(endpointID string) string { return DeliveryConsumerPrefix + endpointID }

// checkEndpointID keeps endpoint ids to what is safe in a subject token and
// a consumer name.
func checkEndpointID(id string) error {
	ok := id != "" && len(id) <= 128
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("eventstore: %q is not a webhook endpoint id", id)
	}
	return nil
}

func (q *DeliveryQueue) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, q.cfg.Timeout)
}

// Put stores msg on the endpoint's queue, acknowledged by the stream (and
// so on disk) when it returns. Its message id is endpoint/id: a second Put
// inside the duplicate window stores nothing.
func (q *DeliveryQueue) Put(ctx context.Context, endpointID, id string, msg []byte) error {
	if err := checkEndpointID(endpointID); err != nil {
		return err
	}
	if id == "" {
		return errors.New("eventstore: a queued delivery needs an id")
	}
	ctx, cancel := q.bound(ctx)
	defer cancel()
	m := nats.NewMsg(SubjectDeliveries + "." + endpointID)
	m.Data = msg
	m.Header.Set(schemas.HeaderMsgID, endpointID+"/"+id)
	if _, err := q.js.PublishMsg(ctx, m); err != nil {
		return mapErr("queue delivery", err)
	}
	return nil
}

// consumer creates (or updates) the endpoint's durable consumer.
func (q *DeliveryQueue) consumer(ctx context.Context, endpointID string) (jetstream.Consumer, error) {
	ctx, cancel := q.bound(ctx)
	defer cancel()
	c, err := q.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       DeliveryConsumer(endpointID),
		Description:   "keyledger: webhook deliveries to " + endpointID,
		FilterSubject: SubjectDeliveries + "." + endpointID,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.cfg.AckWait,
		MaxAckPending: q.cfg.MaxAckPending,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, mapErr("create consumer "+DeliveryConsumer(endpointID), err)
	}
	return c, nil
}

// Consume hands the endpoint's deliveries to handle, at most limit at once,
// until ctx ends. Then it hands back what it pulled but did not start,
// waits for the handlers in flight, and settles them: acknowledged (and
// confirmed by the server) when handle says done, handed back with a delay
// otherwise.
func (q *DeliveryQueue) Consume(ctx context.Context, endpointID string, limit int,
	handle func(ctx context.Context, ref uint64, msg []byte) time.Duration) error {
	if err := checkEndpointID(endpointID); err != nil {
		return err
	}
	limit = max(limit, 1)
	cons, err := q.consumer(ctx, endpointID)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(limit))
	if err != nil {
		return mapErr("consume "+DeliveryConsumer(endpointID), err)
	}
	hctx := context.WithoutCancel(ctx)
	slots := make(chan struct{}, limit)
	var wg sync.WaitGroup
	var runErr error
	for runErr == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			<-slots
			if ctx.Err() == nil {
				runErr = mapErr("consume "+DeliveryConsumer(endpointID), err)
			}
			break
		}
		meta, err := msg.Metadata()
		if err != nil {
			<-slots
			_ = msg.Nak()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			q.settle(hctx, endpointID, msg, handle(hctx, meta.Sequence.Stream, msg.Data()))
		}()
	}
	// Hand back what was pulled but not started, for whoever consumes next.
	it.Drain()
	dctx, cancel := context.WithTimeout(hctx, 5*time.Second)
	for {
		msg, err := it.Next(jetstream.NextContext(dctx))
		if err != nil {
			break
		}
		_ = msg.Nak()
	}
	cancel()
	it.Stop()
	wg.Wait()
	_ = q.nc.FlushTimeout(2 * time.Second)
	return runErr
}

func (q *DeliveryQueue) settle(ctx context.Context, endpointID string, msg jetstream.Msg, again time.Duration) {
	var err error
	switch {
	case again < 0:
		actx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
		err = msg.DoubleAck(actx)
		cancel()
	case again == 0:
		err = msg.Nak()
	default:
		err = msg.NakWithDelay(again)
	}
	if err != nil {
		// It comes again after AckWait: at least once.
		q.cfg.Log.Warn("eventstore: could not settle a webhook delivery", "endpoint", endpointID, "err", err)
	}
}

// Get returns the queued delivery at ref (a stream sequence),
// domain.ErrNotFound when the stream no longer has it.
func (q *DeliveryQueue) Get(ctx context.Context, ref uint64) ([]byte, error) {
	ctx, cancel := q.bound(ctx)
	defer cancel()
	m, err := q.stream.GetMsg(ctx, ref)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, domain.ErrNotFound
	}
	if err != nil {
		return nil, mapErr("get delivery", err)
	}
	if !strings.HasPrefix(m.Subject, SubjectDeliveries+".") {
		return nil, domain.ErrNotFound
	}
	return m.Data, nil
}

// Forget deletes the endpoint's consumer and purges its queued deliveries;
// its attempt log stays.
func (q *DeliveryQueue) Forget(ctx context.Context, endpointID string) error {
	if err := checkEndpointID(endpointID); err != nil {
		return err
	}
	ctx, cancel := q.bound(ctx)
	defer cancel()
	if err := q.stream.DeleteConsumer(ctx, DeliveryConsumer(endpointID)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return mapErr("delete consumer "+DeliveryConsumer(endpointID), err)
	}
	if err := q.stream.Purge(ctx, jetstream.WithPurgeSubject(SubjectDeliveries+"."+endpointID)); err != nil {
		return mapErr("purge deliveries of "+endpointID, err)
	}
	return nil
}

// Record appends an entry to the endpoint's attempt log.
func (q *DeliveryQueue) Record(ctx context.Context, endpointID string, entry []byte) error {
	if err := checkEndpointID(endpointID); err != nil {
		return err
	}
	ctx, cancel := q.bound(ctx)
	defer cancel()
	if _, err := q.js.Publish(ctx, SubjectAttempts+"."+endpointID, entry); err != nil {
		return mapErr("log attempt", err)
	}
	return nil
}

// Records walks the endpoint's attempt log backwards, one direct get per
// entry: each asks for the last entry of the endpoint's subject up to a
// sequence (or, first, up to a time), so a page costs its size whatever
// the log's length.
func (q *DeliveryQueue) Records(ctx context.Context, endpointID string, before uint64, until time.Time,
	fn func(ref uint64, stored time.Time, entry []byte) bool) error {
	if err := checkEndpointID(endpointID); err != nil {
		return err
	}
	subj := SubjectAttempts + "." + endpointID
	var upTo uint64 // 0: the last of the stream
	if before > 0 {
		if before == 1 {
			return nil
		}
		upTo = before - 1
	}
	useTime := !until.IsZero() && before == 0
	for {
		req := directLastRequest{MultiLast: []string{subj}, UpToSeq: upTo, Batch: 1}
		if useTime {
			u := until.UTC()
			req.UpToTime, req.UpToSeq = &u, 0
			useTime = false
		}
		seq, stored, entry, found, err := q.directLast(ctx, req)
		if err != nil {
			return err
		}
		if !found {
			return nil
		}
		if until.IsZero() || stored.Before(until) {
			if !fn(seq, stored, entry) {
				return nil
			}
		}
		if seq <= 1 {
			return nil
		}
		upTo = seq - 1
	}
}

// directLastRequest is a JetStream direct get of the last message of
// subjects up to a sequence or a time (ADR-31, NATS Server 2.11).
type directLastRequest struct {
	MultiLast []string   `json:"multi_last"`
	UpToSeq   uint64     `json:"up_to_seq,omitempty"`
	UpToTime  *time.Time `json:"up_to_time,omitempty"`
	Batch     int        `json:"batch,omitempty"`
}

// directLast sends one direct get and reads its first answer (the message;
// the end-of-batch marker that follows is not needed).
func (q *DeliveryQueue) directLast(ctx context.Context, req directLastRequest) (uint64, time.Time, []byte, bool, error) {
	ctx, cancel := q.bound(ctx)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return 0, time.Time{}, nil, false, fmt.Errorf("eventstore: attempt log: %w", err)
	}
	reply, err := q.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+q.cfg.Stream, body)
	if err != nil {
		return 0, time.Time{}, nil, false, mapErr("read attempt log", err)
	}
	if status := reply.Header.Get("Status"); status != "" {
		if status == "404" {
			return 0, time.Time{}, nil, false, nil
		}
		return 0, time.Time{}, nil, false, fmt.Errorf("eventstore: read attempt log: status %s %s", status, reply.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(reply.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return 0, time.Time{}, nil, false, fmt.Errorf("eventstore: read attempt log: no sequence in the answer")
	}
	stored, err := time.Parse(time.RFC3339Nano, reply.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return 0, time.Time{}, nil, false, fmt.Errorf("eventstore: read attempt log: no time in the answer")
	}
	return seq, stored, reply.Data, true, nil
}

package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/schemas"
)

// Handler handles one ledger event, given in the ledger's form and in its
// public form. An error has the event delivered again later.
type Handler func(ctx context.Context, e domain.Event, pub schemas.PublicEvent) error

// Consumer is one durable consumer of the ledger and its handler.
type Consumer struct {
	// Name is stable across releases and restarts: the durable consumer is
	// "keyledger_" + Name, and renaming it starts over from the first event.
	Name string
	// Filter lists the ledger subjects it reads; empty reads everything.
	Filter []string
	// Ordered hands events over one at a time, in ledger order: the next
	// waits until this one is handled.
	Ordered bool
	Handle  Handler
}

// DurableName returns the durable consumer name of a consumer.
func DurableName(name string) string { return "keyledger_" + name }

// Config configures the router.
type Config struct {
	// Conn is a connection for the router alone: it is drained and closed
	// when the router stops.
	Conn   *nats.Conn
	Stream string // default schemas.DefaultStreamName
	Log    *slog.Logger
	// AckWait is how long a handler may take before its event is delivered
	// again (default 30 s).
	AckWait time.Duration
	// Retry is the delay before a failed event is delivered again, by
	// delivery count (default 1 s, doubling, at most 1 min).
	Retry func(delivered uint64) time.Duration
}

// Run creates (or updates) each consumer's durable JetStream consumer and
// runs their handlers until ctx ends.
func Run(ctx context.Context, cfg Config, consumers []Consumer) error {
	if cfg.Stream == "" {
		cfg.Stream = schemas.DefaultStreamName
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Retry == nil {
		cfg.Retry = func(n uint64) time.Duration { return min(time.Second<<min(n, 6), time.Minute) }
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return fmt.Errorf("consumers: %w", err)
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return fmt.Errorf("consumers: stream %s: %w", cfg.Stream, err)
	}
	byName := map[string]jetstream.Consumer{}
	for _, c := range consumers {
		if c.Name == "" || c.Handle == nil {
			return errors.New("consumers: a consumer needs a name and a handler")
		}
		cc := jetstream.ConsumerConfig{
			Durable:       DurableName(c.Name),
			Description:   "keyledger: " + c.Name,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cfg.AckWait,
			MaxAckPending: 256,
		}
		if c.Ordered {
			cc.MaxAckPending = 1
		}
		switch len(c.Filter) {
		case 0:
		case 1:
			cc.FilterSubject = c.Filter[0]
		default:
			cc.FilterSubjects = c.Filter
		}
		cons, err := stream.CreateOrUpdateConsumer(ctx, cc)
		if err != nil {
			return fmt.Errorf("consumers: create %s: %w", cc.Durable, err)
		}
		byName[c.Name] = cons
	}

	// Watermill's info level is one line per message: debug here.
	wlog := watermill.NewSlogLoggerWithLevelMapping(cfg.Log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:           cfg.Conn,
		Logger:         wlog,
		AckWaitTimeout: cfg.AckWait,
		NakDelay:       delay(cfg.Retry),
		Unmarshaler:    unmarshaler{},
		// A synchronous ack uses the message's context, which the router
		// cancels when it stops: the ack of the last handled event would be
		// lost, and the event held back for AckWait after a restart. An
		// asynchronous ack is flushed when the connection drains; if it is
		// lost all the same, the event comes again (at least once).
		AckAsync: true,
		// Only the consumers made above; never Watermill's own ephemeral ones.
		ResourceInitializer: func(_ context.Context, _ jetstream.JetStream, topic string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
			c, ok := byName[topic]
			if !ok {
				return nil, nil, fmt.Errorf("consumers: no consumer %q", topic)
			}
			return c, nil, nil
		},
	})
	if err != nil {
		return fmt.Errorf("consumers: subscriber: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return fmt.Errorf("consumers: router: %w", err)
	}
	for _, c := range consumers {
		router.AddConsumerHandler(c.Name, c.Name, sub, handle(c, cfg.Log))
	}
	// Stopping: drain the connection first, while the router still takes
	// messages, so that no delivery is in flight when the router closes.
	// (watermill-nats v2.1.3 closes a subscription's output channel while a
	// delivery may still be sending on it, which panics.)
	routerCtx, stopRouter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRouter()
	done := make(chan error, 1)
	go func() { done <- router.Run(routerCtx) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("consumers: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	if err := cfg.Conn.Drain(); err == nil {
		deadline := time.Now().Add(30 * time.Second)
		for !cfg.Conn.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	stopRouter()
	if err := <-done; err != nil {
		return fmt.Errorf("consumers: %w", err)
	}
	return nil
}

// handle decodes a message and calls the consumer's handler. An event that
// cannot be decoded is not skipped: it is retried, and logged as an error,
// as the projector would stop on it.
func handle(c Consumer, log *slog.Logger) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		seq, _ := strconv.ParseUint(msg.Metadata.Get(metaSeq), 10, 64)
		e, err := eventstore.Decode(msg.Metadata.Get(metaSubject), msg.Payload, seq)
		if err != nil {
			log.Error("consumers: undecodable event", "consumer", c.Name, "seq", seq, "err", err)
			return err
		}
		pub, err := eventstore.Public(e)
		if err != nil {
			return err
		}
		if err := c.Handle(msg.Context(), e, pub); err != nil {
			log.Warn("consumers: handler failed; the event will be delivered again", "consumer", c.Name, "event", e.ID, "seq", seq, "err", err)
			return err
		}
		return nil
	}
}

const (
	metaSubject = "keyledger_subject"
	metaSeq     = "keyledger_seq"
)

// unmarshaler keeps the ledger message as it is, with its subject and
// stream sequence. It never fails: Watermill's subscriber does not survive
// an unmarshal error.
type unmarshaler struct{}

func (unmarshaler) Unmarshal(m jetstream.Msg) (*message.Message, error) {
	id := m.Headers().Get(schemas.HeaderMsgID)
	var seq uint64
	if meta, err := m.Metadata(); err == nil {
		seq = meta.Sequence.Stream
	}
	if id == "" {
		id = strconv.FormatUint(seq, 10)
	}
	out := message.NewMessage(id, m.Data())
	out.Metadata.Set(metaSubject, m.Subject())
	out.Metadata.Set(metaSeq, strconv.FormatUint(seq, 10))
	return out, nil
}

type delay func(uint64) time.Duration

func (d delay) WaitTime(n uint64) time.Duration { return d(n) }

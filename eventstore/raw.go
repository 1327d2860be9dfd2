package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/domain"
)

// RawMessage is one ledger message as stored: for the sealer and for
// export, which must see the bytes, not an interpretation of them.
type RawMessage struct {
	Seq     uint64
	Subject string
	Data    []byte
	EventID string // the envelope's id, "" when the message has none
}

func rawOf(msg jetstream.Msg) (RawMessage, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return RawMessage{}, err
	}
	var env struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(msg.Data(), &env) // a message without an id is reported by whoever reads it
	return RawMessage{Seq: meta.Sequence.Stream, Subject: msg.Subject(), Data: msg.Data(), EventID: env.ID}, nil
}

// FollowRaw calls fn with runs of raw messages from sequence from on, in
// order, until ctx ends or fn fails.
func (s *Store) FollowRaw(ctx context.Context, from uint64, fn func([]RawMessage) error) error {
	cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(from, 1),
	})
	if err != nil {
		return mapErr("follow raw", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return mapErr("follow raw", err)
	}
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer s.deleteConsumer(cons)
	defer it.Stop()
	// As Follow: a reader that falls silent with messages to read ends,
	// for its caller to follow again on a new consumer.
	read := s.watchStalls(ctx, from, cancel)
	var run []RawMessage
	for {
		read.waiting.Store(true)
		msg, err := it.Next(jetstream.NextContext(ctx)) // see readRuns
		read.waiting.Store(false)
		if err != nil {
			if outer.Err() != nil {
				return outer.Err()
			}
			if err := read.stallErr("follow raw"); err != nil {
				return err
			}
			return mapErr("follow raw", err)
		}
		m, err := rawOf(msg)
		if err != nil {
			return fmt.Errorf("eventstore: follow raw: %w", err)
		}
		read.next.Store(m.Seq + 1)
		run = append(run, m)
		meta, _ := msg.Metadata()
		if meta.NumPending == 0 || len(run) >= 256 {
			if err := fn(run); err != nil {
				return err
			}
			run = nil
		}
	}
}

// ReadRaw calls fn with every ledger message up to the last one now, in
// order, and returns the last sequence read.
func (s *Store) ReadRaw(ctx context.Context, fn func(RawMessage) error) (uint64, error) {
	last, err := s.LastSeq(ctx)
	if err != nil || last == 0 {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var read uint64
	errDone := errors.New("done")
	err = s.FollowRaw(ctx, 1, func(run []RawMessage) error {
		for _, m := range run {
			if m.Seq > last {
				return errDone
			}
			if err := fn(m); err != nil {
				return err
			}
			read = m.Seq
		}
		if read >= last {
			return errDone
		}
		return nil
	})
	if errors.Is(err, errDone) {
		err = nil
	}
	return read, err
}

// The checkpoint stream: the sealer's signed checkpoints, in order.
const (
	DefaultCheckpointStream = "KEYLEDGER_CHECKPOINTS"
	SubjectCheckpoints      = "keyledger.checkpoints"
)

// Checkpoints is the checkpoint stream.
type Checkpoints struct {
	stream jetstream.Stream
	js     jetstream.JetStream

	mu   sync.Mutex
	seqs []uint64 // stream sequence of each checkpoint read so far
}

// OpenCheckpoints creates or adopts the checkpoint stream: file storage,
// no delete, no purge, no age limit, like the ledger.
func OpenCheckpoints(ctx context.Context, nc *nats.Conn, replicas int) (*Checkpoints, error) {
	js, st, err := createStream(ctx, nc, 5*time.Second, jetstream.StreamConfig{
		Name: DefaultCheckpointStream, Description: "keyledger: signed checkpoints of the ledger",
		Subjects: []string{SubjectCheckpoints}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
		Discard: jetstream.DiscardNew, DenyDelete: true, DenyPurge: true, MaxMsgSize: 4 << 20, Replicas: max(replicas, 1),
		AllowDirect: true,
	})
	if err != nil {
		return nil, err
	}
	return &Checkpoints{stream: st, js: js}, nil
}

// All returns every checkpoint, in order.
func (c *Checkpoints) All(ctx context.Context) ([][]byte, error) {
	return c.After(ctx, 0)
}

// After returns the checkpoints after the first have, in order. The
// stream's sequences may have gaps (a write that failed on a full disk
// leaves one), so checkpoints are counted, not sequences: each read is of
// the next message at or after a sequence.
func (c *Checkpoints) After(ctx context.Context, have int) ([][]byte, error) {
	c.mu.Lock()
	idx, seq := 0, uint64(1)
	if have > 0 && have <= len(c.seqs) {
		idx, seq = have, c.seqs[have-1]+1
	}
	c.mu.Unlock()
	var out [][]byte
	for {
		msg, err := c.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(SubjectCheckpoints))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, mapErr("checkpoint", err)
		}
		c.mu.Lock()
		if idx == len(c.seqs) {
			c.seqs = append(c.seqs, msg.Sequence)
		}
		c.mu.Unlock()
		if idx >= have {
			out = append(out, msg.Data)
		}
		idx++
		seq = msg.Sequence + 1
	}
}

// Append appends a checkpoint if the stream holds exactly have of them:
// two sealers never fork the chain.
func (c *Checkpoints) Append(ctx context.Context, data []byte, have int) error {
	info, err := c.stream.Info(ctx)
	if err != nil {
		return mapErr("append checkpoint", err)
	}
	if info.State.Msgs != uint64(have) {
		return fmt.Errorf("eventstore: append checkpoint: the stream holds %d checkpoints, not %d: %w", info.State.Msgs, have, domain.ErrConflict)
	}
	// Expecting the stream's last sequence, not the count: a gap would
	// refuse every append after it. Another sealer appending meanwhile
	// moves the last sequence, and this append is refused.
	_, err = c.js.Publish(ctx, SubjectCheckpoints, data, jetstream.WithExpectLastSequence(info.State.LastSeq))
	if err != nil {
		return mapErr("append checkpoint", err)
	}
	return nil
}

package eventstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Group commit. With fsync on every write, a JetStream server writes and
// syncs one message at a time: concurrent single-event appends queue behind
// each other's fsync. The committer gathers the single-event appends that
// arrive while one is in flight and appends them as one atomic batch, which
// the server stores and syncs once. Each event keeps its own expected
// version and message id, and is acknowledged only once the batch is
// durable, so nothing about a command's guarantees changes. A batch the
// server refuses (one stale version or repeated message id refuses all of
// it) is retried event by event, so each command gets its own answer.

const maxGroup = 256

type pendingAppend struct {
	ctx  context.Context
	a    domain.Append
	msg  *nats.Msg
	done chan appendResult
}

type appendResult struct {
	res domain.AppendResult
	err error
}

type committer struct {
	s *Store
	// batches and gathered count the atomic batches made and the events in
	// them, for metrics and tests.
	batches, gathered atomic.Uint64

	reqs chan *pendingAppend
	stop chan struct{}
	done chan struct{}
}

func newCommitter(s *Store) *committer {
	c := &committer{s: s, reqs: make(chan *pendingAppend, maxGroup), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// append hands one event to the committer and waits for its answer.
func (c *committer) append(ctx context.Context, a domain.Append, m *nats.Msg) (domain.AppendResult, error) {
	p := &pendingAppend{ctx: ctx, a: a, msg: m, done: make(chan appendResult, 1)}
	select {
	case c.reqs <- p:
	case <-c.stop:
		return domain.AppendResult{}, fmt.Errorf("eventstore: append: store closed: %w", domain.ErrUnavailable)
	case <-ctx.Done():
		return domain.AppendResult{}, mapErr("append", ctx.Err())
	}
	// Once handed over, the append runs to its end (under its own
	// deadline): a caller that stops waiting must not be told "failed"
	// about an event that may yet be stored, so it waits for the answer.
	r := <-p.done
	return r.res, r.err
}

// GroupCommits returns how many atomic batches the committer made of
// concurrent appends, and how many events they held.
func (s *Store) GroupCommits() (batches, events uint64) {
	if s.group == nil {
		return 0, 0
	}
	return s.group.batches.Load(), s.group.gathered.Load()
}

func (c *committer) close() {
	close(c.stop)
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	group := make([]*pendingAppend, 0, maxGroup)
	for {
		select {
		case <-c.stop:
			c.drainClosed()
			return
		case p := <-c.reqs:
			group = append(group[:0], p)
		}
	gather:
		for len(group) < maxGroup {
			select {
			case p := <-c.reqs:
				group = append(group, p)
			default:
				break gather
			}
		}
		c.commit(group)
	}
}

func (c *committer) drainClosed() {
	for {
		select {
		case p := <-c.reqs:
			p.done <- appendResult{err: fmt.Errorf("eventstore: append: store closed: %w", domain.ErrUnavailable)}
		default:
			return
		}
	}
}

func (c *committer) commit(group []*pendingAppend) {
	if len(group) == 1 {
		p := group[0]
		res, err := c.s.appendDirect(p.ctx, []domain.Append{p.a}, []*nats.Msg{p.msg})
		p.done <- appendResult{res, err}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.Timeout)
	defer cancel()
	msgs := make([]*nats.Msg, len(group))
	for i, p := range group {
		msgs[i] = p.msg
	}
	res, err := c.s.appendAtomic(ctx, group[0].a.Event.ID, msgs)
	if err == nil && !res.Duplicate {
		c.batches.Add(1)
		c.gathered.Add(uint64(len(group)))
		// An atomic batch is stored contiguously, ending at res.Seq.
		first := res.Seq - uint64(len(group)-1)
		for i, p := range group {
			p.done <- appendResult{res: domain.AppendResult{Seq: first + uint64(i)}}
		}
		return
	}
	if err != nil && errors.Is(err, domain.ErrUnavailable) {
		for _, p := range group {
			p.done <- appendResult{err: err}
		}
		return
	}
	// Refused as a whole: one event in it conflicts or repeats a message id.
	// Each event goes again on its own and gets its own answer.
	for _, p := range group {
		for _, h := range []string{schemas.HeaderBatchID, schemas.HeaderBatchSeq, schemas.HeaderBatchCommit} {
			p.msg.Header.Del(h)
		}
		pctx, pcancel := context.WithTimeout(context.Background(), c.s.cfg.Timeout)
		r, e := c.s.appendDirect(pctx, []domain.Append{p.a}, []*nats.Msg{p.msg})
		pcancel()
		p.done <- appendResult{r, e}
	}
}

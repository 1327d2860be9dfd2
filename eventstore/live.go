package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// Follow reads the ledger from sequence from onwards, in order, and calls fn
// with runs of events: a run ends when the reader has caught up with the
// ledger or holds max events. It returns when ctx ends or fn fails. fn is
// called on the caller's goroutine, one run at a time; it owns the run only
// until it returns.
//
// A Store that Open made reads the ledger's live feed: the stream
// republishes each message it stores, with its sequence, on
// schemas.SubjectFeedRoot, so a new event reaches the follower as soon as
// it is stored. Read through a consumer instead, every event would be read
// back from the store under the lock its writer holds while it fsyncs,
// which slows every append. The feed is core NATS, at most once: a
// sequence that skips ahead, or a quiet feed while the stream holds more,
// sends the follower back to the stream for what it missed, so the feed
// only makes following faster and the stream stays the truth. A Store that
// OpenExisting made (an embedded validator, whose NATS user may not read
// the feed) reads the stream alone.
func (s *Store) Follow(ctx context.Context, from uint64, max int, fn func([]domain.Event) error) error {
	if !s.live {
		return s.followStream(ctx, from, max, fn)
	}
	return s.followLive(ctx, from, max, fn)
}

const (
	// feedBuffer is how many feed messages may wait for the follower
	// before NATS drops some (which the follower then reads from the
	// stream).
	feedBuffer = 1 << 16
	// feedQuiet is how long the feed may say nothing before the follower
	// asks the stream whether it missed the last messages.
	feedQuiet = 250 * time.Millisecond
)

func (s *Store) followLive(ctx context.Context, from uint64, max int, fn func([]domain.Event) error) error {
	next := from
	if next == 0 {
		next = 1
	}
	if max < 1 {
		max = 1
	}
	// Subscribe before asking where the stream ends: whatever is stored
	// after that answer is on the feed, whatever before it is read from the
	// stream.
	buf := feedBuffer
	if s.feedBuffer > 0 {
		buf = s.feedBuffer
	}
	ch := make(chan *nats.Msg, buf)
	sub, err := s.nc.ChanSubscribe(schemas.SubjectFeedRoot+".>", ch)
	if err != nil {
		return mapErr("follow: subscribe to the feed", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	fctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	err = s.nc.FlushWithContext(fctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return mapErr("follow: subscribe to the feed", err)
	}
	// fromStream reads what the feed did not bring, up to the stream's end
	// or to until, whichever is lower.
	fromStream := func(until uint64) error {
		last, err := s.LastSeq(ctx)
		if err != nil {
			return err
		}
		if until == 0 || until > last {
			until = last
		}
		if until < next {
			return nil
		}
		s.feedGaps.Add(1)
		if err := s.readRange(ctx, next, until, max, fn); err != nil {
			return err
		}
		next = until + 1
		return nil
	}
	if err := fromStream(0); err != nil {
		return err
	}
	run := make([]domain.Event, 0, max)
	quiet := time.NewTicker(feedQuiet)
	defer quiet.Stop()
	heard := false
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-quiet.C:
			if !heard {
				if err := fromStream(0); err != nil {
					return err
				}
			}
			heard = false
			continue
		case m = <-ch:
			heard = true
		}
		// Take what waits on the feed, up to a run.
		for {
			seq, subject, err := s.feedMessage(m)
			if err != nil {
				return err
			}
			if seq >= next {
				if seq > next {
					// Missed: deliver what is in hand, then read the gap.
					if err := deliver(fn, &run); err != nil {
						return err
					}
					if err := fromStream(seq - 1); err != nil {
						return err
					}
				}
				if seq == next {
					e, err := Decode(subject, m.Data, seq)
					if err != nil {
						return err
					}
					run = append(run, e)
					next++
				}
			}
			if len(run) >= max {
				break
			}
			select {
			case m = <-ch:
				continue
			default:
			}
			break
		}
		if err := deliver(fn, &run); err != nil {
			return err
		}
	}
}

// FeedGaps counts how often Follow read from the stream what its live feed
// had not brought (at the start, after a dropped message, or after a quiet
// feed).
func (s *Store) FeedGaps() uint64 { return s.feedGaps.Load() }

// feedMessage reads a republished message's sequence and original subject.
func (s *Store) feedMessage(m *nats.Msg) (uint64, string, error) {
	if st := m.Header.Get(schemas.HeaderFeedStream); st != s.cfg.Stream {
		return 0, "", fmt.Errorf("eventstore: follow: a feed message from stream %q, not %q", st, s.cfg.Stream)
	}
	seq, err := strconv.ParseUint(m.Header.Get(schemas.HeaderFeedSequence), 10, 64)
	if err != nil || seq == 0 {
		return 0, "", fmt.Errorf("eventstore: follow: a feed message without a sequence")
	}
	return seq, m.Header.Get(schemas.HeaderFeedSubject), nil
}

func deliver(fn func([]domain.Event) error, run *[]domain.Event) error {
	if len(*run) == 0 {
		return nil
	}
	err := fn(*run)
	clear(*run) // let the events go
	*run = (*run)[:0]
	return err
}

var errReadEnough = errors.New("eventstore: read enough")

// readRange reads the stream from from to until, both included, and calls
// fn with runs of at most max events.
func (s *Store) readRange(ctx context.Context, from, until uint64, max int, fn func([]domain.Event) error) error {
	err := s.followStream(ctx, from, max, func(run []domain.Event) error {
		n := len(run)
		for n > 0 && run[n-1].Seq > until {
			n--
		}
		if n > 0 {
			if err := fn(run[:n]); err != nil {
				return err
			}
		}
		if n < len(run) || (n > 0 && run[n-1].Seq == until) {
			return errReadEnough
		}
		return nil
	})
	if errors.Is(err, errReadEnough) {
		return nil
	}
	return err
}

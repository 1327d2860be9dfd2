package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/schemas"
)

// AppliedSource is the projection as the applied reporter sees it.
type AppliedSource interface {
	Applied() uint64
	WaitApplied(ctx context.Context, seq uint64) error
}

// ReportApplied publishes node's applied sequence on SubjectApplied
// whenever the projection advances, and at least four times per staleAfter
// (the node's staleness bound, which the report carries), until ctx ends;
// then it says the node is leaving. Core NATS, at most once: a lost
// report is made good by the next.
func ReportApplied(ctx context.Context, nc *nats.Conn, node string, src AppliedSource, staleAfter time.Duration, log *slog.Logger) {
	interval := max(staleAfter/4, 10*time.Millisecond)
	bound := staleAfter.Milliseconds()
	send := func(r schemas.AppliedReport) {
		raw, err := json.Marshal(r)
		if err == nil {
			err = nc.Publish(schemas.AppliedSubject(node), raw)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("eventstore: applied report not sent", "err", err)
		}
	}
	for {
		applied := src.Applied()
		send(schemas.AppliedReport{Node: node, Applied: applied, StaleAfterMs: bound})
		wctx, cancel := context.WithTimeout(ctx, interval)
		_ = src.WaitApplied(wctx, applied+1)
		cancel()
		if ctx.Err() != nil {
			send(schemas.AppliedReport{Node: node, Applied: src.Applied(), Leaving: true, StaleAfterMs: bound})
			_ = nc.FlushTimeout(time.Second)
			return
		}
	}
}

// AnnounceApplied publishes one applied report and waits until the NATS
// server has taken it (a flush): from then on every server hears of this
// node and waits for it. A node validates only once announced.
func AnnounceApplied(nc *nats.Conn, node string, applied uint64, staleAfter time.Duration) error {
	raw, err := json.Marshal(schemas.AppliedReport{Node: node, Applied: applied, StaleAfterMs: staleAfter.Milliseconds()})
	if err != nil {
		return fmt.Errorf("eventstore: applied report: %w", err)
	}
	if err := nc.Publish(schemas.AppliedSubject(node), raw); err != nil {
		return fmt.Errorf("eventstore: announce: %w", err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("eventstore: announce: %w", err)
	}
	return nil
}

// SubscribeApplied calls fn with every well-formed applied report that
// came on the subject of the node it names. Others are dropped with a
// warning: a report for another node's subject is one node speaking for
// another.
func SubscribeApplied(nc *nats.Conn, log *slog.Logger, fn func(schemas.AppliedReport)) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(schemas.AppliedSubject("*"), func(m *nats.Msg) {
		r, err := decodeApplied(m.Data)
		if err != nil {
			log.Warn("eventstore: dropped a malformed applied report", "err", err)
			return
		}
		if m.Subject != schemas.AppliedSubject(r.Node) {
			log.Warn("eventstore: dropped an applied report sent for another node", "subject", m.Subject, "node", r.Node)
			return
		}
		fn(r)
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore: subscribe applied: %w", err)
	}
	return sub, nil
}

func decodeApplied(raw []byte) (schemas.AppliedReport, error) {
	var r schemas.AppliedReport
	if err := decodeStrict(raw, &r); err != nil {
		return r, err
	}
	if !schemas.ValidNodeName(r.Node) {
		return r, fmt.Errorf("node name %q is not one subject token of 1 to 128 bytes", r.Node)
	}
	if r.StaleAfterMs < 0 {
		return r, fmt.Errorf("negative stale_after_ms")
	}
	return r, nil
}

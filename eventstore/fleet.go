package eventstore

import (
	"bytes"
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
// whenever the projection advances, and at least every interval, until ctx
// ends; then it says the node is leaving. Core NATS, at most once: a lost
// report is made good by the next.
func ReportApplied(ctx context.Context, nc *nats.Conn, node string, src AppliedSource, interval time.Duration, log *slog.Logger) {
	send := func(r schemas.AppliedReport) {
		raw, err := json.Marshal(r)
		if err == nil {
			err = nc.Publish(schemas.SubjectApplied, raw)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("eventstore: applied report not sent", "err", err)
		}
	}
	for {
		applied := src.Applied()
		send(schemas.AppliedReport{Node: node, Applied: applied})
		wctx, cancel := context.WithTimeout(ctx, interval)
		_ = src.WaitApplied(wctx, applied+1)
		cancel()
		if ctx.Err() != nil {
			send(schemas.AppliedReport{Node: node, Applied: src.Applied(), Leaving: true})
			_ = nc.FlushTimeout(time.Second)
			return
		}
	}
}

// SubscribeApplied calls fn with every well-formed applied report.
// Malformed ones are dropped with a warning.
func SubscribeApplied(nc *nats.Conn, log *slog.Logger, fn func(schemas.AppliedReport)) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(schemas.SubjectApplied, func(m *nats.Msg) {
		r, err := decodeApplied(m.Data)
		if err != nil {
			log.Warn("eventstore: dropped a malformed applied report", "err", err)
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
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, err
	}
	if dec.More() {
		return r, fmt.Errorf("trailing data")
	}
	if r.Node == "" || len(r.Node) > 128 {
		return r, fmt.Errorf("node name of %d bytes", len(r.Node))
	}
	return r, nil
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/fleet"
	"github.com/keyledger/keyledger/projections"
	"github.com/keyledger/keyledger/schemas"
)

// fleetView is the projection as commands see it: a command's wait for its
// event is over once this node and every other node of the fleet have
// applied it (fleet.Barrier), so its answer holds on every node.
type fleetView struct {
	*projections.Projection
	fleet *fleet.Fleet
}

func (v fleetView) WaitApplied(ctx context.Context, seq uint64) error {
	if err := v.Projection.WaitApplied(ctx, seq); err != nil {
		return err
	}
	if _, err := v.fleet.Barrier(ctx, seq); err != nil {
		return fmt.Errorf("%v: %w", err, domain.ErrUnavailable)
	}
	return nil
}

// defaultNodeName is the host name and a random suffix: unique per
// process, so that a restarted node is a new member, not a stale one.
func defaultNodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "keyledger"
	}
	raw := make([]byte, 4)
	_, _ = rand.Read(raw)
	return schemas.NodeName(host + "-" + hex.EncodeToString(raw))
}

// fleetMetrics are the barrier's figures and the fleet's size as this
// node sees it.
func fleetMetrics(f *fleet.Fleet) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keyledger_fleet_barrier_waits_total",
			Help: "Commands answered after waiting for every node of the fleet to apply them.",
		}, func() float64 { return float64(f.Waits()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keyledger_fleet_barrier_lagged_total",
			Help: "Barriers that ran out the staleness bound with a node behind (that node stopped validating until it caught up).",
		}, func() float64 { return float64(f.Lagged()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keyledger_fleet_nodes",
			Help: "Other nodes (servers, embedded validators) heard from within the staleness bound.",
		}, func() float64 { return float64(len(f.Nodes())) }),
	}
}

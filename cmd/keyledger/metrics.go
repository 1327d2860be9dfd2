package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newMetricsRegistry is the registry /metrics serves: Go and process
// collectors, and the ledger's and projection's sequences read at scrape
// time. The API adds its validation and command counters to it.
func newMetricsRegistry(applied func() uint64, lastSeq func(context.Context) (uint64, error)) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keyledger_projection_applied_sequence",
			Help: "Ledger sequence of the last event this node's projection applied.",
		}, func() float64 { return float64(applied()) }),
		ledgerCollector{
			applied: applied, lastSeq: lastSeq,
			last: prometheus.NewDesc("keyledger_ledger_last_sequence",
				"Sequence of the last event in the ledger stream, as this node reads it.", nil, nil),
			lag: prometheus.NewDesc("keyledger_projection_lag_events",
				"Events in the ledger this node's projection has not applied yet.", nil, nil),
		},
	)
	return reg
}

// ledgerCollector reads the ledger's last sequence once per scrape; when
// the ledger cannot be read it reports nothing rather than a wrong lag.
type ledgerCollector struct {
	applied func() uint64
	lastSeq func(context.Context) (uint64, error)
	last    *prometheus.Desc
	lag     *prometheus.Desc
}

func (c ledgerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.last
	ch <- c.lag
}

func (c ledgerCollector) Collect(ch chan<- prometheus.Metric) {
	applied := c.applied()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	last, err := c.lastSeq(ctx)
	if err != nil {
		return
	}
	lag := uint64(0)
	if last > applied {
		lag = last - applied
	}
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(last))
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(lag))
}

package bench

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"
)

// Options size a run.
type Options struct {
	Quick     bool          // tiny sizes, for CI: fails only if a scenario errors
	Keys      int           // keys loaded where a scenario needs a population
	Rounds    int           // alternations of reference and subject
	RoundTime time.Duration // how long each side runs per round
	Conns     int           // concurrent workers (commands)
	// HTTPConns is how many keep-alive connections drive the HTTP
	// scenarios, each with one request in flight. A closed loop at
	// saturation queues, so latency grows with connections ÷ throughput:
	// a few connections measure the server, many measure the queue.
	HTTPConns int
	Dir       string // scratch folder, removed by the caller
	// PostgresDSN is a PostgreSQL server for validate-postgres; empty skips
	// the scenario (with a note saying why).
	PostgresDSN string
	Log         *slog.Logger
}

// Defaults returns the full-run sizes, or the quick ones.
func Defaults(quick bool) Options {
	if quick {
		return Options{Quick: true, Keys: 5_000, Rounds: 2, RoundTime: 100 * time.Millisecond, Conns: 4, HTTPConns: 4}
	}
	return Options{Keys: 1_000_000, Rounds: 7, RoundTime: 1 * time.Second, Conns: 16, HTTPConns: 4}
}

// Measure is one side of a comparison.
type Measure struct {
	Name string `json:"name"`
	// OpsPerSec is the median over rounds.
	OpsPerSec float64 `json:"ops_per_sec"`
	// NsPerOp is 1e9/OpsPerSec, for single-threaded scenarios.
	NsPerOp float64 `json:"ns_per_op,omitempty"`
	// P50Ms and P99Ms are latency percentiles over every operation of every
	// round, when the scenario records latencies.
	P50Ms       float64   `json:"p50_ms,omitempty"`
	P99Ms       float64   `json:"p99_ms,omitempty"`
	RoundsPerOp []float64 `json:"rounds_ops_per_sec"`
	Ops         int64     `json:"ops"`
}

// Result is one line of the summary.
type Result struct {
	Scenario  string  `json:"scenario"`
	Subject   Measure `json:"subject"`
	Reference Measure `json:"reference"`
	// Ratio is Subject over Reference in the scenario's stated sense (see
	// RatioOf), computed from the medians.
	Ratio   float64  `json:"ratio"`
	RatioOf string   `json:"ratio_of"`
	Target  string   `json:"target"`
	Met     *bool    `json:"met,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	// Value is a single figure for scenarios without a reference (memory).
	Value     float64 `json:"value,omitempty"`
	ValueUnit string  `json:"value_unit,omitempty"`
	Skipped   string  `json:"skipped,omitempty"`
}

// Progress receives a scenario's steps for the progress bar.
type Progress func(step string, done, total int)

// Scenario is one measurement.
type Scenario struct {
	Name string
	Run  func(ctx context.Context, o Options, p Progress) ([]Result, error)
}

// Sample is what one side did in one round.
type Sample struct {
	Ops       int64
	Elapsed   time.Duration
	Latencies []time.Duration // optional
}

// Side runs one side of a comparison for about d and reports what it did.
type Side func(ctx context.Context, d time.Duration) (Sample, error)

// Alternate runs reference and subject in turn, rounds times each, starting
// with the reference on even rounds and the subject on odd ones, and returns
// both measures.
func Alternate(ctx context.Context, o Options, p Progress, step string, refName string, ref Side, subjName string, subj Side) (refM, subjM Measure, err error) {
	var refS, subjS []Sample
	for r := 0; r < o.Rounds; r++ {
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, isSubj := range order {
			if err := ctx.Err(); err != nil {
				return refM, subjM, err
			}
			side, name := ref, refName
			if isSubj {
				side, name = subj, subjName
			}
			s, err := side(ctx, o.RoundTime)
			if err != nil {
				return refM, subjM, fmt.Errorf("%s: round %d: %w", name, r+1, err)
			}
			if isSubj {
				subjS = append(subjS, s)
			} else {
				refS = append(refS, s)
			}
		}
		if p != nil {
			p(step, r+1, o.Rounds)
		}
	}
	return Summarize(refName, refS), Summarize(subjName, subjS), nil
}

// Summarize turns a side's samples into a Measure.
func Summarize(name string, samples []Sample) Measure {
	m := Measure{Name: name}
	var lats []time.Duration
	for _, s := range samples {
		rate := 0.0
		if s.Elapsed > 0 {
			rate = float64(s.Ops) / s.Elapsed.Seconds()
		}
		m.RoundsPerOp = append(m.RoundsPerOp, rate)
		m.Ops += s.Ops
		lats = append(lats, s.Latencies...)
	}
	m.OpsPerSec = Median(m.RoundsPerOp)
	if m.OpsPerSec > 0 {
		m.NsPerOp = 1e9 / m.OpsPerSec
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		m.P50Ms = ms(Percentile(lats, 0.50))
		m.P99Ms = ms(Percentile(lats, 0.99))
	}
	return m
}

// RoundRatios describes the ratio of subject to reference round by round
// (the i-th round of each side ran next to each other): its median and its
// range. Where the median of these and the ratio of the medians disagree,
// or the range is wide, the machine was too noisy for the headline ratio
// to be read closer than that range.
func RoundRatios(subject, reference Measure) (lo, median, hi float64) {
	n := min(len(subject.RoundsPerOp), len(reference.RoundsPerOp))
	rs := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if reference.RoundsPerOp[i] > 0 {
			rs = append(rs, subject.RoundsPerOp[i]/reference.RoundsPerOp[i])
		}
	}
	if len(rs) == 0 {
		return 0, 0, 0
	}
	return slices.Min(rs), Median(rs), slices.Max(rs)
}

// Median of xs (0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Percentile of sorted durations, nearest rank.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Met returns a pointer to b, for Result.Met.
func Met(b bool) *bool { return &b }

// RunUntil calls op in a loop for about d, checking the clock every batch
// calls, and returns how many calls it made. For single-threaded CPU-bound
// sides.
func RunUntil(d time.Duration, batch int, op func(i int)) Sample {
	start := time.Now()
	deadline := start.Add(d)
	var n int
	for {
		for j := 0; j < batch; j++ {
			op(n)
			n++
		}
		if time.Now().After(deadline) {
			break
		}
	}
	return Sample{Ops: int64(n), Elapsed: time.Since(start)}
}

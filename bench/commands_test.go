package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// No timed assertions: only that the scenarios run and report figures that
// make sense.
func TestCommandsAndRebuildQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts JetStream servers and fsyncs every write")
	}
	for _, s := range []struct {
		name      string
		run       func(context.Context, Options, Progress) ([]Result, error)
		scenarios []string
		latencies bool
	}{
		{"commands", commands, []string{"commands-create", "commands-revoke", "commands-revoke-latency", "commands-create-floor", "commands-revoke-floor"}, true},
		{"rebuild", rebuild, []string{"rebuild"}, false},
	} {
		t.Run(s.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			o := Defaults(true)
			o.Dir = t.TempDir()
			steps := 0
			rs, err := s.run(ctx, o, func(string, int, int) { steps++ })
			if err != nil {
				t.Fatal(err)
			}
			if steps == 0 {
				t.Error("no progress reported")
			}
			if len(rs) != len(s.scenarios) {
				t.Fatalf("%d results, want %d", len(rs), len(s.scenarios))
			}
			for i, r := range rs {
				if r.Scenario != s.scenarios[i] {
					t.Errorf("result %d is %q, want %q", i, r.Scenario, s.scenarios[i])
				}
				for _, m := range []Measure{r.Subject, r.Reference} {
					if m.Name == "" || m.OpsPerSec <= 0 || m.Ops <= 0 || len(m.RoundsPerOp) != o.Rounds {
						t.Errorf("%s: measure %+v", r.Scenario, m)
					}
					if s.latencies && (m.P50Ms <= 0 || m.P99Ms < m.P50Ms) {
						t.Errorf("%s: %s latencies p50 %v p99 %v", r.Scenario, m.Name, m.P50Ms, m.P99Ms)
					}
				}
				// A row with a target is judged; a floor is only reported.
				reported := strings.HasPrefix(r.Target, "(reported")
				if r.Ratio <= 0 || r.RatioOf == "" || r.Target == "" || (r.Met == nil) != reported || len(r.Notes) == 0 {
					t.Errorf("%s: result %+v", r.Scenario, r)
				}
				if s.name == "rebuild" && r.Subject.Ops != int64(o.Keys*o.Rounds) {
					t.Errorf("rebuild applied %d events in all, want %d", r.Subject.Ops, o.Keys*o.Rounds)
				}
			}
			// The scenario cleans up after itself.
			if _, err := os.Stat(filepath.Join(o.Dir, s.name)); !os.IsNotExist(err) {
				t.Errorf("%s left its folder behind: %v", s.name, err)
			}
		})
	}
}

func TestCommandsHonoursCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a JetStream server")
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := Defaults(true)
	o.Dir = t.TempDir()
	o.RoundTime = time.Minute
	go func() {
		time.Sleep(500 * time.Millisecond)
		cancel()
	}()
	// A run that ignored the cancel would go on for minutes: the test's
	// own timeout catches it.
	if _, err := commands(ctx, o, nil); err == nil {
		t.Fatal("a cancelled run returned no error")
	}
}

func TestRoundRatios(t *testing.T) {
	subj := Measure{RoundsPerOp: []float64{90, 50, 120}}
	ref := Measure{RoundsPerOp: []float64{100, 100, 100}}
	lo, med, hi := RoundRatios(subj, ref)
	if lo != 0.5 || med != 0.9 || hi != 1.2 {
		t.Fatalf("RoundRatios = %v, %v, %v; want 0.5, 0.9, 1.2", lo, med, hi)
	}
	if lo, med, hi := RoundRatios(Measure{}, ref); lo != 0 || med != 0 || hi != 0 {
		t.Fatalf("no rounds: %v, %v, %v", lo, med, hi)
	}
}

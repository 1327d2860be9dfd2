package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// All lists every scenario, in the order a full run takes them.
func All() []Scenario {
	return []Scenario{
		{Name: "validate-inproc", Run: validateInproc},
		{Name: "validate-http", Run: validateHTTP},
		{Name: "validate-postgres", Run: validatePostgres},
		{Name: "commands", Run: commands},
		{Name: "rebuild", Run: rebuild},
		{Name: "memory", Run: memory},
	}
}

// Select returns the named scenarios (all when names is empty).
func Select(names []string) ([]Scenario, error) {
	if len(names) == 0 {
		return All(), nil
	}
	var out []Scenario
	for _, n := range names {
		found := false
		for _, s := range All() {
			if s.Name == n {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("bench: no scenario %q", n)
		}
	}
	return out, nil
}

// Run runs scenarios in order, drawing a progress bar on progress (nil for
// none). It stops at the first scenario that fails.
func Run(ctx context.Context, o Options, scenarios []Scenario, progress io.Writer) ([]Result, error) {
	var results []Result
	var (
		lastLine string
		lastDraw time.Time
	)
	for i, s := range scenarios {
		bar := func(step string, done, total int) {
			if progress == nil {
				return
			}
			frac := 0.0
			if total > 0 {
				frac = float64(done) / float64(total)
			}
			overall := (float64(i) + min(max(frac, 0), 1)) / float64(len(scenarios))
			const width = 30
			n := int(overall*width + 0.5)
			line := fmt.Sprintf("\r[%s%s] %3.0f%%  %-18s %-40s", strings.Repeat("#", n), strings.Repeat(".", width-n), overall*100, s.Name, truncate(step, 40))
			// Redraw only on change, and at most ten times a second: the bar
			// also goes to logs that are not terminals.
			if line == lastLine || (time.Since(lastDraw) < 100*time.Millisecond && done != 0 && done != total) {
				return
			}
			lastLine, lastDraw = line, time.Now()
			fmt.Fprint(progress, line)
		}
		bar("starting", 0, 1)
		start := time.Now()
		rs, err := s.Run(ctx, o, bar)
		if err != nil {
			if progress != nil {
				fmt.Fprintln(progress)
			}
			return results, fmt.Errorf("bench: %s: %w", s.Name, err)
		}
		if o.Log != nil {
			o.Log.Debug("scenario done", "scenario", s.Name, "took", time.Since(start).Round(time.Millisecond))
		}
		results = append(results, rs...)
	}
	if progress != nil {
		fmt.Fprintf(progress, "\r[%s] 100%%  %-59s\n", strings.Repeat("#", 30), "done")
	}
	return results, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// WriteJSON writes the results for machines.
func WriteJSON(w io.Writer, meta map[string]string, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Meta    map[string]string `json:"meta"`
		Results []Result          `json:"results"`
	}{meta, rs})
}

// WriteTable writes the summary table for people.
func WriteTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tkeyledger\treference\tratio\ttarget\tmet")
	for _, r := range rs {
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\tskipped: %s\t\t\t%s\t\n", r.Scenario, r.Skipped, r.Target)
			continue
		}
		met := ""
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*r.Met]
		}
		if r.ValueUnit != "" && r.Reference.Name == "" {
			fmt.Fprintf(tw, "%s\t%.1f %s\t\t\t%s\t%s\n", r.Scenario, r.Value, r.ValueUnit, r.Target, met)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f× %s\t%s\t%s\n", r.Scenario, describe(r.Subject), describe(r.Reference), r.Ratio, r.RatioOf, r.Target, met)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s: %s\n", r.Scenario, n)
		}
	}
	return nil
}

func describe(m Measure) string {
	s := fmt.Sprintf("%s %s/s", m.Name, human(m.OpsPerSec))
	if m.NsPerOp > 0 && m.NsPerOp < 100_000 && m.P50Ms == 0 {
		s += fmt.Sprintf(" (%.0f ns)", m.NsPerOp)
	}
	if m.P50Ms > 0 || m.P99Ms > 0 {
		s += fmt.Sprintf(" p50 %.3f ms p99 %.3f ms", m.P50Ms, m.P99Ms)
	}
	return s
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// WriteMarkdown writes a BENCHMARKS.md: the machine, the command and the
// date, the table, the notes, and the chart when there is one.
func WriteMarkdown(w io.Writer, meta map[string]string, rs []Result, chart string) error {
	var b strings.Builder
	b.WriteString("# keyledger benchmarks\n\n")
	b.WriteString("Every figure is a median over alternating rounds of keyledger and a reference measured in the same run, so that a noisy machine slows both alike. Ratios are keyledger over the reference in the sense each row states.\n\n")
	fmt.Fprintf(&b, "- date: %s\n- command: `%s`\n- machine: %s CPUs, %s, %s\n- took: %s\n\n", meta["date"], meta["command"], meta["cpus"], meta["cpu"], meta["go"], meta["took"])
	if chart != "" {
		fmt.Fprintf(&b, "![ratios](%s)\n\n", chart)
	}
	b.WriteString("| scenario | keyledger | reference | ratio | target | met |\n|---|---|---|---|---|---|\n")
	for _, r := range rs {
		met := ""
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*r.Met]
		}
		switch {
		case r.Skipped != "":
			fmt.Fprintf(&b, "| %s | skipped: %s | | | %s | |\n", r.Scenario, r.Skipped, r.Target)
		case r.ValueUnit != "" && r.Reference.Name == "":
			fmt.Fprintf(&b, "| %s | %.1f %s | | | %s | %s |\n", r.Scenario, r.Value, r.ValueUnit, r.Target, met)
		default:
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f× (%s) | %s | %s |\n", r.Scenario, describe(r.Subject), describe(r.Reference), r.Ratio, r.RatioOf, r.Target, met)
		}
	}
	b.WriteString("\n")
	for _, r := range rs {
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s: %s\n", r.Scenario, n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

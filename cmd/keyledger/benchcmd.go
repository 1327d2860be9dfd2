package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/keyledger/keyledger/bench"
)

// runBench is `keyledger bench`: every scenario against its reference, in
// one run, with a progress bar and a summary table (or JSON).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == bench.MemoryChildFlag {
		// The memory scenario re-runs this binary to measure a process that
		// holds only what a server holds.
		return bench.MemoryChild(args[1:])
	}
	fs := flag.NewFlagSet("keyledger bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "run every scenario small (CI); fails only if a scenario errors")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	only := fs.String("only", "", "comma-separated scenarios (default: all): validate-inproc, validate-http, validate-postgres, commands, rebuild, memory")
	keys := fs.Int("keys", 0, "keys to load (default 1000000, quick 5000)")
	rounds := fs.Int("rounds", 0, "alternating rounds per comparison (default 7, quick 2)")
	roundTime := fs.Duration("round-time", 0, "time per side per round (default 1s, quick 100ms)")
	conns := fs.Int("conns", 0, "concurrent workers for the commands scenario (default 16, quick 4)")
	httpConns := fs.Int("http-conns", 0, "keep-alive connections for the HTTP scenarios (default 4)")
	pgDSN := fs.String("postgres-dsn", env("KEYLEDGER_BENCH_POSTGRES_DSN", ""), "PostgreSQL for validate-postgres, e.g. from scripts/postgres.sh (KEYLEDGER_BENCH_POSTGRES_DSN)")
	chart := fs.String("chart", "", "also write an SVG chart of the ratios to this file")
	markdown := fs.String("markdown", "", "also write the results as a BENCHMARKS.md to this file (with --chart, the chart is linked from it)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	o := bench.Defaults(*quick)
	if *keys > 0 {
		o.Keys = *keys
	}
	if *rounds > 0 {
		o.Rounds = *rounds
	}
	if *roundTime > 0 {
		o.RoundTime = *roundTime
	}
	if *conns > 0 {
		o.Conns = *conns
	}
	if *httpConns > 0 {
		o.HTTPConns = *httpConns
	}
	o.PostgresDSN = *pgDSN
	o.Log = newLogger(stderr, "warn")
	var names []string
	if *only != "" {
		names = strings.Split(*only, ",")
	}
	scenarios, err := bench.Select(names)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	dir, err := os.MkdirTemp("", "keyledger-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.Dir = dir

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	results, err := bench.Run(ctx, o, scenarios, stderr)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	meta := map[string]string{
		"date":    start.UTC().Format(time.RFC3339),
		"command": "keyledger bench " + strings.Join(args, " "),
		"go":      runtime.Version(),
		"cpus":    fmt.Sprint(runtime.NumCPU()),
		"cpu":     bench.CPUModel(),
		"host":    host,
		"took":    time.Since(start).Round(time.Second).String(),
	}
	if *chart != "" {
		f, err := os.Create(*chart)
		if err != nil {
			return err
		}
		if err := bench.WriteSVG(f, results); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if *markdown != "" {
		f, err := os.Create(*markdown)
		if err != nil {
			return err
		}
		chartRef := ""
		if *chart != "" {
			chartRef = filepath.Base(*chart)
		}
		if err := bench.WriteMarkdown(f, meta, results, chartRef); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if *asJSON {
		return bench.WriteJSON(stdout, meta, results)
	}
	fmt.Fprintf(stdout, "keyledger bench, %s, %s CPUs (%s), %s, took %s\n\n", meta["date"], meta["cpus"], meta["cpu"], meta["go"], meta["took"])
	return bench.WriteTable(stdout, results)
}

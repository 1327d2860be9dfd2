package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/keyledger/keyledger/projections"
)

// MemoryChildFlag is the hidden argument of `keyledger bench` that runs
// MemoryChild: `keyledger bench --memory-child DIR`.
const MemoryChildFlag = "--memory-child"

// MemoryChildCommand returns the command that measures the projection at
// dir in a fresh process (see MemoryChild). The default re-executes the
// current binary as `keyledger bench --memory-child DIR`; tests, whose
// binary is not keyledger, replace it.
var MemoryChildCommand = func(dir string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return exec.Command(exe, "bench", MemoryChildFlag, dir)
}

// memoryReport is what the child prints, one JSON line on stdout.
type memoryReport struct {
	Marker     string `json:"keyledger_memory_child"`
	RSSBytes   int64  `json:"rss_bytes"`
	HWMBytes   int64  `json:"hwm_bytes"`
	HeapInuse  uint64 `json:"heap_inuse_bytes"`
	Sys        uint64 `json:"go_sys_bytes"`
	LoadMillis int64  `json:"load_ms"`
}

const memoryMarker = "v1"

// MemoryChild is the measured process of the memory scenario: it holds
// only what a server holds. It opens the projection at the folder given as
// its one argument (projections.Open loads the in-memory validation index
// from Pebble exactly as a restarting server does), collects garbage and
// returns freed memory to the OS, waits a second, and prints its resident
// memory (VmRSS) as one JSON line on stdout. args are the arguments after
// the hidden flag (a leading MemoryChildFlag is tolerated).
func MemoryChild(args []string) error {
	if len(args) > 0 && args[0] == MemoryChildFlag {
		args = args[1:]
	}
	if len(args) != 1 || args[0] == "" {
		return fmt.Errorf("usage: keyledger bench %s DIR", MemoryChildFlag)
	}
	start := time.Now()
	proj, err := projections.Open(projections.Config{Dir: args[0]})
	if err != nil {
		return err
	}
	defer proj.Close()
	load := time.Since(start)
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(time.Second)
	st, err := procStatus()
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep := memoryReport{
		Marker: memoryMarker, RSSBytes: st["VmRSS"], HWMBytes: st["VmHWM"],
		HeapInuse: ms.HeapInuse, Sys: ms.Sys, LoadMillis: load.Milliseconds(),
	}
	runtime.KeepAlive(proj)
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// procStatus reads the kB figures of /proc/self/status, in bytes.
func procStatus() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("memory: %w (Linux only)", err)
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[name] = n << 10
			}
		}
	}
	if _, ok := out["VmRSS"]; !ok {
		return nil, errors.New("memory: no VmRSS in /proc/self/status")
	}
	return out, nil
}

// memory measures the resident memory of a process that has loaded o.Keys
// active keys, the way a restarting server loads them: the population is
// written here, then measured in a child process (MemoryChildCommand) so
// that nothing the benchmark itself holds is counted.
func memory(ctx context.Context, o Options, p Progress) ([]Result, error) {
	// Populate revokes one key in 20; load enough that o.Keys are active.
	// The revoked keys stay in the index, as they do in a server.
	total := (o.Keys*revokedShare + revokedShare - 2) / (revokedShare - 1)
	dir := filepath.Join(o.Dir, "memory")
	pop, err := Populate(ctx, dir, total, scaleProgress(p, 0, 0.8))
	if err != nil {
		return nil, err
	}
	revoked := pop.Revoked
	active := len(pop.Values) - revoked
	if err := pop.Close(); err != nil {
		return nil, err
	}
	pop = nil
	if p != nil {
		p("measuring a fresh process", 8, 10)
	}
	rep, err := runMemoryChild(ctx, dir)
	if err != nil {
		return nil, err
	}
	// The same process over an empty projection: the fixed cost (runtime,
	// Pebble), so that the cost per key can be told apart from it.
	if p != nil {
		p("measuring an empty projection", 9, 10)
	}
	base, err := runMemoryChild(ctx, filepath.Join(o.Dir, "memory-empty"))
	if err != nil {
		return nil, err
	}
	if p != nil {
		p("measured", 10, 10)
	}
	mb := float64(rep.RSSBytes) / 1e6
	perKey := float64(rep.RSSBytes-base.RSSBytes) / float64(total)
	perActive := float64(rep.RSSBytes-base.RSSBytes) / float64(max(active, 1))
	r := Result{
		Scenario: "memory", Value: mb, ValueUnit: "MB RSS",
		Target: "≤ 300 MB for 1M keys",
		Notes: []string{
			fmt.Sprintf("a fresh process that opened the projection of %d active keys (+%d revoked, also held in the index) loaded it in %d ms; after GC: VmRSS %.1f MB, Go heap in use %.1f MB; peak RSS while loading %.1f MB",
				active, revoked, rep.LoadMillis, mb, float64(rep.HeapInuse)/1e6, float64(rep.HWMBytes)/1e6),
			fmt.Sprintf("%.0f bytes of RSS per key held (%.0f per active key) above the %.1f MB of the same process over an empty projection",
				perKey, perActive, float64(base.RSSBytes)/1e6),
		},
	}
	if o.Keys >= 1_000_000 {
		r.Met = Met(mb <= 300)
	} else {
		r.Notes = append(r.Notes, fmt.Sprintf("only %d active keys, not judged: at %.0f bytes per active key, 1M active keys would take about %.0f MB (an overestimate at small sizes, where Pebble's caches filling up weigh on few keys)",
			active, perActive, (float64(base.RSSBytes)+perActive*1e6)/1e6))
	}
	return []Result{r}, nil
}

// runMemoryChild runs MemoryChildCommand(dir) and parses its report.
func runMemoryChild(ctx context.Context, dir string) (memoryReport, error) {
	var rep memoryReport
	cmd := MemoryChildCommand(dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return rep, fmt.Errorf("start the child: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-waited
		return rep, ctx.Err()
	}
	if err != nil {
		return rep, fmt.Errorf("the child %v failed (is `keyledger bench %s DIR` wired to bench.MemoryChild?): %w: %s", cmd.Args, MemoryChildFlag, err, bytes.TrimSpace(stderr.Bytes()))
	}
	// The last line that is our report: a test binary prints more.
	lines := bytes.Split(stdout.Bytes(), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		var r memoryReport
		if json.Unmarshal(bytes.TrimSpace(lines[i]), &r) == nil && r.Marker == memoryMarker {
			if r.RSSBytes <= 0 {
				break
			}
			return r, nil
		}
	}
	return rep, fmt.Errorf("the child %v printed no report: %s %s", cmd.Args, bytes.TrimSpace(stdout.Bytes()), bytes.TrimSpace(stderr.Bytes()))
}

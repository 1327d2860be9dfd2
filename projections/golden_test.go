package projections

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyledger/keyledger/domain"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// checkGolden compares got with testdata/<name>.golden, or rewrites the file
// with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs from the projection's Dump at line %d:\n got %s\nwant %s\n(run with -update to accept)", path, i+1, g, w)
			}
		}
	}
}

// TestGoldenDump applies the scenario ledger (with fixed hashes) and compares
// the whole projection with the golden file, so any change to the stored
// layout or to the fold is visible in review.
func TestGoldenDump(t *testing.T) {
	p, _ := openMem(t)
	l := scenario(fixedValue)
	apply(t, p, l.events)
	if got, want := p.Applied(), uint64(len(l.events)); got != want {
		t.Fatalf("Applied() = %d, want %d", got, want)
	}
	got := dump(t, p)
	// Independent of the golden file: every key's record holds its hash
	// (the in-memory index is loaded from it; there is no index by hash in
	// Pebble), and the checkpoint is the last sequence.
	for n := 1; n <= 8; n++ {
		h := domain.HashKey(fixedValue(n))
		if !strings.Contains(got, fmt.Sprintf(`"k/%s" "{\"id\":\"%[1]s\",`, keyID(n))) {
			t.Errorf("Dump has no record for key %d", n)
		}
		if !strings.Contains(got, fmt.Sprintf(`\"hash\":\"%x\"`, h[:])) {
			t.Errorf("Dump has no record with the hash of key %d", n)
		}
	}
	if strings.Contains(got, `"h/`) {
		t.Errorf("Dump has an index by hash")
	}
	if !strings.Contains(got, fmt.Sprintf("%q %q\n", "m/applied", "\x00\x00\x00\x00\x00\x00\x00\x0e")) {
		t.Errorf("Dump has no checkpoint at seq 14")
	}
	checkGolden(t, "scenario", got)
}

// TestGoldenDumpEventByEvent: applying the scenario one event per run gives
// the same projection as applying it in one run.
func TestGoldenDumpEventByEvent(t *testing.T) {
	p, _ := openMem(t)
	l := scenario(fixedValue)
	for _, e := range l.events {
		apply(t, p, l.events[e.Seq-1:e.Seq])
	}
	checkGolden(t, "scenario", dump(t, p))
}

package bench

import (
	"context"

	"crypto/sha256"
	"fmt"
	"github.com/keyledger/keyledger/domain"
	"math/rand/v2"
	"path/filepath"
	"time"
)

// validateInproc measures validation through the projection, the code path
// the HTTP handler calls, against one SHA-256 of each presented value: the
// floor of any design that stores only hashes.
func validateInproc(ctx context.Context, o Options, p Progress) ([]Result, error) {
	pop, err := Populate(ctx, filepath.Join(o.Dir, "inproc"), o.Keys, p)
	if err != nil {
		return nil, err
	}
	defer pop.Close()
	var sink byte
	sha := func(values []string) Side {
		// The reference hashes bytes already in memory: the bare cost of
		// SHA-256, with no conversion or allocation around it.
		bytesOf := make([][]byte, len(values))
		for i, v := range values {
			bytesOf[i] = []byte(v)
		}
		return func(_ context.Context, d time.Duration) (Sample, error) {
			return RunUntil(d, 1024, func(i int) {
				h := sha256.Sum256(bytesOf[i&(mixLen-1)])
				sink ^= h[0]
			}), nil
		}
	}
	validate := func(values []string) Side {
		var k domain.ValidKey
		return func(_ context.Context, d time.Duration) (Sample, error) {
			return RunUntil(d, 1024, func(i int) {
				if reason := pop.Proj.ValidateInto(values[i&(mixLen-1)], &k); reason == "" {
					sink ^= k.ID[0]
				}
			}), nil
		}
	}
	var out []Result
	for _, c := range []struct {
		name, values string
		seq          []string
	}{
		{"validate-inproc", "realistic mix", pop.Mix},
		{"validate-inproc-uniform", "uniform hits", pop.UniformHits(rand.New(rand.NewPCG(3, 4)))},
	} {
		ref, subj, err := Alternate(ctx, o, p, c.values, "sha256", sha(c.seq), "validate", validate(c.seq))
		if err != nil {
			return nil, err
		}
		ratio := subj.NsPerOp / ref.NsPerOp
		r := Result{
			Scenario: c.name, Subject: subj, Reference: ref, Ratio: ratio,
			RatioOf: "cost of a validation ÷ one SHA-256 of the key", Target: "≤ 1.5×",
			Notes: []string{fmt.Sprintf("%s over %d keys (%d revoked), single goroutine", c.values, len(pop.Values), pop.Revoked)},
		}
		if c.name == "validate-inproc" {
			r.Met = Met(ratio <= 1.5)
		} else {
			r.Target = "(worst case, reported)"
		}
		out = append(out, r)
	}
	_ = sink
	return out, nil
}

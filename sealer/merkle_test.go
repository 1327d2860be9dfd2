package sealer

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

func leaves(n int) []Hash {
	out := make([]Hash, n)
	for i := range out {
		out[i] = LeafHash(uint64(i+1), "s", []byte(fmt.Sprint(i)))
	}
	return out
}

// The incremental root equals RFC 6962's recursive MTH for every size, and
// every audit path of every leaf verifies, and fails for another leaf,
// index or root.
func TestTreeMatchesRFC6962(t *testing.T) {
	ls := leaves(70)
	var tr Tree
	if tr.Root() != sha256.Sum256(nil) {
		t.Fatal("empty root")
	}
	for n := 1; n <= len(ls); n++ {
		tr.Append(ls[n-1])
		if got, want := tr.Root(), mth(ls[:n]); got != want {
			t.Fatalf("size %d: root %x, MTH %x", n, got, want)
		}
		root := tr.Root()
		for i := 0; i < n; i++ {
			p := tr.Proof(uint64(i), uint64(n))
			if !VerifyInclusion(ls[i], uint64(i), uint64(n), p, root) {
				t.Fatalf("size %d: proof of %d does not verify", n, i)
			}
			if n > 1 && VerifyInclusion(ls[(i+1)%n], uint64(i), uint64(n), p, root) {
				t.Fatalf("size %d: proof of %d verifies another leaf", n, i)
			}
			if VerifyInclusion(ls[i], uint64(i), uint64(n), p, ls[0]) && n > 1 {
				t.Fatalf("size %d: proof of %d verifies a wrong root", n, i)
			}
		}
	}
}

// Known answer: a two-leaf tree is H(0x01 || leaf0 || leaf1).
func TestNodeHashPrefix(t *testing.T) {
	a, b := leaves(2)[0], leaves(2)[1]
	buf := append(append([]byte{1}, a[:]...), b[:]...)
	if mth([]Hash{a, b}) != sha256.Sum256(buf) {
		t.Fatal("interior nodes are not H(0x01 || l || r)")
	}
}

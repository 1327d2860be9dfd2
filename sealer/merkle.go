package sealer

import (
	"crypto/sha256"
	"encoding/binary"
)

// Hash is a SHA-256 digest.
type Hash = [sha256.Size]byte

// LeafHash is RFC 6962's leaf hash of one ledger message: the message's
// stream sequence and subject are part of it, so a message moved to
// another position or subject no longer matches.
func LeafHash(seq uint64, subject string, data []byte) Hash {
	h := sha256.New()
	var b [11]byte
	b[0] = 0x00 // RFC 6962 leaf prefix
	binary.BigEndian.PutUint64(b[1:9], seq)
	binary.BigEndian.PutUint16(b[9:11], uint16(len(subject)))
	h.Write(b[:])
	h.Write([]byte(subject))
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

// nodeHash is RFC 6962's interior node hash.
func nodeHash(l, r Hash) Hash {
	var b [1 + 2*sha256.Size]byte
	b[0] = 0x01
	copy(b[1:], l[:])
	copy(b[1+sha256.Size:], r[:])
	return sha256.Sum256(b[:])
}

// Tree is an append-only Merkle tree over leaf hashes. It keeps every leaf
// (for proofs) and the roots of its perfect subtrees (so the root of the
// whole tree costs log n hashes).
type Tree struct {
	leaves []Hash
	peaks  []Hash // roots of the perfect subtrees, largest first
}

// Append adds a leaf.
func (t *Tree) Append(leaf Hash) {
	t.leaves = append(t.leaves, leaf)
	t.peaks = append(t.peaks, leaf)
	// Merge equal-size subtrees: the number of merges is the number of
	// trailing ones of the old size.
	for n := len(t.leaves) - 1; n&1 == 1; n >>= 1 {
		k := len(t.peaks)
		t.peaks = append(t.peaks[:k-2], nodeHash(t.peaks[k-2], t.peaks[k-1]))
	}
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return uint64(len(t.leaves)) }

// Leaf returns leaf i (0-based).
func (t *Tree) Leaf(i uint64) Hash { return t.leaves[i] }

// Root is the RFC 6962 Merkle tree hash of every leaf (SHA-256 of the empty
// string for an empty tree).
func (t *Tree) Root() Hash {
	if len(t.peaks) == 0 {
		return sha256.Sum256(nil)
	}
	h := t.peaks[len(t.peaks)-1]
	for i := len(t.peaks) - 2; i >= 0; i-- {
		h = nodeHash(t.peaks[i], h)
	}
	return h
}

// RootAt is the tree hash of the first size leaves.
func (t *Tree) RootAt(size uint64) Hash { return mth(t.leaves[:size]) }

// Proof returns the RFC 6962 audit path of leaf index in the tree of the
// first size leaves.
func (t *Tree) Proof(index, size uint64) []Hash { return path(index, t.leaves[:size]) }

// mth is RFC 6962's MTH.
func mth(leaves []Hash) Hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	}
	k := split(len(leaves))
	return nodeHash(mth(leaves[:k]), mth(leaves[k:]))
}

// split is the largest power of two smaller than n.
func split(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// path is RFC 6962's PATH(m, D[n]).
func path(m uint64, leaves []Hash) []Hash {
	if len(leaves) <= 1 {
		return nil
	}
	k := uint64(split(len(leaves)))
	if m < k {
		return append(path(m, leaves[:k]), mth(leaves[k:]))
	}
	return append(path(m-k, leaves[k:]), mth(leaves[:k]))
}

// VerifyInclusion checks an audit path (RFC 9162, section 2.1.3.2): that
// leaf is at index in the tree of size leaves whose root is root.
func VerifyInclusion(leaf Hash, index, size uint64, proof []Hash, root Hash) bool {
	if index >= size {
		return false
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range proof {
		if sn == 0 {
			return false
		}
		if fn&1 == 1 || fn == sn {
			r = nodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = nodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	return sn == 0 && r == root
}

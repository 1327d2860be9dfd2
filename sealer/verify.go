package sealer

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"sort"
)

// Message is one ledger message as the sealer reads it.
type Message struct {
	Seq     uint64
	Subject string
	Data    []byte
	EventID string
}

// Finding kinds.
const (
	FindingChanged      = "changed"       // the event at this sequence is not what was sealed
	FindingRemoved      = "removed"       // a sealed event is missing
	FindingInserted     = "inserted"      // an event that was never sealed sits in a sealed range
	FindingReordered    = "reordered"     // a sealed event sits at another sequence
	FindingBadSignature = "bad_signature" // a checkpoint's signature fails
	FindingBadChain     = "bad_chain"     // a checkpoint does not follow the previous one
	FindingBadRoot      = "bad_root"      // the recomputed tree does not hash to a checkpoint's root
)

// Finding is one thing verification found wrong.
type Finding struct {
	Kind       string `json:"kind"`
	Seq        uint64 `json:"seq,omitempty"`
	EventID    string `json:"event_id,omitempty"`
	Checkpoint int    `json:"checkpoint,omitempty"` // 1-based, for checkpoint findings
	Detail     string `json:"detail"`
}

// Report is the outcome of a verification.
type Report struct {
	Messages    int       `json:"messages"`
	Checkpoints int       `json:"checkpoints"`
	Sealed      uint64    `json:"sealed"`   // messages covered by the last good checkpoint
	Unsealed    uint64    `json:"unsealed"` // messages after it, not yet sealed
	Findings    []Finding `json:"findings"`
}

// OK reports whether nothing was found.
func (r Report) OK() bool { return len(r.Findings) == 0 }

// Verify recomputes the leaves and the tree of msgs (the ledger, in
// sequence order) and checks them against the checkpoints, whose
// signatures it checks with pub (pinned by the verifier, never taken from
// the data). It reports every difference by sequence and event id.
func Verify(msgs []Message, cps []Checkpoint, pub ed25519.PublicKey) Report {
	r := Report{Messages: len(msgs), Checkpoints: len(cps), Findings: []Finding{}}
	add := func(f Finding) { r.Findings = append(r.Findings, f) }

	// The checkpoints: signatures and chain.
	prev, last := "", uint64(0)
	expected := map[uint64]SealedLeaf{} // by sequence
	whereSealed := map[string]uint64{}  // event id -> sealed sequence
	for i, c := range cps {
		n := i + 1
		if err := c.VerifySignature(pub); err != nil {
			add(Finding{Kind: FindingBadSignature, Checkpoint: n, Detail: err.Error()})
		}
		if c.Prev != prev || c.FirstSeq != last+1 || c.TreeSize < last || uint64(len(c.Events)) != c.TreeSize-last {
			add(Finding{Kind: FindingBadChain, Checkpoint: n,
				Detail: fmt.Sprintf("covers %d..%d after %d, prev %.12s…; want prev %.12s…", c.FirstSeq, c.TreeSize, last, c.Prev, prev)})
		}
		for _, l := range c.Events {
			expected[l.Seq] = l
			whereSealed[l.EventID] = l.Seq
		}
		h, _ := c.Hash()
		prev, last = h, max(last, c.TreeSize)
	}

	// The messages against what was sealed; each checkpoint's root over
	// the ledger as it is, as the tree grows to its size.
	var tree Tree
	actualAt := map[string]uint64{} // event id -> actual sequence
	next := 0                       // the next checkpoint whose root to check
	checkRoots := func() {
		for next < len(cps) && cps[next].TreeSize <= tree.Size() {
			c := cps[next]
			root := tree.Root()
			if c.TreeSize != tree.Size() {
				root = tree.RootAt(c.TreeSize) // only for a checkpoint out of order
			}
			if hex.EncodeToString(root[:]) != c.Root {
				add(Finding{Kind: FindingBadRoot, Checkpoint: next + 1, Detail: fmt.Sprintf("the first %d messages do not hash to the sealed root", c.TreeSize)})
			}
			next++
		}
	}
	checkRoots()
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			// A gap (or a repeat): what should be at i+1 is missing.
			add(Finding{Kind: FindingRemoved, Seq: uint64(i + 1), Detail: fmt.Sprintf("the ledger jumps from %d to %d", i, m.Seq)})
		}
		actualAt[m.EventID] = m.Seq
		tree.Append(LeafHash(m.Seq, m.Subject, m.Data))
		checkRoots()
	}
	for ; next < len(cps); next++ {
		add(Finding{Kind: FindingBadRoot, Checkpoint: next + 1, Detail: fmt.Sprintf("seals %d messages; the ledger holds %d", cps[next].TreeSize, tree.Size())})
	}
	for i, m := range msgs {
		want, sealed := expected[m.Seq]
		leaf := tree.Leaf(uint64(i))
		switch {
		case !sealed:
			if m.Seq <= last {
				add(Finding{Kind: FindingInserted, Seq: m.Seq, EventID: m.EventID, Detail: "no checkpoint sealed an event at this sequence"})
			}
		case want.Leaf == hex.EncodeToString(leaf[:]):
		case want.EventID == m.EventID:
			add(Finding{Kind: FindingChanged, Seq: m.Seq, EventID: m.EventID, Detail: "the event's content differs from what was sealed"})
		default:
			if at, ok := whereSealed[m.EventID]; ok {
				add(Finding{Kind: FindingReordered, Seq: m.Seq, EventID: m.EventID, Detail: fmt.Sprintf("sealed at sequence %d", at)})
			} else {
				add(Finding{Kind: FindingInserted, Seq: m.Seq, EventID: m.EventID, Detail: fmt.Sprintf("in place of %s, which was sealed here", want.EventID)})
			}
		}
	}
	seqs := make([]uint64, 0, len(expected))
	for s := range expected {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, s := range seqs {
		want := expected[s]
		if _, ok := actualAt[want.EventID]; !ok {
			add(Finding{Kind: FindingRemoved, Seq: s, EventID: want.EventID, Detail: "a sealed event is not in the ledger"})
		}
	}

	r.Sealed = last
	if uint64(len(msgs)) > last {
		r.Unsealed = uint64(len(msgs)) - last
	}
	return r
}

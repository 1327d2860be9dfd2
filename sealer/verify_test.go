package sealer

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"
)

// ledger makes n messages and seals them in checkpoints of every events.
func sealedLedger(t *testing.T, n, every int) ([]Message, []Checkpoint, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	var tree Tree
	var cps []Checkpoint
	prev := ""
	for i := 1; i <= n; i++ {
		m := Message{Seq: uint64(i), Subject: fmt.Sprintf("keyledger.events.org.k%d.api_key.created", i),
			Data: []byte(fmt.Sprintf(`{"id":"event_%d"}`, i)), EventID: fmt.Sprintf("event_%d", i)}
		msgs = append(msgs, m)
		tree.Append(LeafHash(m.Seq, m.Subject, m.Data))
		if i%every == 0 || i == n {
			root := tree.Root()
			first := uint64(1)
			if len(cps) > 0 {
				first = cps[len(cps)-1].TreeSize + 1
			}
			c := Checkpoint{Version: 1, Stream: "KEYLEDGER", FirstSeq: first, TreeSize: uint64(i), Root: hex.EncodeToString(root[:]), Prev: prev, CreatedAt: time.Unix(int64(i), 0).UTC()}
			for s := first; s <= uint64(i); s++ {
				l := tree.Leaf(s - 1)
				c.Events = append(c.Events, SealedLeaf{Seq: s, EventID: msgs[s-1].EventID, Leaf: hex.EncodeToString(l[:])})
			}
			if err := c.Sign(priv); err != nil {
				t.Fatal(err)
			}
			prev, _ = c.Hash()
			cps = append(cps, c)
		}
	}
	return msgs, cps, pub
}

func kinds(r Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, fmt.Sprintf("%s@%d", f.Kind, f.Seq))
	}
	return out
}

func TestVerifyAcceptsAnUntouchedLedger(t *testing.T) {
	msgs, cps, pub := sealedLedger(t, 25, 10)
	r := Verify(msgs, cps, pub)
	if !r.OK() || r.Sealed != 25 || r.Checkpoints != 3 {
		t.Fatalf("untouched ledger: %+v", r)
	}
	// Unsealed messages after the last checkpoint are counted, not findings.
	extra := append(slices.Clone(msgs), Message{Seq: 26, Subject: "s", Data: []byte("x"), EventID: "event_26"})
	if r := Verify(extra, cps, pub); !r.OK() || r.Unsealed != 1 {
		t.Fatalf("with an unsealed tail: %+v", r)
	}
}

func TestVerifyReportsEveryTampering(t *testing.T) {
	msgs, cps, pub := sealedLedger(t, 25, 10)
	has := func(r Report, kind string, seq uint64, id string) bool {
		for _, f := range r.Findings {
			if f.Kind == kind && f.Seq == seq && (id == "" || f.EventID == id) {
				return true
			}
		}
		return false
	}

	changed := slices.Clone(msgs)
	changed[6].Data = []byte(`{"id":"event_7","evil":true}`)
	if r := Verify(changed, cps, pub); !has(r, FindingChanged, 7, "event_7") || !has(r, FindingBadRoot, 0, "") {
		t.Errorf("changed event 7: %v", kinds(r))
	}

	removed := slices.Delete(slices.Clone(msgs), 11, 12) // seq 12 gone; later ones keep their seqs
	if r := Verify(removed, cps, pub); !has(r, FindingRemoved, 12, "event_12") {
		t.Errorf("removed event 12: %v", kinds(r))
	}

	// Inserted: a new event at 15, the rest shifted up by one.
	inserted := slices.Clone(msgs[:14])
	inserted = append(inserted, Message{Seq: 15, Subject: "keyledger.events.org.evil.api_key.created", Data: []byte(`{"id":"event_evil"}`), EventID: "event_evil"})
	for _, m := range msgs[14:] {
		m.Seq++
		inserted = append(inserted, m)
	}
	if r := Verify(inserted, cps, pub); !has(r, FindingInserted, 15, "event_evil") || !has(r, FindingReordered, 16, "event_15") {
		t.Errorf("inserted at 15: %v", kinds(r))
	}

	reordered := slices.Clone(msgs)
	reordered[2], reordered[3] = reordered[3], reordered[2]
	reordered[2].Seq, reordered[3].Seq = 3, 4
	if r := Verify(reordered, cps, pub); !has(r, FindingReordered, 3, "event_4") || !has(r, FindingReordered, 4, "event_3") {
		t.Errorf("swapped 3 and 4: %v", kinds(r))
	}

	forged := slices.Clone(cps)
	forged[1].Root = forged[0].Root
	if r := Verify(msgs, forged, pub); !slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Kind == FindingBadSignature && f.Checkpoint == 2 }) {
		t.Errorf("forged checkpoint 2: %v", r.Findings)
	}

	dropped := slices.Delete(slices.Clone(cps), 1, 2)
	if r := Verify(msgs, dropped, pub); !slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Kind == FindingBadChain && f.Checkpoint == 2 }) {
		t.Errorf("a checkpoint removed from the chain: %v", r.Findings)
	}

	otherPub, _, _ := ed25519.GenerateKey(nil)
	if r := Verify(msgs, cps, otherPub); len(r.Findings) != 3 {
		t.Errorf("verified with another key: %v", r.Findings)
	}
}

func TestProofCheck(t *testing.T) {
	msgs, cps, pub := sealedLedger(t, 25, 10)
	var tree Tree
	for _, m := range msgs {
		tree.Append(LeafHash(m.Seq, m.Subject, m.Data))
	}
	last := cps[len(cps)-1]
	for i := range msgs {
		leaf := tree.Leaf(uint64(i))
		p := Proof{EventID: msgs[i].EventID, Seq: uint64(i + 1), LeafIndex: uint64(i), Leaf: hex.EncodeToString(leaf[:]),
			TreeSize: last.TreeSize, Root: last.Root, Checkpoint: last}
		for _, h := range tree.Proof(uint64(i), last.TreeSize) {
			p.AuditPath = append(p.AuditPath, hex.EncodeToString(h[:]))
		}
		if err := p.Check(pub); err != nil {
			t.Fatalf("proof of %d: %v", i+1, err)
		}
		p.LeafIndex = (p.LeafIndex + 1) % last.TreeSize
		if p.Check(pub) == nil {
			t.Fatalf("proof of %d verifies at another index", i+1)
		}
	}
}

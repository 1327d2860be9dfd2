package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
	"github.com/keyledger/keyledger/sealer"
)

// waitProof waits until an event is in a signed checkpoint and returns
// its proof.
func waitProof(t *testing.T, base, eventID string) sealer.Proof {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var p sealer.Proof
		status, raw := call(t, "GET", base+"/events/"+eventID+"/proof", nil, &p)
		if status == 200 {
			return p
		}
		if status != 409 || time.Now().After(deadline) {
			t.Fatalf("proof of %s: %d %s", eventID, status, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func auditCmd(t *testing.T, args ...string) (sealer.Report, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"audit"}, args...), &out, &bytes.Buffer{})
	var r sealer.Report
	if args[0] == "verify" {
		if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil {
			t.Fatalf("audit %v printed %q (%v)", args, out.String(), err)
		}
	}
	return r, err
}

// rewrite applies edit to the message lines of an export and writes a copy.
func rewrite(t *testing.T, src, dst string, edit func(lines []map[string]any) []map[string]any) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var head, msgs, tail []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		switch l["type"] {
		case "header":
			head = append(head, l)
		case "message":
			msgs = append(msgs, l)
		default:
			tail = append(tail, l)
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, group := range [][]map[string]any{head, edit(msgs), tail} {
		for _, l := range group {
			if err := enc.Encode(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(dst, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func findings(r sealer.Report, kind string) []sealer.Finding {
	var out []sealer.Finding
	for _, f := range r.Findings {
		if f.Kind == kind {
			out = append(out, f)
		}
	}
	return out
}

func TestAuditSealExportVerify(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s := startServerWith(t, data, func(c *Config) { c.SealEvery, c.SealInterval = 4, 50*time.Millisecond })
	t.Setenv("KEYLEDGER_URL", s.url)
	t.Setenv("KEYLEDGER_ADMIN_KEY", testAdminKey)
	pubHex, err := os.ReadFile(filepath.Join(data, "seal_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sealer.ParsePublicKey(strings.TrimSpace(string(pubHex)))
	if err != nil {
		t.Fatal(err)
	}
	setCatalogue(t, s.url, "projects:read")
	var ids []string
	for i := range 9 {
		k := createKey(t, s.url, "org_1", schemas.CreateAPIKeyRequest{Name: "k", Permissions: []string{"projects:read"}, UserID: []string{"", "user_ada"}[i%2]})
		if i == 3 {
			call(t, "DELETE", s.url+"/api_keys/"+k.ID, nil, nil)
		}
		_ = k
	}
	call(t, "DELETE", s.url+"/organizations/org_1/members/user_ada", nil, nil)
	all := listEvents(t, s.url, "limit=100")
	for _, e := range all.Data {
		ids = append(ids, e.ID)
	}

	// Every event gets a proof that checks with the pinned key alone.
	for _, id := range []string{ids[0], ids[len(ids)/2], ids[len(ids)-1]} {
		p := waitProof(t, s.url, id)
		if err := p.Check(pub); err != nil {
			t.Fatalf("proof of %s: %v", id, err)
		}
		p.Leaf = p.AuditPath[0]
		if p.Check(pub) == nil {
			t.Fatalf("a proof with another leaf checks")
		}
	}
	if status, raw := call(t, "GET", s.url+"/events/event_01J00000000000000000000000/proof", nil, nil); status != 404 {
		t.Fatalf("proof of an unknown event: %d %s", status, raw)
	}

	// The whole ledger verifies, from the server and from an export.
	if r, err := auditCmd(t, "verify", "--public-key", string(pubHex)); err != nil || !r.OK() || r.Sealed == 0 {
		t.Fatalf("verify against the server: %+v, %v", r, err)
	}
	export := filepath.Join(dir, "ledger.jsonl")
	if _, err := auditCmd(t, "export", "--out", export); err != nil {
		t.Fatal(err)
	}
	r, err := auditCmd(t, "verify", "--file", export, "--public-key", strings.TrimSpace(string(pubHex)))
	if err != nil || !r.OK() || r.Messages != len(ids) {
		t.Fatalf("verify the export: %+v, %v", r, err)
	}
	sealed := int(r.Sealed)

	var ee exitError
	tampered := filepath.Join(dir, "tampered.jsonl")
	check := func(name, kind string, seq uint64, edit func([]map[string]any) []map[string]any) {
		t.Helper()
		rewrite(t, export, tampered, edit)
		r, err := auditCmd(t, "verify", "--file", tampered, "--public-key", strings.TrimSpace(string(pubHex)))
		if !errors.As(err, &ee) || ee != 1 {
			t.Errorf("%s: verify returned %v, want exit status 1", name, err)
		}
		for _, f := range findings(r, kind) {
			if f.Seq == seq && f.EventID != "" {
				return
			}
		}
		t.Errorf("%s: no %s finding at seq %d with an event id: %+v", name, kind, seq, r.Findings)
	}
	check("a changed event", sealer.FindingChanged, 3, func(ls []map[string]any) []map[string]any {
		raw, _ := base64.StdEncoding.DecodeString(ls[2]["data"].(string))
		ls[2]["data"] = base64.StdEncoding.EncodeToString(bytes.Replace(raw, []byte(`"name":"k"`), []byte(`"name":"x"`), 1))
		return ls
	})
	check("a removed event", sealer.FindingRemoved, 4, func(ls []map[string]any) []map[string]any {
		return append(ls[:3:3], ls[4:]...)
	})
	check("reordered events", sealer.FindingReordered, 5, func(ls []map[string]any) []map[string]any {
		ls[4]["subject"], ls[5]["subject"] = ls[5]["subject"], ls[4]["subject"]
		ls[4]["data"], ls[5]["data"] = ls[5]["data"], ls[4]["data"]
		return ls
	})
	check("an inserted event", sealer.FindingInserted, 2, func(ls []map[string]any) []map[string]any {
		evil := map[string]any{}
		for k, v := range ls[1] {
			evil[k] = v
		}
		raw, _ := base64.StdEncoding.DecodeString(ls[1]["data"].(string))
		var env map[string]any
		_ = json.Unmarshal(raw, &env)
		env["id"] = "event_01J99999999999999999999999"
		b, _ := json.Marshal(env)
		evil["data"] = base64.StdEncoding.EncodeToString(b)
		out := append([]map[string]any{ls[0], evil}, ls[1:]...)
		for i, l := range out {
			l["seq"] = float64(i + 1)
		}
		return out
	})
	if sealed < 5 {
		t.Fatalf("only %d events sealed", sealed)
	}

	// A key that is not the sealer's finds every checkpoint's signature bad.
	r, _ = auditCmd(t, "verify", "--file", export, "--public-key", strings.Repeat("ab", 32))
	if len(findings(r, sealer.FindingBadSignature)) != r.Checkpoints || r.Checkpoints == 0 {
		t.Fatalf("verify with another key: %+v", r.Findings)
	}

	// After a restart the sealer checks the ledger against its checkpoints
	// and goes on sealing.
	s.stop()
	s = startServerWith(t, data, func(c *Config) { c.SealEvery, c.SealInterval = 4, 50*time.Millisecond })
	t.Setenv("KEYLEDGER_URL", s.url)
	createKey(t, s.url, "org_2", schemas.CreateAPIKeyRequest{Name: "after", Permissions: []string{"projects:read"}})
	after := listEvents(t, s.url, "organization_id=org_2")
	if p := waitProof(t, s.url, after.Data[0].ID); p.Check(pub) != nil || p.TreeSize <= uint64(sealed) {
		t.Fatalf("proof after the restart: %+v", p)
	}
	if r, err := auditCmd(t, "verify", "--public-key", string(pubHex)); err != nil || !r.OK() {
		t.Fatalf("verify after the restart: %+v, %v", r, err)
	}
}

// An event the sealer has not read yet (it reads the ledger on its own, and
// may be behind just after taking over) is "not sealed yet", not unknown;
// once it has read the whole ledger, an id it does not know is not found.
func TestProofOfAnEventTheSealerHasNotRead(t *testing.T) {
	s := sealer.New(sealer.Config{Key: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))})
	at := func(last uint64) proofs {
		return proofs{s, func(context.Context) (uint64, error) { return last, nil }}
	}
	_, err := at(3).Prove(t.Context(), "event_01J00000000000000000000000")
	var de *domain.Error
	if !errors.As(err, &de) || de.Code != "event_not_sealed" {
		t.Fatalf("sealer behind the ledger: %v, want event_not_sealed", err)
	}
	if _, err := at(0).Prove(t.Context(), "event_01J00000000000000000000000"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("sealer caught up: %v, want not found", err)
	}
}

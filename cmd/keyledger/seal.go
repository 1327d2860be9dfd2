package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/sealer"
)

// sealKey returns the checkpoint signing key: KEYLEDGER_SEAL_KEY (an
// Ed25519 seed, hex or base64), else --seal-key-file, else a key made once
// in the data folder. The key never enters the ledger; its public half,
// printed at start and kept next to it, is what verifiers pin.
func (m *Main) sealKey() (ed25519.PrivateKey, error) {
	if m.Config.SealKey != "" {
		return sealer.ParsePrivateKey(m.Config.SealKey)
	}
	path := m.Config.SealKeyFile
	if path == "" {
		path = filepath.Join(m.Config.Data, "seal_ed25519.key")
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && m.Config.SealKeyFile == "" {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(seed)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("seal key: %w", err)
		}
		raw = []byte(hex.EncodeToString(seed))
	} else if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	key, err := sealer.ParsePrivateKey(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub := hex.EncodeToString(key.Public().(ed25519.PublicKey))
	_ = os.WriteFile(filepath.Join(m.Config.Data, "seal_ed25519.pub"), []byte(pub+"\n"), 0o644)
	return key, nil
}

// sealSource is the ledger as the sealer reads it.
type sealSource struct{ store *eventstore.Store }

func (s sealSource) FollowRaw(ctx context.Context, from uint64, fn func([]sealer.Message) error) error {
	return s.store.FollowRaw(ctx, from, func(run []eventstore.RawMessage) error {
		out := make([]sealer.Message, len(run))
		for i, m := range run {
			out[i] = sealer.Message{Seq: m.Seq, Subject: m.Subject, Data: m.Data, EventID: m.EventID}
		}
		return fn(out)
	})
}

// sealStore keeps checkpoints as JSON in their stream.
type sealStore struct{ cps *eventstore.Checkpoints }

func (s sealStore) Checkpoints(ctx context.Context) ([]sealer.Checkpoint, error) {
	return s.CheckpointsAfter(ctx, 0)
}

func (s sealStore) CheckpointsAfter(ctx context.Context, have int) ([]sealer.Checkpoint, error) {
	raw, err := s.cps.After(ctx, have)
	if err != nil {
		return nil, err
	}
	out := make([]sealer.Checkpoint, len(raw))
	for i, b := range raw {
		if err := json.Unmarshal(b, &out[i]); err != nil {
			return nil, fmt.Errorf("checkpoint %d: %w", have+i+1, err)
		}
	}
	return out, nil
}

func (s sealStore) Append(ctx context.Context, c sealer.Checkpoint, have int) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.cps.Append(ctx, b, have)
}

// proofs adapts the sealer to the API, in the domain's error vocabulary.
// last is the ledger's last sequence.
type proofs struct {
	s    *sealer.Sealer
	last func(context.Context) (uint64, error)
}

var errNotSealed = domain.Errorf(domain.KindConflict, "event_not_sealed", "the event is not in a checkpoint yet; the next one comes within the sealing interval")

func (p proofs) Prove(ctx context.Context, eventID string) (any, error) {
	pr, err := p.s.Prove(eventID)
	if errors.Is(err, sealer.ErrUnknownEvent) {
		// The sealer reads the ledger on its own and may be behind (just
		// after it took over from a dead node, say): an event it has not
		// read yet exists all the same. Unknown only once it has read the
		// whole ledger as it stood after the first look, and a second look
		// still misses it: the sealer may have read the event in between.
		last, lerr := p.last(ctx)
		if lerr != nil {
			return nil, lerr
		}
		if p.s.Read() < last {
			return nil, errNotSealed
		}
		if pr, err = p.s.Prove(eventID); errors.Is(err, sealer.ErrUnknownEvent) {
			return nil, domain.ErrNotFound
		}
	}
	if errors.Is(err, sealer.ErrNotSealed) {
		return nil, errNotSealed
	}
	return pr, err
}

// exportLine is one line of a ledger export (JSON lines): a header, every
// ledger message as stored, then every checkpoint.
type exportLine struct {
	Type       string             `json:"type"` // header, message or checkpoint
	Stream     string             `json:"stream,omitempty"`
	PublicKey  string             `json:"public_key,omitempty"` // informational: verifiers pin their own
	Seq        uint64             `json:"seq,omitempty"`
	Subject    string             `json:"subject,omitempty"`
	Data       string             `json:"data,omitempty"` // base64 of the stored bytes
	EventID    string             `json:"event_id,omitempty"`
	Checkpoint *sealer.Checkpoint `json:"checkpoint,omitempty"`
}

// exporter writes the ledger export.
type exporter struct {
	store  *eventstore.Store
	cps    sealStore
	stream string
	pub    ed25519.PublicKey
}

func (e exporter) Export(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(exportLine{Type: "header", Stream: e.stream, PublicKey: hex.EncodeToString(e.pub)}); err != nil {
		return err
	}
	// Checkpoints first read, messages after: every checkpoint then covers
	// messages that are in the file.
	cps, err := e.cps.Checkpoints(ctx)
	if err != nil {
		return err
	}
	if _, err := e.store.ReadRaw(ctx, func(m eventstore.RawMessage) error {
		return enc.Encode(exportLine{Type: "message", Seq: m.Seq, Subject: m.Subject, Data: base64.StdEncoding.EncodeToString(m.Data), EventID: m.EventID})
	}); err != nil {
		return err
	}
	for i := range cps {
		if err := enc.Encode(exportLine{Type: "checkpoint", Checkpoint: &cps[i]}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// readExport parses a ledger export.
func readExport(r io.Reader) ([]sealer.Message, []sealer.Checkpoint, error) {
	var msgs []sealer.Message
	var cps []sealer.Checkpoint
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		var l exportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", n, err)
		}
		switch l.Type {
		case "header":
		case "message":
			data, err := base64.StdEncoding.DecodeString(l.Data)
			if err != nil {
				return nil, nil, fmt.Errorf("line %d: %w", n, err)
			}
			// The event id is re-read from the data, never trusted from the line.
			var env struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(data, &env)
			msgs = append(msgs, sealer.Message{Seq: l.Seq, Subject: l.Subject, Data: data, EventID: env.ID})
		case "checkpoint":
			if l.Checkpoint == nil {
				return nil, nil, fmt.Errorf("line %d: a checkpoint line without its checkpoint", n)
			}
			cps = append(cps, *l.Checkpoint)
		default:
			return nil, nil, fmt.Errorf("line %d: unknown line type %q", n, l.Type)
		}
	}
	return msgs, cps, sc.Err()
}

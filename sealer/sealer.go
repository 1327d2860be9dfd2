package sealer

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Source is the ledger as the sealer reads it: every message from a
// sequence on, in order, in runs, until ctx ends.
type Source interface {
	FollowRaw(ctx context.Context, from uint64, fn func([]Message) error) error
}

// Store keeps the checkpoints, in order, in their own stream.
type Store interface {
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
	// CheckpointsAfter returns the checkpoints after the first have.
	CheckpointsAfter(ctx context.Context, have int) ([]Checkpoint, error)
	// Append appends c if the store holds exactly have checkpoints, so that
	// two sealers never fork the chain.
	Append(ctx context.Context, c Checkpoint, have int) error
}

// Config configures a Sealer.
type Config struct {
	Source Source
	Store  Store
	Key    ed25519.PrivateKey
	Stream string // the ledger stream's name, recorded in checkpoints
	// Every seals after this many new messages (default 1000); Interval
	// seals whatever is new at least this often (default 1 min).
	Every    int
	Interval time.Duration
	Log      *slog.Logger
	Now      func() time.Time
	// Leader reports whether this sealer may append checkpoints (it holds
	// the fleet's sealer lease); nil: always. One that may not follows the
	// checkpoint stream instead, checking each new checkpoint against the
	// tree it built itself, so that every node can prove events.
	Leader func() bool
}

// ErrTampered is the sealer's error when the ledger no longer matches what
// it sealed: it stops sealing rather than seal over the change.
var ErrTampered = errors.New("sealer: the ledger does not match its checkpoints")

// Sealer follows the ledger and appends signed checkpoints.
type Sealer struct {
	cfg Config

	mu   sync.Mutex
	tree Tree
	ids  []string // event id by sequence-1
	cps  []Checkpoint
}

// New returns a sealer.
func New(cfg Config) *Sealer {
	if cfg.Every <= 0 {
		cfg.Every = 1000
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sealer{cfg: cfg}
}

// Run reads the checkpoints, follows the ledger from its start (checking
// every sealed message against its checkpoint) and seals until ctx ends.
func (s *Sealer) Run(ctx context.Context) error {
	cps, err := s.cfg.Store.Checkpoints(ctx)
	if err != nil {
		return fmt.Errorf("sealer: read checkpoints: %w", err)
	}
	pub := s.cfg.Key.Public().(ed25519.PublicKey)
	prev := ""
	sealed := map[uint64]SealedLeaf{}
	for i, c := range cps {
		if err := c.VerifySignature(pub); err != nil {
			return fmt.Errorf("%w: checkpoint %d: %v", ErrTampered, i+1, err)
		}
		if c.Prev != prev {
			return fmt.Errorf("%w: checkpoint %d does not follow checkpoint %d", ErrTampered, i+1, i)
		}
		prev, _ = c.Hash()
		for _, l := range c.Events {
			sealed[l.Seq] = l
		}
	}
	s.mu.Lock()
	s.cps = cps
	s.mu.Unlock()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.seal(ctx); err != nil && ctx.Err() == nil {
					if errors.Is(err, ErrTampered) {
						cancel(err)
						return
					}
					s.cfg.Log.Warn("sealer: sealing failed; will try again", "err", err)
				}
			}
		}
	}()
	follow := func(run []Message) error {
		s.mu.Lock()
		for _, m := range run {
			if m.Seq != s.tree.Size()+1 {
				s.mu.Unlock()
				return fmt.Errorf("%w: expected sequence %d, read %d", ErrTampered, s.tree.Size()+1, m.Seq)
			}
			leaf := LeafHash(m.Seq, m.Subject, m.Data)
			if want, ok := sealed[m.Seq]; ok && (want.Leaf != hex.EncodeToString(leaf[:]) || want.EventID != m.EventID) {
				s.mu.Unlock()
				return fmt.Errorf("%w: sequence %d (event %s) differs from what checkpoint sealed as %s", ErrTampered, m.Seq, m.EventID, want.EventID)
			}
			s.tree.Append(leaf)
			s.ids = append(s.ids, m.EventID)
		}
		due := s.tree.Size()-s.sealedSize() >= uint64(s.cfg.Every)
		s.mu.Unlock()
		if due {
			return s.seal(ctx)
		}
		return nil
	}
	// A follow that fails for any reason but tampering (NATS away, a
	// reader that fell silent) is started again where the tree ends: a
	// sealer that stopped would leave every later event unprovable.
	backoff := 100 * time.Millisecond
	for {
		s.mu.Lock()
		from := s.tree.Size() + 1
		s.mu.Unlock()
		err = s.cfg.Source.FollowRaw(ctx, from, follow)
		if cause := context.Cause(ctx); errors.Is(cause, ErrTampered) {
			return cause
		}
		if errors.Is(err, ErrTampered) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.Log.Warn("sealer: following the ledger failed; following again", "err", err, "from", from)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		s.mu.Lock()
		progressed := s.tree.Size()+1 > from
		s.mu.Unlock()
		if progressed {
			backoff = 100 * time.Millisecond
		} else {
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

func (s *Sealer) sealedSize() uint64 {
	if len(s.cps) == 0 {
		return 0
	}
	return s.cps[len(s.cps)-1].TreeSize
}

// seal appends a checkpoint over what is new, if anything is; when another
// node seals, it takes up that node's checkpoints instead.
func (s *Sealer) seal(ctx context.Context) error {
	if s.cfg.Leader == nil {
		return s.appendCheckpoint(ctx)
	}
	if !s.cfg.Leader() {
		return s.follow(ctx)
	}
	err := s.appendCheckpoint(ctx)
	if err != nil {
		// The lease moved, or the last holder sealed since: take up what
		// the stream holds, and seal over the rest next time.
		if ferr := s.follow(ctx); ferr != nil {
			return ferr
		}
	}
	return err
}

// appendCheckpoint appends a checkpoint over what is new, if anything is.
func (s *Sealer) appendCheckpoint(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	from, to := s.sealedSize(), s.tree.Size()
	if to == from {
		return nil
	}
	root := s.tree.Root()
	c := Checkpoint{Version: 1, Stream: s.cfg.Stream, FirstSeq: from + 1, TreeSize: to,
		Root: hex.EncodeToString(root[:]), CreatedAt: s.cfg.Now().UTC()}
	if len(s.cps) > 0 {
		h, err := s.cps[len(s.cps)-1].Hash()
		if err != nil {
			return err
		}
		c.Prev = h
	}
	for seq := from + 1; seq <= to; seq++ {
		l := s.tree.Leaf(seq - 1)
		c.Events = append(c.Events, SealedLeaf{Seq: seq, EventID: s.ids[seq-1], Leaf: hex.EncodeToString(l[:])})
	}
	if err := c.Sign(s.cfg.Key); err != nil {
		return err
	}
	if err := s.cfg.Store.Append(ctx, c, len(s.cps)); err != nil {
		return fmt.Errorf("sealer: append checkpoint: %w", err)
	}
	s.cps = append(s.cps, c)
	s.cfg.Log.Debug("sealer: checkpoint", "tree_size", to, "root", c.Root)
	return nil
}

// follow takes up the checkpoints another sealer appended, each checked
// against this sealer's own tree: signed by the same key, chained to the
// last, and with the root of the same events. A checkpoint beyond what this
// sealer has read waits for the next call.
func (s *Sealer) follow(ctx context.Context) error {
	s.mu.Lock()
	have := len(s.cps)
	s.mu.Unlock()
	more, err := s.cfg.Store.CheckpointsAfter(ctx, have)
	if err != nil {
		return fmt.Errorf("sealer: read checkpoints: %w", err)
	}
	pub := s.cfg.Key.Public().(ed25519.PublicKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cps) != have { // sealed meanwhile: next time
		return nil
	}
	for j, c := range more {
		i := have + j
		if c.TreeSize > s.tree.Size() {
			return nil
		}
		if err := c.VerifySignature(pub); err != nil {
			return fmt.Errorf("%w: checkpoint %d (is every node's seal key the same?): %v", ErrTampered, i+1, err)
		}
		prev := ""
		if i > 0 {
			prev, _ = s.cps[i-1].Hash()
		}
		if c.Prev != prev || c.FirstSeq != s.sealedSize()+1 {
			return fmt.Errorf("%w: checkpoint %d does not follow checkpoint %d", ErrTampered, i+1, i)
		}
		if root := s.tree.RootAt(c.TreeSize); c.Root != hex.EncodeToString(root[:]) {
			return fmt.Errorf("%w: checkpoint %d seals a root this node's ledger does not have", ErrTampered, i+1)
		}
		s.cps = append(s.cps, c)
	}
	return nil
}

// Proof is what proves one event is in a signed checkpoint: its leaf, the
// audit path to the checkpoint's root, and the checkpoint.
type Proof struct {
	EventID    string     `json:"event_id"`
	Seq        uint64     `json:"seq"`
	LeafIndex  uint64     `json:"leaf_index"`
	Leaf       string     `json:"leaf"`
	TreeSize   uint64     `json:"tree_size"`
	Root       string     `json:"root"`
	AuditPath  []string   `json:"audit_path"`
	Checkpoint Checkpoint `json:"checkpoint"`
}

// ErrNotSealed is Prove's error for an event no checkpoint covers yet.
var ErrNotSealed = errors.New("sealer: the event is not sealed yet")

// ErrUnknownEvent is Prove's error for an event the sealer has not read.
var ErrUnknownEvent = errors.New("sealer: no such event")

// Read returns how many ledger messages the sealer has read: the ledger
// never deletes, so it has read every sequence up to this one.
func (s *Sealer) Read() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.ids))
}

// Prove returns the inclusion proof of an event in the latest checkpoint.
func (s *Sealer) Prove(eventID string) (Proof, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := -1
	for i, id := range s.ids {
		if id == eventID {
			idx = i
			break
		}
	}
	if idx < 0 {
		return Proof{}, ErrUnknownEvent
	}
	if len(s.cps) == 0 || uint64(idx) >= s.sealedSize() {
		return Proof{}, ErrNotSealed
	}
	c := s.cps[len(s.cps)-1]
	leaf := s.tree.Leaf(uint64(idx))
	p := Proof{EventID: eventID, Seq: uint64(idx) + 1, LeafIndex: uint64(idx), Leaf: hex.EncodeToString(leaf[:]),
		TreeSize: c.TreeSize, Root: c.Root, Checkpoint: c}
	for _, h := range s.tree.Proof(uint64(idx), c.TreeSize) {
		p.AuditPath = append(p.AuditPath, hex.EncodeToString(h[:]))
	}
	return p, nil
}

// Check verifies a proof on its own with a pinned public key: the
// checkpoint's signature, and the leaf's path to its root.
func (p Proof) Check(pub ed25519.PublicKey) error {
	if err := p.Checkpoint.VerifySignature(pub); err != nil {
		return err
	}
	if p.Checkpoint.Root != p.Root || p.Checkpoint.TreeSize != p.TreeSize {
		return errors.New("the proof's root is not its checkpoint's")
	}
	leaf, err := decodeHash(p.Leaf)
	if err != nil {
		return err
	}
	root, err := decodeHash(p.Root)
	if err != nil {
		return err
	}
	path := make([]Hash, len(p.AuditPath))
	for i, h := range p.AuditPath {
		if path[i], err = decodeHash(h); err != nil {
			return err
		}
	}
	if !VerifyInclusion(leaf, p.LeafIndex, p.TreeSize, path, root) {
		return errors.New("the audit path does not lead to the signed root")
	}
	return nil
}

func decodeHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, errors.New("malformed hash")
	}
	copy(h[:], b)
	return h, nil
}

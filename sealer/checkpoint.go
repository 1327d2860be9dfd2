package sealer

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Checkpoint is one signed statement: the ledger's first TreeSize messages
// hash to Root; Events lists the ones added since the previous checkpoint
// (sequences FirstSeq..TreeSize), whose hash Prev is.
type Checkpoint struct {
	Version   int          `json:"version"`
	Stream    string       `json:"stream"`
	FirstSeq  uint64       `json:"first_seq"`
	TreeSize  uint64       `json:"tree_size"`
	Root      string       `json:"root"` // hex
	Prev      string       `json:"prev"` // hex SHA-256 of the previous checkpoint; "" for the first
	Events    []SealedLeaf `json:"events"`
	CreatedAt time.Time    `json:"created_at"`
	KeyID     string       `json:"key_id"`    // hex of the first 8 bytes of SHA-256 of the public key
	Signature string       `json:"signature"` // base64 Ed25519 over the checkpoint with this field empty
}

// SealedLeaf is one event as a checkpoint seals it.
type SealedLeaf struct {
	Seq     uint64 `json:"seq"`
	EventID string `json:"event_id"`
	Leaf    string `json:"leaf"` // hex
}

// KeyID names a public key.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

func (c Checkpoint) signedBytes() ([]byte, error) {
	c.Signature = ""
	return json.Marshal(c)
}

// Sign signs the checkpoint.
func (c *Checkpoint) Sign(priv ed25519.PrivateKey) error {
	c.KeyID = KeyID(priv.Public().(ed25519.PublicKey))
	b, err := c.signedBytes()
	if err != nil {
		return err
	}
	c.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, b))
	return nil
}

// VerifySignature checks the checkpoint's signature with pub.
func (c Checkpoint) VerifySignature(pub ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("malformed signature")
	}
	b, err := c.signedBytes()
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, b, sig) {
		return errors.New("the signature does not verify with the pinned public key")
	}
	return nil
}

// Hash is what the next checkpoint's Prev holds: SHA-256 of the whole
// signed checkpoint.
func (c Checkpoint) Hash() (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

// ParsePublicKey reads an Ed25519 public key as hex or base64.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	return nil, fmt.Errorf("sealer: a public key is %d bytes, hex or base64", ed25519.PublicKeySize)
}

// ParsePrivateKey reads an Ed25519 seed (32 bytes) as hex or base64.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(b), nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(b), nil
	}
	return nil, fmt.Errorf("sealer: a signing key is a %d-byte Ed25519 seed, hex or base64", ed25519.SeedSize)
}

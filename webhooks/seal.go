package webhooks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Sealer encrypts signing secrets for the ledger (AES-256-GCM under the
// operator's webhook secret key), so that whoever can read the ledger
// (an embedded validator, a backup) cannot sign webhooks. Every node that
// delivers webhooks needs the same key.
type Sealer struct{ aead cipher.AEAD }

// sealedPrefix versions the sealed form.
const sealedPrefix = "v1."

// NewSealer returns a sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("webhooks: the secret key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts a secret: "v1." + base64(nonce | ciphertext).
func (s *Sealer) Seal(secret string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(secret)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("webhooks: seal: %w", err)
	}
	out := s.aead.Seal(nonce, nonce, []byte(secret), []byte(sealedPrefix))
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open decrypts a sealed secret; a wrong key or a tampered value fails.
func (s *Sealer) Open(sealed string) (string, error) {
	raw, ok := strings.CutPrefix(sealed, sealedPrefix)
	if !ok {
		return "", errors.New("webhooks: open: not a sealed secret")
	}
	b, err := base64.RawStdEncoding.DecodeString(raw)
	if err != nil || len(b) < s.aead.NonceSize() {
		return "", errors.New("webhooks: open: malformed sealed secret")
	}
	plain, err := s.aead.Open(nil, b[:s.aead.NonceSize()], b[s.aead.NonceSize():], []byte(sealedPrefix))
	if err != nil {
		return "", errors.New("webhooks: open: wrong key or tampered secret")
	}
	return string(plain), nil
}

// NewSealedSecret makes a signing secret and its sealed form.
func (s *Sealer) NewSealedSecret() (value, sealed string, err error) {
	if value, err = NewSecret(); err != nil {
		return "", "", err
	}
	sealed, err = s.Seal(value)
	return value, sealed, err
}

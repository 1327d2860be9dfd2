package webhooks_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/keyledger/keyledger/webhooks"
)

func TestSealerRoundTripsAndRefusesTampering(t *testing.T) {
	s, err := webhooks.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	value, sealed, err := s.NewSealedSecret()
	if err != nil || !strings.HasPrefix(value, "whsec_") {
		t.Fatalf("NewSealedSecret = %q, %v", value, err)
	}
	if strings.Contains(sealed, strings.TrimPrefix(value, "whsec_")) {
		t.Fatal("the sealed form contains the secret")
	}
	if got, err := s.Open(sealed); err != nil || got != value {
		t.Fatalf("Open = %q, %v", got, err)
	}
	other, _ := webhooks.NewSealer(bytes.Repeat([]byte{8}, 32))
	if _, err := other.Open(sealed); err == nil {
		t.Fatal("another key opened the secret")
	}
	tampered := sealed[:len(sealed)-2] + "AA"
	if _, err := s.Open(tampered); err == nil {
		t.Fatal("a tampered secret opened")
	}
	if _, err := webhooks.NewSealer([]byte("short")); err == nil {
		t.Fatal("a short key was accepted")
	}
}

package domain

import (
	"testing"
)

// Hot-path benchmarks; CI runs them briefly so they cannot rot.

var benchKey = "sk_live_Cxvwe5oXIpw2Oypl5APWsPcwk6TO50C1Z317U"

func BenchmarkCheckKeyFormat(b *testing.B) {
	v, _ := GenerateKey(PrefixLive)
	for b.Loop() {
		if CheckKeyFormat(v) != nil {
			b.Fatal("valid key refused")
		}
	}
}

func BenchmarkHashKey(b *testing.B) {
	for b.Loop() {
		_ = HashKey(benchKey)
	}
}

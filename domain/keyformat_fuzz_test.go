package domain

import (
	"crypto/sha256"
	"hash/crc32"
	"strings"
	"testing"
)

// refShape is the key shape spelled out: a known prefix, then 37 base62
// characters.
func refShape(s string) bool {
	for _, p := range []string{PrefixLive + "_", PrefixTest + "_"} {
		if body, ok := strings.CutPrefix(s, p); ok {
			return len(body) == 37 && isBase62(body)
		}
	}
	return false
}

// FuzzKeyParts checks the two halves of the key check against reference
// implementations on any input: CheckKeyShape is the spelled-out shape,
// CheckKeyChecksum (on a shaped value) is CRC32 as six base62 digits, and
// CheckKeyFormat is both. The helpers that see presented values
// (ObfuscateKey, HashKey, crc31) never panic, the obfuscated form of a
// well-formed key shows its prefix and four checksum characters only, and
// HashKey is SHA-256 of the bytes.
func FuzzKeyParts(f *testing.F) {
	for _, s := range []string{
		"sk_live_0000000000000000000000000000000" + "4WZ4EQ",
		"sk_test_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz" + "0I30Uz",
		"sk_live_0000000000000000000000000000000" + "4WZ4ER",
		"sk_live_000000000000000000000000000000_" + "4WZ4EQ",
		"sk_live_0000000000000000000000000000000" + "4WZ4E\xff",
		"sk_live0000000000000000000000000000000" + "4WZ4EQ_",
		"sk_test_", "sk_", "_", "", "…", "sk_live_…4WZ4",
		"SK_LIVE_0000000000000000000000000000000" + "4WZ4EQ",
		"sk_live_0000000000000000000000000000000" + "4WZ4EQ\n",
		"sk_live_0000000000000000000000000000000" + "4WZ4E\u0051",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		shape := CheckKeyShape(s)
		if want := refShape(s); shape != want {
			t.Fatalf("CheckKeyShape(%q) = %v, want %v", s, shape, want)
		}
		format := CheckKeyFormat(s) == nil
		if !shape {
			if format {
				t.Fatalf("CheckKeyFormat accepted %q, which has not the shape", s)
			}
		} else {
			body := s[len(s)-37:]
			sum := CheckKeyChecksum(s)
			if want := refChecksum(body[:31]) == body[31:]; sum != want {
				t.Fatalf("CheckKeyChecksum(%q) = %v, want %v", s, sum, want)
			}
			if format != sum {
				t.Fatalf("CheckKeyFormat(%q) = %v, but shape and checksum are %v and %v", s, format, shape, sum)
			}
			obf := ObfuscateKey(s)
			if want := s[:len(s)-37] + "…" + s[len(s)-4:]; obf != want {
				t.Fatalf("ObfuscateKey(%q) = %q, want %q", s, obf, want)
			}
		}
		_ = ObfuscateKey(s)
		if HashKey(s) != KeyHash(sha256.Sum256([]byte(s))) {
			t.Fatalf("HashKey(%q) is not SHA-256", s)
		}
		if len(s) <= 256 {
			if got, want := crc31(s), crc32.ChecksumIEEE([]byte(s)); got != want {
				t.Fatalf("crc31(%q) = %08x, crc32 %08x", s, got, want)
			}
		}
	})
}

// FuzzKeyCorruption builds a well-formed key from a random part the fuzzer
// chooses, checks that it is accepted, then corrupts it the ways people and
// copy-paste do: one character changed (to any byte), two neighbouring
// characters changed at once (a burst under 16 bits, which CRC32 always
// catches), two different neighbours swapped inside the random part or
// inside the checksum, a character dropped or added, the prefix changed.
// Every corruption is refused.
func FuzzKeyCorruption(f *testing.F) {
	f.Add([]byte("0000000000000000000000000000000"), true, uint8(0), byte('1'), byte('2'))
	f.Add([]byte("3kTMd9Rz0bWq7LhY2vCxN5pJfA8eGu1"), false, uint8(30), byte('z'), byte(0))
	f.Add([]byte("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"), true, uint8(36), byte('Z'), byte('_'))
	f.Add([]byte{0xff, 0, 1, 2, 3, 4, 5}, false, uint8(200), byte(0xff), byte(' '))
	f.Fuzz(func(t *testing.T, seed []byte, live bool, pos uint8, c1, c2 byte) {
		var random [31]byte
		for i := range random {
			b := byte(i * 7)
			if i < len(seed) {
				b = seed[i]
			}
			random[i] = testAlphabet[int(b)%62]
		}
		prefix := PrefixTest
		if live {
			prefix = PrefixLive
		}
		key := prefix + "_" + string(random[:]) + refChecksum(string(random[:]))
		if err := CheckKeyFormat(key); err != nil {
			t.Fatalf("CheckKeyFormat(%q) = %v, want it accepted", key, err)
		}
		start := len(prefix) + 1
		i := start + int(pos)%37
		refused := func(what, v string) {
			t.Helper()
			if v != key && CheckKeyFormat(v) == nil {
				t.Fatalf("%s: %q (from %q) was accepted", what, v, key)
			}
		}
		b := []byte(key)
		b[i] = c1
		refused("one character changed", string(b))
		// Two neighbours changed: both in the random part, or both in the
		// checksum (a change across the boundary alters the sum as well).
		if j := i + 1; j < len(key) && (j-start != 31) {
			b[j] = c2
			refused("two neighbours changed", string(b))
		}
		b = []byte(key)
		if j := i + 1; j < len(key) && j-start != 31 && b[i] != b[j] {
			b[i], b[j] = b[j], b[i]
			refused("two neighbours swapped", string(b))
		}
		refused("a character dropped", key[:i]+key[i+1:])
		refused("a character added", key[:i]+string(c1)+key[i:])
		other := PrefixLive
		if live {
			other = PrefixTest
		}
		if c1 != key[i] {
			// The checksum covers the random part only: the same body under
			// the other prefix is a well-formed key of the other kind.
			refused("another prefix, then a character changed", other+"_"+key[start:i]+string(c1)+key[i+1:])
		}
		for _, p := range []string{"sk_prod_", "SK_LIVE_", "sk-live_", "pk_live_"} {
			refused("an unknown prefix", p+key[start:])
		}
	})
}

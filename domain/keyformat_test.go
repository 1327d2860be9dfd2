package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"
)

// testAlphabet is spelled out here, independently of base62Alphabet, so a
// change to the alphabet is caught rather than followed.
const testAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// refChecksum is an independent implementation of the checksum the key format
// specifies: CRC32 (IEEE) of the random part, as 6 base62 digits, most
// significant first.
func refChecksum(random string) string {
	v := crc32.ChecksumIEEE([]byte(random))
	var out [6]byte
	for i := 5; i >= 0; i-- {
		out[i] = testAlphabet[v%62]
		v /= 62
	}
	return string(out[:])
}

// splitKey splits a value into prefix, random part and checksum, failing the
// test when it does not have the expected shape.
func splitKey(t *testing.T, value string) (prefix, random, sum string) {
	t.Helper()
	i := strings.LastIndexByte(value, '_')
	if i < 0 {
		t.Fatalf("key %q has no '_'", value)
	}
	prefix, body := value[:i], value[i+1:]
	if len(body) != 31+6 {
		t.Fatalf("key %q: body is %d characters, want 37", value, len(body))
	}
	return prefix, body[:31], body[31:]
}

func mustGenerate(t *testing.T, prefix string) string {
	t.Helper()
	v, err := GenerateKey(prefix)
	if err != nil {
		t.Fatalf("GenerateKey(%q): %v", prefix, err)
	}
	return v
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(testAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

func TestGenerateKeyShape(t *testing.T) {
	for _, prefix := range []string{PrefixLive, PrefixTest} {
		t.Run(prefix, func(t *testing.T) {
			for i := 0; i < 200; i++ {
				v := mustGenerate(t, prefix)
				if !strings.HasPrefix(v, prefix+"_") {
					t.Fatalf("%q does not start with %q", v, prefix+"_")
				}
				if want := len(prefix) + 1 + 31 + 6; len(v) != want {
					t.Fatalf("len(%q) = %d, want %d", v, len(v), want)
				}
				p, random, sum := splitKey(t, v)
				if p != prefix {
					t.Fatalf("prefix of %q = %q, want %q", v, p, prefix)
				}
				if !isBase62(random) || !isBase62(sum) {
					t.Fatalf("%q has a character outside base62", v)
				}
				if got := refChecksum(random); got != sum {
					t.Fatalf("%q: checksum %q, want CRC32 in base62 %q", v, sum, got)
				}
				if err := CheckKeyFormat(v); err != nil {
					t.Fatalf("CheckKeyFormat(%q) = %v for a generated key", v, err)
				}
			}
		})
	}
}

func TestKeyRandomPartEntropy(t *testing.T) {
	// The format promises at least 180 bits in the random part.
	v := mustGenerate(t, PrefixLive)
	_, random, _ := splitKey(t, v)
	bits := float64(len(random)) * math.Log2(62)
	if len(random) < 31 || bits < 180 {
		t.Fatalf("random part has %d characters (%.1f bits), want >= 31 (180 bits)", len(random), bits)
	}
	if randomLen < 31 {
		t.Fatalf("randomLen = %d, want >= 31", randomLen)
	}
}

func TestGenerateKeyUniform(t *testing.T) {
	// Every base62 character must be equally likely. A generator that maps
	// bytes with b%62 without rejection makes '0'..'7' 25% more likely, which
	// gives a chi-square around 400 here; uniform output gives about 61
	// (61 degrees of freedom). 150 is far in the tail (p < 1e-8).
	counts := map[byte]int{}
	const keys = 2000
	for i := 0; i < keys; i++ {
		_, random, _ := splitKey(t, mustGenerate(t, PrefixTest))
		for j := 0; j < len(random); j++ {
			counts[random[j]]++
		}
	}
	if len(counts) != 62 {
		t.Fatalf("saw %d distinct characters in %d random parts, want all 62", len(counts), keys)
	}
	expected := float64(keys*31) / 62
	chi2 := 0.0
	for _, n := range counts {
		d := float64(n) - expected
		chi2 += d * d / expected
	}
	if chi2 > 150 {
		t.Fatalf("chi-square of character frequencies = %.1f, want <= 150 (counts %v)", chi2, counts)
	}
}

func TestGenerateKeyNoDuplicates(t *testing.T) {
	seen := map[string]bool{}
	randoms := map[string]bool{}
	for _, prefix := range []string{PrefixLive, PrefixTest} {
		for i := 0; i < 1000; i++ {
			v := mustGenerate(t, prefix)
			if seen[v] {
				t.Fatalf("duplicate key %q after %d keys", v, len(seen))
			}
			seen[v] = true
			_, random, _ := splitKey(t, v)
			if randoms[random] {
				t.Fatalf("duplicate random part %q", random)
			}
			randoms[random] = true
		}
	}
}

func TestGenerateKeyRejectsPrefix(t *testing.T) {
	for _, prefix := range []string{"", "sk", "sk_", "sk_live_", "SK_LIVE", "sk_prod", "pk_live", "sk_test ", " sk_live", "sk_livex"} {
		v, err := GenerateKey(prefix)
		if err == nil {
			t.Errorf("GenerateKey(%q) = %q, want an error", prefix, v)
			continue
		}
		if v != "" {
			t.Errorf("GenerateKey(%q) returned value %q with error", prefix, v)
		}
		if k := ErrorKind(err); k != KindInvalid {
			t.Errorf("GenerateKey(%q): kind %v, want KindInvalid", prefix, k)
		}
	}
}

func TestCheckKeyFormatKnownAnswers(t *testing.T) {
	// Computed outside Go (Python zlib.crc32 and a base62 encoder), so they
	// pin the wire format for other implementations (scanners, clients).
	valid := []string{
		"sk_live_0000000000000000000000000000000" + "4WZ4EQ",
		"sk_test_0000000000000000000000000000000" + "4WZ4EQ",
		"sk_live_3kTMd9Rz0bWq7LhY2vCxN5pJfA8eGu1" + "2EehaQ",
		"sk_test_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz" + "0I30Uz",
	}
	for _, v := range valid {
		if err := CheckKeyFormat(v); err != nil {
			t.Errorf("CheckKeyFormat(%q) = %v, want nil", v, err)
		}
	}
	if got := checksum([]byte("3kTMd9Rz0bWq7LhY2vCxN5pJfA8eGu1")); got != "2EehaQ" {
		t.Errorf("checksum = %q, want 2EehaQ", got)
	}
	// The example in the package comment uses a made-up checksum.
	if err := CheckKeyFormat("sk_live_3kTMd9Rz0bWq7LhY2vCxN5pJfA8eGu1Qw3xZ9"); err == nil {
		t.Error("a key with a wrong checksum was accepted")
	}
}

func TestCheckKeyFormatRejects(t *testing.T) {
	v := mustGenerate(t, PrefixLive)
	_, random, sum := splitKey(t, v)
	body := random + sum
	other := mustGenerate(t, PrefixLive)
	_, _, otherSum := splitKey(t, other)
	if otherSum == sum {
		t.Skip("two random keys share a checksum; rerun")
	}
	cases := map[string]string{
		"empty":                 "",
		"prefix only":           "sk_live_",
		"prefix without _":      "sk_live",
		"no prefix":             body,
		"wrong prefix":          "sk_prod_" + body,
		"publishable prefix":    "pk_live_" + body,
		"upper-case prefix":     "SK_LIVE_" + body,
		"double underscore":     "sk_live__" + body,
		"dash separator":        "sk_live-" + body,
		"leading space":         " " + v,
		"trailing space":        v + " ",
		"trailing newline":      v + "\n",
		"one character short":   v[:len(v)-1],
		"one character long":    v + "A",
		"checksum missing":      "sk_live_" + random,
		"random part only long": "sk_live_" + random + random[:6],
		"other key's checksum":  "sk_live_" + random + otherSum,
		"dash in body":          "sk_live_" + body[:10] + "-" + body[11:],
		"underscore in body":    "sk_live_" + body[:10] + "_" + body[11:],
		"plus in body":          "sk_live_" + body[:10] + "+" + body[11:],
		"slash in body":         "sk_live_" + body[:10] + "/" + body[11:],
		"NUL in body":           "sk_live_" + body[:10] + "\x00" + body[11:],
		"0xff in body":          "sk_live_" + body[:10] + "\xff" + body[11:],
		"non-ASCII in body":     "sk_live_" + body[:10] + "é" + body[12:],
		"non-base62 checksum":   "sk_live_" + random + sum[:5] + "=",
		"checksum all zero":     "sk_live_" + random + "000000",
		"checksum all z":        "sk_live_" + random + "zzzzzz",
		"huge":                  "sk_live_" + strings.Repeat("a", 1<<20),
		"huge valid prefix":     strings.Repeat(v, 1000),
	}
	// The checksum of "0000…" is not 000000 and that of a random part is
	// almost never zzzzzz, but guard the two cases that could collide.
	if sum == "000000" || sum == "zzzzzz" {
		t.Skip("improbable checksum; rerun")
	}
	if len("sk_live_"+body[:10]+"é"+body[12:]) != len(v) {
		t.Fatal("test construction is wrong")
	}
	// Characters outside base62 with a checksum that matches them: only the
	// alphabet check can refuse these.
	for name, bad := range map[string]string{"dash": "-", "underscore": "_", "dot": ".", "space": " ", "NUL": "\x00", "0xff": "\xff"} {
		r := random[:15] + bad + random[16:]
		cases["consistent checksum over a "+name] = "sk_live_" + r + refChecksum(r)
		cases["consistent checksum over a leading "+name] = "sk_test_" + bad + r[1:] + refChecksum(bad+r[1:])
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			err := CheckKeyFormat(in)
			if err == nil {
				t.Fatalf("CheckKeyFormat(%.80q) = nil, want an error", in)
			}
			if !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("CheckKeyFormat(%.80q) = %v, want ErrMalformedKey", in, err)
			}
			if k := ErrorKind(err); k != KindInvalid {
				t.Fatalf("kind %v, want KindInvalid", k)
			}
		})
	}
}

// TestCheckKeyFormatSingleCharacterChange changes every position of valid
// keys to every other byte of interest: the prefix check, the alphabet or the
// checksum must reject each. CRC32 detects every error burst of up to 32 bits,
// so a one-character change of the random part is always caught, and a
// changed checksum character always changes the decoded checksum.
func TestCheckKeyFormatSingleCharacterChange(t *testing.T) {
	replacements := testAlphabet + "_-.+/= \x00\x7f\x80\xff"
	keys := []string{
		"sk_live_0000000000000000000000000000000" + "4WZ4EQ",
		"sk_test_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz" + "0I30Uz",
	}
	for i := 0; i < 20; i++ {
		keys = append(keys, mustGenerate(t, PrefixLive), mustGenerate(t, PrefixTest))
	}
	for _, v := range keys {
		if err := CheckKeyFormat(v); err != nil {
			t.Fatalf("CheckKeyFormat(%q) = %v before mutation", v, err)
		}
		b := []byte(v)
		for pos := range b {
			orig := b[pos]
			for j := 0; j < len(replacements); j++ {
				c := replacements[j]
				if c == orig {
					continue
				}
				b[pos] = c
				if err := CheckKeyFormat(string(b)); err == nil {
					t.Fatalf("changing position %d of %q from %q to %q gave %q, which was accepted", pos, v, orig, c, b)
				}
			}
			b[pos] = orig
		}
		// Swapping two different neighbours inside the random part or inside
		// the checksum is caught as well. (A swap across the boundary changes
		// both, which CRC32 does not guarantee to catch.)
		body := len(v) - 37
		for pos := body; pos < len(b)-1; pos++ {
			if pos == body+30 || b[pos] == b[pos+1] {
				continue
			}
			b[pos], b[pos+1] = b[pos+1], b[pos]
			if err := CheckKeyFormat(string(b)); err == nil {
				t.Fatalf("swapping positions %d and %d of %q was accepted", pos, pos+1, v)
			}
			b[pos], b[pos+1] = b[pos+1], b[pos]
		}
	}
}

func TestCheckKeyFormatDoesNotAllocate(t *testing.T) {
	valid := mustGenerate(t, PrefixLive)
	_, random, _ := splitKey(t, valid)
	wrongSum := "sk_live_" + random + "000000"
	garbage := "sk_live_" + strings.Repeat("!", 37)
	for name, in := range map[string]string{"valid": valid, "wrong checksum": wrongSum, "garbage": garbage, "empty": ""} {
		allocs := testing.AllocsPerRun(100, func() { _ = CheckKeyFormat(in) })
		if allocs != 0 {
			t.Errorf("CheckKeyFormat(%s) allocates %.0f times per call, want 0", name, allocs)
		}
	}
}

func TestHashKey(t *testing.T) {
	// Known answer: SHA-256("abc").
	h := HashKey("abc")
	if got := hex.EncodeToString(h[:]); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashKey(abc) = %s", got)
	}
	for i := 0; i < 20; i++ {
		v := mustGenerate(t, PrefixLive)
		if HashKey(v) != KeyHash(sha256.Sum256([]byte(v))) {
			t.Fatalf("HashKey(%q) is not SHA-256 of the value", v)
		}
		if HashKey(v) == HashKey(v[:len(v)-1]) {
			t.Fatalf("HashKey does not depend on the last character")
		}
	}
	// HashKey does not check the format.
	if HashKey("") != KeyHash(sha256.Sum256(nil)) {
		t.Fatal("HashKey(\"\") is not SHA-256 of the empty string")
	}
}

func TestObfuscateKey(t *testing.T) {
	if got := ObfuscateKey("sk_live_3kTMd9Rz0bWq7LhY2vCxN5pJfA8eGu1" + "2EehaQ"); got != "sk_live_…ehaQ" {
		t.Fatalf("ObfuscateKey = %q, want sk_live_…ehaQ", got)
	}
	for _, prefix := range []string{PrefixLive, PrefixTest} {
		for i := 0; i < 200; i++ {
			v := mustGenerate(t, prefix)
			got := ObfuscateKey(v)
			want := prefix + "_…" + v[len(v)-4:]
			if got != want {
				t.Fatalf("ObfuscateKey(%q) = %q, want %q", v, got, want)
			}
			_, _, sum := splitKey(t, v)
			// The four characters shown are all checksum characters: nothing
			// of the random part is revealed.
			if rest := strings.TrimPrefix(got, prefix+"_…"); rest != sum[2:] {
				t.Fatalf("ObfuscateKey(%q) = %q, want the tail %q of the checksum only", v, got, sum[2:])
			}
		}
	}
}

// FuzzCheckKeyFormat checks that CheckKeyFormat never panics, and that what it
// accepts has a known prefix, the right length, only base62 characters and a
// checksum that an independent implementation agrees with; checking again
// gives the same answer.
func FuzzCheckKeyFormat(f *testing.F) {
	for _, s := range []string{
		"sk_live_0000000000000000000000000000000" + "4WZ4EQ",
		"sk_test_3kTMd9Rz0bWq7LhY2vCxN5pJfA8eGu1" + "2EehaQ",
		"sk_live_3kTMd9Rz0bWq7LhY2vCxN5pJfA8eGu1" + "Qw3xZ9",
		"sk_live_",
		"sk_test",
		"",
		"sk_live_00000000000000000000000000000004WZ4E",
		"sk_live_0000000000000000000000000000000_4WZ4E",
		"sk_prod_0000000000000000000000000000000" + "4WZ4EQ",
		"sk_live_\xff\xfe",
		strings.Repeat("z", 300),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckKeyFormat(s)
		if err2 := CheckKeyFormat(s); (err == nil) != (err2 == nil) {
			t.Fatalf("CheckKeyFormat(%q) is not stable: %v then %v", s, err, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("CheckKeyFormat(%q) = %v, want ErrMalformedKey", s, err)
			}
			return
		}
		var body string
		switch {
		case strings.HasPrefix(s, PrefixLive+"_"):
			body = s[len(PrefixLive)+1:]
		case strings.HasPrefix(s, PrefixTest+"_"):
			body = s[len(PrefixTest)+1:]
		default:
			t.Fatalf("accepted %q without a known prefix", s)
		}
		if len(body) != 37 {
			t.Fatalf("accepted %q with a body of %d characters", s, len(body))
		}
		if !isBase62(body) {
			t.Fatalf("accepted %q with a non-base62 body", s)
		}
		if got := refChecksum(body[:31]); got != body[31:] {
			t.Fatalf("accepted %q whose checksum should be %q", s, got)
		}
	})
}

func TestCRC31MatchesStdlib(t *testing.T) {
	inputs := []string{"", "a", "0000000000000000000000000000000", "\x00\xff\x80", "é", "0123456789abcdef0123456789abcde"}
	for i := 0; i < 200; i++ {
		inputs = append(inputs, mustGenerate(t, PrefixLive)[8:39])
	}
	for _, s := range inputs {
		if got, want := crc31(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Errorf("crc31(%q) = %08x, want %08x", s, got, want)
		}
	}
}

func TestBase62TableMatchesAlphabet(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := byte(0xFF)
		if i := strings.IndexByte(base62Alphabet, byte(c)); i >= 0 {
			want = byte(i)
		}
		if got := base62Value[c]; got != want {
			t.Errorf("base62Value[%#x] = %d, want %d", c, got, want)
		}
	}
}

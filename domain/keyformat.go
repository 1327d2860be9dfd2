package domain

import (
	"crypto/rand"
	"crypto/sha256"
	"hash/crc32"
	"strings"
	"unsafe"
)

// Key format: <prefix>_<random><checksum>, for example
// sk_live_3kTMd9Rz0bWq7LhY2vCxN5pJfA8eGu1 + Qw3xZ9.
//
// The random part is 31 base62 characters (31·log2(62) ≈ 184.6 bits, above the
// 180-bit floor); the checksum is the CRC32 (IEEE) of the random part written
// as 6 base62 characters, so a scanner or the validator rejects a mistyped or
// invented key without a lookup.
const (
	PrefixLive     = "sk_live"
	PrefixTest     = "sk_test"
	randomLen      = 31
	checksumLen    = 6
	base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// KeyHash is the SHA-256 of a key's full value: the only form of a key that is
// ever stored.
type KeyHash [sha256.Size]byte

// HashKey hashes a presented value. It does not check the format.
// It reads the string's bytes in place: a conversion would copy them to
// the heap on every validation.
func HashKey(value string) KeyHash {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(value), len(value)))
}

// ErrMalformedKey is returned for a value that is not a key of this format.
var ErrMalformedKey = &Error{Kind: KindInvalid, Code: "malformed", Message: "the value is not a well-formed API key"}

// GenerateKey returns a new random key value with the given prefix.
func GenerateKey(prefix string) (string, error) {
	if prefix != PrefixLive && prefix != PrefixTest {
		return "", Errorf(KindInvalid, "invalid_prefix", "key prefix must be %s or %s", PrefixLive, PrefixTest)
	}
	random := make([]byte, randomLen)
	// Rejection sampling keeps every base62 character equally likely:
	// 248 = 4·62 is the largest multiple of 62 below 256.
	buf := make([]byte, 64)
	n := 0
	for n < randomLen {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b >= 248 {
				continue
			}
			random[n] = base62Alphabet[b%62]
			n++
			if n == randomLen {
				break
			}
		}
	}
	var sb strings.Builder
	sb.Grow(len(prefix) + 1 + randomLen + checksumLen)
	sb.WriteString(prefix)
	sb.WriteByte('_')
	sb.Write(random)
	sb.WriteString(checksum(random))
	return sb.String(), nil
}

// CheckKeyFormat reports whether value is a well-formed key: a known prefix,
// base62 body of the right length, and a matching checksum. It allocates
// nothing.
func CheckKeyFormat(value string) error {
	if !CheckKeyShape(value) || !CheckKeyChecksum(value) {
		return ErrMalformedKey
	}
	return nil
}

// CheckKeyShape is the cheap half of CheckKeyFormat: the prefix, the length
// and the alphabet. Garbage fails here.
func CheckKeyShape(value string) bool {
	if len(value) != len(PrefixLive)+1+randomLen+checksumLen {
		return false
	}
	if value[:len(PrefixLive)+1] != PrefixLive+"_" && value[:len(PrefixTest)+1] != PrefixTest+"_" {
		return false
	}
	body := value[len(PrefixLive)+1:]
	var bad byte
	for i := 0; i < len(body); i++ {
		bad |= base62Value[body[i]]
	}
	return bad&0x80 == 0
}

// CheckKeyChecksum is the other half: the CRC32 of the random part matches
// its last six characters. value must have passed CheckKeyShape.
func CheckKeyChecksum(value string) bool {
	body := value[len(PrefixLive)+1:]
	random, sum := body[:randomLen], body[randomLen:]
	var got uint64
	for i := 0; i < checksumLen; i++ {
		got = got*62 + uint64(base62Value[sum[i]])
	}
	return got == uint64(crc31(random))
}

// crc31 is crc32.ChecksumIEEE of the 31-byte random part, slicing by 8
// with the tables inlined: the generic call costs as much again as the rest
// of the format check.
func crc31(s string) uint32 {
	crc := ^uint32(0)
	for len(s) >= 8 {
		crc ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		crc = crcTables[0][s[7]] ^ crcTables[1][s[6]] ^ crcTables[2][s[5]] ^ crcTables[3][s[4]] ^
			crcTables[4][crc>>24] ^ crcTables[5][(crc>>16)&0xFF] ^ crcTables[6][(crc>>8)&0xFF] ^ crcTables[7][crc&0xFF]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		crc = crcTables[0][byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}

// crcTables are the slicing-by-8 tables of the IEEE polynomial.
var crcTables = func() (t [8][256]uint32) {
	t[0] = *crc32.IEEETable
	for i := 0; i < 256; i++ {
		crc := t[0][i]
		for j := 1; j < 8; j++ {
			crc = t[0][crc&0xFF] ^ (crc >> 8)
			t[j][i] = crc
		}
	}
	return t
}()

// base62Value maps a byte to its base62 digit, or 0xFF for any other byte.
var base62Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i := 0; i < len(base62Alphabet); i++ {
		t[base62Alphabet[i]] = byte(i)
	}
	return t
}()

// ObfuscateKey returns the form of a key that may be shown after creation:
// its prefix and last four characters.
func ObfuscateKey(value string) string {
	prefix := value
	if i := strings.LastIndexByte(value, '_'); i >= 0 {
		prefix = value[:i+1]
	}
	tail := value
	if len(value) > 4 {
		tail = value[len(value)-4:]
	}
	return prefix + "…" + tail
}

func checksum(random []byte) string {
	v := uint64(crc32.ChecksumIEEE(random))
	out := make([]byte, checksumLen)
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = base62Alphabet[v%62]
		v /= 62
	}
	return string(out)
}

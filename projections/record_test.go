package projections

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// recordKeys are keys whose records exercise every branch of appendRecord
// and decodeRecordFast: optional fields, nil and empty permissions, text
// encoding/json escapes, times in other zones and with nanoseconds.
func recordKeys() []*domain.Key {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	zoned := time.Date(2031, 7, 1, 12, 30, 45, 123456789, time.FixedZone("", -5*3600))
	base := domain.Key{
		ID: keyID(1), OrganizationID: "org_a", Owner: domain.Owner{Type: domain.OwnerUser, ID: "alice"},
		Name: "deploy bot", Permissions: []string{"orders:read", "orders:write"}, Hash: domain.HashKey(fixedValue(1)),
		Obfuscated: "sk_live_…0001", CreatedAt: at, UpdatedAt: at, Status: domain.StatusActive, Version: 7,
	}
	var keys []*domain.Key
	add := func(f func(k *domain.Key)) {
		k := base
		k.Permissions = append([]string(nil), base.Permissions...)
		f(&k)
		keys = append(keys, &k)
	}
	add(func(*domain.Key) {})
	add(func(k *domain.Key) { k.Permissions = nil })
	add(func(k *domain.Key) { k.Permissions = []string{} })
	add(func(k *domain.Key) { k.ExpiresAt = &zoned })
	add(func(k *domain.Key) {
		k.Status, k.RevokedAt, k.RevokeReason, k.UpdatedAt = domain.StatusRevoked, &zoned, domain.ReasonLeaked, zoned
	})
	add(func(k *domain.Key) { k.Status, k.RevokedAt = domain.StatusRevoked, &at })
	add(func(k *domain.Key) { k.Version = 1<<64 - 1 })
	add(func(k *domain.Key) { k.Version = 0 })
	for _, name := range []string{"", "é ü 日本", `quote " and \ backslash`, "<b>&amp;</b>", "tab\there", "bad \xff utf-8", "line\u2028sep\u2029", "\x7f"} {
		add(func(k *domain.Key) { k.Name = name; k.Permissions = []string{name} })
	}
	return keys
}

// appendRecord writes what json.Marshal writes, and decodeRecordFast reads
// it back as json.Unmarshal and record.key do.
func TestRecordEncoding(t *testing.T) {
	for i, k := range recordKeys() {
		want, err := json.Marshal(toRecord(k))
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendRecord([]byte("prefix"), k)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "prefix"+string(want) {
			t.Fatalf("key %d: appendRecord\n got  %s\n want %s", i, got[len("prefix"):], want)
		}
		checkRecordDecoders(t, want)
		if fast, ok := decodeRecordFast(want); !ok && !strings.Contains(string(want), `\`) {
			t.Errorf("key %d: the fast path refused a record without escapes: %s", i, want)
		} else if ok {
			if fast.ID != k.ID || fast.Hash != k.Hash {
				t.Errorf("key %d: read back %+v", i, fast)
			}
		}
	}
}

// A time json.Marshal refuses is refused.
func TestRecordEncodingBadTime(t *testing.T) {
	k := recordKeys()[0]
	k.CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := json.Marshal(toRecord(k)); err == nil {
		t.Fatal("json.Marshal accepted year 10000")
	}
	if _, err := appendRecord(nil, k); err == nil {
		t.Error("appendRecord accepted year 10000")
	}
}

func TestRecordEncodingRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("az09_-:.\"\\<>&é€\u2028\x00\x1f\x7f")
	text := func() string {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		if r.IntN(10) == 0 {
			b.WriteString("\xc3")
		}
		return b.String()
	}
	for range 2000 {
		k := &domain.Key{ID: text(), OrganizationID: text(), Owner: domain.Owner{Type: domain.OwnerType(text()), ID: text()},
			Name: text(), Obfuscated: text(), Status: domain.KeyStatus(text()), RevokeReason: domain.RevokeReason(text()),
			CreatedAt: time.Unix(r.Int64N(1<<35), r.Int64N(1e9)).UTC(), UpdatedAt: time.Unix(r.Int64N(1<<35), 0).In(time.FixedZone("", 3600*r.IntN(12))),
			Version: r.Uint64()}
		for i := range k.Hash {
			k.Hash[i] = byte(r.Uint32())
		}
		for range r.IntN(3) {
			k.Permissions = append(k.Permissions, text())
		}
		if r.IntN(2) == 0 {
			t := time.Unix(r.Int64N(1<<35), r.Int64N(1e9))
			k.ExpiresAt = &t
		}
		want, err := json.Marshal(toRecord(k))
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendRecord(nil, k)
		if err != nil || string(got) != string(want) {
			t.Fatalf("appendRecord(%+v) = %s, %v\nwant %s", k, got, err, want)
		}
		checkRecordDecoders(t, want)
	}
}

// checkRecordDecoders: when the fast path reads v, it gives what
// json.Unmarshal and record.key give.
func checkRecordDecoders(t *testing.T, v []byte) {
	t.Helper()
	fast, ok := decodeRecordFast(v)
	if !ok {
		return
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		t.Fatalf("the fast path read what json.Unmarshal refuses (%v): %s", err, v)
	}
	want, err := r.key()
	if err != nil {
		t.Fatalf("the fast path read what record.key refuses (%v): %s", err, v)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("fast path differs on %s:\n got  %+v\n want %+v", v, fast, want)
	}
}

func FuzzDecodeRecordFast(f *testing.F) {
	for _, k := range recordKeys() {
		v, err := json.Marshal(toRecord(k))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	f.Add([]byte(`{"id":"x"}`))
	if v, err := json.Marshal(toRecord(recordKeys()[0])); err == nil {
		f.Add([]byte(strings.Replace(string(v), `"version":7`, `"version":18446744073709551616`, 1)))
	}
	f.Add([]byte(fmt.Sprintf(`{"id":"a","organization_id":"o","owner_type":"user","owner_id":"u","name":"n","permissions":null,"hash":"%064x","obfuscated_value":"v","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","status":"active","version":01}`, 1)))
	f.Fuzz(func(t *testing.T, v []byte) {
		checkRecordDecoders(t, v)
	})
}

package projections

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// flipLast changes the last character of a key so that its checksum no longer
// matches.
func flipLast(v string) string {
	c := v[len(v)-1]
	r := byte('a')
	if c == 'a' {
		r = 'b'
	}
	return v[:len(v)-1] + string(r)
}

func TestValidate(t *testing.T) {
	active, revoked, expired, expiresNow, future, unknown := newValue(t), newValue(t), newValue(t), newValue(t), newValue(t), newValue(t)
	testKey, err := domain.GenerateKey(domain.PrefixTest)
	if err != nil {
		t.Fatal(err)
	}
	l := &ledger{}
	l.create(keySpec{n: 1, org: "org_a", user: "alice", name: "ci", perms: []string{"keys:read", "orders:write"}, value: active})
	l.create(keySpec{n: 2, org: "org_a", value: revoked, perms: []string{"keys:read"}})
	l.create(keySpec{n: 3, org: "org_a", value: expired, expires: tp(fixedNow.Add(-time.Second))})
	l.create(keySpec{n: 4, org: "org_b", value: expiresNow, expires: tp(fixedNow)})
	l.create(keySpec{n: 5, org: "org_b", value: future, perms: []string{"orders:read"}, expires: tp(fixedNow.Add(time.Nanosecond))})
	l.create(keySpec{n: 6, org: "org_b", value: testKey, perms: []string{}})
	l.revoke("org_a", 2, domain.ReasonLeaked)
	p, _ := openMem(t)
	apply(t, p, l.events)

	// Sanity of the fixtures: every value the test calls well-formed is.
	for _, v := range []string{active, revoked, expired, expiresNow, future, unknown, testKey} {
		if err := domain.CheckKeyFormat(v); err != nil {
			t.Fatalf("generated %q is not well-formed: %v", v, err)
		}
	}

	wrongPrefix := "sk_prod_" + strings.TrimPrefix(active, domain.PrefixLive+"_")
	swappedPrefix := domain.PrefixTest + "_" + strings.TrimPrefix(active, domain.PrefixLive+"_")
	failures := []struct {
		name, value string
		want        domain.ValidationReason
	}{
		{"empty", "", domain.InvalidMalformed},
		{"prefix only", "sk_live_", domain.InvalidMalformed},
		{"bad checksum", flipLast(active), domain.InvalidMalformed},
		{"wrong prefix", wrongPrefix, domain.InvalidMalformed},
		{"truncated", active[:len(active)-1], domain.InvalidMalformed},
		{"trailing space", active + " ", domain.InvalidMalformed},
		{"garbage", "hello, world", domain.InvalidMalformed},
		{"well-formed but unknown", unknown, domain.InvalidNotFound},
		// Same body under the other prefix: well-formed, but a different
		// value with a different hash.
		{"other environment", swappedPrefix, domain.InvalidNotFound},
		{"revoked", revoked, domain.InvalidRevoked},
		{"expired", expired, domain.InvalidExpired},
		{"expires exactly now", expiresNow, domain.InvalidExpired},
	}
	for _, c := range failures {
		k, reason := p.Validate(c.value)
		if k.ID != "" || reason != c.want {
			t.Errorf("%s: Validate = (%v, %q), want (nil, %q)", c.name, k, reason, c.want)
		}
	}

	// Success returns the key exactly as created.
	k, reason := p.Validate(active)
	if reason != "" {
		t.Fatalf("Validate(active) = (%v, %q), want the key", k, reason)
	}
	want := &domain.Key{
		ID: keyID(1), OrganizationID: "org_a", Owner: domain.Owner{Type: domain.OwnerUser, ID: "alice"}, Name: "ci",
		Permissions: []string{"keys:read", "orders:write"}, Hash: domain.HashKey(active), Obfuscated: domain.ObfuscateKey(active),
		CreatedAt: t0, UpdatedAt: t0, Status: domain.StatusActive, Version: 1,
	}
	if err := sameValid(k, want); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		value string
		n     int
		perms []string
	}{{future, 5, []string{"orders:read"}}, {testKey, 6, []string{}}} {
		k, reason := p.Validate(c.value)
		if reason != "" || k.ID != keyID(c.n) || !slices.Equal(k.Permissions, c.perms) {
			t.Errorf("Validate(key %d) = (%+v, %q), want key %s with %q", c.n, k, reason, keyID(c.n), c.perms)
		}
	}
	// The same key, read from Pebble, agrees with what validation answers.
	stored, err := p.Key(context.Background(), keyID(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := sameValid(k, stored); err != nil {
		t.Fatalf("Get and Validate disagree: %v", err)
	}
}

// TestLastUsed: a successful validation is recorded as telemetry, failed ones
// are not; FlushUsage persists it across a reopen; it is never in Dump.
func TestLastUsed(t *testing.T) {
	active, revoked := newValue(t), newValue(t)
	l := &ledger{}
	l.create(keySpec{n: 1, org: "org_a", value: active})
	l.create(keySpec{n: 2, org: "org_a", value: revoked})
	l.revoke("org_a", 2, domain.ReasonRequested)
	p, fs := openMem(t)
	apply(t, p, l.events)
	before := dump(t, p)

	if got := p.LastUsed(keyID(1)); got != nil {
		t.Fatalf("LastUsed before any validation = %v, want nil", got)
	}
	if _, reason := p.Validate(active); reason != "" {
		t.Fatal("active key did not validate")
	}
	if _, reason := p.Validate(revoked); reason == "" {
		t.Fatal("revoked key validated")
	}
	if got := p.LastUsed(keyID(1)); got == nil || !got.Equal(fixedNow) {
		t.Fatalf("LastUsed after a validation = %v, want %v", got, fixedNow)
	}
	if got := p.LastUsed(keyID(2)); got != nil {
		t.Fatalf("LastUsed of a key that failed validation = %v, want nil", got)
	}
	if err := p.FlushUsage(); err != nil {
		t.Fatal(err)
	}
	if got := p.LastUsed(keyID(1)); got == nil || !got.Equal(fixedNow) {
		t.Fatalf("LastUsed after flush = %v, want %v", got, fixedNow)
	}
	if got := dump(t, p); got != before {
		t.Fatalf("Dump changed by last-used telemetry:\n%s\nwant\n%s", got, before)
	}
	// The telemetry is there, outside the dump.
	var n int
	if err := p.scan(prefixLastUsed, func(_, _ []byte) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("stored last-used entries = %d (%v), want 1", n, err)
	}

	closeProj(t, p)
	q := openAt(t, "p", fs)
	if got := q.LastUsed(keyID(1)); got == nil || !got.Equal(fixedNow) {
		t.Fatalf("LastUsed after reopen = %v, want %v", got, fixedNow)
	}
	if got := q.LastUsed(keyID(2)); got != nil {
		t.Fatalf("LastUsed of key 2 after reopen = %v, want nil", got)
	}
	if got := dump(t, q); got != before {
		t.Fatalf("Dump after reopen differs:\n%s\nwant\n%s", got, before)
	}
}

// TestLastUsedKeepsTheLatest: with a moving clock, the latest use wins, and a
// flush never moves a stored time backwards.
func TestLastUsedKeepsTheLatest(t *testing.T) {
	v := newValue(t)
	l := &ledger{}
	l.create(keySpec{n: 1, org: "org_a", value: v})
	now := fixedNow
	p, err := Open(Config{Dir: "p", FS: memFS(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	apply(t, p, l.events)

	p.Validate(v)
	now = fixedNow.Add(time.Minute)
	p.Validate(v)
	if got := p.LastUsed(keyID(1)); got == nil || !got.Equal(fixedNow.Add(time.Minute)) {
		t.Fatalf("LastUsed = %v, want %v", got, fixedNow.Add(time.Minute))
	}
	if err := p.FlushUsage(); err != nil {
		t.Fatal(err)
	}
	// An older time recorded later (another goroutine's clock) does not win.
	now = fixedNow
	p.Validate(v)
	if err := p.FlushUsage(); err != nil {
		t.Fatal(err)
	}
	if got := p.LastUsed(keyID(1)); got == nil || !got.Equal(fixedNow.Add(time.Minute)) {
		t.Fatalf("LastUsed after flushing an older time = %v, want %v", got, fixedNow.Add(time.Minute))
	}
}

// TestCopyUsageTo: a rebuild keeps the telemetry of the projection it
// replaces.
func TestCopyUsageTo(t *testing.T) {
	v := newValue(t)
	l := &ledger{}
	l.create(keySpec{n: 1, org: "org_a", value: v})
	a, _ := openMem(t)
	b, _ := openMem(t)
	apply(t, a, l.events)
	apply(t, b, l.events)
	a.Validate(v) // pending only: CopyUsageTo flushes first
	if err := a.CopyUsageTo(b); err != nil {
		t.Fatal(err)
	}
	if got := b.LastUsed(keyID(1)); got == nil || !got.Equal(fixedNow) {
		t.Fatalf("LastUsed in the copy = %v, want %v", got, fixedNow)
	}
	if dump(t, a) != dump(t, b) {
		t.Fatal("projections differ after copying telemetry")
	}
}

// TestRunUsageFlusher: the flusher writes pending last-used times on its
// tick and returns nil when ctx ends.
func TestRunUsageFlusher(t *testing.T) {
	v := newValue(t)
	l := &ledger{}
	l.create(keySpec{n: 1, org: "org_a", value: v})
	p, _ := openMem(t)
	apply(t, p, l.events)
	p.Validate(v)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.RunUsageFlusher(ctx, 5*time.Millisecond) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if at, ok := storedUsage(p, keyID(1)); ok {
			if !at.Equal(fixedNow) {
				t.Fatalf("flushed last-used = %v, want %v", at, fixedNow)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the flusher did not write the last-used time")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunUsageFlusher = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunUsageFlusher did not return")
	}
}

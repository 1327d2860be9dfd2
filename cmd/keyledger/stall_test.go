package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/schemas"
)

// The projector's and the sealer's readers of the ledger, silenced on the
// NATS server (their consumers paused), are replaced after --follow-stall:
// commands, validations and proofs carry on without a restart.
func TestSilencedLedgerReadersAreReplaced(t *testing.T) {
	dir, addr := fleetNATS(t)
	s := fleetNode(t, dir, addr, "node-a", func(c *Config) { c.FollowStall = 500 * time.Millisecond })
	setCatalogue(t, s.url, "projects:read")
	eventOf := func(keyID string) string {
		t.Helper()
		for _, e := range listEvents(t, s.url, "limit=100").Data {
			if subjectOf(e) == keyID {
				return e.ID
			}
		}
		t.Fatalf("no event of %s in the feed", keyID)
		return ""
	}
	req := schemas.CreateAPIKeyRequest{Name: "before", Permissions: []string{"projects:read"}}
	before := createKey(t, s.url, "org_stall", req)
	waitProof(t, s.url, eventOf(before.ID))

	nc := connectNATS(t, addr)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), "KEYLEDGER")
	if err != nil {
		t.Fatal(err)
	}
	// The readers are the ephemeral consumers; the shared durable ones
	// (webhooks, public subjects) are named keyledger_*.
	var paused []string
	for info := range stream.ListConsumers(t.Context()).Info() {
		if strings.HasPrefix(info.Name, "keyledger_") {
			continue
		}
		if _, err := js.PauseConsumer(t.Context(), "KEYLEDGER", info.Name, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		paused = append(paused, info.Name)
	}
	if len(paused) != 2 {
		t.Fatalf("paused %v, want the projector's and the sealer's readers", paused)
	}

	req.Name = "after"
	after := createKey(t, s.url, "org_stall", req) // answered once applied
	if v := validate(t, s.url, *after.Value); v.APIKey == nil || v.APIKey.ID != after.ID {
		t.Fatalf("a key created after the readers were silenced: %+v", v)
	}
	waitProof(t, s.url, eventOf(after.ID))
	for info := range stream.ListConsumers(t.Context()).Info() {
		for _, p := range paused {
			if info.Name == p {
				t.Errorf("silenced reader %s is still on the server", p)
			}
		}
	}
}

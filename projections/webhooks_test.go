package projections

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

func TestWebhookEndpointsProjected(t *testing.T) {
	dir := t.TempDir()
	p := openAt(t, dir, nil)
	ctx := context.Background()
	const a, b = "we_01J00000000000000000000001", "we_01J00000000000000000000002"
	l := &ledger{}
	l.add("", a, domain.WebhookEndpointCreated{EndpointID: a, URL: "https://a.example/h", Events: []string{"api_key.created"}, Secret: "s1"})
	l.add("", b, domain.WebhookEndpointCreated{EndpointID: b, URL: "https://b.example/h", Events: []string{"api_key.revoked"}, Secret: "t1"})
	apply(t, p, l.events)
	// One run changes the same endpoint twice: both apply.
	l2 := &ledger{events: l.events}
	l2.add("", a, domain.WebhookSecretRotated{EndpointID: a, Secret: "s2", PreviousExpiresAt: t0.Add(time.Hour)})
	l2.add("", a, domain.WebhookEndpointDisabled{EndpointID: a, Reason: domain.DisabledGone})
	l2.add("", b, domain.WebhookEndpointDeleted{EndpointID: b})
	apply(t, p, l2.events[2:])

	check := func(p *Projection) {
		t.Helper()
		w, err := p.Endpoint(ctx, a)
		if err != nil || w.Enabled || w.DisabledReason != domain.DisabledGone || len(w.Secrets) != 2 || w.Secrets[0].Sealed != "s2" || w.Version != 4 || w.CreatedSeq != 1 {
			t.Fatalf("endpoint a = %+v, %v", w, err)
		}
		if got := w.CurrentSecrets(t0.Add(30 * time.Minute)); len(got) != 2 {
			t.Fatalf("during the overlap both secrets sign: %v", got)
		}
		if got := w.CurrentSecrets(t0.Add(2 * time.Hour)); len(got) != 1 || got[0] != "s2" {
			t.Fatalf("after the overlap only the new secret signs: %v", got)
		}
		if _, err := p.Endpoint(ctx, b); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("deleted endpoint: %v", err)
		}
		all, err := p.Endpoints(ctx)
		if err != nil || len(all) != 1 || all[0].ID != a {
			t.Fatalf("Endpoints = %v, %v", all, err)
		}
	}
	check(p)
	closeProj(t, p)
	check(openAt(t, dir, nil))
}

func TestWebhookEventOfUnknownEndpointStopsTheProjection(t *testing.T) {
	p, _ := openMem(t)
	l := &ledger{}
	l.add("", "we_01J00000000000000000000009", domain.WebhookEndpointEnabled{EndpointID: "we_01J00000000000000000000009"})
	if err := p.Apply(l.events); !errors.Is(err, errCorrupt) {
		t.Fatalf("Apply = %v, want errCorrupt", err)
	}
}

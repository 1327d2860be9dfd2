package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/keyledger/keyledger/domain"
)

// Webhook endpoints are few: the projection keeps them all in memory,
// replaced as a whole when a run changes one, and in Pebble (w/<id>) for
// restarts. Deleted endpoints stay, marked, so their history resolves.

const prefixEndpoint = "w/"

// Endpoint returns a webhook endpoint; deleted or unknown ones are
// domain.ErrNotFound.
func (p *Projection) Endpoint(_ context.Context, id string) (*domain.WebhookEndpoint, error) {
	w, ok := (*p.endpoints.Load())[id]
	if !ok || w.Deleted {
		return nil, domain.ErrNotFound
	}
	cp := *w
	return &cp, nil
}

// Endpoints returns every webhook endpoint that is not deleted, oldest
// first.
func (p *Projection) Endpoints(_ context.Context) ([]*domain.WebhookEndpoint, error) {
	all := *p.endpoints.Load()
	out := make([]*domain.WebhookEndpoint, 0, len(all))
	for _, w := range all {
		if !w.Deleted {
			cp := *w
			out = append(out, &cp)
		}
	}
	slices.SortFunc(out, func(a, b *domain.WebhookEndpoint) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// applyEndpoint folds one webhook endpoint event into the run's changes and
// the batch.
func (p *Projection) applyEndpoint(b *pebble.Batch, id string, e *domain.Event) error {
	cur, ok := p.epChanged[id]
	if !ok {
		cur = (*p.endpoints.Load())[id]
	}
	w := &domain.WebhookEndpoint{}
	if cur != nil {
		cp := *cur
		w = &cp
	} else if _, created := e.Data.(domain.WebhookEndpointCreated); !created {
		return fmt.Errorf("%w: %T of unknown endpoint %s at seq %d", errCorrupt, e.Data, id, e.Seq)
	}
	w.Apply(*e)
	v, err := json.Marshal(w)
	if err != nil {
		return err
	}
	p.epChanged[id] = w
	return b.Set([]byte(prefixEndpoint+id), v, nil)
}

// publishEndpoints makes a run's endpoint changes visible.
func (p *Projection) publishEndpoints() {
	if len(p.epChanged) == 0 {
		return
	}
	next := maps.Clone(*p.endpoints.Load())
	maps.Copy(next, p.epChanged)
	p.endpoints.Store(&next)
	clear(p.epChanged)
}

// loadEndpoints reads the endpoints at Open.
func (p *Projection) loadEndpoints() error {
	all := map[string]*domain.WebhookEndpoint{}
	err := p.scan(prefixEndpoint, func(_, v []byte) error {
		w := &domain.WebhookEndpoint{}
		if err := json.Unmarshal(v, w); err != nil {
			return fmt.Errorf("projections: corrupt webhook endpoint: %w", err)
		}
		all[w.ID] = w
		return nil
	})
	p.endpoints.Store(&all)
	return err
}

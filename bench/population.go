package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections"
)

// Population is a projection loaded with n keys, the way a server holds
// them after start-up, and a mix of presented values to validate.
type Population struct {
	Proj    *projections.Projection
	Values  []string // every key's value, index i created i-th
	Revoked int      // the first Revoked values are revoked
	// Mix is a fixed sequence of presented values: hits drawn from a Zipf
	// distribution over every key (a few keys carry most traffic, as in
	// life), and misses, malformed and revoked keys.
	Mix []string
}

// Mix proportions: 85% hits, 5% revoked, 5% well-formed unknown keys, 5%
// malformed values.
const (
	mixLen        = 1 << 16
	revokedShare  = 20 // one key in 20 is revoked
	permsPerKey   = 2
	populationOrg = "org_bench"
)

// Populate builds a Population of n keys in a projection at dir.
func Populate(ctx context.Context, dir string, n int, p Progress) (*Population, error) {
	proj, err := projections.Open(projections.Config{Dir: dir})
	if err != nil {
		return nil, err
	}
	pop := &Population{Proj: proj, Values: make([]string, n)}
	now := time.Now().UTC()
	const run = 5000
	events := make([]domain.Event, 0, run)
	seq := uint64(0)
	flush := func() error {
		if len(events) == 0 {
			return nil
		}
		err := proj.Apply(events)
		events = events[:0]
		return err
	}
	perms := []string{"projects:read", "tasks:read"}
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		v, err := domain.GenerateKey(domain.PrefixLive)
		if err != nil {
			return nil, err
		}
		pop.Values[i] = v
		ids[i] = eventstore.NewID("api_key_")
		seq++
		owner := domain.Owner{Type: domain.OwnerOrganization, ID: populationOrg}
		if i%3 == 0 {
			owner = domain.Owner{Type: domain.OwnerUser, ID: fmt.Sprintf("user_%d", i%1000)}
		}
		events = append(events, domain.Event{
			ID: eventstore.NewID("event_"), OrganizationID: populationOrg, AggregateID: ids[i], Actor: domain.Admin(), CreatedAt: now, Seq: seq,
			Data: domain.KeyCreated{KeyID: ids[i], Name: "bench", Owner: owner, Permissions: perms[:permsPerKey],
				Hash: domain.HashKey(v), Obfuscated: domain.ObfuscateKey(v)},
		})
		if len(events) == run {
			if err := flush(); err != nil {
				return nil, err
			}
			if p != nil {
				p(fmt.Sprintf("loading %d keys", n), i+1, n)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	pop.Revoked = n / revokedShare
	for i := 0; i < pop.Revoked; i++ {
		seq++
		events = append(events, domain.Event{
			ID: eventstore.NewID("event_"), OrganizationID: populationOrg, AggregateID: ids[i], Actor: domain.Admin(), CreatedAt: now, Seq: seq,
			Data: domain.KeyRevoked{KeyID: ids[i], Reason: domain.ReasonRequested},
		})
		if len(events) == run {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	pop.Mix = makeMix(pop, rand.New(rand.NewPCG(1, 2)))
	return pop, nil
}

func makeMix(pop *Population, r *rand.Rand) []string {
	n := len(pop.Values)
	active := n - pop.Revoked
	zipf := rand.NewZipf(r, 1.1, 1, uint64(active-1))
	mix := make([]string, mixLen)
	for i := range mix {
		switch x := r.IntN(100); {
		case x < 85:
			mix[i] = pop.Values[pop.Revoked+int(zipf.Uint64())]
		case x < 90 && pop.Revoked > 0:
			mix[i] = pop.Values[r.IntN(pop.Revoked)]
		case x < 95:
			v, _ := domain.GenerateKey(domain.PrefixLive)
			mix[i] = v
		default:
			// A key with its last character changed: fails the checksum.
			v := []byte(pop.Values[r.IntN(n)])
			v[len(v)-1] ^= 1
			if v[len(v)-1] == 0 {
				v[len(v)-1] = 'a'
			}
			mix[i] = string(v)
		}
	}
	return mix
}

// UniformHits is a sequence of active keys drawn uniformly: the worst case
// for caches, every lookup a different part of the index.
func (pop *Population) UniformHits(r *rand.Rand) []string {
	out := make([]string, mixLen)
	for i := range out {
		out[i] = pop.Values[pop.Revoked+r.IntN(len(pop.Values)-pop.Revoked)]
	}
	return out
}

// Close closes the projection.
func (pop *Population) Close() error { return pop.Proj.Close() }

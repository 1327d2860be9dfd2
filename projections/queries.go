package projections

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/keyledger/keyledger/domain"
)

// Validate answers whether value is a usable key, and if so which. It never
// reads the ledger or Pebble, takes no lock, and allocates nothing:
//   - prefix, length and alphabet first: garbage stops there;
//   - then the hash, looked up in the in-memory index;
//   - a value not in the index is checked against its CRC32, to tell a
//     mistyped or invented key (malformed) from an unknown one. A value
//     found in the index hashes to a key keyledger generated, so its
//     checksum is right by construction and is not computed again: that is
//     a third of the cost of a hit beyond the hash itself.
//
// A successful validation is recorded as last-used telemetry.
func (p *Projection) Validate(value string) (domain.ValidKey, domain.ValidationReason) {
	var k domain.ValidKey
	reason := p.ValidateInto(value, &k)
	return k, reason
}

// ValidateInto is Validate writing the key into *out, which saves copying
// it on the hot path. *out is unchanged unless the key is valid.
func (p *Projection) ValidateInto(value string, out *domain.ValidKey) domain.ValidationReason {
	if !domain.CheckKeyShape(value) {
		return domain.InvalidMalformed
	}
	h := domain.HashKey(value)
	s := p.idx.lookup(&h)
	if s == nil {
		if !domain.CheckKeyChecksum(value) {
			return domain.InvalidMalformed
		}
		return domain.InvalidNotFound
	}
	if s.revoked.Load() {
		return domain.InvalidRevoked
	}
	expires := s.expires.Load()
	if expires != 0 && p.cfg.Now().UnixNano() >= expires {
		return domain.InvalidExpired
	}
	// Write the shared cache line at most once a second per key.
	now := p.usageNow()
	if s.lastUsed.Load() < now {
		s.lastUsed.Store(now)
	}
	s.fill(out, expires, now)
	return ""
}

// ActiveUserKeyIDs lists the ids of a user's active keys in an organization.
func (p *Projection) ActiveUserKeyIDs(_ context.Context, org, userID string) ([]string, error) {
	var ids []string
	err := p.scan(prefixUser+org+"/"+userID+"/", func(k, _ []byte) error {
		id := string(k[bytes.LastIndexByte(k, '/')+1:])
		rec, err := p.getRecord(id)
		if err != nil {
			return err
		}
		if rec.Status == domain.StatusActive {
			ids = append(ids, id)
		}
		return nil
	})
	return ids, err
}

// Catalogue returns the permission catalogue as projected, with the
// sequence of the event that set it. It is kept in memory: every create
// reads it.
func (p *Projection) Catalogue(_ context.Context) (*domain.Catalogue, error) {
	return p.catalogue.Load(), nil
}

// Key returns one key as the projection holds it, with the permissions
// the catalogue lets it use (domain.Catalogue.Ceiling).
func (p *Projection) Key(_ context.Context, id string) (*domain.Key, error) {
	k, err := p.getRecord(id)
	if err != nil {
		return nil, err
	}
	k.Permissions = p.catalogue.Load().Ceiling(k.Permissions)
	return k, nil
}

// List pages through an organization's keys (or one user's) in creation
// order.
func (p *Projection) List(_ context.Context, q domain.KeyListQuery) (domain.KeyPage, error) {
	prefix := prefixOrg + q.OrganizationID + "/"
	if q.UserID != "" {
		prefix = prefixUser + q.OrganizationID + "/" + q.UserID + "/"
	}
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return domain.KeyPage{}, fmt.Errorf("projections: list: %w", err)
	}
	defer it.Close()

	// Walk away from the cursor: forward in the page's order for `after`
	// (and for no cursor), backward for `before`.
	forward := q.Ascending
	cursor := q.After
	if q.Before != "" {
		forward, cursor = !q.Ascending, q.Before
	}
	var valid bool
	switch {
	case cursor != "" && forward:
		valid = it.SeekGE([]byte(prefix + cursor + "\x00"))
	case cursor != "":
		valid = it.SeekLT([]byte(prefix + cursor))
	case forward:
		valid = it.First()
	default:
		valid = it.Last()
	}
	var keys []*domain.Key
	more := false
	now := p.cfg.Now()
	cat := p.catalogue.Load()
	for ; valid; valid = step(it, forward) {
		id := strings.TrimPrefix(string(it.Key()), prefix)
		k, err := p.getRecord(id)
		if err != nil {
			return domain.KeyPage{}, err
		}
		k.Permissions = cat.Ceiling(k.Permissions)
		if !matchStatus(k, q.Status, now) || (q.Visible != nil && !q.Visible(k)) {
			continue
		}
		if len(keys) == q.Limit {
			more = true
			break
		}
		keys = append(keys, k)
	}
	if err := it.Error(); err != nil {
		return domain.KeyPage{}, fmt.Errorf("projections: list: %w", err)
	}
	page := domain.KeyPage{Keys: keys}
	if q.Before != "" {
		slices.Reverse(page.Keys)
		if len(keys) > 0 {
			page.After = page.Keys[len(page.Keys)-1].ID
			if more {
				page.Before = page.Keys[0].ID
			}
		}
		return page, nil
	}
	if len(keys) > 0 {
		if more {
			page.After = keys[len(keys)-1].ID
		}
		if q.After != "" {
			page.Before = keys[0].ID
		}
	}
	return page, nil
}

func step(it *pebble.Iterator, forward bool) bool {
	if forward {
		return it.Next()
	}
	return it.Prev()
}

func matchStatus(k *domain.Key, status string, now time.Time) bool {
	ok, reason := k.Validity(now)
	switch status {
	case "":
		return true
	case "active":
		return ok
	case "revoked":
		return reason == domain.InvalidRevoked
	case "expired":
		return reason == domain.InvalidExpired
	}
	return false
}

// Dump writes the projection's state (without telemetry) as sorted lines of
// key and value, for golden tests and to compare a projection with a rebuild.
func (p *Projection) Dump(w io.Writer) error {
	it, err := p.db.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if bytes.HasPrefix(k, []byte(prefixLastUsed)) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%q %q\n", k, v); err != nil {
			return err
		}
	}
	return it.Error()
}

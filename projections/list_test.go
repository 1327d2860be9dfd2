package projections

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// listKey is the test's own model of a key in the list fixture.
type listKey struct {
	n         int
	org, user string
	revoked   bool
	expires   *time.Time
}

func (k listKey) status() string {
	switch {
	case k.revoked:
		return "revoked"
	case k.expires != nil && !fixedNow.Before(*k.expires):
		return "expired"
	}
	return "active"
}

// listFixture: 25 keys in org_a with ids in increasing order (org keys and
// keys of alice and bob; some revoked, some expired, some expiring later),
// one key of user alice2 in org_a, and keys of other organizations whose ids
// interleave with org_a's and whose names share org_a's prefix.
func listFixture(t *testing.T) (*Projection, []listKey) {
	t.Helper()
	var model []listKey
	l := &ledger{}
	others := []struct{ org, user string }{
		{"org_b", "alice"}, {"org_a-x", ""}, {"org_aa", "alice"}, {"org_a_b", ""}, {"org_b", ""},
	}
	for i := 1; i <= 25; i++ {
		k := listKey{n: 2 * i, org: "org_a"}
		switch i % 3 {
		case 0:
			k.user = "alice"
		case 1:
			k.user = "bob"
		}
		switch {
		case i%5 == 0:
			k.expires = tp(fixedNow.Add(-time.Hour))
		case i%7 == 0:
			k.expires = tp(fixedNow.Add(24 * time.Hour))
		}
		k.revoked = i%4 == 0
		model = append(model, k)
		o := others[i%len(others)]
		model = append(model, listKey{n: 2*i + 1, org: o.org, user: o.user})
	}
	model = append(model, listKey{n: 60, org: "org_a", user: "alice2"})
	for _, k := range model {
		l.create(keySpec{n: k.n, org: k.org, user: k.user, value: fixedValue(k.n), expires: k.expires})
	}
	for _, k := range model {
		if k.revoked {
			l.revoke(k.org, k.n, domain.ReasonRequested)
		}
	}
	p, _ := openMem(t)
	apply(t, p, l.events)
	return p, model
}

// expect is the ids the model says q should list, in q's order.
func expect(model []listKey, q domain.KeyListQuery, visible func(listKey) bool) []string {
	var out []string
	for _, k := range model {
		if k.org != q.OrganizationID || (q.UserID != "" && k.user != q.UserID) ||
			(q.Status != "" && k.status() != q.Status) || (visible != nil && !visible(k)) {
			continue
		}
		out = append(out, keyID(k.n))
	}
	slices.Sort(out)
	if !q.Ascending {
		slices.Reverse(out)
	}
	return out
}

func list(t *testing.T, p *Projection, q domain.KeyListQuery) domain.KeyPage {
	t.Helper()
	page, err := p.List(context.Background(), q)
	if err != nil {
		t.Fatalf("List(%+v): %v", q, err)
	}
	for _, k := range page.Keys {
		if k.OrganizationID != q.OrganizationID {
			t.Fatalf("List of %s returned key %s of %s", q.OrganizationID, k.ID, k.OrganizationID)
		}
		if q.UserID != "" && (k.Owner.Type != domain.OwnerUser || k.Owner.ID != q.UserID) {
			t.Fatalf("List of user %s returned key %s of %+v", q.UserID, k.ID, k.Owner)
		}
	}
	return page
}

// walk pages through q forward with `after` and back with `before`, and
// checks every page and cursor against want (all matching ids in q's order).
func walk(t *testing.T, p *Projection, q domain.KeyListQuery, want []string) {
	t.Helper()
	limit := q.Limit
	// Forward from the start.
	var seen []string
	var last domain.KeyPage
	cursor := ""
	for i := 0; ; i++ {
		if i > len(want)+1 {
			t.Fatalf("forward walk does not end: seen %v", seen)
		}
		fq := q
		fq.After = cursor
		page := list(t, p, fq)
		start := i * limit
		end := min(start+limit, len(want))
		mustEqual(t, fmt.Sprintf("forward page %d (after %q)", i, cursor), nilIfEmpty(ids(page.Keys)), nilIfEmpty(want[min(start, len(want)):end]))
		wantBefore, wantAfter := "", ""
		if i > 0 && end > start {
			wantBefore = want[start]
		}
		if end < len(want) {
			wantAfter = want[end-1]
		}
		if page.Before != wantBefore || page.After != wantAfter {
			t.Fatalf("forward page %d (after %q): cursors (before %q, after %q), want (%q, %q)", i, cursor, page.Before, page.After, wantBefore, wantAfter)
		}
		seen = append(seen, ids(page.Keys)...)
		last = page
		if page.After == "" {
			break
		}
		cursor = page.After
	}
	mustEqual(t, "forward walk", nilIfEmpty(seen), nilIfEmpty(want))

	// Back from the last page's `before`, and from a cursor past the end.
	beyond := "api_key_00000000000000000000000000"
	if q.Ascending {
		beyond = "api_key_7ZZZZZZZZZZZZZZZZZZZZZZZZZ"
	}
	starts := []string{beyond}
	if last.Before != "" {
		starts = append(starts, last.Before)
	}
	for _, cursor := range starts {
		end := slices.Index(want, cursor)
		if end < 0 {
			end = len(want)
		}
		var back []string
		if end < len(want) {
			back = slices.Clone(want[end:])
		}
		for i := 0; ; i++ {
			if i > len(want)+1 {
				t.Fatalf("backward walk does not end")
			}
			bq := q
			bq.Before = cursor
			page := list(t, p, bq)
			start := max(0, end-limit)
			mustEqual(t, fmt.Sprintf("backward page %d (before %q)", i, cursor), nilIfEmpty(ids(page.Keys)), nilIfEmpty(want[start:end]))
			wantBefore, wantAfter := "", ""
			if start > 0 {
				wantBefore = want[start]
			}
			if end > start {
				wantAfter = want[end-1]
			}
			if page.Before != wantBefore || page.After != wantAfter {
				t.Fatalf("backward page %d (before %q): cursors (before %q, after %q), want (%q, %q)", i, cursor, page.Before, page.After, wantBefore, wantAfter)
			}
			back = append(ids(page.Keys), back...)
			if page.Before == "" {
				break
			}
			cursor, end = page.Before, start
		}
		mustEqual(t, "backward walk", nilIfEmpty(back), nilIfEmpty(want))
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestListDefaultOrder(t *testing.T) {
	p, model := listFixture(t)
	page := list(t, p, domain.KeyListQuery{OrganizationID: "org_a", Limit: 3})
	mustEqual(t, "newest first", ids(page.Keys), []string{keyID(60), keyID(50), keyID(48)})
	if page.Before != "" || page.After != keyID(48) {
		t.Fatalf("cursors (%q, %q), want (\"\", %q)", page.Before, page.After, keyID(48))
	}
	page = list(t, p, domain.KeyListQuery{OrganizationID: "org_a", Limit: 3, Ascending: true})
	mustEqual(t, "oldest first", ids(page.Keys), []string{keyID(2), keyID(4), keyID(6)})
	page = list(t, p, domain.KeyListQuery{OrganizationID: "org_a", Limit: 100})
	if len(page.Keys) != 26 || page.Before != "" || page.After != "" {
		t.Fatalf("all of org_a: %d keys, cursors (%q, %q); want 26 and none", len(page.Keys), page.Before, page.After)
	}
	// Records come back whole: status, expiry, owner.
	byID := map[string]listKey{}
	for _, k := range model {
		byID[keyID(k.n)] = k
	}
	for _, k := range page.Keys {
		m := byID[k.ID]
		revoked := k.Status == domain.StatusRevoked
		if revoked != m.revoked || (k.ExpiresAt == nil) != (m.expires == nil) || k.Owner.ID != map[bool]string{true: m.user, false: "org_a"}[m.user != ""] {
			t.Fatalf("record %s = %+v, model %+v", k.ID, *k, m)
		}
	}
}

func TestListPaging(t *testing.T) {
	p, model := listFixture(t)
	orgKeysOnly := func(k *domain.Key) bool { return k.Owner.Type == domain.OwnerOrganization }
	aliceManageSelf := domain.Actor{Type: domain.ActorUser, ID: "alice", OrganizationID: "org_a",
		ManagePermissions: []string{domain.PermManageOwnUserKeys}}
	filters := []struct {
		name    string
		q       domain.KeyListQuery
		visible func(listKey) bool
	}{
		{name: "all", q: domain.KeyListQuery{OrganizationID: "org_a"}},
		{name: "user alice", q: domain.KeyListQuery{OrganizationID: "org_a", UserID: "alice"}},
		{name: "user bob", q: domain.KeyListQuery{OrganizationID: "org_a", UserID: "bob"}},
		{name: "user alice2", q: domain.KeyListQuery{OrganizationID: "org_a", UserID: "alice2"}},
		{name: "unknown user", q: domain.KeyListQuery{OrganizationID: "org_a", UserID: "zed"}},
		{name: "active", q: domain.KeyListQuery{OrganizationID: "org_a", Status: "active"}},
		{name: "revoked", q: domain.KeyListQuery{OrganizationID: "org_a", Status: "revoked"}},
		{name: "expired", q: domain.KeyListQuery{OrganizationID: "org_a", Status: "expired"}},
		{name: "bob active", q: domain.KeyListQuery{OrganizationID: "org_a", UserID: "bob", Status: "active"}},
		{name: "visible org keys", q: domain.KeyListQuery{OrganizationID: "org_a", Visible: orgKeysOnly},
			visible: func(k listKey) bool { return k.user == "" }},
		{name: "visible org keys expired", q: domain.KeyListQuery{OrganizationID: "org_a", Status: "expired", Visible: orgKeysOnly},
			visible: func(k listKey) bool { return k.user == "" }},
		{name: "visible to alice (manage-self)", q: domain.KeyListQuery{OrganizationID: "org_a",
			Visible: func(k *domain.Key) bool { return domain.CanSee(aliceManageSelf, k) }},
			visible: func(k listKey) bool { return k.user == "alice" }},
		{name: "other org", q: domain.KeyListQuery{OrganizationID: "org_b"}},
		{name: "other org alice", q: domain.KeyListQuery{OrganizationID: "org_b", UserID: "alice"}},
		{name: "org with no keys", q: domain.KeyListQuery{OrganizationID: "org_c"}},
	}
	for _, f := range filters {
		for _, asc := range []bool{false, true} {
			for _, limit := range []int{1, 4, 5, 26, 100} {
				q := f.q
				q.Ascending, q.Limit = asc, limit
				want := expect(model, q, f.visible)
				t.Run(fmt.Sprintf("%s/asc=%v/limit=%d", f.name, asc, limit), func(t *testing.T) {
					walk(t, p, q, want)
				})
			}
		}
	}
	// The fixture has something in every category.
	for _, s := range []string{"active", "revoked", "expired"} {
		if n := len(expect(model, domain.KeyListQuery{OrganizationID: "org_a", Status: s}, nil)); n < 3 {
			t.Fatalf("fixture has only %d %s keys", n, s)
		}
	}
}

// TestListCursorOfAnotherList: a cursor is a position, not a membership: an
// id that is not in the list (another org's key) still pages correctly.
func TestListCursorOfAnotherList(t *testing.T) {
	p, _ := listFixture(t)
	q := domain.KeyListQuery{OrganizationID: "org_a", Limit: 3, Ascending: true, After: keyID(9)} // 9 is org_b's
	page := list(t, p, q)
	mustEqual(t, "after another org's id", ids(page.Keys), []string{keyID(10), keyID(12), keyID(14)})
	if page.Before != keyID(10) || page.After != keyID(14) {
		t.Fatalf("cursors (%q, %q)", page.Before, page.After)
	}
}

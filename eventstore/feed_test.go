package eventstore_test

import (
	"testing"

	"github.com/keyledger/keyledger/schemas"
)

// Newest first reads windows of the ledger backwards: a sparse filter
// needs several, and paging still sees every match once, in order.
func TestEventsDescendingAcrossWindows(t *testing.T) {
	st, _ := mustOpenStore(t)
	var sparse []uint64
	for i := range 60 {
		org := "org_busy"
		if i%20 == 0 {
			org = "org_sparse"
		}
		_, seq := createKey(t, st, org, orgOwner(org))
		if org == "org_sparse" {
			sparse = append(sparse, seq)
		}
	}
	var got []uint64
	var after uint64
	for {
		page, err := st.Events(ctxT(t), schemas.EventsQuery{OrganizationID: "org_sparse", Limit: 2, Descending: true, AfterSeq: after})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			got = append(got, e.Context.LedgerSequence)
			after = e.Context.LedgerSequence
		}
	}
	if len(got) != len(sparse) {
		t.Fatalf("desc saw %v, want the reverse of %v", got, sparse)
	}
	for i := range got {
		if got[i] != sparse[len(sparse)-1-i] {
			t.Fatalf("desc saw %v, want the reverse of %v", got, sparse)
		}
	}
	// Ascending from the same cursor start gives them oldest first.
	page, err := st.Events(ctxT(t), schemas.EventsQuery{OrganizationID: "org_sparse", Limit: 10})
	if err != nil || len(page) != 3 || page[0].Context.LedgerSequence != sparse[0] {
		t.Fatalf("asc: %v, %v", page, err)
	}
}

// Every page reads through a consumer of its own; none outlives its page,
// so a client paging fast never meets the server's consumer limit.
func TestEventsLeaveNoConsumers(t *testing.T) {
	st, env := mustOpenStore(t)
	createKey(t, st, testOrg, orgOwner(testOrg))
	for range 20 {
		if _, err := st.Events(ctxT(t), schemas.EventsQuery{Limit: 10}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Events(ctxT(t), schemas.EventsQuery{Limit: 10, Descending: true}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := rawStream(t, env.nc, st.StreamName()).Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d consumers left on the ledger after 40 pages", info.State.Consumers)
	}
}

package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	clusterCreates = flag.Int("cluster.creates", 60, "acknowledged creates per round of the NATS cluster test")
	clusterRounds  = flag.Int("cluster.rounds", 1, "how many times the NATS cluster test kills the ledger stream's leader under load")
)

// clusterKey is an acknowledged create of the cluster test.
type clusterKey struct {
	id, value, node string
	round           int
}

// TestClusterThreeNATSTwoNodes runs the supported topology on
// loopback: three nats-server processes (built from the nats-server module
// keyledger embeds) as one JetStream cluster, and two `keyledger serve`
// processes, each with its own data folder, given every server's URL. It
// checks:
//   - every stream and bucket keyledger creates has 3 replicas;
//   - a key created on node A validates on node B once B has applied it;
//   - a revoke answered by node A is refused by node B at once;
//   - killing the ledger stream's leader (SIGKILL) under a create load on
//     both nodes loses no acknowledged create (each is in the stream and
//     validates on both nodes) and both nodes keep serving;
//   - node-b cut off from every NATS server (its connections go through
//     TCP proxies, which are cut) fails closed: the moment node-a answers
//     a revoke, node-b answers 503 ledger_stale, not valid; joined again,
//     it refuses the key as revoked;
//   - killing the node that holds the sealer lease (SIGKILL) moves the
//     sealer to the other, which proves the events acknowledged after;
//   - a webhook endpoint registered once gets every event once for the
//     whole fleet, not once per node (events acknowledged before any fault
//     exactly once; every acknowledged one at least once, including those
//     the killed node had taken).
//
// -cluster.rounds=N -cluster.creates=M kill N times with M creates per
// round (1 and 60 by default).
func TestClusterThreeNATSTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts nats-server processes")
	}
	start := time.Now()
	dir := t.TempDir()
	nc := startNATSCluster(t, filepath.Join(dir, "nats"), 3)
	_, js := nc.connect()
	t.Logf("nats cluster up in %v", time.Since(start).Round(time.Millisecond))

	rcv := newReceiver(t)
	const sealKey = "0000000000000000000000000000000000000000000000000000000000000003"
	webhookKey := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	widgetKey := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	names := []string{"node-a", "node-b"}
	// node-b reaches every NATS server through a proxy of its own, to be
	// cut off later.
	var proxies []*ledgertest.Proxy
	var proxied []string
	for _, n := range nc.nodes {
		px := ledgertest.NewProxy(t, n.clientAddr)
		proxies = append(proxies, px)
		proxied = append(proxied, "nats://"+px.Addr)
	}
	natsURLs := map[string]string{"node-a": nc.urls(), "node-b": strings.Join(proxied, ",")}
	const bound = 2 * time.Second // --stale-after
	addrs := map[string]string{}
	children := map[string]*child{}
	for _, name := range names {
		addrs[name] = ledgertest.FreeAddr(t)
		children[name] = startChildArgs(t, filepath.Join(dir, name), addrs[name],
			[]string{"--node", name, "--nats-url", natsURLs[name], "--stale-after", bound.String(), "--seal-interval", "200ms"},
			"KEYLEDGER_SEAL_KEY="+sealKey, "KEYLEDGER_WEBHOOK_SECRET_KEY="+webhookKey, "KEYLEDGER_WIDGET_KEY="+widgetKey,
			"KEYLEDGER_WEBHOOK_ALLOW=127.0.0.0/8", "KEYLEDGER_WEBHOOK_RETRY_SCHEDULE=20ms,50ms,100ms,200ms,500ms,1s",
			"KEYLEDGER_WEBHOOK_TIMEOUT=2s", "KEYLEDGER_WEBHOOK_ACK_WAIT=5s", "KEYLEDGER_LOG_LEVEL=info")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range names {
				c := children[name]
				if c.cmd.ProcessState == nil {
					_ = c.cmd.Process.Kill()
					_ = c.cmd.Wait()
				}
				t.Logf("%s's output:\n%s", name, c.out)
			}
		}
	})
	base := func(name string) string { return "http://" + addrs[name] }
	t.Logf("fleet up in %v", time.Since(start).Round(time.Millisecond))

	// Every stream keyledger made (the ledger, webhook deliveries,
	// checkpoints, the lease bucket) is replicated on all three servers.
	ledgerInfo := func() *jetstream.StreamInfo {
		t.Helper()
		st, err := js.Stream(t.Context(), schemas.DefaultStreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	streams := js.ListStreams(t.Context())
	seen := map[string]int{}
	for info := range streams.Info() {
		seen[info.Config.Name] = info.Config.Replicas
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: %d replicas configured, cluster %+v", info.Config.Name, info.Config.Replicas, info.Cluster)
		}
	}
	if err := streams.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{schemas.DefaultStreamName, "KEYLEDGER_WEBHOOKS", "KEYLEDGER_CHECKPOINTS", "KV_KEYLEDGER_LEASES"} {
		if _, ok := seen[want]; !ok {
			t.Errorf("stream %s missing; streams: %v", want, seen)
		}
	}
	t.Logf("streams and replicas: %v", seen)

	setCatalogue(t, base("node-a"), "projects:read")
	rcv.subscribe(t, base("node-a"), schemas.EventAPIKeyCreated, schemas.EventAPIKeyRevoked)

	// validOn polls until node validates value (its projection has the
	// create), failing after a generous deadline.
	validOn := func(name, value string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var v schemas.ValidateResponse
			st, raw := call(t, "POST", base(name)+"/api_keys/validations", schemas.ValidateRequest{Value: value}, &v)
			if st == 200 && v.APIKey != nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never validated a key created on the fleet: %d %s", name, st, raw)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// A create on A validates on B; a revoke answered by A is refused by B.
	k := createKey(t, base("node-a"), "org_cluster", schemas.CreateAPIKeyRequest{Name: "on a", Permissions: []string{"projects:read"}})
	validOn("node-b", *k.Value)
	if st, raw := call(t, "DELETE", base("node-a")+"/api_keys/"+k.ID, nil, nil); st != 200 {
		t.Fatalf("revoke on node-a: %d %s", st, raw)
	}
	var v schemas.ValidateResponse
	st, raw := call(t, "POST", base("node-b")+"/api_keys/validations", schemas.ValidateRequest{Value: *k.Value}, &v)
	switch {
	case st == 200 && v.APIKey == nil && v.Reason == "revoked":
	case st == http.StatusServiceUnavailable: // failing closed is a refusal too
	default:
		t.Fatalf("node-b after node-a answered the revoke: %d %s", st, raw)
	}
	revokedID := k.ID
	preFault := map[string]bool{k.ID: true} // key ids whose events came before any fault

	var (
		mu    sync.Mutex
		keys  []clusterKey
		fails = map[string]int{}
	)
	for i := range 6 {
		name := names[i%2]
		k := createKey(t, base(name), "org_cluster", schemas.CreateAPIKeyRequest{Name: fmt.Sprint("before ", i), Permissions: []string{"projects:read"}})
		keys = append(keys, clusterKey{id: k.ID, value: *k.Value, node: name})
		preFault[k.ID] = true
	}
	// Those events are delivered, and their deliveries acknowledged, before
	// any fault: a delivery still unacknowledged when a server dies is
	// made again (at least once), which is not what "exactly once before
	// any fault" checks.
	for id := range preFault {
		rcv.waitFor(schemas.EventAPIKeyCreated, id)
	}
	rcv.waitFor(schemas.EventAPIKeyRevoked, revokedID)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		busy := ""
		for _, stream := range []string{schemas.DefaultStreamName, "KEYLEDGER_WEBHOOKS"} {
			s, err := js.Stream(t.Context(), stream)
			if err != nil {
				t.Fatal(err)
			}
			for info := range s.ListConsumers(t.Context()).Info() {
				if info.Config.Durable != "" && (info.NumAckPending > 0 || info.NumPending > 0) {
					busy = fmt.Sprintf("%s/%s: %d pending, %d unacknowledged", stream, info.Name, info.NumPending, info.NumAckPending)
				}
			}
		}
		if busy == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries before the faults never settled: %s", busy)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for round := 1; round <= *clusterRounds; round++ {
		roundStart := time.Now()
		leader := ledgerInfo().Cluster.Leader
		acked := func() int {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, k := range keys {
				if k.round == round {
					n++
				}
			}
			return n
		}
		// A bound on the round, so that a fleet that stops serving fails
		// the test (with every process's output) rather than hanging it.
		loadLimit := 90*time.Second + time.Duration(*clusterCreates)*time.Second
		killAt := *clusterCreates / 3
		killed := make(chan struct{})
		var afterKill sync.Map // node -> acknowledged creates after the kill
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := 0; acked() < *clusterCreates; i++ {
					if time.Since(roundStart) > loadLimit {
						t.Errorf("round %d: worker %d gave up after %d attempts in %v", round, w, i, loadLimit)
						return
					}
					name := names[(w+i)%2]
					var k schemas.APIKey
					ok := tryCall(client, "POST", base(name)+"/organizations/org_cluster/api_keys",
						schemas.CreateAPIKeyRequest{Name: fmt.Sprintf("r%d w%d i%d", round, w, i), Permissions: []string{"projects:read"}}, http.StatusCreated, &k)
					mu.Lock()
					if !ok || k.Value == nil {
						fails[name]++
						mu.Unlock()
						time.Sleep(20 * time.Millisecond)
						continue
					}
					keys = append(keys, clusterKey{id: k.ID, value: *k.Value, node: name, round: round})
					mu.Unlock()
					select {
					case <-killed:
						n, _ := afterKill.LoadOrStore(name, new(int))
						mu.Lock()
						*n.(*int)++
						mu.Unlock()
					default:
					}
				}
			})
		}
		for acked() < killAt && time.Since(roundStart) < loadLimit {
			time.Sleep(5 * time.Millisecond)
		}
		nc.kill(nc.node(leader))
		close(killed)
		t.Logf("round %d: killed nats-server %s (the ledger's leader) after %d acknowledged creates", round, leader, acked())
		wg.Wait()
		for _, name := range names {
			n, ok := afterKill.Load(name)
			if !ok || *n.(*int) == 0 {
				t.Errorf("round %d: %s acknowledged no create after %s was killed", round, name, leader)
			}
		}
		newLeader := ledgerInfo().Cluster.Leader
		// Bring the killed server back, so that the next round (and the
		// checks below) run on three servers again.
		nc.start(nc.node(leader))
		nc.waitJetStream(nc.node(leader))
		n := acked()
		mu.Lock()
		t.Logf("round %d: %d acknowledged creates in %v, failed attempts %v, new leader %s", round, n, time.Since(roundStart).Round(time.Millisecond), fails, newLeader)
		mu.Unlock()
	}

	// Every acknowledged create is in the stream, and validates on both
	// nodes.
	ledger, err := js.Stream(t.Context(), schemas.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	all := append([]clusterKey(nil), keys...)
	mu.Unlock()
	for _, k := range all {
		if _, err := ledger.GetLastMsgForSubject(t.Context(), "keyledger.events.org_cluster."+k.id+".api_key.created"); err != nil {
			t.Errorf("acknowledged create %s (on %s, round %d) is not in the ledger: %v", k.id, k.node, k.round, err)
		}
		for _, name := range names {
			validOn(name, k.value)
		}
	}

	// The fleet still serves: a create on each node, validated on the
	// other.
	for i, name := range names {
		k := createKey(t, base(name), "org_cluster", schemas.CreateAPIKeyRequest{Name: "after", Permissions: []string{"projects:read"}})
		validOn(names[1-i], *k.Value)
		all = append(all, clusterKey{id: k.ID, value: *k.Value, node: name})
	}
	revoked := []string{revokedID}

	// node-b cut off from all three servers: a revoke on node-a is
	// answered (after node-b's bound at most), and from that moment node-b
	// refuses to answer rather than call the key valid.
	k = createKey(t, base("node-a"), "org_cluster", schemas.CreateAPIKeyRequest{Name: "partitioned", Permissions: []string{"projects:read"}})
	validOn("node-b", *k.Value)
	all = append(all, clusterKey{id: k.ID, value: *k.Value, node: "node-a"})
	for _, px := range proxies {
		px.Cut()
	}
	cut := time.Now()
	if st, raw := call(t, "DELETE", base("node-a")+"/api_keys/"+k.ID, nil, nil); st != 200 {
		t.Fatalf("revoke on node-a with node-b cut off: %d %s", st, raw)
	}
	answered := time.Since(cut)
	if st, raw := call(t, "POST", base("node-b")+"/api_keys/validations", schemas.ValidateRequest{Value: *k.Value}, nil); st != 503 || errCode(t, raw) != "ledger_stale" {
		t.Fatalf("cut-off node-b answered %d %s once node-a answered the revoke, want 503 ledger_stale", st, raw)
	}
	revoked = append(revoked, k.ID)
	for _, px := range proxies {
		px.Listen()
	}
	waitRefusedAsRevoked(t, base("node-b"), *k.Value)
	t.Logf("node-b cut off: node-a answered the revoke in %v (bound %v); node-b failed closed, and refused the key as revoked %v after the cut",
		answered.Round(time.Millisecond), bound, time.Since(cut).Round(time.Millisecond))

	// The node holding the sealer lease dies (SIGKILL). The other takes the
	// lease once it expires and proves what came after; the dead node's
	// webhook deliveries come again from the other after the ack wait.
	holder := sealerHolder(t, js)
	survivor := names[0]
	if holder == names[0] {
		survivor = names[1]
	}
	if err := children[holder].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = children[holder].cmd.Wait()
	killedAt := time.Now()
	for i := range 12 {
		k, ok := tryCreate(client, base(survivor), fmt.Sprint("after the kill ", i))
		if !ok {
			t.Fatalf("create %d on %s after %s was killed failed", i, survivor, holder)
		}
		all = append(all, clusterKey{id: k.id, value: k.value, node: survivor})
		if i%3 == 0 {
			if !tryRevoke(client, base(survivor), k.id) {
				t.Fatalf("revoke on %s after %s was killed failed", survivor, holder)
			}
			revoked = append(revoked, k.id)
		}
	}
	feed := listEvents(t, base(survivor), "limit=1&order=desc")
	if len(feed.Data) != 1 {
		t.Fatal("empty feed")
	}
	waitProof(t, base(survivor), feed.Data[0].ID)
	if h := sealerHolder(t, js); h != survivor {
		t.Fatalf("sealer lease with %q after %s was killed, want %s", h, holder, survivor)
	}
	t.Logf("%s (the sealer) killed: %s sealed the events after it within %v", holder, survivor, time.Since(killedAt).Round(time.Millisecond))

	// Webhooks: every acknowledged create was delivered; none before the
	// fault twice (a fleet that delivered once per node would deliver each
	// twice); duplicates after it are allowed (at least once under faults)
	// and counted.
	// A delivery in flight when the server holding its consumer died is
	// taken again after an ack wait: a longer deadline than waitFor's.
	waitStart := time.Now()
	type event struct{ typ, id string }
	want := map[event]bool{}
	for _, id := range revoked {
		want[event{schemas.EventAPIKeyRevoked, id}] = true
	}
	for _, k := range all {
		want[event{schemas.EventAPIKeyCreated, k.id}] = true
	}
	for deadline := time.Now().Add(3 * time.Minute); ; {
		rcv.mu.Lock()
		got := map[event]bool{}
		for _, e := range rcv.got {
			got[event{e.Event, subjectOf(e)}] = true
		}
		missing := 0
		for e := range want {
			if !got[e] {
				missing++
			}
		}
		rcv.mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged events were never delivered", missing, len(want))
		}
		select {
		case <-rcv.notify:
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("every acknowledged event delivered %v after the last create", time.Since(waitStart).Round(time.Millisecond))
	rcv.mu.Lock()
	byID := map[string]int{}
	dups := 0
	for _, e := range rcv.got {
		byID[e.ID]++
		if byID[e.ID] > 1 {
			dups++
			for id := range preFault {
				if strings.Contains(string(e.Data), id) {
					t.Errorf("event %s (%s about %s, before any fault) delivered %d times", e.ID, e.Event, id, byID[e.ID])
				}
			}
		}
	}
	delivered := len(rcv.got)
	rcv.mu.Unlock()

	// One durable consumer per job for the whole fleet, shared by the
	// nodes: none is named after a node.
	var consumers []string
	for _, stream := range []string{schemas.DefaultStreamName, "KEYLEDGER_WEBHOOKS"} {
		s, err := js.Stream(t.Context(), stream)
		if err != nil {
			t.Fatal(err)
		}
		names := s.ConsumerNames(t.Context())
		for n := range names.Name() {
			consumers = append(consumers, stream+"/"+n)
			if strings.Contains(n, "node-") {
				t.Errorf("consumer %s/%s is per node", stream, n)
			}
		}
	}
	sort.Strings(consumers)
	t.Logf("%d acknowledged creates and %d revokes, over %d round(s) of a NATS server killed, a partition and a node killed; %d webhook deliveries, %d duplicate(s); consumers %v; total %v",
		len(all), len(revoked), *clusterRounds, delivered, dups, consumers, time.Since(start).Round(time.Millisecond))
}

// sealerHolder reads which node holds the fleet's sealer lease, waiting
// for one to.
func sealerHolder(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), eventstore.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		e, err := kv.Get(t.Context(), "sealer")
		if err == nil && len(e.Value()) > 0 {
			return string(e.Value())
		}
		if time.Now().After(deadline) {
			t.Fatalf("nobody holds the sealer lease: %v", err)
		}
	}
}

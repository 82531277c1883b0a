package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
)

// openTestEtcd opens an EtcdStore on srv, closed by the test's cleanup.
func openTestEtcd(t *testing.T, srv *etcdtest.Server) *EtcdStore {
	t.Helper()
	cfg := EtcdConfig{Endpoints: srv.Endpoints}
	if srv.TLS != nil {
		cfg.CertFile, cfg.KeyFile, cfg.CAFile = srv.TLS.ClientCert, srv.TLS.ClientKey, srv.TLS.CA
	}
	s, err := OpenEtcd(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient returns a plain etcd client of srv, closed by the test's
// cleanup, to look at keys as etcdctl would.
func rawClient(t *testing.T, srv *etcdtest.Server) *clientv3.Client {
	t.Helper()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// wipe deletes every key under /calico/.
func wipe(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	if _, err := cli.Delete(context.Background(), "/calico/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
}

func TestEtcdStoreConformance(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	cli := rawClient(t, srv)
	testDatastoreConformance(t, func(t *testing.T) Datastore {
		wipe(t, cli) // subtests run one after the other
		return openTestEtcd(t, srv)
	})
}

// The same suite over TLS with client certificate authentication.
func TestEtcdStoreConformanceTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("second etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{TLS: true})
	cli := rawClient(t, srv)
	testDatastoreConformance(t, func(t *testing.T) Datastore {
		wipe(t, cli)
		return openTestEtcd(t, srv)
	})
}

// The keys and values are Calico's.
func TestEtcdKeyLayout(t *testing.T) {
	ctx := context.Background()
	srv := etcdtest.Start(t, etcdtest.Options{})
	s := openTestEtcd(t, srv)
	cli := rawClient(t, srv)
	m := mustNew(t, s, Options{}, bigPool)
	// node1's first block is 10.244.197.0/26 (see the conformance pools).
	a := mustAuto(t, m, "node1", "k8s-pod-network.abc")
	if a != ap("10.244.197.0") {
		t.Fatalf("first address %s, want 10.244.197.0", a)
	}
	if err := m.AssignIP(ctx, ap("10.244.166.130"), AssignArgs{Node: "node2", Handle: "h2", Attrs: map[string]string{"pod": "web"}}); err != nil {
		t.Fatal(err)
	}
	get := func(key string) map[string]any {
		t.Helper()
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 {
			t.Fatalf("no key %s", key)
		}
		var v map[string]any
		if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return v
	}
	blk := get("/calico/ipam/v2/assignment/ipv4/block/10.244.166.128-26")
	if blk["cidr"] != "10.244.166.128/26" || blk["affinity"] != "host:node2" || blk["deleted"] != false {
		t.Errorf("block = %v", blk)
	}
	allocs, _ := blk["allocations"].([]any)
	if len(allocs) != 64 || allocs[2] != float64(0) || allocs[0] != nil {
		t.Errorf("allocations = %v, want 64 slots, ordinal 2 → attribute 0", allocs)
	}
	if un, _ := blk["unallocated"].([]any); len(un) != 63 || un[0] != float64(0) || un[2] != float64(3) {
		t.Errorf("unallocated = %v", un)
	}
	attrs, _ := blk["attributes"].([]any)
	want := []any{map[string]any{"handle_id": "h2", "secondary": map[string]any{"pod": "web"}, "node": "node2"}}
	if !reflect.DeepEqual(attrs, want) {
		t.Errorf("attributes = %v, want %v", attrs, want)
	}
	aff := get("/calico/ipam/v2/host/node2/ipv4/block/10.244.166.128-26")
	if !reflect.DeepEqual(aff, map[string]any{"state": "confirmed", "deleted": false}) {
		t.Errorf("affinity = %v", aff)
	}
	get("/calico/ipam/v2/host/node1/ipv4/block/10.244.197.0-26")
	h := get("/calico/ipam/v2/handle/k8s-pod-network.abc")
	if !reflect.DeepEqual(h, map[string]any{"block": map[string]any{"10.244.197.0/26": float64(1)}, "deleted": false}) {
		t.Errorf("handle = %v", h)
	}

	// Releasing the node's blocks removes the block and affinity keys.
	if err := m.ReleaseByHandle(ctx, "k8s-pod-network.abc"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReleaseNodeBlocks(ctx, "node1"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/calico/ipam/v2/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	wantKeys := []string{
		"/calico/ipam/v2/assignment/ipv4/block/10.244.166.128-26",
		"/calico/ipam/v2/handle/h2",
		"/calico/ipam/v2/host/node2/ipv4/block/10.244.166.128-26",
	}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("keys after release = %q, want %q", keys, wantKeys)
	}

	// A block moving to another node (an unaffine block claimed again)
	// moves its affinity key.
	mustUpdate(t, s, func(tx Tx) error {
		b, err := tx.Block(pp("10.244.166.128/26"))
		if err != nil {
			return err
		}
		b.Affinity = "node3"
		return tx.PutBlock(b)
	})
	if resp, _ := cli.Get(ctx, "/calico/ipam/v2/host/", clientv3.WithPrefix(), clientv3.WithKeysOnly()); len(resp.Kvs) != 1 ||
		string(resp.Kvs[0].Key) != "/calico/ipam/v2/host/node3/ipv4/block/10.244.166.128-26" {
		t.Errorf("affinity keys after the move: %v", resp.Kvs)
	}

	// The IPAM configuration is Calico's.
	if _, ok, err := s.IPAMConfig(ctx); ok || err != nil {
		t.Errorf("IPAMConfig before any = %v, %v", ok, err)
	}
	if err := s.PutIPAMConfig(ctx, Options{StrictAffinity: true}); err != nil {
		t.Fatal(err)
	}
	if c := get("/calico/ipam/v2/config"); !reflect.DeepEqual(c, map[string]any{"strict_affinity": true, "auto_allocate_blocks": true}) {
		t.Errorf("config = %v", c)
	}
	if o, ok, err := s.IPAMConfig(ctx); !ok || err != nil || !o.StrictAffinity {
		t.Errorf("IPAMConfig = %+v, %v, %v", o, ok, err)
	}

	// IPv6 blocks are keyed as Calico keys them.
	mustUpdate(t, s, func(tx Tx) error {
		return tx.PutBlock(Block{CIDR: pp("fd00:10:244::/122"), Affinity: "node1", Allocations: map[int]Allocation{}})
	})
	get("/calico/ipam/v2/assignment/ipv6/block/fd00:10:244::-122")
	get("/calico/ipam/v2/host/node1/ipv6/block/fd00:10:244::-122")
}

// Blocks written by hand (or by Calico) in Calico's format are read, and a
// malformed one is an error, not a crash or a silently empty block.
func TestEtcdReadsCalicoBlocks(t *testing.T) {
	ctx := context.Background()
	srv := etcdtest.Start(t, etcdtest.Options{})
	s := openTestEtcd(t, srv)
	cli := rawClient(t, srv)
	// Two ordinals sharing one attribute, as Calico writes a batch.
	slots := make([]string, 16)
	for i := range slots {
		slots[i] = "null"
	}
	slots[1], slots[5] = "0", "0"
	val := `{"cidr":"10.0.0.16/28","affinity":"host:calico-node","strictAffinity":false,"allocations":[` + strings.Join(slots, ",") +
		`],"unallocated":[0,2,3,4,6,7,8,9,10,11,12,13,14,15],"attributes":[{"handle_id":"k8s-pod-network.x","secondary":{"namespace":"default","pod":"p"}}],"deleted":false}`
	if _, err := cli.Put(ctx, "/calico/ipam/v2/assignment/ipv4/block/10.0.0.16-28", val); err != nil {
		t.Fatal(err)
	}
	mustView(t, s, func(tx Tx) error {
		b, err := tx.Block(pp("10.0.0.16/28"))
		if err != nil {
			return err
		}
		at := map[string]string{"namespace": "default", "pod": "p"}
		want := Block{CIDR: pp("10.0.0.16/28"), Affinity: "calico-node", Allocations: map[int]Allocation{
			1: {Handle: "k8s-pod-network.x", Attrs: at}, 5: {Handle: "k8s-pod-network.x", Attrs: at},
		}}
		if !reflect.DeepEqual(b, want) {
			t.Errorf("block = %+v, want %+v", b, want)
		}
		return nil
	})
	if _, err := cli.Put(ctx, "/calico/ipam/v2/assignment/ipv4/block/10.0.0.32-28", `{"cidr":"10.0.0.32/28","allocations":[0]}`); err != nil {
		t.Fatal(err)
	}
	err := s.View(ctx, func(tx Tx) error { _, err := tx.Blocks(); return err })
	if err == nil || !strings.Contains(err.Error(), "10.0.0.32/28") {
		t.Errorf("Blocks with a malformed block: %v", err)
	}
}

// Client certificates: the store connects with the certificate the
// server's CA signed, and not without one, with another CA's, or over
// plain http.
func TestEtcdTLS(t *testing.T) {
	ctx := context.Background()
	srv := etcdtest.Start(t, etcdtest.Options{TLS: true})
	f := srv.TLS
	good := EtcdConfig{Endpoints: srv.Endpoints, CertFile: f.ClientCert, KeyFile: f.ClientKey, CAFile: f.CA, DialTimeout: 3 * time.Second}
	s, err := OpenEtcd(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := mustNew(t, s, Options{}, smallPool)
	mustAuto(t, m, "node1", "h1")

	plain := strings.Replace(srv.Endpoints[0], "https://", "http://", 1)
	bad := map[string]EtcdConfig{
		"no client certificate":    {Endpoints: srv.Endpoints, CAFile: f.CA},
		"another CA's certificate": {Endpoints: srv.Endpoints, CertFile: f.RogueCert, KeyFile: f.RogueKey, CAFile: f.CA},
		"server not trusted":       {Endpoints: srv.Endpoints, CertFile: f.ClientCert, KeyFile: f.ClientKey, CAFile: f.OtherCA},
		"certificate without key":  {Endpoints: srv.Endpoints, CertFile: f.ClientCert, CAFile: f.CA},
		"plain http with TLS":      {Endpoints: []string{plain}, CertFile: f.ClientCert, KeyFile: f.ClientKey, CAFile: f.CA},
		"plain http to TLS server": {Endpoints: []string{plain}},
		"missing CA file":          {Endpoints: srv.Endpoints, CertFile: f.ClientCert, KeyFile: f.ClientKey, CAFile: f.CA + ".missing"},
	}
	for name, cfg := range bad {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			cfg.DialTimeout = 2 * time.Second
			start := time.Now()
			s, err := OpenEtcd(ctx, cfg)
			if err == nil {
				s.Close()
				t.Fatal("connected")
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v to fail", took)
			}
			if !strings.Contains(err.Error(), "etcd") {
				t.Errorf("error does not name etcd: %v", err)
			}
			t.Log(err)
		})
	}
}

// claimers are goroutines claiming addresses on their nodes, one after
// the other, until stopped, recording every result.
type claimers struct {
	m    *IPAM
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	results []claimResult
}

type claimResult struct {
	handle string
	addr   netip.Addr
	err    error
	// at is when the call was made: a claim in flight while the cluster
	// changed (an election) belongs to the time before the change, even
	// if it fails after it.
	at time.Time
}

// startClaimers starts one claimer per node; the test's cleanup stops
// them.
func startClaimers(t *testing.T, m *IPAM, nodes int) *claimers {
	c := &claimers{m: m, stop: make(chan struct{})}
	for n := range nodes {
		c.wg.Go(func() {
			node := fmt.Sprint("node", n)
			for i := 0; ; i++ {
				select {
				case <-c.stop:
					return
				default:
				}
				h := fmt.Sprintf("%s/%d", node, i)
				started := time.Now()
				a, err := m.AutoAssign(context.Background(), AssignArgs{Node: node, Handle: h})
				c.mu.Lock()
				c.results = append(c.results, claimResult{h, a, err, started})
				c.mu.Unlock()
				if err != nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	t.Cleanup(c.halt)
	return c
}

// halt stops the claimers and waits for them.
func (c *claimers) halt() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
}

// count returns how many claims made since since succeeded (or failed).
func (c *claimers) count(failed bool, since time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.results {
		if (r.err != nil) == failed && !r.at.Before(since) {
			n++
		}
	}
	return n
}

// waitFor polls ok until it holds or 30 seconds pass.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check stops the claimers and checks their results against the store:
// every address handed out once, and held in the store by the handle it
// was handed to. A claim whose commit etcd applied as a member died may
// have failed for the caller: that address is in the store under a handle
// whose AutoAssign failed (leaked, not duplicated); check returns how many.
func (c *claimers) check(t *testing.T, s Datastore) (ok, failed, leaked int) {
	t.Helper()
	c.halt()
	byAddr := map[netip.Addr]string{}
	failedHandles := map[string]bool{}
	for _, r := range c.results {
		if r.err != nil {
			failedHandles[r.handle] = true
			continue
		}
		if prev, dup := byAddr[r.addr]; dup {
			t.Fatalf("%s handed out twice: %s and %s", r.addr, prev, r.handle)
		}
		byAddr[r.addr] = r.handle
	}
	stored := map[netip.Addr]bool{}
	for _, a := range checkConsistent(t, s) {
		stored[a.Addr] = true
		if h, ok := byAddr[a.Addr]; ok {
			if h != a.Handle {
				t.Errorf("%s is %s's in the store, but was handed to %s", a.Addr, a.Handle, h)
			}
			continue
		}
		if !failedHandles[a.Handle] {
			t.Errorf("store has %s for %s, which nobody was given", a.Addr, a.Handle)
		}
		leaked++
	}
	for a, h := range byAddr {
		if !stored[a] {
			t.Errorf("%s, handed to %s, is not in the store", a, h)
		}
	}
	return len(byAddr), len(failedHandles), leaked
}

// checkDown checks that with etcd down a claim fails within about the
// store's timeout, with an error naming etcd.
func checkDown(t *testing.T, m *IPAM, srv *etcdtest.Server, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	_, err := m.AutoAssign(context.Background(), AssignArgs{Node: "node9", Handle: "during-outage"})
	took := time.Since(start)
	if err == nil {
		t.Fatal("AutoAssign succeeded with etcd down")
	}
	if !strings.Contains(err.Error(), "etcd at "+strings.Join(srv.Endpoints, ",")) || !strings.Contains(err.Error(), "no answer within") {
		t.Errorf("error does not say that etcd is unreachable: %v", err)
	}
	if took < timeout/2 || took > timeout+3*time.Second {
		t.Errorf("failed after %v, want about %v", took, timeout)
	}
	t.Logf("with etcd down, AutoAssign failed after %v: %v", took, err)
}

// With etcd down, a claim fails within the store's timeout with an error
// naming etcd; with etcd back, claims work again, and nothing was handed
// out twice across the outage, though claims ran all along.
func TestEtcdOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("kills etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	const timeout = 2 * time.Second
	s, err := OpenEtcd(context.Background(), EtcdConfig{Endpoints: srv.Endpoints, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := mustNew(t, s, Options{}, bigPool)
	c := startClaimers(t, m, 3)
	waitFor(t, "claims before the outage", func() bool { return c.count(false, time.Time{}) >= 30 })

	srv.Stop()
	down := time.Now()
	checkDown(t, m, srv, timeout)
	waitFor(t, "the claimers' claims to fail too", func() bool { return c.count(true, down) >= 3 })

	srv.Start()
	up := time.Now()
	waitFor(t, "claims after etcd is back", func() bool { return c.count(false, up) >= 30 })
	ok, failed, leaked := c.check(t, s)
	t.Logf("%d claims succeeded, %d failed during the outage, %d leaked by commits that etcd applied as it died; %d retries",
		ok, failed, leaked, s.Retries())
}

// A cluster of three: with its leader killed, claims go on (after at most
// a few failures while a new leader is elected); with every member down,
// a claim fails within the store's timeout naming etcd; with the members
// back, claims work again; nothing was handed out twice.
func TestEtcdClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("three etcd members")
	}
	ctx := context.Background()
	srv := etcdtest.Start(t, etcdtest.Options{Members: 3})
	const timeout = 3 * time.Second
	s, err := OpenEtcd(ctx, EtcdConfig{Endpoints: srv.Endpoints, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := mustNew(t, s, Options{}, bigPool)
	c := startClaimers(t, m, 3)
	waitFor(t, "claims on the healthy cluster", func() bool { return c.count(false, time.Time{}) >= 30 })

	// Kill the leader.
	leader := -1
	for i, ep := range srv.Endpoints {
		st, err := s.cli.Status(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader == st.Header.MemberId {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	srv.StopMember(leader)
	killed := time.Now()
	waitFor(t, "claims with the leader dead", func() bool { return c.count(false, killed) >= 30 })
	failedAfterKill := c.count(true, killed)
	if failedAfterKill > 6 {
		t.Errorf("%d claims failed after the leader was killed, want at most a few", failedAfterKill)
	}
	settled := time.Now()
	waitFor(t, "more claims on two members", func() bool { return c.count(false, settled) >= 30 })
	if n := c.count(true, settled); n != 0 {
		t.Errorf("%d claims failed on two healthy members", n)
	}
	t.Logf("leader (member %d) killed: %d claims failed meanwhile", leader, failedAfterKill)

	srv.Stop()
	down := time.Now()
	checkDown(t, m, srv, timeout)
	waitFor(t, "the claimers' claims to fail too", func() bool { return c.count(true, down) >= 3 })

	srv.Start()
	up := time.Now()
	waitFor(t, "claims after the cluster is back", func() bool { return c.count(false, up) >= 30 })
	ok, failed, leaked := c.check(t, s)
	t.Logf("%d claims succeeded, %d failed, %d leaked by commits that etcd applied as it died; %d retries",
		ok, failed, leaked, s.Retries())
}

// Several processes make 1,008 claims against one etcd (and, for
// comparison, one bbolt file): no block is owned twice, no address handed
// out twice, and the store holds exactly what the processes were given.
func TestMultiProcessManyClaims(t *testing.T) {
	forEachProcStore(t, func(t *testing.T, st procStore) {
		// 64 blocks of 16; 4 nodes × 252 addresses need 16 blocks each.
		pool := Pool{Name: "test-pool", CIDR: pp("10.97.0.0/22"), BlockSize: 28}
		const nodes, workers, each = 4, 4, 63
		start := time.Now()
		results, store := runNodeProcesses(t, st, pool, Options{}, nodes, workers, each)
		t.Logf("%s: %d claims in %v (%.0f/s)", st.name, len(results), time.Since(start), float64(len(results))/time.Since(start).Seconds())
		for _, r := range results {
			if r.Err != "" {
				t.Fatalf("%s: %s", r.Handle, r.Err)
			}
		}
		byNode := checkAgainstStore(t, results, store)
		owner := map[netip.Prefix]string{}
		for node, bs := range byNode {
			for _, b := range bs {
				if prev, dup := owner[b.CIDR]; dup {
					t.Errorf("block %s owned by %s and %s", b.CIDR, prev, node)
				}
				owner[b.CIDR] = node
			}
		}
		if len(owner) != 64 {
			t.Errorf("%d blocks claimed, want all 64", len(owner))
		}
		if es, ok := store.(*EtcdStore); ok {
			checkAffinityKeys(t, es, owner)
		}
	})
}

// checkAffinityKeys checks that the affinity keys are exactly the blocks'
// owners.
func checkAffinityKeys(t *testing.T, s *EtcdStore, owner map[netip.Prefix]string) {
	t.Helper()
	resp, err := s.cli.Get(context.Background(), calicoHostPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for cidr, node := range owner {
		want[affinityKey(node, cidr)] = true
	}
	for _, kv := range resp.Kvs {
		if !want[string(kv.Key)] {
			t.Errorf("affinity key %s without its block", kv.Key)
		}
		delete(want, string(kv.Key))
	}
	for k := range want {
		t.Errorf("no affinity key %s", k)
	}
}

func TestEtcdConfigErrors(t *testing.T) {
	if _, err := OpenEtcd(context.Background(), EtcdConfig{}); err == nil {
		t.Error("no endpoints: no error")
	}
	// Nothing listens on port 1: the check fails within DialTimeout.
	start := time.Now()
	_, err := OpenEtcd(context.Background(), EtcdConfig{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "etcd at http://127.0.0.1:1") {
		t.Errorf("unreachable etcd: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
	var s EtcdStore
	s.closed.Store(true)
	if err := s.Update(context.Background(), func(Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Update on a closed store: %v", err)
	}
}

func BenchmarkEtcdClaim(b *testing.B) {
	ctx := context.Background()
	srv := etcdtest.Start(b, etcdtest.Options{})
	s, err := OpenEtcd(ctx, EtcdConfig{Endpoints: srv.Endpoints})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m, _ := New(s, []Pool{{Name: "big", CIDR: pp("10.0.0.0/8"), BlockSize: 26}})
	i := 0
	for b.Loop() {
		node := fmt.Sprint("node-", i)
		i++
		if _, err := m.AutoAssign(ctx, AssignArgs{Node: node, Handle: node}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEtcdAssign(b *testing.B) {
	ctx := context.Background()
	srv := etcdtest.Start(b, etcdtest.Options{})
	s, err := OpenEtcd(ctx, EtcdConfig{Endpoints: srv.Endpoints})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m, _ := New(s, []Pool{{Name: "big", CIDR: pp("10.0.0.0/8"), BlockSize: 26}})
	i := 0
	for b.Loop() {
		h := fmt.Sprint("h-", i)
		i++
		if _, err := m.AutoAssign(ctx, AssignArgs{Node: "node1", Handle: h}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConcurrentAutoAssign: eight goroutines, each a node of its own,
// assign addresses (claiming a block every 64) on bbolt and on etcd, in the
// same run: latency p50 and p99 and assignments per second.
func BenchmarkConcurrentAutoAssign(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) Datastore
	}{
		{"bolt", func(b *testing.B) Datastore {
			s, err := OpenBolt(filepath.Join(b.TempDir(), "ipam.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"etcd", func(b *testing.B) Datastore {
			srv := etcdtest.Start(b, etcdtest.Options{})
			s, err := OpenEtcd(context.Background(), EtcdConfig{Endpoints: srv.Endpoints, Timeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			m, _ := New(st.open(b), []Pool{{Name: "big", CIDR: pp("10.0.0.0/8"), BlockSize: 26}})
			var mu sync.Mutex
			var took []time.Duration
			var next atomic.Int64
			b.SetParallelism(4) // 8 goroutines on 2 CPUs
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				node := fmt.Sprint("node-", next.Add(1))
				var mine []time.Duration
				for i := 0; pb.Next(); i++ {
					t0 := time.Now()
					if _, err := m.AutoAssign(context.Background(), AssignArgs{Node: node, Handle: fmt.Sprint(node, "/", i)}); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				took = append(took, mine...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			if len(took) == 0 {
				return
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(len(took))/elapsed.Seconds(), "assigns/s")
		})
	}
}

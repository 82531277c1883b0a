package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// meshConfig is etcdConfig with the mesh from the datastore and no peers
// of its own.
func meshConfig(t *testing.T, srv *etcdtest.Server, node, addr string) *config.Node {
	cfg := etcdConfig(t, srv, node, addr)
	cfg.MeshFromDatastore = true
	cfg.BGP.Peers = nil
	cfg.Neighbors = nil
	cfg.Labels = map[string]string{"name": node}
	return cfg
}

func resourceStore(t *testing.T, srv *etcdtest.Server) *resources.Store {
	t.Helper()
	s, err := resources.Open(context.Background(), ipam.EtcdConfig{Endpoints: srv.Endpoints, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// waitPeers waits until n's speaker has exactly want as peers.
func waitPeers(t *testing.T, name string, n *testNode, want []netip.Addr) {
	t.Helper()
	eventually(t, func() string {
		if got := n.speaker.peerAddrs(); !slices.Equal(got, want) {
			return fmt.Sprintf("%s peers %v, want %v", name, got, want)
		}
		return ""
	})
}

// Nodes register in etcd and mesh with every registered node: a node
// joining appears in every mesh, a node deleted leaves every mesh.
func TestMeshFromEtcd(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	res := resourceStore(t, srv)
	ips := []string{"192.168.50.10", "192.168.50.11", "192.168.50.12", "192.168.50.13"}
	var nodes []*testNode
	for i := range 3 {
		nodes = append(nodes, startTestNode(t, meshConfig(t, srv, fmt.Sprintf("node%d", i+1), ips[i])))
	}
	others := func(i, n int) []netip.Addr {
		var out []string
		for j := range n {
			if j != i {
				out = append(out, ips[j])
			}
		}
		return addrs(out...)
	}
	for i, n := range nodes {
		waitPeers(t, n.cfg.Node, n, others(i, 3))
	}
	r, err := res.Get(context.Background(), resources.KindNode, "node2")
	if err != nil {
		t.Fatal(err)
	}
	n2 := r.(*resources.Node)
	if n2.Spec.BGP.IPv4Address != "192.168.50.11/24" || *n2.Spec.BGP.ASNumber != 64512 || n2.Metadata.Labels["name"] != "node2" {
		t.Errorf("node2 registered as %+v %+v", n2.Metadata, n2.Spec.BGP)
	}
	// Passive toward lower addresses, as in a lab's mesh.
	for _, p := range nodes[1].speaker.added {
		if want := p.Address.Less(nodes[1].cfg.Prefix.Addr()); p.Passive != want {
			t.Errorf("node2's peer %v passive %v", p.Address, p.Passive)
		}
	}

	start := time.Now()
	nodes = append(nodes, startTestNode(t, meshConfig(t, srv, "node4", ips[3])))
	for i, n := range nodes {
		waitPeers(t, n.cfg.Node, n, others(i, 4))
	}
	t.Logf("node4 in every mesh after %v", time.Since(start))
	eventually(t, func() string {
		nodes[0].dp.mu.Lock()
		defer nodes[0].dp.mu.Unlock()
		if got := nodes[0].dp.nodes[netip.MustParseAddr(ips[3])]; got != "node4" {
			return fmt.Sprintf("node1's dataplane has %q at %s", got, ips[3])
		}
		return ""
	})

	nodes[3].stop()
	start = time.Now()
	if err := res.Delete(context.Background(), resources.KindNode, "node4"); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes[:3] {
		waitPeers(t, n.cfg.Node, n, others(i, 3))
	}
	t.Logf("node4 out of every mesh after %v", time.Since(start))
}

// Pools, BGPConfiguration and BGPPeers in etcd apply to a running node:
// an edited ipipMode reprograms learned routes, a BGPPeer adds a session
// and its deletion removes it, the mesh turned off removes the mesh.
func TestClusterResourcesLive(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	res := resourceStore(t, srv)
	ctx := context.Background()
	n1 := startTestNode(t, meshConfig(t, srv, "node1", "192.168.50.10"))
	n2 := startTestNode(t, meshConfig(t, srv, "node2", "192.168.50.11"))
	waitPeers(t, "node1", n1, addrs("192.168.50.11"))

	// The config's pool went to etcd, as the first node found none.
	r, err := res.Get(ctx, resources.KindIPPool, "default-ipv4-ippool")
	if err != nil {
		t.Fatal(err)
	}
	pool := r.(*resources.IPPool)
	if pool.Spec.CIDR != "10.244.0.0/16" || pool.Spec.IPIPMode != "Never" {
		t.Fatalf("pool in etcd %+v", pool.Spec)
	}
	n1.speaker.deliver("10.244.9.0/26", "192.168.50.11")
	if got := n1.dp.route("10.244.9.0/26"); got != "10.244.9.0/26 via 192.168.50.11 dev ens33 proto bird" {
		t.Fatalf("learned route %q", got)
	}
	pool.Spec.IPIPMode = "Always"
	if err := res.Put(ctx, pool); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if got := n1.dp.route("10.244.9.0/26"); got != "10.244.9.0/26 via 192.168.50.11 dev tunl0 proto bird onlink" {
			return fmt.Sprintf("after ipipMode Always: %q", got)
		}
		return ""
	})
	if !n1.dp.tunnel.IsValid() {
		t.Error("tunl0 not up after ipipMode Always")
	}
	eventually(t, func() string {
		r, err := res.Get(ctx, resources.KindNode, "node1")
		if err != nil {
			return err.Error()
		}
		if got := r.(*resources.Node).Spec.BGP.IPv4IPIPTunnelAddr; got != n1.dp.tunnel.String() {
			return fmt.Sprintf("node1's ipv4IPIPTunnelAddr %q, want %v", got, n1.dp.tunnel)
		}
		return ""
	})

	peer := &resources.BGPPeer{TypeMeta: resources.TypeMeta{Kind: resources.KindBGPPeer}, Metadata: resources.Metadata{Name: "tor"},
		Spec: resources.BGPPeerSpec{PeerIP: "192.168.50.1", ASNumber: 64513, NodeSelector: "name == 'node1'"}}
	if err := res.Put(ctx, peer); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, "node1", n1, addrs("192.168.50.1", "192.168.50.11"))
	waitPeers(t, "node2", n2, addrs("192.168.50.10"))
	for _, p := range n1.speaker.added {
		if p.Address == netip.MustParseAddr("192.168.50.1") && (p.ASN != 64513 || p.Type.String() != "node specific") {
			t.Errorf("tor peer %+v", p)
		}
	}
	off := false
	cfg := &resources.BGPConfiguration{TypeMeta: resources.TypeMeta{Kind: resources.KindBGPConfiguration}, Metadata: resources.Metadata{Name: "default"},
		Spec: resources.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off, LogSeverityScreen: "Debug"}}
	if err := res.Put(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, "node1", n1, addrs("192.168.50.1"))
	waitPeers(t, "node2", n2, nil)
	if err := res.Delete(ctx, resources.KindBGPPeer, "tor"); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, "node1", n1, nil)

	// Route reflection by selectors: node1 a reflector, node2 its client.
	rr := &resources.BGPPeer{TypeMeta: resources.TypeMeta{Kind: resources.KindBGPPeer}, Metadata: resources.Metadata{Name: "rr"},
		Spec: resources.BGPPeerSpec{NodeSelector: "all()", PeerSelector: "has(route-reflector)"}}
	if err := res.Put(ctx, rr); err != nil {
		t.Fatal(err)
	}
	node1, err := res.Get(ctx, resources.KindNode, "node1")
	if err != nil {
		t.Fatal(err)
	}
	nr := node1.(*resources.Node)
	nr.Metadata.Labels["route-reflector"] = "true"
	nr.Spec.BGP.RouteReflectorClusterID = "224.0.0.1"
	if err := res.Put(ctx, nr); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, "node1", n1, addrs("192.168.50.11"))
	waitPeers(t, "node2", n2, addrs("192.168.50.10"))
	eventually(t, func() string {
		n1.speaker.mu.Lock()
		defer n1.speaker.mu.Unlock()
		for _, p := range n1.speaker.added {
			if p.RouteReflectorClient && p.ClusterID == netip.MustParseAddr("224.0.0.1") {
				return ""
			}
		}
		return fmt.Sprintf("node1 does not reflect to node2: %+v", n1.speaker.added)
	})
}

// An agent restarted while etcd is down starts from its saved state: its
// workloads, blocks, tunl0 and learned routes are back and announced;
// adding a workload fails within the store's timeout, naming etcd; with
// etcd back, adding works and no address is handed out twice.
func TestAgentRestartDuringEtcdOutage(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	ctx := context.Background()
	cfg := meshConfig(t, srv, "node1", "192.168.50.10")
	cfg.BGP.GracefulRestart = true
	cfg.Pools[0].IPIPMode = "Always"
	n := startTestNode(t, cfg)
	c := control.NewClient(cfg.ControlSocket())
	w1, err := c.AddWorkload(ctx, config.Workload{Name: "w1", Stack: config.StackNetstack})
	if err != nil {
		t.Fatal(err)
	}
	n.speaker.deliver("10.244.9.0/26", "192.168.50.11")
	block, _ := w1.Address.Prefix(26)
	// node2 registers: node1's mesh (and so its saved state) has it.
	n2cfg := meshConfig(t, srv, "node2", "192.168.50.11")
	startTestNode(t, n2cfg)
	waitPeers(t, "node1", n, addrs("192.168.50.11"))
	tunnel := n.dp.tunnel
	n.stop()

	srv.Stop()
	start := time.Now()
	n = startTestNode(t, cfg)
	t.Logf("agent started with etcd down in %v", time.Since(start))
	if !n.degraded.Load() {
		t.Fatal("agent not degraded with etcd down")
	}
	if got := n.speaker.peerAddrs(); !slices.Equal(got, addrs("192.168.50.11")) {
		t.Errorf("peers with etcd down %v, want node2's saved", got)
	}
	for dst, want := range map[string]string{
		"10.244.9.0/26": "10.244.9.0/26 via 192.168.50.11 dev tunl0 proto bird onlink",
		block.String():  "blackhole " + block.String() + " proto bird",
		netip.PrefixFrom(w1.Address, 32).String(): w1.Address.String() + " dev " + w1.Interface + " scope link",
	} {
		if got := n.dp.route(dst); got != want {
			t.Errorf("route to %s %q, want %q", dst, got, want)
		}
	}
	if !n.speaker.isAnnounced(block) {
		t.Errorf("block %s not announced", block)
	}
	if n.dp.tunnel != tunnel {
		t.Errorf("tunl0 %v, want %v", n.dp.tunnel, tunnel)
	}
	if _, ok := n.dp.port(w1.Interface); !ok {
		t.Error("w1's port not back")
	}
	start = time.Now()
	_, err = c.AddWorkload(ctx, config.Workload{Name: "w2", Stack: config.StackNetstack})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "etcd at "+srv.Endpoints[0]) || took > 10*time.Second {
		t.Fatalf("add with etcd down: %v after %v; want an error naming etcd within about 2s", err, took)
	}
	t.Logf("add with etcd down: %v after %v", err, took)

	srv.Start()
	eventually(t, func() string {
		if n.degraded.Load() {
			return "still degraded with etcd back"
		}
		return ""
	})
	w2, err := c.AddWorkload(ctx, config.Workload{Name: "w2", Stack: config.StackNetstack})
	if err != nil {
		t.Fatal(err)
	}
	if w2.Address == w1.Address || w2.Address == tunnel {
		t.Fatalf("w2 got %v, w1 has %v, tunl0 %v", w2.Address, w1.Address, tunnel)
	}
	got, err := n.ipam.AddressByHandle(ctx, handle(cfg.Lab, "w1"))
	if err != nil || got != w1.Address {
		t.Errorf("IPAM has w1 at %v (%v), want %v", got, err, w1.Address)
	}
}

// A node that never ran with etcd up has no saved state: with etcd down,
// its start fails, naming etcd and the missing state.
func TestAgentFirstStartEtcdDown(t *testing.T) {
	cfg := testConfig(t)
	cfg.Datastore = ""
	cfg.DatastoreType = config.DatastoreEtcd
	cfg.MeshFromDatastore = true
	cfg.Etcd = config.Etcd{Endpoints: []string{"http://127.0.0.1:1"}, Timeout: time.Second}
	a := newAgent(cfg, slog.New(slog.DiscardHandler))
	dp, sp := newFakeDataplane(), newFakeSpeaker()
	a.newDataplane = func(context.Context, *config.Node, *slog.Logger) (Dataplane, error) { return dp, nil }
	a.newSpeaker = func(context.Context, bgp.Config) (Speaker, error) { return sp, nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer a.close()
	err := a.start(ctx)
	if err == nil || !strings.Contains(err.Error(), "etcd at http://127.0.0.1:1") || !strings.Contains(err.Error(), "no saved state") {
		t.Fatalf("start = %v", err)
	}
}

package agent

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// fakeDataplane is a Dataplane in memory: a FIB, the ports and the tunnel
// the agent asked for.
type fakeDataplane struct {
	fib *fib.Table

	mu      sync.Mutex
	ports   map[string]WorkloadPort
	tunnel  netip.Addr
	down    bool
	imp     config.Impairment
	closed  bool
	running bool
	nodes   map[netip.Addr]string // given by AddNodes
	// beforeReplace, when set, runs at the start of every ReplaceRoute.
	beforeReplace func(fib.Route)
}

func newFakeDataplane() *fakeDataplane {
	return &fakeDataplane{fib: fib.NewTable(), ports: map[string]WorkloadPort{}}
}

func (d *fakeDataplane) ReplaceRoute(r fib.Route) error {
	d.mu.Lock()
	hook := d.beforeReplace
	d.mu.Unlock()
	if hook != nil {
		hook(r)
	}
	return d.fib.Replace(r)
}
func (d *fakeDataplane) DeleteRoute(dst netip.Prefix)             { d.fib.Delete(dst, 0) }
func (d *fakeDataplane) Routes() []fib.Route                      { return d.fib.Routes() }
func (d *fakeDataplane) Route(dst netip.Prefix) []fib.Route       { return d.fib.Get(dst) }
func (d *fakeDataplane) Lookup(addr netip.Addr) (fib.Route, bool) { return d.fib.Lookup(addr) }

func (d *fakeDataplane) AddWorkload(_ context.Context, p WorkloadPort) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.ports[p.Name]; ok {
		return errors.New("port exists")
	}
	d.ports[p.Name] = p
	return nil
}

func (d *fakeDataplane) RemoveWorkload(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.ports, name)
}

func (d *fakeDataplane) EnableTunnel(addr netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.tunnel.IsValid() {
		d.tunnel = addr
	}
	return nil
}

func (d *fakeDataplane) Tunnel() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tunnel.IsValid() {
		return control.TunnelEngine
	}
	return ""
}

func (d *fakeDataplane) LinkUp() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.down
}

func (d *fakeDataplane) SetImpairment(imp config.Impairment) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.imp = imp
	return nil
}

func (d *fakeDataplane) Impairment() config.Impairment {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.imp
}

func (d *fakeDataplane) SetLinkUp(up bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = !up
}

func (d *fakeDataplane) AddNodes(network netip.Prefix, nodes map[netip.Addr]string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nodes == nil {
		d.nodes = map[netip.Addr]string{}
	}
	for a, n := range nodes {
		if network.Contains(a) {
			d.nodes[a] = n
		}
	}
	return nil
}

func (d *fakeDataplane) Stats() map[string]uint64 { return map[string]uint64{"fake": 1} }

func (d *fakeDataplane) Run(ctx context.Context) {
	d.mu.Lock()
	d.running = true
	d.mu.Unlock()
	<-ctx.Done()
}

func (d *fakeDataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

// route returns the route to dst as `ip route` prints it, or "".
func (d *fakeDataplane) route(dst string) string {
	rs := d.fib.Get(netip.MustParsePrefix(dst))
	if len(rs) == 0 {
		return ""
	}
	return rs[0].String()
}

func (d *fakeDataplane) port(name string) (WorkloadPort, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.ports[name]
	return p, ok
}

// fakeSpeaker is a Speaker in memory: tests deliver route updates to the
// agent's watch function and set the peers and the routes BGP has learned.
type fakeSpeaker struct {
	mu        sync.Mutex
	watch     func(bgp.RouteUpdate)
	peers     []bgp.PeerStatus
	learned   map[netip.Prefix]bgp.RouteUpdate
	announced map[netip.Prefix]netip.Addr
	added     []bgp.Peer
	stopped   bool
}

func newFakeSpeaker() *fakeSpeaker {
	return &fakeSpeaker{learned: map[netip.Prefix]bgp.RouteUpdate{}, announced: map[netip.Prefix]netip.Addr{}}
}

func (s *fakeSpeaker) Watch(_ context.Context, fn func(bgp.RouteUpdate)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watch = fn
	return nil
}

func (s *fakeSpeaker) AddPeer(_ context.Context, p bgp.Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.added = append(s.added, p)
	return nil
}

func (s *fakeSpeaker) DeletePeer(_ context.Context, addr netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.added, func(p bgp.Peer) bool { return p.Address == addr })
	if i < 0 {
		return errors.New("no such peer")
	}
	s.added = slices.Delete(s.added, i, i+1)
	return nil
}

// peerAddrs returns the addresses of the peers configured now, sorted.
func (s *fakeSpeaker) peerAddrs() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []netip.Addr
	for _, p := range s.added {
		out = append(out, p.Address)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func (s *fakeSpeaker) Announce(_ context.Context, prefix netip.Prefix, nextHop netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.announced[prefix] = nextHop
	return nil
}

func (s *fakeSpeaker) Withdraw(_ context.Context, prefix netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.announced, prefix)
	return nil
}

func (s *fakeSpeaker) Peers(context.Context) ([]bgp.PeerStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.peers), nil
}

func (s *fakeSpeaker) Learned(context.Context) (map[netip.Prefix]bgp.RouteUpdate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.learned), nil
}

func (s *fakeSpeaker) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
}

// deliver hands the agent a route learned (nextHop valid) or withdrawn
// (nextHop invalid), as GoBGP's watch does, and records it as learned.
func (s *fakeSpeaker) deliver(prefix string, nextHop string) {
	u := bgp.RouteUpdate{Prefix: netip.MustParsePrefix(prefix)}
	s.mu.Lock()
	if nextHop == "" {
		u.Withdrawn = true
		delete(s.learned, u.Prefix)
	} else {
		u.NextHop = netip.MustParseAddr(nextHop)
		s.learned[u.Prefix] = u
	}
	fn := s.watch
	s.mu.Unlock()
	fn(u)
}

func (s *fakeSpeaker) isAnnounced(prefix netip.Prefix) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.announced[prefix]
	return ok
}

// testConfig is node1 of a three-node lab on 192.168.50.0/24 with one
// pool, its state in a temporary directory.
func testConfig(t *testing.T) *config.Node {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "nodes"), 0o755); err != nil {
		t.Fatal(err)
	}
	ma := netip.MustParseAddr
	return &config.Node{
		Lab: "t", Node: "node1", StateDir: dir, Namespace: "vr-t.node1",
		Network: "lan", Prefix: netip.MustParsePrefix("192.168.50.10/24"), Interface: "ens33", MTU: 1500,
		Neighbors: []config.Neighbor{{Node: "node2", Address: ma("192.168.50.11")}, {Node: "node3", Address: ma("192.168.50.12")}},
		Pools:     []config.Pool{{Name: "default-ipv4-ippool", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26, IPIPMode: "Never"}},
		Datastore: filepath.Join(dir, "ipam.db"),
		BGP: config.BGP{ASN: 64512, Peers: []config.BGPPeer{
			{Address: ma("192.168.50.11"), ASN: 64512, Type: "node-to-node mesh", Node: "node2"},
			{Address: ma("192.168.50.12"), ASN: 64512, Type: "node-to-node mesh", Node: "node3"},
		}},
	}
}

// testNode is an agent started with a fake dataplane and a fake speaker.
type testNode struct {
	*Agent
	dp      *fakeDataplane
	speaker *fakeSpeaker
	stop    func() // stops the agent as its context's end would
}

// startTestNode starts an agent for cfg with fakes; it stops when the test
// ends.
func startTestNode(t *testing.T, cfg *config.Node) *testNode {
	t.Helper()
	n := &testNode{dp: newFakeDataplane(), speaker: newFakeSpeaker()}
	n.Agent = newAgent(cfg, slog.New(slog.DiscardHandler))
	n.newDataplane = func(context.Context, *config.Node, *slog.Logger) (Dataplane, error) { return n.dp, nil }
	n.newSpeaker = func(context.Context, bgp.Config) (Speaker, error) { return n.speaker, nil }
	ctx, cancel := context.WithCancel(context.Background())
	if err := n.start(ctx); err != nil {
		cancel()
		n.close()
		t.Fatal(err)
	}
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); n.close() }) }
	t.Cleanup(n.stop)
	return n
}

// eventually polls cond until it returns "" or ten seconds pass.
func eventually(t *testing.T, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// A route learned over BGP is programmed into the dataplane via the BGP
// next hop on the underlay; withdrawn, it leaves the dataplane.
func TestLearnAndWithdraw(t *testing.T) {
	n := startTestNode(t, testConfig(t))
	n.speaker.deliver("10.244.104.0/26", "192.168.50.11")
	n.speaker.deliver("10.244.135.0/26", "192.168.50.12")
	if got, want := n.dp.route("10.244.104.0/26"), "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird"; got != want {
		t.Errorf("learned route %q, want %q", got, want)
	}
	n.speaker.deliver("10.244.104.0/26", "")
	if got := n.dp.route("10.244.104.0/26"); got != "" {
		t.Errorf("withdrawn route still programmed: %q", got)
	}
	if got, want := n.dp.route("10.244.135.0/26"), "10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird"; got != want {
		t.Errorf("other route %q, want %q", got, want)
	}
	// The connected route is the dataplane's from the start.
	if got, want := n.dp.route("192.168.50.0/24"), "192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10"; got != want {
		t.Errorf("connected route %q, want %q", got, want)
	}
}

// Switching the pool to ipipMode Always brings up tunl0 with an address
// from the node's own block (announced and blackholed), and moves every
// learned route onto tunl0; back to Never, they return to ens33.
func TestSetPools(t *testing.T) {
	cfg := testConfig(t)
	n := startTestNode(t, cfg)
	n.speaker.deliver("10.244.104.0/26", "192.168.50.11")
	ctx := context.Background()

	always := []config.Pool{cfg.Pools[0]}
	always[0].IPIPMode = "Always"
	if err := n.setPools(ctx, always); err != nil {
		t.Fatal(err)
	}
	if got, want := n.dp.route("10.244.104.0/26"), "10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink"; got != want {
		t.Errorf("after Always: %q, want %q", got, want)
	}
	s, err := n.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n.dp.mu.Lock()
	tunnel := n.dp.tunnel
	n.dp.mu.Unlock()
	if !tunnel.IsValid() || s.TunnelAddress != tunnel || !cfg.Pools[0].CIDR.Contains(tunnel) {
		t.Fatalf("tunl0 address: dataplane %v, status %v", tunnel, s.TunnelAddress)
	}
	if len(s.Blocks) != 1 || !s.Blocks[0].Contains(tunnel) {
		t.Fatalf("blocks %v: want the block of tunl0's address %v", s.Blocks, tunnel)
	}
	if !n.speaker.isAnnounced(s.Blocks[0]) || !strings.HasPrefix(n.dp.route(s.Blocks[0].String()), "blackhole ") {
		t.Errorf("tunl0's block %v: announced %v, route %q", s.Blocks[0], n.speaker.isAnnounced(s.Blocks[0]), n.dp.route(s.Blocks[0].String()))
	}

	if err := n.setPools(ctx, cfg.Pools); err != nil {
		t.Fatal(err)
	}
	if got, want := n.dp.route("10.244.104.0/26"), "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird"; got != want {
		t.Errorf("back to Never: %q, want %q", got, want)
	}

	// Only ipipMode and mtu may change.
	moved := []config.Pool{cfg.Pools[0]}
	moved[0].CIDR = netip.MustParsePrefix("10.245.0.0/16")
	if err := n.setPools(ctx, moved); err == nil {
		t.Error("setPools accepted a pool with another CIDR")
	}
	if err := n.setPools(ctx, nil); err == nil {
		t.Error("setPools accepted no pools")
	}
}

// A workload added through the control API gets a port, a /32 route to
// it, and an address from a block the node claims, blackholes and
// announces; deleted, its port and route go (the block stays the node's).
func TestWorkloadsThroughControlAPI(t *testing.T) {
	cfg := testConfig(t)
	n := startTestNode(t, cfg)
	c := control.NewClient(cfg.ControlSocket())
	ctx := context.Background()

	info, err := c.AddWorkload(ctx, config.Workload{Name: "web-1", Namespace: "vr-t.web-1"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Interface != config.InterfaceName("t", "web-1") || !cfg.Pools[0].CIDR.Contains(info.Address) {
		t.Fatalf("workload info %+v", info)
	}
	p, ok := n.dp.port(info.Interface)
	if !ok || p.Namespace != "vr-t.web-1" || p.Address != info.Address || p.MTU != 1500 {
		t.Fatalf("port %+v (%v)", p, ok)
	}
	if got, want := n.dp.route(info.Address.String()+"/32"), info.Address.String()+" dev "+info.Interface+" scope link"; got != want {
		t.Errorf("workload route %q, want %q", got, want)
	}
	block, err := info.Address.Prefix(26)
	if err != nil {
		t.Fatal(err)
	}
	if !n.speaker.isAnnounced(block) || n.dp.route(block.String()) != "blackhole "+block.String()+" proto bird" {
		t.Errorf("block %v: announced %v, route %q", block, n.speaker.isAnnounced(block), n.dp.route(block.String()))
	}
	// The same workload again (a repeated CNI ADD) is the same; another
	// workload of that name is refused.
	if again, err := c.AddWorkload(ctx, config.Workload{Name: "web-1", Namespace: "vr-t.web-1"}); err != nil || *again != *info {
		t.Errorf("adding web-1 again: %+v, %v; want %+v", again, err, info)
	}
	if _, err := c.AddWorkload(ctx, config.Workload{Name: "web-1", Namespace: "vr-t.web-2"}); err == nil || !strings.Contains(err.Error(), "workload web-1 already exists") {
		t.Errorf("a second workload web-1 in another namespace: %v, want refused", err)
	}
	if _, err := c.AddWorkload(ctx, config.Workload{Name: "web-1", Namespace: "vr-t.web-1", PodInterface: "net1"}); err == nil {
		t.Error("workload web-1 with another pod interface was accepted")
	}

	if err := c.DeleteWorkload(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.dp.port(info.Interface); ok {
		t.Error("port still there after delete")
	}
	if got := n.dp.route(info.Address.String() + "/32"); got != "" {
		t.Errorf("workload route still there: %q", got)
	}
	// As in Calico, the node keeps its block when it empties.
	if !n.speaker.isAnnounced(block) || n.dp.route(block.String()) != "blackhole "+block.String()+" proto bird" {
		t.Errorf("empty block %v: announced %v, route %q; want it kept", block, n.speaker.isAnnounced(block), n.dp.route(block.String()))
	}

	// The other calls reach the dataplane too.
	stats, err := c.Stats(ctx)
	if err != nil || stats["fake"] != 1 {
		t.Errorf("stats %v, %v", stats, err)
	}
	routes, err := c.Routes(ctx)
	if err != nil || !strings.Contains(routes, "192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10") {
		t.Errorf("routes %q, %v", routes, err)
	}
	l, err := c.SetLink(ctx, "", false)
	if err != nil || l.Up || n.dp.LinkUp() {
		t.Errorf("link set down: %+v, %v; dataplane up: %v", l, err, n.dp.LinkUp())
	}
	imp := config.Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1, Rate: 100_000_000}
	l, err = c.SetImpairment(ctx, "", imp)
	if err != nil || l.Impairment == nil || *l.Impairment != imp || n.dp.Impairment() != imp {
		t.Errorf("set impairment: %+v, %v; dataplane %+v", l, err, n.dp.Impairment())
	}
	if l, err = c.Link(ctx); err != nil || l.Impairment == nil || *l.Impairment != imp {
		t.Errorf("link after impairment: %+v, %v", l, err)
	}
	if s, err := c.Status(ctx); err != nil || s.Impairment == nil || *s.Impairment != imp {
		t.Errorf("status after impairment: %+v, %v", s, err)
	}
	if _, err := c.SetImpairment(ctx, "", config.Impairment{Delay: time.Millisecond, Jitter: time.Second}); err == nil || !strings.Contains(err.Error(), "more than the delay") {
		t.Errorf("jitter above delay: %v", err)
	}
	if _, err := c.SetImpairment(ctx, "eth9", imp); err == nil || !strings.Contains(err.Error(), "no interface") {
		t.Errorf("impairment on another interface: %v", err)
	}
	if l, err = c.SetImpairment(ctx, "", config.Impairment{}); err != nil || l.Impairment != nil || !n.dp.Impairment().IsZero() {
		t.Errorf("clear impairment: %+v, %v", l, err)
	}
}

// The agent is ready once every peer is Established and every block
// affine to a peer node is routed through BGP.
func TestStatusReady(t *testing.T) {
	n := startTestNode(t, testConfig(t))
	ctx := context.Background()
	s, err := n.status(ctx)
	if err != nil || s.Ready {
		t.Fatalf("ready with no peers up: %+v, %v", s, err)
	}
	n.speaker.mu.Lock()
	for _, a := range []string{"192.168.50.11", "192.168.50.12"} {
		n.speaker.peers = append(n.speaker.peers, bgp.PeerStatus{Address: netip.MustParseAddr(a), State: bgp.StateEstablished})
	}
	n.speaker.mu.Unlock()
	s, err = n.status(ctx)
	if err != nil || !s.Ready || s.PeersEstablished != 2 {
		t.Fatalf("not ready with both peers Established and no remote blocks: %+v, %v", s, err)
	}
}

// A dataplane made before start fails is closed by close: the TUN device
// of the node's underlay does not outlive a failed start (here IPAM's
// datastore cannot be opened).
func TestFailedStartClosesDataplane(t *testing.T) {
	cfg := testConfig(t)
	cfg.Datastore = filepath.Join(filepath.Dir(cfg.Datastore), "missing-dir", "ipam.db")
	dp := newFakeDataplane()
	a := newAgent(cfg, slog.New(slog.DiscardHandler))
	a.newDataplane = func(context.Context, *config.Node, *slog.Logger) (Dataplane, error) { return dp, nil }
	a.newSpeaker = func(context.Context, bgp.Config) (Speaker, error) { return newFakeSpeaker(), nil }
	if err := a.start(context.Background()); err == nil {
		t.Fatal("start succeeded without a datastore")
	}
	a.close()
	if !dp.closed {
		t.Error("the dataplane of a failed start was not closed")
	}
}

// Graceful restart: a restarted agent forwards along the routes the
// previous one learned, as stale; once every peer is Established and has
// sent End-of-RIB, the sweep removes those BGP did not bring back and keeps
// those it did. Without the peers, the restart time ends the wait.
func TestGracefulRestartSweep(t *testing.T) {
	for _, tc := range []struct {
		name      string
		synced    bool
		restartMS int
	}{
		{"peers synced", true, 60_000},
		{"restart time passed", false, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.BGP.GracefulRestart = true
			cfg.BGP.RestartTime = time.Duration(tc.restartMS) * time.Millisecond
			old := startTestNode(t, cfg)
			old.speaker.deliver("10.244.104.0/26", "192.168.50.11")
			old.speaker.deliver("10.244.135.0/26", "192.168.50.12")
			old.stop()

			n := startTestNode(t, cfg)
			kept, gone := "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird", "10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird"
			if n.dp.route("10.244.104.0/26") != kept || n.dp.route("10.244.135.0/26") != gone {
				t.Fatalf("restored routes:\n%s", fib.Format(n.dp.Routes()))
			}
			if s, err := n.status(context.Background()); err != nil || s.StaleRoutes != 2 {
				t.Fatalf("status after restart: %+v, %v; want 2 stale routes", s, err)
			}
			n.speaker.deliver("10.244.104.0/26", "192.168.50.11")
			if c := n.staleCount(); c != 1 && tc.synced {
				t.Fatalf("%d stale routes after one was learned again, want 1", c)
			}
			if tc.synced {
				n.speaker.mu.Lock()
				for _, a := range []string{"192.168.50.11", "192.168.50.12"} {
					n.speaker.peers = append(n.speaker.peers, bgp.PeerStatus{Address: netip.MustParseAddr(a), State: bgp.StateEstablished, EndOfRIB: true})
				}
				n.speaker.mu.Unlock()
			}
			eventually(t, func() string {
				if c := n.staleCount(); c != 0 {
					return fmt.Sprintf("%d routes still stale", c)
				}
				return ""
			})
			if got := n.dp.route("10.244.135.0/26"); got != "" {
				t.Errorf("route BGP did not bring back survived the sweep: %q", got)
			}
			if got := n.dp.route("10.244.104.0/26"); got != kept {
				t.Errorf("route learned again: %q, want %q", got, kept)
			}
		})
	}
}

// setPools reprograms the learned routes; a route withdrawn while it does
// must stay withdrawn, not come back with setPools' reprogramming. The
// withdrawal is delivered while setPools replaces its first route: it
// either runs then (setPools must not see the route any more) or waits
// until setPools is done.
func TestSetPoolsDoesNotResurrectWithdrawnRoute(t *testing.T) {
	cfg := testConfig(t)
	n := startTestNode(t, cfg)
	first, second := "10.244.104.0/26", "10.244.135.0/26"
	n.speaker.deliver(first, "192.168.50.11")
	n.speaker.deliver(second, "192.168.50.12")

	withdrawn := make(chan struct{})
	var once sync.Once
	n.dp.mu.Lock()
	n.dp.beforeReplace = func(r fib.Route) {
		if r.Protocol != fib.ProtoBird || r.Type != fib.Unicast {
			return
		}
		once.Do(func() {
			// withdraw whichever of the two is not being replaced now
			other := second
			if r.Dst.String() == second {
				other = first
			}
			go func() {
				n.speaker.deliver(other, "")
				close(withdrawn)
			}()
			select {
			case <-withdrawn:
			case <-time.After(200 * time.Millisecond): // blocked until setPools is done
			}
		})
	}
	n.dp.mu.Unlock()

	always := []config.Pool{cfg.Pools[0]}
	always[0].IPIPMode = "Always"
	if err := n.setPools(context.Background(), always); err != nil {
		t.Fatal(err)
	}
	select {
	case <-withdrawn:
	case <-time.After(10 * time.Second):
		t.Fatal("withdrawal never done")
	}
	var bird []string
	for _, r := range n.dp.Routes() {
		if r.Protocol == fib.ProtoBird && r.Type == fib.Unicast {
			bird = append(bird, r.String())
		}
	}
	if len(bird) != 1 {
		t.Fatalf("learned routes after setPools and one withdrawal: %q, want just one", bird)
	}
	if !strings.Contains(bird[0], "dev tunl0") {
		t.Errorf("remaining route %q not reprogrammed onto tunl0", bird[0])
	}
}

// status reads what setPools writes (tunl0's address) under the same
// lock: run with -race, this fails if it does not.
func TestStatusWhileSetPools(t *testing.T) {
	cfg := testConfig(t)
	n := startTestNode(t, cfg)
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			if _, err := n.status(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	always := []config.Pool{cfg.Pools[0]}
	always[0].IPIPMode = "Always"
	if err := n.setPools(ctx, always); err != nil {
		t.Fatal(err)
	}
	<-done
	s, err := n.status(ctx)
	if err != nil || !s.TunnelAddress.IsValid() {
		t.Fatalf("status after setPools: %+v, %v; want tunl0's address", s, err)
	}
}

// Deleting a workload the node does not serve is a 404 through the
// control API, which the client reports as control.ErrNotFound.
func TestDeleteUnknownWorkloadIsNotFound(t *testing.T) {
	cfg := testConfig(t)
	startTestNode(t, cfg)
	err := control.NewClient(cfg.ControlSocket()).DeleteWorkload(context.Background(), "nope")
	if !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("delete of an unknown workload: %v, want control.ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "no workload nope on node node1") {
		t.Errorf("error %q does not name the workload and node", err)
	}
	// Straight HTTP: the status code itself.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", cfg.ControlSocket())
	}}}
	req, _ := http.NewRequest(http.MethodDelete, "http://agent/v1/workloads/nope", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE of an unknown workload: HTTP %d, want 404", resp.StatusCode)
	}
}

// With an IPIP pool, the config's fixed workload addresses are assigned
// before tunl0's: tunl0 gets the first free address of the block they
// claimed, and the node claims no other block (the seed's Always table:
// tunl0 10.244.166.128, the pod 10.244.166.129, one blackhole). A workload
// without a fixed address follows tunl0.
func TestFixedAddressesBeforeTunnel(t *testing.T) {
	cfg := testConfig(t)
	cfg.Pools[0].IPIPMode = "Always"
	cfg.Workloads = []config.Workload{
		{Name: "web-1", Stack: config.StackNetstack, Address: netip.MustParseAddr("10.244.166.129")},
		{Name: "db-1", Stack: config.StackNetstack},
		{Name: "web-9", Stack: config.StackNetstack, Address: netip.MustParseAddr("10.244.166.131")},
	}
	n := startTestNode(t, cfg)
	s, err := n.status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddr("10.244.166.128"); s.TunnelAddress != want {
		t.Errorf("tunl0 address %v, want %v", s.TunnelAddress, want)
	}
	if len(s.Blocks) != 1 || s.Blocks[0] != netip.MustParsePrefix("10.244.166.128/26") {
		t.Errorf("blocks %v, want only 10.244.166.128/26", s.Blocks)
	}
	got := map[string]string{}
	for _, w := range s.Workloads {
		got[w.Name] = w.Address.String()
	}
	if want := map[string]string{"web-1": "10.244.166.129", "db-1": "10.244.166.130", "web-9": "10.244.166.131"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("workload addresses %v, want %v", got, want)
	}
}

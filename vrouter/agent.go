package vrouter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"golang.org/x/sys/unix"
)

// linkLocalGateway is the next hop every workload uses, as in Calico: an
// address nobody owns, reached "onlink" through eth0, so every packet a
// workload sends goes to its node's engine.
var linkLocalGateway = netip.MustParseAddr("169.254.1.1")

// Agent is one running node.
type Agent struct {
	cfg     *Config
	log     *slog.Logger
	started time.Time

	fib    *fib.Table
	ipam   *ipam.IPAM
	store  *ipam.BoltStore
	bgp    *bgp.Speaker
	engine *dataplane.Engine
	ep     *fabric.Endpoint // the underlay link; its state is `vrouter link set`

	saveMu  sync.Mutex // serializes writes of the routes file
	staleMu sync.Mutex
	stale   map[netip.Prefix]bool // restored routes not learned again yet

	mu         sync.Mutex // guards workloads and blocks
	workloads  map[string]*workload
	blocks     []netip.Prefix        // announced: affine blocks and borrowed /32s
	holes      map[netip.Prefix]bool // the announced blocks, which are blackholed
	tunnelAddr netip.Addr            // tunl0 address, when a pool uses IPIP
	host       *netns.TUN            // the node's underlay interface

	pools atomic.Pointer[[]Pool] // the IP pools, replaced by setPools

	hopMu sync.Mutex
	hops  map[netip.Prefix]netip.Addr // BGP next hop of each learned route
}

type workload struct {
	info WorkloadInfo
	tun  *netns.TUN
}

// Run runs the agent until ctx ends, then removes what it made (its TUN
// devices vanish with their descriptors).
func Run(ctx context.Context, cfg *Config) error {
	a := &Agent{
		cfg:       cfg,
		log:       slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.Node),
		started:   time.Now().UTC(),
		fib:       fib.NewTable(),
		workloads: map[string]*workload{},
		stale:     map[netip.Prefix]bool{},
		hops:      map[netip.Prefix]netip.Addr{},
	}
	defer a.close()
	if err := a.start(ctx); err != nil {
		return fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	a.log.Info("node running", "address", cfg.Prefix.Addr(), "workloads", len(cfg.Workloads))
	<-ctx.Done()
	a.log.Info("node stopping")
	return nil
}

func (a *Agent) start(ctx context.Context) error {
	cfg := a.cfg
	addr := cfg.Prefix.Addr()

	// The underlay: a TUN device in the node namespace carrying the node
	// address (the kernel adds the connected route), and the fabric
	// endpoint the engine sends and receives underlay frames on.
	host, err := openTUN(ctx, cfg.Namespace, cfg.Interface, cfg.MTU)
	if err != nil {
		return err
	}
	if err := host.AddAddress(cfg.Prefix); err != nil {
		host.Close()
		return err
	}
	if err := defaultToEngine(cfg.Namespace, cfg.Interface); err != nil {
		host.Close()
		return err
	}
	// IPAM: the lab's shared datastore.
	a.store, err = ipam.OpenBolt(cfg.Datastore)
	if err != nil {
		return err
	}
	var pools []ipam.Pool
	for _, p := range cfg.Pools {
		pools = append(pools, ipam.Pool{Name: p.Name, CIDR: p.CIDR, BlockSize: p.BlockSize})
	}
	a.ipam, err = ipam.New(a.store, pools, ipam.Options{StrictAffinity: cfg.StrictAffinity})
	if err != nil {
		return err
	}
	ep, err := fabric.Attach(fabricDir(cfg.StateDir), cfg.Network, cfg.Node, fabric.Options{
		Interface: cfg.Node + "/" + cfg.Interface,
		Neighbors: neighborTable(cfg.Neighbors),
	})
	if err != nil {
		host.Close()
		return err
	}
	a.ep = ep
	if cfg.LinkDown {
		ep.SetUp(false)
		a.log.Info("underlay link is down (vrouter link set)", "interface", cfg.Interface)
	}
	a.engine, err = dataplane.NewEngine(dataplane.EngineConfig{
		FIB:       a.fib,
		Host:      host,
		HostName:  "@host",
		Underlay:  ep,
		Interface: cfg.Interface,
		MTU:       cfg.MTU,
		Address:   addr,
		Logger:    a.log,
		Nodes:     tunnelSources(cfg),
	})
	if err != nil {
		host.Close()
		ep.Close()
		return err
	}
	a.host = host
	cfgPools := slices.Clone(cfg.Pools)
	a.pools.Store(&cfgPools)
	if err := a.ensureTunnel(ctx); err != nil {
		return err
	}
	connected := fib.Route{Dst: cfg.Prefix.Masked(), Type: fib.Unicast, Dev: cfg.Interface, Protocol: fib.ProtoKernel, Scope: fib.ScopeLink, PrefSrc: addr}
	if err := a.fib.Replace(connected); err != nil {
		return err
	}
	if cfg.Gateway.IsValid() {
		def := fib.Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Type: fib.Unicast, Gateway: cfg.Gateway, Dev: cfg.Interface, Protocol: fib.ProtoStatic}
		if err := a.fib.Replace(def); err != nil {
			return err
		}
	}

	// Graceful restart: forward along the routes an earlier agent of this
	// node learned until BGP has brought them back.
	if cfg.BGP.GracefulRestart {
		n, err := a.restoreRoutes()
		if err != nil {
			return err
		}
		if n > 0 {
			a.log.Info("graceful restart: forwarding state restored", "routes", n)
		}
	}

	// BGP: listen on the node address, peer, and install what is learned.
	a.bgp, err = bgp.Start(ctx, bgp.Config{
		ASN:           cfg.BGP.ASN,
		RouterID:      addr,
		ListenAddr:    addr,
		KeepaliveTime: cfg.BGP.KeepaliveTime,
		HoldTime:      cfg.BGP.HoldTime,
		ConnectRetry:  time.Second, // a restarted node is back in a second
		Logger:        a.log,

		GracefulRestart: cfg.BGP.GracefulRestart,
		RestartTime:     cfg.BGP.RestartTime,
	})
	if err != nil {
		return err
	}
	if err := a.bgp.Watch(ctx, a.learn); err != nil {
		return err
	}
	for _, p := range cfg.BGP.Peers {
		peer := bgp.Peer{Address: p.Address, ASN: p.ASN, Type: peerType(p.Type), Password: p.Password,
			RouteReflectorClient: p.RouteReflectorClient, ClusterID: p.ClusterID, KeepOriginalNextHop: p.KeepOriginalNextHop}
		if cfg.Prefix.Masked().Contains(p.Address) {
			peer.SharedNetwork = cfg.Prefix.Masked()
		}
		// Between two lab nodes, the one with the lower address opens the
		// session and the other waits: no connection collisions, which at
		// a few hundred sessions kept pairs from ever coming up. Sessions
		// with a password stay active on both ends: a password mismatch
		// is then visible on both (TCPMD5Failure counts on the receiver).
		if cfg.isNode(p.Address) && p.Address.Less(addr) && p.Password == "" {
			peer.Passive = true
		}
		if err := a.bgp.AddPeer(ctx, peer); err != nil {
			return err
		}
	}

	for _, w := range cfg.Workloads {
		if !netns.Exists(w.Namespace) {
			// Deleted while no agent served it (before a restart): the
			// node serves the others; inspect shows this one down.
			a.log.Error("workload namespace is gone, not serving the workload", "workload", w.Name, "namespace", w.Namespace)
			continue
		}
		if _, err := a.addWorkload(ctx, w); err != nil {
			return err
		}
	}
	if err := a.syncBlocks(ctx); err != nil {
		return err
	}
	go a.engine.Run(ctx)
	if a.staleCount() > 0 {
		go a.sweepStale(ctx)
	}
	return a.serveControl(ctx)
}

// openTUN opens a TUN device in a namespace. A device of that name still
// held by an agent that is exiting (a restart: the kernel removes the old
// agent's devices with its last descriptors, after its last thread is gone)
// is busy; openTUN waits up to five seconds for it to go.
func openTUN(ctx context.Context, ns, name string, mtu int) (*netns.TUN, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		t, err := netns.OpenTUN(ns, name, mtu)
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return t, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// defaultToEngine gives the node namespace's kernel a default route through
// the underlay TUN in the "default" table (253), consulted after "main" by
// the standard rule 32767. The node's own traffic to workload addresses
// (ping replies, for instance) thus reaches the engine, while `ip route`,
// which lists "main", shows only the connected underlay route.
func defaultToEngine(ns, dev string) error {
	h, err := netns.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	anyDst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: anyDst, Table: 253, Scope: netlink.SCOPE_LINK}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("default route via %s in table default: %w", dev, err)
	}
	return nil
}

func fabricDir(stateDir string) string { return stateDir + "/fabric" }

func peerType(s string) bgp.PeerType {
	switch s {
	case "global":
		return bgp.Global
	case "node specific":
		return bgp.NodeSpecific
	}
	return bgp.Mesh
}

// ensureTunnel brings up tunl0 when a pool uses IPIP and it is not up yet:
// its address comes from the node's own block, as Calico assigns it
// (handle ipip-tunnel-addr-NODE); the node's kernel owns the address, so
// the engine hands packets for it to the node.
func (a *Agent) ensureTunnel(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tunnelAddr.IsValid() || !ipip(a.currentPools()) {
		return nil
	}
	h := "ipip-tunnel-addr-" + a.cfg.Node
	addr, err := a.ipam.AddressByHandle(ctx, h)
	if err != nil {
		addr, err = a.ipam.AutoAssign(ctx, ipam.AssignArgs{Node: a.cfg.Node, Handle: h, Attrs: map[string]string{"type": "ipipTunnelAddress", "node": a.cfg.Node}})
	}
	if err != nil {
		return fmt.Errorf("tunl0 address: %w", err)
	}
	if err := a.host.AddAddress(netip.PrefixFrom(addr, 32)); err != nil {
		return fmt.Errorf("tunl0 address: %w", err)
	}
	if err := a.engine.EnableTunnel(addr); err != nil {
		return err
	}
	a.tunnelAddr = addr
	a.log.Info("tunl0 up", "address", addr)
	return nil
}

// setPools applies new IP pool settings (ipipMode, workload MTU) to the
// running node: tunl0 comes up if a pool now needs it, and every learned
// route is reprogrammed through tunl0 or ens33 as the modes now say.
// Workloads keep their MTU until they are re-created. The pools' names
// and CIDRs must not change.
func (a *Agent) setPools(ctx context.Context, pools []Pool) error {
	cur := a.currentPools()
	if len(pools) != len(cur) {
		return fmt.Errorf("pools: %d given, the node has %d; only ipipMode and mtu can change on a running lab", len(pools), len(cur))
	}
	for i, p := range pools {
		if p.Name != cur[i].Name || p.CIDR != cur[i].CIDR || p.BlockSize != cur[i].BlockSize {
			return fmt.Errorf("pool %s (%s): only ipipMode and mtu can change on a running lab", cur[i].Name, cur[i].CIDR)
		}
	}
	pools = slices.Clone(pools)
	a.pools.Store(&pools)
	if err := a.ensureTunnel(ctx); err != nil {
		return err
	}
	changed := 0
	for _, r := range a.fib.Routes() {
		if r.Protocol != fib.ProtoBird || r.Type != fib.Unicast || !r.Gateway.IsValid() {
			continue
		}
		want := a.bgpRoute(r.Dst, a.bgpNextHop(r))
		want.Metric = r.Metric
		if want == r {
			continue
		}
		if err := a.fib.Replace(want); err != nil {
			return fmt.Errorf("reprogram %s: %w", r.Dst, err)
		}
		changed++
	}
	a.log.Info("pools applied", "routes_changed", changed)
	return nil
}

// tunnelSources returns the outer sources tunl0 accepts: every lab node's
// underlay address.
func tunnelSources(cfg *Config) []netip.Addr {
	if len(cfg.TunnelSources) > 0 {
		return cfg.TunnelSources
	}
	return nodeAddrs(cfg.Neighbors)
}

// nodeAddrs returns the underlay addresses of the lab's nodes.
func nodeAddrs(ns []Neighbor) []netip.Addr {
	var out []netip.Addr
	for _, n := range ns {
		if n.Node != "" {
			out = append(out, n.Address)
		}
	}
	return out
}

// learn installs or removes a route learned over BGP.
func (a *Agent) learn(u bgp.RouteUpdate) {
	a.refreshed(u.Prefix)
	defer a.saveRoutes()
	if u.Withdrawn {
		a.forgetRoute(u.Prefix)
		a.log.Info("route withdrawn", "prefix", u.Prefix)
		return
	}
	r := a.bgpRoute(u.Prefix, u.NextHop)
	if err := a.fib.Replace(r); err != nil {
		a.log.Error("install learned route", "route", r, "err", err)
		return
	}
	a.log.Info("route learned", "route", r.String())
}

func handle(lab, name string) string { return lab + "." + name }

// addWorkload allocates the workload's address (the one it had, if IPAM
// remembers it), opens its eth0 TUN device and routes it.
func (a *Agent) addWorkload(ctx context.Context, w Workload) (*WorkloadInfo, error) {
	a.mu.Lock()
	_, dup := a.workloads[w.Name]
	a.mu.Unlock()
	if dup {
		return nil, fmt.Errorf("workload %s already exists", w.Name)
	}
	h := handle(a.cfg.Lab, w.Name)
	args := ipam.AssignArgs{Node: a.cfg.Node, Handle: h, Attrs: map[string]string{"workload": w.Name, "node": a.cfg.Node}}
	addr, err := a.ipam.AddressByHandle(ctx, h)
	// An address IPAM already kept for the workload (a restarted agent
	// serving it again) stays the workload's if serving it fails; only
	// one allocated here is given back.
	release := func() {}
	if err != nil {
		release = func() { _ = a.ipam.ReleaseByHandle(ctx, h) }
	}
	switch {
	case err == nil:
	case w.Address.IsValid():
		addr, err = w.Address, a.ipam.AssignIP(ctx, w.Address, args)
	default:
		addr, err = a.ipam.AutoAssign(ctx, args)
	}
	if err != nil {
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	mtu := workloadMTU(a.currentPools(), addr, a.cfg.MTU)
	t, err := openTUN(ctx, w.Namespace, "eth0", mtu)
	if err != nil {
		release()
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	if err := workloadRoutes(t, addr); err != nil {
		t.Close()
		release()
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	info := WorkloadInfo{Name: w.Name, Namespace: w.Namespace, Interface: InterfaceName(a.cfg.Lab, w.Name), Address: addr}
	if err := a.engine.AddWorkload(info.Interface, t, mtu); err != nil {
		t.Close()
		release()
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	r := fib.Route{Dst: netip.PrefixFrom(addr, 32), Type: fib.Unicast, Dev: info.Interface, Protocol: fib.ProtoBoot, Scope: fib.ScopeLink}
	if err := a.fib.Replace(r); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.workloads[w.Name] = &workload{info: info, tun: t}
	a.mu.Unlock()
	a.log.Info("workload added", "workload", w.Name, "address", addr, "interface", info.Interface)
	return &info, a.syncBlocks(ctx)
}

// workloadRoutes gives a workload its /32 and Calico's default route.
func workloadRoutes(t *netns.TUN, addr netip.Addr) error {
	if err := t.AddAddress(netip.PrefixFrom(addr, 32)); err != nil {
		return err
	}
	h, err := netns.Handle(t.Namespace)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(t.Name)
	if err != nil {
		return err
	}
	gw := net.IP(linkLocalGateway.AsSlice())
	anyDst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: anyDst, Gw: gw, Flags: int(netlink.FLAG_ONLINK)}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("default via %s dev %s onlink: %w", linkLocalGateway, t.Name, err)
	}
	return nil
}

// deleteWorkload removes a workload's port and route and releases its
// address.
func (a *Agent) deleteWorkload(ctx context.Context, name string) error {
	a.mu.Lock()
	w, ok := a.workloads[name]
	delete(a.workloads, name)
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("no workload %s on node %s", name, a.cfg.Node)
	}
	a.fib.Delete(netip.PrefixFrom(w.info.Address, 32), 0)
	a.engine.RemoveWorkload(w.info.Interface)
	w.tun.Close()
	if err := a.ipam.ReleaseByHandle(ctx, handle(a.cfg.Lab, name)); err != nil {
		return err
	}
	a.log.Info("workload deleted", "workload", name)
	return a.syncBlocks(ctx)
}

// syncBlocks makes the blackholes and BGP announcements match IPAM: every
// block affine to the node is blackholed and announced, and every address
// the node borrowed from another node's block is announced as a /32 (its
// workload route is already there), so that the other nodes, the owner
// included, reach it by longest-prefix match over the owner's /26.
func (a *Agent) syncBlocks(ctx context.Context) error {
	blocks, err := a.ipam.BlocksForNode(ctx, a.cfg.Node)
	if err != nil {
		return err
	}
	borrowed, err := a.ipam.BorrowedByNode(ctx, a.cfg.Node)
	if err != nil {
		return err
	}
	var want []netip.Prefix
	holes := map[netip.Prefix]bool{}
	for _, b := range blocks {
		want = append(want, b.CIDR)
		holes[b.CIDR] = true
	}
	for _, addr := range borrowed {
		want = append(want, netip.PrefixFrom(addr, 32))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range want {
		if slices.Contains(a.blocks, p) {
			continue
		}
		if holes[p] {
			if err := a.fib.Replace(fib.Route{Dst: p, Type: fib.Blackhole, Protocol: fib.ProtoBird}); err != nil {
				return err
			}
		}
		if err := a.bgp.Announce(ctx, p, a.cfg.Prefix.Addr()); err != nil {
			return err
		}
		if !holes[p] {
			a.log.Info("announcing borrowed address", "prefix", p)
		}
	}
	for _, p := range a.blocks {
		if slices.Contains(want, p) {
			continue
		}
		if a.holes[p] {
			a.fib.Delete(p, 0)
		}
		if err := a.bgp.Withdraw(ctx, p); err != nil {
			return err
		}
	}
	a.blocks, a.holes = want, holes
	return nil
}

// hasPassword reports whether the session with addr uses TCP MD5.
func (a *Agent) hasPassword(addr netip.Addr) bool {
	for _, p := range a.cfg.BGP.Peers {
		if p.Address == addr {
			return p.Password != ""
		}
	}
	return false
}

// tcpMD5Failures returns the kernel's count of TCP segments dropped in this
// network namespace for a wrong MD5 signature (TcpExt TCPMD5Failure), or 0
// when it cannot be read. A password mismatch shows only there: the SYNs
// are dropped silently and the session just times out.
func tcpMD5Failures() int {
	data, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		return 0
	}
	// Pairs of lines: "TcpExt: names..." then "TcpExt: values...".
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) || values[0] != "TcpExt:" {
			continue
		}
		for j, n := range names {
			if n == "TCPMD5Failure" {
				v, _ := strconv.Atoi(values[j])
				return v
			}
		}
	}
	return 0
}

// status reports the node's state; Ready means every BGP session is
// Established and every block affine to a peer is routed.
func (a *Agent) status(ctx context.Context) (*Status, error) {
	s := &Status{Node: a.cfg.Node, Address: a.cfg.Prefix.Addr(), Started: a.started, Routes: a.fib.Len(), TunnelAddress: a.tunnelAddr, LinkUp: a.ep.IsUp(), StaleRoutes: a.staleCount()}
	peers, err := a.bgp.Peers(ctx)
	if err != nil {
		return nil, err
	}
	md5Failures := -1 // not read yet
	for _, p := range peers {
		info := p.Info
		if p.State != "Established" && a.hasPassword(p.Address) {
			if md5Failures < 0 {
				md5Failures = tcpMD5Failures()
			}
			if md5Failures > 0 {
				info = fmt.Sprintf("%s (TCP MD5: %d segments with a bad signature; check the password on both ends)", info, md5Failures)
			}
		}
		s.Peers = append(s.Peers, PeerStatus{Address: p.Address, Type: p.Type.String(), State: p.State, Since: p.Since, Info: info, GracefulRestart: p.GracefulRestart})
		if p.State == "Established" {
			s.PeersEstablished++
		}
	}
	a.mu.Lock()
	for _, w := range a.workloads {
		s.Workloads = append(s.Workloads, w.info)
	}
	s.Blocks = slices.Clone(a.blocks)
	a.mu.Unlock()
	slices.SortFunc(s.Workloads, func(x, y WorkloadInfo) int { return x.Address.Compare(y.Address) })
	s.Ready = s.PeersEstablished == len(a.cfg.BGP.Peers)
	if s.Ready {
		s.Ready, err = a.remoteBlocksRouted(ctx)
	}
	return s, err
}

func (a *Agent) remoteBlocksRouted(ctx context.Context) (bool, error) {
	blocks, err := a.ipam.Blocks(ctx)
	if err != nil {
		return false, err
	}
	peers := map[string]bool{}
	for _, p := range a.cfg.BGP.Peers {
		peers[p.Node] = true
	}
	if len(a.cfg.BGP.RouteNodes) > 0 {
		clear(peers)
		for _, n := range a.cfg.BGP.RouteNodes {
			peers[n] = true
		}
	}
	for _, b := range blocks {
		if b.Affinity == "" || b.Affinity == a.cfg.Node || !peers[b.Affinity] {
			continue
		}
		routes := a.fib.Get(b.CIDR)
		if len(routes) == 0 || routes[0].Protocol != fib.ProtoBird {
			return false, nil
		}
	}
	return true, nil
}

func (a *Agent) close() {
	switch {
	case a.bgp == nil:
	case a.cfg.BGP.GracefulRestart:
		// A restarting router closes no session: no Cease NOTIFICATION, so
		// its peers see the sessions fail (the connections break) and keep
		// its routes as stale until it is back.
		a.log.Info("graceful restart: leaving the BGP sessions open for the peers to notice")
	default:
		a.bgp.Stop()
	}
	if a.engine != nil {
		a.engine.Close()
	}
	a.mu.Lock()
	for _, w := range a.workloads {
		w.tun.Close()
	}
	a.mu.Unlock()
	if a.store != nil {
		a.store.Close()
	}
	_ = os.Remove(ControlSocket(a.cfg.StateDir, a.cfg.Node))
}

var errNotFound = errors.New("not found")

// link reports the state of the node's underlay link.
func (a *Agent) link() Link {
	return Link{Interface: a.cfg.Interface, Network: a.cfg.Network, Up: a.ep.IsUp()}
}

// serveControl serves the control API on the node's control socket until
// ctx ends.
func (a *Agent) serveControl(ctx context.Context) error {
	path := ControlSocket(a.cfg.StateDir, a.cfg.Node)
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		s, err := a.status(r.Context())
		reply(w, s, err)
	})
	mux.HandleFunc("GET /v1/routes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, fib.Format(a.fib.Routes()))
	})
	mux.HandleFunc("PUT /v1/pools", func(w http.ResponseWriter, r *http.Request) {
		var pools []Pool
		if err := json.NewDecoder(r.Body).Decode(&pools); err != nil {
			http.Error(w, "bad pools: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := a.setPools(r.Context(), pools); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/link", func(w http.ResponseWriter, r *http.Request) {
		reply(w, a.link(), nil)
	})
	mux.HandleFunc("PUT /v1/link", func(w http.ResponseWriter, r *http.Request) {
		var l Link
		if err := decode(r, &l); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if l.Interface != "" && l.Interface != a.cfg.Interface {
			http.Error(w, fmt.Sprintf("node %s has no interface %q (its underlay is %s)", a.cfg.Node, l.Interface, a.cfg.Interface), http.StatusBadRequest)
			return
		}
		a.ep.SetUp(l.Up)
		a.log.Info("underlay link set", "interface", a.cfg.Interface, "up", l.Up)
		reply(w, a.link(), nil)
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		reply(w, a.engine.Stats(), nil)
	})
	mux.HandleFunc("POST /v1/workloads", func(w http.ResponseWriter, r *http.Request) {
		var wl Workload
		if err := decode(r, &wl); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		info, err := a.addWorkload(r.Context(), wl)
		reply(w, info, err)
	})
	mux.HandleFunc("DELETE /v1/workloads/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, a.deleteWorkload(r.Context(), r.PathValue("name")))
	})
	srv := &http.Server{Handler: mux}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("control socket", "err", err)
		}
	}()
	return nil
}

// currentPools returns the IP pools as last set (none before start).
func (a *Agent) currentPools() []Pool {
	if p := a.pools.Load(); p != nil {
		return *p
	}
	return nil
}

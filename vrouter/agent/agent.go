// Package agent is the node agent: for one node it wires IPAM (addresses
// and /26 blocks from the lab's datastore), a BGP speaker (announcing the
// node's blocks, learning the others') and one dataplane (the routes and
// workload ports it programs) together, and serves the node's control API.
// `vrouter node run --config FILE` runs it; a lab deploy writes one config
// file per node and starts one agent per node namespace.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// Agent is one running node.
type Agent struct {
	cfg     *config.Node
	log     *slog.Logger
	started time.Time

	// newDataplane and newSpeaker make the node's dataplane and BGP
	// speaker: the one the config names (see dataplanes) and GoBGP, or
	// fakes in tests.
	newDataplane newDataplaneFunc
	newSpeaker   func(context.Context, bgp.Config) (Speaker, error)

	dp    Dataplane
	ipam  *ipam.IPAM
	store Datastore
	bgp   Speaker

	saveMu sync.Mutex // serializes writes of the routes file

	// routeMu serializes every change to the routes learned over BGP,
	// in learned and in the dataplane: learn, setPools' reprogramming,
	// the restore and the sweep of a graceful restart.
	routeMu sync.Mutex
	learned map[netip.Prefix]netip.Addr // the BGP next hop of each learned (or restored) route
	stale   map[netip.Prefix]bool       // restored routes not learned again yet

	mu         sync.Mutex // guards workloads, added, blocks, holes and tunnelAddr
	workloads  map[string]control.WorkloadInfo
	wmeta      map[string]workloadMeta    // what policy sees of each workload
	added      map[string]config.Workload // added through the control API (see workloadsFile)
	blocks     []netip.Prefix             // announced: affine blocks and borrowed /32s
	holes      map[netip.Prefix]bool      // the announced blocks, which are blackholed
	tunnelAddr netip.Addr                 // tunl0 address, when a pool uses IPIP

	pools atomic.Pointer[[]config.Pool] // the IP pools, replaced by setPools (under routeMu)

	// The cluster from etcd (cluster.go): the resource store, the peers
	// configured in the speaker and the log level BGPConfiguration sets.
	res      *resources.Store
	peersMu  sync.Mutex
	peers    map[netip.Addr]bgp.Peer
	dynPeers atomic.Pointer[[]config.BGPPeer]
	logLevel *slog.LevelVar

	// degraded is set while an agent that started with etcd unreachable
	// serves from its saved state (degraded.go).
	degraded atomic.Bool
	cache    datastoreCache // what it started from, when degraded
	serving  atomic.Bool    // set once start has restored the workloads
	synced   atomic.Bool    // set once the blocks are synced: the cache may be written

	polMu    sync.Mutex       // serializes policy changes
	policies *policy.Compiled // the policy set in force, compiled (nil: none)

	// Policies from etcd (clusterpolicy.go), merged with the lab's.
	cpol clusterPolicy

	metricsOnce sync.Once
	metrics     http.Handler // GET /metrics, made by metricsHandler
	metricsAddr atomic.Value // string: the address serveMetrics listens on
}

// Run runs the agent until ctx ends, then removes what it made (its TUN
// devices vanish with their descriptors).
func Run(ctx context.Context, cfg *config.Node) error {
	level := new(slog.LevelVar)
	a := newAgent(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("node", cfg.Node))
	a.logLevel = level
	defer a.close()
	if err := a.start(ctx); err != nil {
		return fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	a.log.Info("node running", "address", cfg.Prefix.Addr(), "workloads", len(cfg.Workloads))
	<-ctx.Done()
	a.log.Info("node stopping")
	return nil
}

// Datastore is an IPAM datastore that its opener closes.
type Datastore interface {
	ipam.Datastore
	Close() error
}

// OpenDatastore opens the IPAM datastore cfg selects: the bbolt file
// cfg.Datastore, or the etcd cluster cfg.Etcd.
func OpenDatastore(ctx context.Context, cfg *config.Node) (Datastore, error) {
	if err := cfg.CheckDatastore(); err != nil {
		return nil, err
	}
	if cfg.DatastoreType == config.DatastoreEtcd {
		s, err := ipam.OpenEtcd(ctx, etcdStoreConfig(cfg))
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := ipam.OpenBolt(cfg.Datastore)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// newAgent returns the agent of the node cfg describes, with the
// dataplane cfg.Dataplane names and GoBGP as its speaker.
func newAgent(cfg *config.Node, log *slog.Logger) *Agent {
	return &Agent{
		cfg:          cfg,
		log:          log,
		started:      time.Now().UTC(),
		newDataplane: dataplaneFor(cfg.Dataplane),
		newSpeaker:   startSpeaker,
		workloads:    map[string]control.WorkloadInfo{},
		wmeta:        map[string]workloadMeta{},
		added:        map[string]config.Workload{},
		learned:      map[netip.Prefix]netip.Addr{},
		stale:        map[netip.Prefix]bool{},
		peers:        map[netip.Addr]bgp.Peer{},
	}
}

// start brings the node up: its dataplane, IPAM, routes (restored ones
// first, at a graceful restart), BGP and workloads, then the control
// socket. What it made before an error, close releases.
func (a *Agent) start(ctx context.Context) error {
	cfg := a.cfg
	addr := cfg.Prefix.Addr()

	// The dataplane: the node's underlay interface, which carries the
	// node address (the kernel adds the connected route), and its link.
	dp, err := a.newDataplane(ctx, cfg, a.log)
	if err != nil {
		return err
	}
	a.dp = dp
	// IPAM: the lab's shared datastore (a bbolt file), or etcd; with
	// etcd unreachable, the node starts from its saved state.
	if err := a.openStore(ctx); err != nil {
		return err
	}
	cfgPools := slices.Clone(cfg.Pools)
	var snap *resources.Snapshot // the cluster's resources, with the mesh from etcd
	switch {
	case a.degraded.Load() && len(a.cache.Pools) > 0:
		cfgPools = slices.Clone(a.cache.Pools)
	case a.res != nil && !a.degraded.Load():
		if snap, err = a.res.Load(ctx); snap == nil {
			return err
		}
		cfgPools = a.clusterPools(ctx, snap)
	}
	var pools []ipam.Pool
	for _, p := range cfgPools {
		pools = append(pools, ipam.Pool{Name: p.Name, CIDR: p.CIDR, BlockSize: p.BlockSize})
	}
	a.ipam, err = ipam.New(a.store, pools, ipam.Options{StrictAffinity: cfg.StrictAffinity})
	if err != nil {
		return err
	}
	a.pools.Store(&cfgPools)
	// The config's fixed workload addresses are taken before tunl0's, so
	// the blocks they lie in are the node's first and tunl0's address is
	// the first free one of them, as a Calico node's tunnel address is
	// the first of the first block it claims (not one of a block claimed
	// for tunl0 alone).
	if err := a.assignFixed(ctx); err != nil {
		return err
	}
	if err := a.ensureTunnel(ctx, cfgPools); err != nil {
		return err
	}
	connected := fib.Route{Dst: cfg.Prefix.Masked(), Type: fib.Unicast, Dev: cfg.Interface, Protocol: fib.ProtoKernel, Scope: fib.ScopeLink, PrefSrc: addr}
	if err := a.dp.ReplaceRoute(connected); err != nil {
		return err
	}
	if cfg.Gateway.IsValid() {
		def := fib.Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Type: fib.Unicast, Gateway: cfg.Gateway, Dev: cfg.Interface, Protocol: fib.ProtoStatic}
		if err := a.dp.ReplaceRoute(def); err != nil {
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
	a.bgp, err = a.newSpeaker(ctx, bgp.Config{
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
	if cfg.MeshFromDatastore {
		// The mesh comes from the registered nodes, as read now (or as
		// saved, with etcd down), then as watchCluster sees them change;
		// a graceful restart's sweep waits for these peers.
		peers := a.staticPeers()
		switch {
		case snap != nil:
			a.learnNodes(snap)
			peers = a.desiredPeers(snap)
		case a.degraded.Load():
			peers = append(slices.Clone(a.cache.Peers), peers...)
		}
		if err := a.setPeers(ctx, peers); err != nil {
			return err
		}
	} else {
		for _, p := range cfg.BGP.Peers {
			if err := a.bgp.AddPeer(ctx, a.bgpPeer(p, isNode(cfg, p.Address))); err != nil {
				return err
			}
		}
	}

	// The policies a previous agent of the node enforced apply from the
	// workloads' first packet.
	a.restorePolicies()
	for _, w := range cfg.Workloads {
		if !w.IsNetstack() && !netns.Exists(w.Namespace) {
			// Deleted while no agent served it (before a restart): the
			// node serves the others; inspect shows this one down.
			a.log.Error("workload namespace is gone, not serving the workload", "workload", w.Name, "namespace", w.Namespace)
			continue
		}
		if _, err := a.serveWorkload(ctx, w); err != nil {
			return err
		}
	}
	if err := a.restoreWorkloads(ctx); err != nil {
		return err
	}
	if err := a.syncBlocks(ctx); err != nil {
		return err
	}
	if len(cfg.Workloads) >= freeAfterWorkloads {
		// Serving them made garbage (IPAM's decoded blocks, mostly) that
		// the runtime would keep mapped: give it back before idling.
		debug.FreeOSMemory()
	}
	a.serving.Store(true)
	if a.degraded.Load() {
		go a.recoverDatastore(ctx)
	}
	if a.res != nil {
		go a.register(ctx)
		go a.watchCluster(ctx)
		go a.endpointLoop(ctx)
	}
	go a.dp.Run(ctx)
	if a.staleCount() > 0 {
		go a.sweepStale(ctx)
	}
	if cfg.MetricsAddr != "" {
		if err := a.serveMetrics(ctx); err != nil {
			return err
		}
	}
	return a.serveControl(ctx)
}

// assignFixed assigns the fixed addresses of the config's workloads (those
// it will serve) to their handles, unless IPAM kept one for them already:
// addWorkload then finds them by handle.
func (a *Agent) assignFixed(ctx context.Context) error {
	if a.degraded.Load() {
		return nil // etcd is down: the workloads are served at their saved addresses
	}
	for _, w := range a.cfg.Workloads {
		if !w.Address.IsValid() || (!w.IsNetstack() && !netns.Exists(w.Namespace)) {
			continue
		}
		h := handle(a.cfg.Lab, w.Name)
		if _, err := a.ipam.AddressByHandle(ctx, h); err == nil {
			continue
		}
		args := ipam.AssignArgs{Node: a.cfg.Node, Handle: h, Attrs: workloadAttrs(w.Name, a.cfg.Node)}
		if err := a.ipam.AssignIP(ctx, w.Address, args); err != nil {
			return fmt.Errorf("workload %s: %w", w.Name, err)
		}
	}
	return nil
}

// workloadAttrs are the IPAM attributes of workload's address on node.
func workloadAttrs(workload, node string) map[string]string {
	return map[string]string{"workload": workload, "node": node}
}

// ensureTunnel brings up tunl0 when one of pools uses IPIP and it is not
// up yet: its address comes from the node's own block, as Calico assigns
// it (handle ipip-tunnel-addr-NODE); the node's kernel owns the address,
// so the dataplane hands packets for it to the node.
func (a *Agent) ensureTunnel(ctx context.Context, pools []config.Pool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tunnelAddr.IsValid() || !ipip(pools) {
		return nil
	}
	h := "ipip-tunnel-addr-" + a.cfg.Node
	var addr netip.Addr
	var err error
	if a.degraded.Load() && a.cache.TunnelAddr.IsValid() {
		addr = a.cache.TunnelAddr // etcd is down: the saved one
	} else {
		addr, err = a.ipam.AddressByHandle(ctx, h)
	}
	if err != nil {
		addr, err = a.ipam.AutoAssign(ctx, ipam.AssignArgs{Node: a.cfg.Node, Handle: h, Attrs: map[string]string{"type": "ipipTunnelAddress", "node": a.cfg.Node}})
	}
	if err != nil {
		return fmt.Errorf("tunl0 address: %w", err)
	}
	if err := a.dp.EnableTunnel(addr); err != nil {
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
func (a *Agent) setPools(ctx context.Context, pools []config.Pool) error {
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
	if err := a.ensureTunnel(ctx, pools); err != nil {
		return err
	}
	// tunl0's address may come from a block the node claimed just now.
	if err := a.syncBlocks(ctx); err != nil {
		return err
	}
	// The pools change and the learned routes are reprogrammed in one
	// step for learn: a route it withdraws meanwhile stays withdrawn, one
	// it learns is programmed by the new pools' modes.
	a.routeMu.Lock()
	defer a.routeMu.Unlock()
	a.pools.Store(&pools)
	changed := 0
	for dst, nextHop := range a.learned {
		want := a.bgpRoute(dst, nextHop)
		if have := a.dp.Route(dst); len(have) > 0 && have[0] == want {
			continue
		}
		if err := a.dp.ReplaceRoute(want); err != nil {
			return fmt.Errorf("reprogram %s: %w", dst, err)
		}
		changed++
	}
	a.log.Info("pools applied", "routes_changed", changed)
	return nil
}

// learn installs or removes a route learned over BGP.
func (a *Agent) learn(u bgp.RouteUpdate) {
	defer a.saveRoutes() // after routeMu is released
	a.routeMu.Lock()
	defer a.routeMu.Unlock()
	delete(a.stale, u.Prefix) // learned (or withdrawn) in this run: no longer stale
	if u.Withdrawn {
		a.forgetLearned(u.Prefix)
		a.log.Info("route withdrawn", "prefix", u.Prefix)
		return
	}
	r, err := a.installLearned(u.Prefix, u.NextHop)
	if err != nil {
		a.log.Error("install learned route", "route", r, "err", err)
		return
	}
	a.log.Info("route learned", "route", r.String())
}

func handle(lab, name string) string { return lab + "." + name }

// addWorkload allocates the workload's address (the one it had, if IPAM
// remembers it), gives it its port (eth0) and routes it. Adding a
// workload the node serves already, with the same namespace and pod
// interface, returns it as it is (a CNI ADD repeated); with another, it
// is an error.
func (a *Agent) addWorkload(ctx context.Context, w config.Workload) (*control.WorkloadInfo, error) {
	info, err := a.serveWorkload(ctx, w)
	if err != nil {
		return nil, err
	}
	return info, a.syncBlocks(ctx)
}

// freeAfterWorkloads is how many workloads of its config an agent's start
// serves before it returns the garbage to the OS.
const freeAfterWorkloads = 100

// serveWorkload is addWorkload without the blocks' sync (blackholes and
// announcements), which the agent's start does once for all the
// workloads of its config: a sync each (two reads of every block of the
// datastore) made the start of a node with 1,000 workloads take minutes.
func (a *Agent) serveWorkload(ctx context.Context, w config.Workload) (*control.WorkloadInfo, error) {
	svcs, err := checkWorkload(&w)
	if err != nil {
		return nil, err
	}
	if err := checkPolicyMeta(w); err != nil {
		return nil, err
	}
	a.mu.Lock()
	have, dup := a.workloads[w.Name]
	a.mu.Unlock()
	if dup {
		if have.Namespace == w.Namespace && have.PodInterface == w.PodInterface && have.Stack == stackInfo(w) && (!w.Address.IsValid() || w.Address == have.Address) {
			return &have, nil
		}
		return nil, fmt.Errorf("workload %s already exists (namespace %s, interface %s)", w.Name, have.Namespace, have.PodInterface)
	}
	h := handle(a.cfg.Lab, w.Name)
	args := ipam.AssignArgs{Node: a.cfg.Node, Handle: h, Attrs: workloadAttrs(w.Name, a.cfg.Node)}
	var addr netip.Addr
	if saved, ok := a.savedAddress(w); ok {
		// etcd is down since the agent started: serve the workload at
		// its saved address; recoverDatastore checks it with IPAM later.
		addr = saved
	} else {
		addr, err = a.ipam.AddressByHandle(ctx, h)
	}
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
	info := control.WorkloadInfo{Name: w.Name, Namespace: w.Namespace, Interface: config.InterfaceName(a.cfg.Lab, w.Name), Address: addr, PodInterface: w.PodInterface, MTU: mtu, Stack: stackInfo(w)}
	port := WorkloadPort{Name: info.Interface, Namespace: w.Namespace, Address: addr, MTU: mtu, PodInterface: w.PodInterface,
		Stack: info.Stack, Workload: w.Name, Serve: svcs}
	if err := a.dp.AddWorkload(ctx, port); err != nil {
		release()
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	r := fib.Route{Dst: netip.PrefixFrom(addr, 32), Type: fib.Unicast, Dev: info.Interface, Protocol: fib.ProtoBoot, Scope: fib.ScopeLink}
	if err := a.dp.ReplaceRoute(r); err != nil {
		a.dp.RemoveWorkload(info.Interface)
		release()
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	a.mu.Lock()
	a.workloads[w.Name] = info
	a.wmeta[w.Name] = workloadMeta{Namespace: w.PolicyNamespace, Labels: w.Labels, Pod: w.Pod}
	a.mu.Unlock()
	a.log.Info("workload added", "workload", w.Name, "address", addr, "interface", info.Interface)
	a.workloadsChanged()
	return &info, nil
}

// deleteWorkload removes a workload's port and route and releases its
// address.
func (a *Agent) deleteWorkload(ctx context.Context, name string) error {
	a.mu.Lock()
	w, ok := a.workloads[name]
	delete(a.workloads, name)
	delete(a.wmeta, name)
	_, added := a.added[name]
	delete(a.added, name)
	a.mu.Unlock()
	if !ok {
		return control.NotFoundf("no workload %s on node %s", name, a.cfg.Node)
	}
	if added {
		a.saveWorkloads()
	}
	a.dp.DeleteRoute(netip.PrefixFrom(w.Address, 32))
	a.dp.RemoveWorkload(w.Interface)
	if err := a.ipam.ReleaseByHandle(ctx, handle(a.cfg.Lab, name)); err != nil {
		return err
	}
	a.log.Info("workload deleted", "workload", name)
	a.workloadsChanged()
	return a.syncBlocks(ctx)
}

// syncBlocks makes the blackholes and BGP announcements match IPAM: every
// block affine to the node is blackholed and announced, and every address
// the node borrowed from another node's block is announced as a /32 (its
// workload route is already there), so that the other nodes, the owner
// included, reach it by longest-prefix match over the owner's /26.
func (a *Agent) syncBlocks(ctx context.Context) error {
	var want []netip.Prefix
	holes := map[netip.Prefix]bool{}
	if a.degraded.Load() {
		// etcd has been down since the start: the saved blocks.
		want = slices.Clone(a.cache.Blocks)
		for _, p := range a.cache.Holes {
			holes[p] = true
		}
	} else {
		blocks, err := a.ipam.BlocksForNode(ctx, a.cfg.Node)
		if err != nil {
			return err
		}
		borrowed, err := a.ipam.BorrowedByNode(ctx, a.cfg.Node)
		if err != nil {
			return err
		}
		for _, b := range blocks {
			want = append(want, b.CIDR)
			holes[b.CIDR] = true
		}
		for _, addr := range borrowed {
			want = append(want, netip.PrefixFrom(addr, 32))
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range want {
		if slices.Contains(a.blocks, p) {
			continue
		}
		if holes[p] {
			if err := a.dp.ReplaceRoute(fib.Route{Dst: p, Type: fib.Blackhole, Protocol: fib.ProtoBird}); err != nil {
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
			a.dp.DeleteRoute(p)
		}
		if err := a.bgp.Withdraw(ctx, p); err != nil {
			return err
		}
	}
	a.blocks, a.holes = want, holes
	a.synced.Store(true)
	a.saveCacheLocked()
	return nil
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
	if a.dp != nil {
		_ = a.dp.Close() // the workloads' ports and the underlay interface go with it
	}
	if a.store != nil {
		a.store.Close()
	}
	_ = os.Remove(a.cfg.ControlSocket())
}

// currentPools returns the IP pools as last set (none before start).
func (a *Agent) currentPools() []config.Pool {
	if p := a.pools.Load(); p != nil {
		return *p
	}
	return nil
}

package vrouter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
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

	mu        sync.Mutex // guards workloads and blocks
	workloads map[string]*workload
	blocks    []netip.Prefix // affine blocks announced and blackholed
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
	host, err := netns.OpenTUN(cfg.Namespace, cfg.Interface, cfg.MTU)
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
	neighbors := map[netip.Addr]string{}
	for _, n := range cfg.Neighbors {
		neighbors[n.Address] = n.Node
	}
	ep, err := fabric.Attach(fabricDir(cfg.StateDir), cfg.Network, cfg.Node, fabric.Options{
		Interface: cfg.Node + "/" + cfg.Interface,
		Neighbors: neighbors,
	})
	if err != nil {
		host.Close()
		return err
	}
	a.engine, err = dataplane.NewEngine(dataplane.EngineConfig{
		FIB:       a.fib,
		Host:      host.Device,
		HostName:  "@host",
		Underlay:  ep,
		Interface: cfg.Interface,
		MTU:       cfg.MTU,
		Address:   addr,
		Logger:    a.log,
	})
	if err != nil {
		host.Close()
		ep.Close()
		return err
	}
	connected := fib.Route{Dst: cfg.Prefix.Masked(), Type: fib.Unicast, Dev: cfg.Interface, Protocol: fib.ProtoKernel, Scope: fib.ScopeLink, PrefSrc: addr}
	if err := a.fib.Replace(connected); err != nil {
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
	a.ipam, err = ipam.New(a.store, pools)
	if err != nil {
		return err
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
		if err := a.bgp.AddPeer(ctx, peer); err != nil {
			return err
		}
	}

	for _, w := range cfg.Workloads {
		if _, err := a.addWorkload(ctx, w); err != nil {
			return err
		}
	}
	if err := a.syncBlocks(ctx); err != nil {
		return err
	}
	go a.engine.Run(ctx)
	return a.serveControl(ctx)
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

// learn installs or removes a route learned over BGP.
func (a *Agent) learn(u bgp.RouteUpdate) {
	if u.Withdrawn {
		a.fib.Delete(u.Prefix, 0)
		a.log.Info("route withdrawn", "prefix", u.Prefix)
		return
	}
	r := fib.Route{Dst: u.Prefix, Type: fib.Unicast, Gateway: u.NextHop, Dev: a.cfg.Interface, Protocol: fib.ProtoBird}
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
	mtu := a.cfg.MTU
	t, err := netns.OpenTUN(w.Namespace, "eth0", mtu)
	if err != nil {
		_ = a.ipam.ReleaseByHandle(ctx, h)
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	if err := workloadRoutes(t, addr); err != nil {
		t.Close()
		_ = a.ipam.ReleaseByHandle(ctx, h)
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	info := WorkloadInfo{Name: w.Name, Namespace: w.Namespace, Interface: InterfaceName(a.cfg.Lab, w.Name), Address: addr}
	if err := a.engine.AddWorkload(info.Interface, t.Device, mtu); err != nil {
		t.Close()
		_ = a.ipam.ReleaseByHandle(ctx, h)
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

// syncBlocks makes the blackholes and BGP announcements match the node's
// affine blocks.
func (a *Agent) syncBlocks(ctx context.Context) error {
	blocks, err := a.ipam.BlocksForNode(ctx, a.cfg.Node)
	if err != nil {
		return err
	}
	var want []netip.Prefix
	for _, b := range blocks {
		want = append(want, b.CIDR)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range want {
		if slices.Contains(a.blocks, p) {
			continue
		}
		if err := a.fib.Replace(fib.Route{Dst: p, Type: fib.Blackhole, Protocol: fib.ProtoBird}); err != nil {
			return err
		}
		if err := a.bgp.Announce(ctx, p, a.cfg.Prefix.Addr()); err != nil {
			return err
		}
	}
	for _, p := range a.blocks {
		if slices.Contains(want, p) {
			continue
		}
		a.fib.Delete(p, 0)
		if err := a.bgp.Withdraw(ctx, p); err != nil {
			return err
		}
	}
	a.blocks = want
	return nil
}

// status reports the node's state; Ready means every BGP session is
// Established and every block affine to a peer is routed.
func (a *Agent) status(ctx context.Context) (*Status, error) {
	s := &Status{Node: a.cfg.Node, Address: a.cfg.Prefix.Addr(), Started: a.started, Routes: a.fib.Len()}
	peers, err := a.bgp.Peers(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		s.Peers = append(s.Peers, PeerStatus{Address: p.Address, Type: p.Type.String(), State: p.State, Since: p.Since, Info: p.Info})
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
	if a.bgp != nil {
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

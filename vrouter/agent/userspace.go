package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netstack"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
	"golang.org/x/sys/unix"
)

// linkLocalGateway is the next hop every workload uses, as in Calico: an
// address nobody owns, reached "onlink" through eth0, so every packet a
// workload sends goes to its node's dataplane.
var linkLocalGateway = netip.MustParseAddr("169.254.1.1")

// userspace is the userspace engine as a node's Dataplane: the node's
// underlay interface is a TUN device in the node namespace carrying the
// node address (so the node's kernel carries BGP), the underlay itself a
// fabric endpoint, every workload's eth0 a TUN device whose descriptor the
// engine holds (a netstack workload's port a gVisor stack in the agent),
// and the FIB the engine's.
type userspace struct {
	fib    *fib.Table
	engine *dataplane.Engine
	ep     *fabric.Endpoint
	host   *netns.TUN // the node's underlay interface
	log    *slog.Logger

	mu     sync.Mutex
	ports  map[string]*netns.TUN      // the workloads' eth0 by port name
	stacks map[string]*netstack.Stack // the netstack workloads by port name

	tunnel atomic.Bool // the engine's tunl0 is up
}

// newUserspace opens the node's underlay (TUN device and fabric endpoint)
// and makes its engine; on error nothing it opened stays open.
func newUserspace(ctx context.Context, cfg *config.Node, log *slog.Logger) (Dataplane, error) {
	host, err := openTUN(ctx, cfg.Namespace, cfg.Interface, cfg.MTU)
	if err != nil {
		return nil, err
	}
	if err := host.AddAddress(cfg.Prefix); err != nil {
		host.Close()
		return nil, err
	}
	if err := defaultToEngine(cfg.Namespace, cfg.Interface); err != nil {
		host.Close()
		return nil, err
	}
	ep, err := fabric.Attach(cfg.FabricDir(), cfg.Network, cfg.Node, fabric.Options{
		Interface: cfg.Node + "/" + cfg.Interface,
		Neighbors: config.NeighborTable(cfg.Neighbors),
	})
	if err != nil {
		host.Close()
		return nil, err
	}
	if cfg.LinkDown {
		ep.SetUp(false)
		log.Info("underlay link is down (vrouter link set)", "interface", cfg.Interface)
	}
	if cfg.Impairment != nil && !cfg.Impairment.IsZero() {
		if err := ep.SetImpairment(FabricImpairment(*cfg.Impairment)); err != nil {
			host.Close()
			ep.Close()
			return nil, fmt.Errorf("underlay impairment: %w", err)
		}
		log.Info("underlay link impaired", "interface", cfg.Interface, "impairment", cfg.Impairment.String())
	}
	table := fib.NewTable()
	engine, err := dataplane.NewEngine(dataplane.EngineConfig{
		FIB:       table,
		Host:      host,
		HostName:  "@host",
		Underlay:  ep,
		Interface: cfg.Interface,
		MTU:       cfg.MTU,
		Address:   cfg.Prefix.Addr(),
		Logger:    log,
		Nodes:     tunnelSources(cfg),
	})
	if err != nil {
		host.Close()
		ep.Close()
		return nil, err
	}
	return &userspace{fib: table, engine: engine, ep: ep, host: host, log: log,
		ports: map[string]*netns.TUN{}, stacks: map[string]*netstack.Stack{}}, nil
}

func (u *userspace) ReplaceRoute(r fib.Route) error           { return u.fib.Replace(r) }
func (u *userspace) DeleteRoute(dst netip.Prefix)             { u.fib.Delete(dst, 0) }
func (u *userspace) Routes() []fib.Route                      { return u.fib.Routes() }
func (u *userspace) Route(dst netip.Prefix) []fib.Route       { return u.fib.Get(dst) }
func (u *userspace) Lookup(addr netip.Addr) (fib.Route, bool) { return u.fib.Lookup(addr) }
func (u *userspace) LinkUp() bool                             { return u.ep.IsUp() }
func (u *userspace) SetLinkUp(up bool)                        { u.ep.SetUp(up) }
func (u *userspace) SetImpairment(imp config.Impairment) error {
	return u.ep.SetImpairment(FabricImpairment(imp))
}
func (u *userspace) Impairment() config.Impairment {
	f := u.ep.Impairment()
	return config.Impairment{Delay: f.Delay, Jitter: f.Jitter, Loss: f.Loss * 100, Rate: f.Rate, Duplicate: f.Duplicate * 100, Corrupt: f.Corrupt * 100}
}
func (u *userspace) Stats() map[string]uint64 { return u.engine.Stats() }

// AddNodes adds nodes that registered after the start (the mesh from
// etcd): those on the node's network to the fabric's neighbour table,
// every one to the sources tunl0 accepts.
func (u *userspace) AddNodes(network netip.Prefix, nodes map[netip.Addr]string) error {
	neigh := u.ep.Neighbors()
	changed := false
	var addrs []netip.Addr
	for addr, node := range nodes {
		addrs = append(addrs, addr)
		if network.Contains(addr) && neigh[addr] != node {
			neigh[addr], changed = node, true
		}
	}
	if changed {
		if err := u.ep.SetNeighbors(neigh); err != nil {
			return err
		}
	}
	return u.engine.AddTunnelSources(addrs...)
}
func (u *userspace) Run(ctx context.Context)            { u.engine.Run(ctx) }
func (u *userspace) EnableTunnel(addr netip.Addr) error { return u.enableTunnel(addr) }
func (u *userspace) Tunnel() string {
	if u.tunnel.Load() {
		return control.TunnelEngine
	}
	return ""
}
func (u *userspace) AddWorkload(ctx context.Context, p WorkloadPort) error {
	return u.addWorkload(ctx, p)
}

// enableTunnel gives the node's kernel tunl0's address (the node owns
// it, so the engine hands packets for it to the node) and brings up the
// engine's tunl0.
func (u *userspace) enableTunnel(addr netip.Addr) error {
	if err := u.host.AddAddress(netip.PrefixFrom(addr, 32)); err != nil {
		return fmt.Errorf("tunl0 address: %w", err)
	}
	if err := u.engine.EnableTunnel(addr); err != nil {
		return err
	}
	u.tunnel.Store(true)
	return nil
}

func (u *userspace) addWorkload(ctx context.Context, p WorkloadPort) error {
	if p.Stack == config.StackNetstack {
		return u.addNetstack(p)
	}
	pod := p.PodInterface
	if pod == "" {
		pod = "eth0"
	}
	t, err := openTUN(ctx, p.Namespace, pod, p.MTU)
	if err != nil {
		return err
	}
	if err := workloadRoutes(t, p.Address); err != nil {
		t.Close()
		return err
	}
	if err := u.engine.AddWorkload(p.Name, t, p.MTU); err != nil {
		t.Close()
		return err
	}
	u.mu.Lock()
	u.ports[p.Name] = t
	u.mu.Unlock()
	return nil
}

// addNetstack gives a netstack workload its port: a gVisor stack with the
// workload's address and services, attached to the engine in memory.
func (u *userspace) addNetstack(p WorkloadPort) error {
	st, err := netstack.New(netstack.Config{Name: p.Workload, Address: p.Address, MTU: p.MTU, Serve: p.Serve,
		Logger: u.log.With("workload", p.Workload)})
	if err != nil {
		return err
	}
	if err := u.engine.AddLinkWorkload(p.Name, st, p.MTU); err != nil {
		st.Close()
		return err
	}
	u.mu.Lock()
	u.stacks[p.Name] = st
	u.mu.Unlock()
	return nil
}

// RemoveWorkload removes the port from the engine and closes its device,
// which removes eth0 from the workload's namespace, or its stack, which
// frees it.
func (u *userspace) RemoveWorkload(name string) {
	u.mu.Lock()
	t := u.ports[name]
	st := u.stacks[name]
	delete(u.ports, name)
	delete(u.stacks, name)
	u.mu.Unlock()
	u.engine.RemoveWorkload(name)
	if t != nil {
		t.Close()
	}
	if st != nil {
		st.Close()
	}
}

// Stack returns the gVisor stack of the netstack workload on port name.
func (u *userspace) Stack(name string) (*netstack.Stack, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st, ok := u.stacks[name]
	return st, ok
}

// Close stops the engine and closes every device: the workloads' eth0 and
// the node's underlay interface vanish with them.
func (u *userspace) Close() error {
	u.engine.Close()
	u.mu.Lock()
	ports, stacks := u.ports, u.stacks
	u.ports, u.stacks = map[string]*netns.TUN{}, map[string]*netstack.Stack{}
	u.mu.Unlock()
	for _, t := range ports {
		t.Close()
	}
	for _, st := range stacks {
		st.Close()
	}
	return u.host.Close()
}

// tunnelSources returns the outer sources tunl0 accepts: every lab node's
// underlay address.
func tunnelSources(cfg *config.Node) []netip.Addr {
	if len(cfg.TunnelSources) > 0 {
		return cfg.TunnelSources
	}
	return nodeAddrs(cfg.Neighbors)
}

// nodeAddrs returns the underlay addresses of the lab's nodes.
func nodeAddrs(ns []config.Neighbor) []netip.Addr {
	var out []netip.Addr
	for _, n := range ns {
		if n.Node != "" {
			out = append(out, n.Address)
		}
	}
	return out
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

// FabricImpairment is imp as a fabric endpoint applies it (loss as a
// probability).
func FabricImpairment(imp config.Impairment) fabric.Impairment {
	return fabric.Impairment{Delay: imp.Delay, Jitter: imp.Jitter, Loss: imp.Loss / 100, Rate: imp.Rate, Duplicate: imp.Duplicate / 100, Corrupt: imp.Corrupt / 100}
}

// SetPolicy installs policy chains in the engine.
func (u *userspace) SetPolicy(chains map[string]*policy.EndpointRules) error {
	u.engine.SetPolicy(chains)
	return nil
}

// PolicyCounters returns the engine's policy counters.
func (u *userspace) PolicyCounters() (map[policy.RuleID]uint64, control.PolicyStatus) {
	m := u.engine.PolicyMetrics()
	return m.Rules, control.PolicyStatus{Denied: m.Denied, AllowedFlows: m.AllowedFlows, Passed: m.Passed, Related: m.Related,
		Conntrack: control.ConntrackStatus{Entries: m.Entries, Capacity: m.Capacity, Created: m.Created, Evicted: m.Evicted, Expired: m.Expired, Revoked: m.Revoked}}
}

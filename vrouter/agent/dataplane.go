package agent

import (
	"context"
	"net/netip"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netstack"
)

// Dataplane is what forwards a node's packets, as the agent programs it:
// routes in (the blocks learned over BGP, the blackholes of the node's own
// blocks, the workloads' /32s, the connected and default routes), the
// workloads' ports, tunl0's address, and out its routes (`vrouter route`),
// counters and the state of the underlay link. The userspace engine
// (package dataplane, behind newUserspace) is one; the Linux kernel
// (package kernel, behind newKernel: netlink routes, veth ports, the
// kernel's tunl0) is the other. config.Node.Dataplane chooses.
//
// Routes are fib.Route values whichever the dataplane: what BGP produces,
// what the engine looks up, what netlink would write, what `vrouter route`
// prints.
type Dataplane interface {
	// ReplaceRoute installs r, replacing the route to r.Dst with
	// r.Metric if there is one.
	ReplaceRoute(r fib.Route) error
	// DeleteRoute removes the route to dst with metric 0, if any.
	DeleteRoute(dst netip.Prefix)
	// Routes returns every route, in `ip route` order.
	Routes() []fib.Route
	// Route returns the routes to exactly dst, lowest metric first.
	Route(dst netip.Prefix) []fib.Route
	// Lookup returns the route a packet to addr would take.
	Lookup(addr netip.Addr) (fib.Route, bool)

	// AddWorkload gives a workload its port: eth0 in the workload's
	// namespace with the workload's address and Calico's default route
	// (via 169.254.1.1 onlink), the node side named p.Name. The agent
	// routes p.Address to p.Name itself.
	AddWorkload(ctx context.Context, p WorkloadPort) error
	// RemoveWorkload removes the port named name, if any.
	RemoveWorkload(name string)
	// EnableTunnel brings up tunl0 with address addr (IPIP); it does
	// nothing if tunl0 is up.
	EnableTunnel(addr netip.Addr) error
	// Tunnel says which tunl0 carries IPIP once EnableTunnel made it:
	// control.TunnelKernel, control.TunnelUserspace or
	// control.TunnelEngine; "" while there is none.
	Tunnel() string

	// LinkUp reports whether the underlay link is up; SetLinkUp takes it
	// down (a pulled cable: everything sent or received is dropped) or
	// up (`vrouter link set`).
	LinkUp() bool
	SetLinkUp(up bool)
	// SetImpairment applies imp to the underlay link's egress (the zero
	// imp clears it), Impairment returns it; a dataplane that cannot
	// answers an error matching control.ErrImpairmentUnsupported.
	SetImpairment(imp config.Impairment) error
	Impairment() config.Impairment
	// Stats returns the dataplane's counters by name.
	Stats() map[string]uint64

	// Run forwards until ctx ends. Close releases everything the
	// dataplane holds (devices, sockets); it may be called more than once,
	// and before Run.
	Run(ctx context.Context)
	Close() error
}

// WorkloadPort is a workload's port as the dataplane makes it.
type WorkloadPort struct {
	Name string // the node side's name: caliXXXXXXXXXXX
	// Namespace is the workload's network namespace, where eth0 goes: a
	// name, or a namespace file's path (/proc/PID/ns/net, CNI_NETNS).
	Namespace string
	Address   netip.Addr // the workload's address (a /32 on eth0)
	MTU       int
	// PodInterface is the workload side's name; empty: eth0.
	PodInterface string
	// Stack is config.StackNetstack for a workload in a gVisor stack:
	// no namespace, no device; the stack, named Workload, runs Serve.
	// A dataplane without netstack workloads refuses it.
	Stack    string
	Workload string
	Serve    []netstack.Service
}

// Speaker is the BGP side of the agent: *bgp.Speaker, or a fake in tests.
type Speaker interface {
	// Watch calls fn for every route learned or withdrawn from now on.
	Watch(ctx context.Context, fn func(bgp.RouteUpdate)) error
	AddPeer(ctx context.Context, p bgp.Peer) error
	// DeletePeer removes a peer added by AddPeer, closing its session.
	DeletePeer(ctx context.Context, addr netip.Addr) error
	// Announce and Withdraw originate and stop originating a prefix.
	Announce(ctx context.Context, prefix netip.Prefix, nextHop netip.Addr) error
	Withdraw(ctx context.Context, prefix netip.Prefix) error
	Peers(ctx context.Context) ([]bgp.PeerStatus, error)
	// Learned returns the best route of every prefix learned from peers.
	Learned(ctx context.Context) (map[netip.Prefix]bgp.RouteUpdate, error)
	Stop()
}

// startSpeaker starts the GoBGP speaker.
func startSpeaker(ctx context.Context, cfg bgp.Config) (Speaker, error) {
	s, err := bgp.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

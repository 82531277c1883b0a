package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// A kernel lab (dataplane: kernel) runs the same calico nodes as any lab,
// their agents with the kernel dataplane: each node is a namespace whose
// kernel forwards, its agent programming the namespace's main table and
// making its workloads' veth pairs. Each network is a Linux bridge (br0)
// in a namespace of the lab's (BridgeNamespace), joined to each node on
// it by a veth pair whose node end is the node's interface (ens33) with
// the node's address. Nothing is made in the root namespace; destroying
// the lab's namespaces removes the bridges and every veth.

// BridgeName is the Linux bridge of a kernel lab's network, in the
// network's own namespace.
const BridgeName = "br0"

// BridgeState is one network of a deployed kernel lab: its bridge's
// namespace.
type BridgeState struct {
	Network   string `json:"network"`
	Namespace string `json:"namespace"`
}

// BridgeNamespace is the namespace of network's bridge in lab:
// vr-<lab>.<network>.br. The second dot, which no name may contain, keeps
// it apart from every node's and workload's namespace.
func BridgeNamespace(lab, network string) string {
	return topology.LabNamespacePrefix(lab) + network + ".br"
}

// bridge is a network of a kernel lab about to be provisioned.
type bridge struct {
	network   string
	namespace string
	mtu       int
	ports     []bridgePort
}

// bridgePort is a node's end of a bridge.
type bridgePort struct {
	namespace string       // the node's namespace
	iface     string       // its interface there (ens33)
	address   netip.Prefix // the node's address, with the network's length
	// proxyARPAddr: the node's network has no gateway, so its main table
	// has no default route (as in the seed); linkLocalGateway goes on
	// its lo (see addPort).
	proxyARPAddr bool
}

// linkLocalGateway is the next hop of every Calico workload's default
// route (169.254.1.1 dev eth0), which its node answers ARP for.
var linkLocalGateway = netip.MustParsePrefix("169.254.1.1/32")

// planBridges plans the bridges of kernel lab l: one per network, with a
// port for each node on it.
func planBridges(l *topology.Lab) []bridge {
	if !l.Kernel() {
		return nil
	}
	var out []bridge
	for _, n := range l.Networks {
		b := bridge{network: n.Name, namespace: BridgeNamespace(l.Name, n.Name), mtu: n.MTU}
		for _, node := range l.Nodes {
			if node.Network == n.Name {
				b.ports = append(b.ports, bridgePort{
					namespace: l.NamespaceName(node.Name),
					iface:     node.Interface,
					address:   netip.PrefixFrom(node.Address, n.CIDR.Bits()),

					proxyARPAddr: !n.Gateway.IsValid(),
				})
			}
		}
		out = append(out, b)
	}
	return out
}

// provisionBridges makes the bridges of p, the nodes' namespaces being
// there, and records them in st.
func provisionBridges(ctx context.Context, p *plan, st *State) error {
	for _, b := range p.bridges {
		if err := interrupted(ctx); err != nil {
			return err
		}
		if err := createNamespace(b.namespace); err != nil {
			return err
		}
		st.Bridges = append(st.Bridges, BridgeState{Network: b.network, Namespace: b.namespace})
		if err := b.create(); err != nil {
			return fmt.Errorf("network %s: %w", b.network, err)
		}
	}
	return nil
}

// create makes the bridge in its namespace and a veth pair per port: the
// bridge end (p0, p1, ...) enslaved to it, the node end named as the
// node's interface, with the node's address, up.
func (b bridge) create() error {
	h, err := netns.Handle(b.namespace)
	if err != nil {
		return err
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName, MTU: b.mtu}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s in %s: %w", BridgeName, b.namespace, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("set bridge %s up: %w", BridgeName, err)
	}
	for i, p := range b.ports {
		if err := b.addPort(h, br, fmt.Sprintf("p%d", i), p); err != nil {
			return err
		}
	}
	return nil
}

func (b bridge) addPort(h *netlink.Handle, br *netlink.Bridge, name string, p bridgePort) error {
	f, err := os.Open(netns.Path(p.namespace))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", p.namespace, err)
	}
	defer f.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MTU: b.mtu, MasterIndex: br.Index},
		PeerName:      p.iface,
		PeerNamespace: netlink.NsFd(int(f.Fd())),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s (%s in %s): %w", name, p.iface, p.namespace, err)
	}
	if err := h.LinkSetUp(veth); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	nh, err := netns.Handle(p.namespace)
	if err != nil {
		return err
	}
	defer nh.Close()
	l, err := nh.LinkByName(p.iface)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", p.namespace, err)
	}
	if err := nh.LinkSetMTU(l, b.mtu); err != nil {
		return fmt.Errorf("namespace %s: set %s MTU %d: %w", p.namespace, p.iface, b.mtu, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.address.Addr().AsSlice(), Mask: net.CIDRMask(p.address.Bits(), 32)}}
	if err := nh.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("namespace %s: add %s to %s: %w", p.namespace, p.address, p.iface, err)
	}
	if err := nh.LinkSetUp(l); err != nil {
		return fmt.Errorf("namespace %s: set %s up: %w", p.namespace, p.iface, err)
	}
	if p.proxyARPAddr {
		// A workload's veth answers ARP for 169.254.1.1 by proxy ARP,
		// which the kernel does only for an address it routes out of
		// another device: on a real host, through the default route.
		// Without a default route (a network without a gateway, such as
		// the seed's), the address is the node's own, on lo, scope host
		// (never a source address): the kernel answers ARP for a local
		// address on any interface, with that interface's MAC. The
		// local table holds it; `ip route` (main) shows the seed's table.
		lo, err := nh.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("namespace %s: %w", p.namespace, err)
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: linkLocalGateway.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: int(netlink.SCOPE_HOST)}
		if err := nh.AddrAdd(lo, a); err != nil {
			return fmt.Errorf("namespace %s: add %s to lo: %w", p.namespace, linkLocalGateway, err)
		}
	}
	return nil
}

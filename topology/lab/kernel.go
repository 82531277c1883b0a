package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/joint"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// Kernel-mode nodes (dataplane: kernel, lab-wide or per node) run the
// same agent with the kernel dataplane: each is a namespace whose kernel
// forwards, its agent programming the namespace's main table and making
// its workloads' veth pairs. A network with kernel nodes is a Linux bridge
// (br0) in a namespace of the lab's (BridgeNamespace), joined to each
// kernel node on it by a veth pair whose node end is the node's interface
// (ens33) with the node's address. When userspace members are on it too,
// a joint process (vrouter/joint) puts a TAP port on the bridge and stands
// for the kernel nodes on the fabric. Nothing is made in the root
// namespace; destroying the lab's namespaces removes the bridges, the
// joint's port and every veth.

// BridgeName is the Linux bridge of a kernel lab's network, in the
// network's own namespace.
const BridgeName = "br0"

// BridgeState is one network of a deployed kernel lab: its bridge's
// namespace.
type BridgeState struct {
	Network   string `json:"network"`
	Namespace string `json:"namespace"`
	// Joint is the joint's pid file, for a mixed network.
	Joint string `json:"joint,omitempty"`
}

// JointRunning reports whether the bridge has a joint to the fabric (a
// mixed network) and it runs.
func (b BridgeState) JointRunning() bool { return b.Joint != "" && processAlive(b.Joint) }

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
	// joint joins the bridge to the userspace fabric (a mixed network);
	// nil for a network of kernel nodes only.
	joint      *joint.Config
	jointPaths processPaths
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

// planBridges plans the bridges of lab l: one per network with a
// kernel-mode node on it, with a port for each such node, and a joint to
// the userspace fabric when userspace members are on it too.
func planBridges(l *topology.Lab, dir string) []bridge {
	var out []bridge
	for _, n := range l.Networks {
		if !l.KernelNetwork(n.Name) {
			continue
		}
		b := bridge{network: n.Name, namespace: BridgeNamespace(l.Name, n.Name), mtu: n.MTU}
		for _, node := range l.Nodes {
			if node.Network == n.Name && l.KernelNode(node) {
				b.ports = append(b.ports, bridgePort{
					namespace: l.NamespaceName(node.Name),
					iface:     node.Interface,
					address:   netip.PrefixFrom(node.Address, n.CIDR.Bits()),

					proxyARPAddr: !n.Gateway.IsValid(),
				})
			}
		}
		if l.MixedNetwork(n.Name) {
			b.joint = planJoint(l, dir, n, b.namespace)
			b.jointPaths = jointPaths(dir, n.Name)
		}
		out = append(out, b)
	}
	return out
}

// JointPort is the joint's TAP port on a mixed network's bridge.
const JointPort = "fab0"

// planJoint is the config of the joint of mixed network n.
func planJoint(l *topology.Lab, dir string, n topology.Network, ns string) *joint.Config {
	c := &joint.Config{Network: n.Name, FabricDir: fabricDir(dir), Namespace: ns, Bridge: BridgeName, Port: JointPort, MTU: n.MTU}
	kernel := map[string]bool{}
	for _, node := range l.Nodes {
		if node.Network == n.Name && l.KernelNode(node) {
			kernel[node.Name] = true
			c.Kernel = append(c.Kernel, joint.Member{Node: node.Name, Address: node.Address, Namespace: l.NamespaceName(node.Name), Interface: node.Interface})
		}
	}
	for _, m := range neighbors(l, n.Name) {
		if !kernel[m.Node] {
			c.Fabric = append(c.Fabric, joint.Member{Node: m.Node, Address: m.Address})
		}
	}
	return c
}

// jointPaths are the files of network's joint: nodes/<network>.joint.*
// (no node file has a dot in its base name's middle).
func jointPaths(dir, network string) processPaths {
	return memberPaths(nodesDir(dir), network+".joint")
}

// startJoints starts the joints of p's mixed networks, each in its
// bridge's namespace, and waits until each is attached to the fabric
// under every kernel node's name, so the userspace nodes find them.
func startJoints(ctx context.Context, p *plan, bin string) error {
	for _, b := range p.bridges {
		if b.joint == nil {
			continue
		}
		jp := b.jointPaths
		if err := startProcess(b.namespace, []string{bin, "joint", "run", "--config", jp.Config}, jp.Log, jp.PIDFile, nil); err != nil {
			return fmt.Errorf("network %s: start joint: %w", b.network, err)
		}
		for _, k := range b.joint.Kernel {
			sock := filepath.Join(b.joint.FabricDir, b.network, k.Node+".sock")
			for {
				if _, err := os.Stat(sock); err == nil {
					break
				}
				if !processAlive(jp.PIDFile) {
					return fmt.Errorf("network %s: joint exited; last log lines:\n%s", b.network, tail(jp.Log, 10))
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("network %s: timed out waiting for the joint", b.network)
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}
	return nil
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
		bs := BridgeState{Network: b.network, Namespace: b.namespace}
		if b.joint != nil {
			bs.Joint = b.jointPaths.PIDFile
		}
		st.Bridges = append(st.Bridges, bs)
		if err := b.create(); err != nil {
			return fmt.Errorf("network %s: %w", b.network, err)
		}
		if b.joint != nil {
			// The joint's fabric sockets are made in this namespace.
			if err := fabric.SetMaxDgramQlen(b.namespace, fabric.DefaultMaxDgramQlen); err != nil {
				return err
			}
			if err := b.joint.WriteFile(b.jointPaths.Config); err != nil {
				return fmt.Errorf("network %s: write joint config: %w", b.network, err)
			}
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

// Package topology reads and validates a vrouter lab file: one YAML file that
// describes a Calico-style network in the spirit of a containerlab topology.
//
// A lab file names the lab and lists its IP pools (cidr, blockSize,
// ipipMode), its BGP settings (asNumber, nodeToNodeMesh, timers), its underlay
// networks, its nodes and its workloads, and optionally Calico BGPPeers
// (bgpPeers) and external routers running a real BGP daemon (routers):
//
//	name: calico-bgp
//	ipPools:
//	  - {name: default-ipv4-ippool, cidr: 10.244.0.0/16, blockSize: 26, ipipMode: Never}
//	bgp: {asNumber: 64512, nodeToNodeMesh: true, keepaliveTime: 3s, holdTime: 9s}
//	networks:
//	  - {name: lan, cidr: 192.168.50.0/24, mtu: 1500}
//	nodes:
//	  node1: {network: lan, address: 192.168.50.10, interface: ens33}
//	  node2: {network: lan, address: 192.168.50.11}
//	workloads:
//	  - {name: web-1, node: node1}
//	  - {name: web-2, node: node2, address: 10.244.104.9}
//
// A node is a Calico node (kind: calico, the default) or a plain layer-3
// router between underlay networks (kind: router), which has interfaces
// (name, default eth0, eth1, ...; network; address) and static routes (dst,
// a CIDR or default; via) instead of a network and an address, and carries
// no workloads and runs no BGP. A network's gateway, the Calico nodes'
// default route, defaults to the address of the only router node on it:
//
//	networks:
//	  - {name: rack1, cidr: 192.168.50.0/24, gateway: 192.168.50.1}
//	  - {name: rack2, cidr: 192.168.60.0/24}
//	nodes:
//	  tor:
//	    kind: router
//	    interfaces:
//	      - {network: rack1, address: 192.168.50.1}
//	      - {name: eth1, network: rack2, address: 192.168.60.1}
//	    routes:
//	      - {dst: default, via: 192.168.60.254}
//
// A lab's nodes forward in their agents' userspace engines, or, with
// dataplane: kernel (at the top level, or a node's own), in the Linux
// kernels of their namespaces: a network with kernel-mode nodes is a Linux
// bridge, joined to the userspace fabric when userspace nodes or routers
// are on it too (a mixed network).
//
// [Load] and [Parse] check the whole file before anything is created: unknown
// fields, missing fields, bad values and conflicts between parts of the file
// (duplicate names or addresses, overlapping ranges, references to things
// that do not exist). Every problem found is reported, each with the file,
// the line and the field it concerns, in a [*ValidationError]. A [Lab]
// returned without error has every default applied and is consistent.
package topology

import (
	"net/netip"
	"path/filepath"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// Defaults applied to fields a lab file leaves out.
const (
	// DefaultBlockSize is the prefix length of the blocks an IP pool is
	// cut into, as in Calico: each node claims /26 blocks (64 addresses)
	// and announces each block as one route.
	DefaultBlockSize = 26
	// DefaultIPIPMode is the IPIP mode of a pool that does not say.
	DefaultIPIPMode = IPIPNever
	// DefaultASNumber is Calico's default AS number, the first private
	// 16-bit AS (RFC 6996).
	DefaultASNumber uint32 = 64512
	// DefaultNodeToNodeMesh: every node peers with every other node.
	DefaultNodeToNodeMesh = true
	// DefaultKeepaliveTime is the BGP keepalive interval. It is short so
	// that a lab notices a dead peer quickly.
	DefaultKeepaliveTime = 3 * time.Second
	// DefaultHoldTime is the BGP hold time, three keepalive intervals as
	// RFC 4271 suggests.
	DefaultHoldTime = 9 * time.Second
	// DefaultRestartTime is the graceful restart time, BIRD's default.
	DefaultRestartTime = 120 * time.Second
	// MaxRestartTime is the largest restart time the graceful restart
	// capability carries (12 bits of seconds).
	MaxRestartTime = 4095 * time.Second
	// DefaultMTU is the MTU of an underlay network.
	DefaultMTU = 1500
	// DefaultInterface is the name of a node's underlay interface, as in
	// the Calico articles the labs reproduce.
	DefaultInterface = "ens33"
)

// Limits checked by validation.
const (
	// MinBlockSize and MaxBlockSize bound an IPv4 pool's blockSize, as
	// Calico does.
	MinBlockSize, MaxBlockSize = 20, 32
	// MinMTU and MaxMTU bound an underlay network's MTU: from the IPv4
	// minimum datagram size every host must accept to a jumbo frame.
	MinMTU, MaxMTU = 576, 9000
	// MaxLabNameLen is the longest lab name. The lab name is part of every
	// namespace name and of the state directory.
	MaxLabNameLen = 16
	// MaxNameLen is the longest node, workload or network name.
	MaxNameLen = 40
	// ASTrans is AS_TRANS (RFC 6793), the placeholder a 4-byte AS number
	// takes in a 2-byte field; no BGP speaker may use it as its own AS.
	ASTrans uint32 = 23456
	// MaxWorkloadsPerNode is the most workloads one node serves, in the
	// lab file and with `vrouter workload add`. A test deploys a node with
	// this many and holds its agent to at most 100 KB of memory (RSS) per
	// workload; docs/benchmarks.md has the measurement.
	MaxWorkloadsPerNode = 1000
)

// StateRoot is the directory under which each lab keeps its state
// (see [Lab.StateDir]). Tests may point it elsewhere.
var StateRoot = "/run/vrouter"

// NamespacePrefix starts the name of every network namespace a lab creates.
const NamespacePrefix = "vr-"

// Lab is a validated lab file with every default applied.
type Lab struct {
	// Name names the lab; it is part of every namespace the lab creates.
	Name string
	// IPPools are the ranges workload addresses are allocated from, in
	// file order.
	IPPools []IPPool
	// IPAM holds the cluster-wide IPAM settings.
	IPAM IPAM `json:",omitzero"`
	// BGP holds the cluster-wide BGP settings.
	BGP BGP
	// Networks are the underlay networks that connect nodes, in file order.
	Networks []Network
	// Nodes are the Calico nodes, in file order (router nodes are in
	// RouterNodes).
	Nodes []Node
	// Workloads are the endpoints (Calico's pods), in file order.
	Workloads []Workload
	// BGPPeers are the BGP peerings beyond the node-to-node mesh (Calico's
	// BGPPeer resources), in file order.
	BGPPeers []BGPPeer `json:",omitempty"`
	// Routers are the external routers running real BGP daemons, in file
	// order.
	Routers []Router `json:",omitempty"`
	// RouterNodes are the nodes of kind router (plain layer-3 routers
	// between underlay networks), in file order. They are not in Nodes,
	// which holds Calico nodes only.
	RouterNodes []RouterNode `json:",omitempty"`
	// Dataplane is what forwards the nodes' packets: DataplaneUserspace
	// (the default; empty in a state written before labs had one) or
	// DataplaneKernel.
	Dataplane string `json:",omitempty"`
	// Datastore is where the nodes keep IPAM state: DatastoreBolt (the
	// default; empty in a state written before labs had one), a file in
	// the lab's state directory, or DatastoreEtcd, an etcd cluster the lab
	// runs (topology/lab's etcd.go).
	Datastore string `json:",omitempty"`
	// Policies are the network policies (Calico's NetworkPolicy and
	// GlobalNetworkPolicy), in file order, with Calico's defaults.
	Policies []policy.Policy `json:",omitempty"`
}

// The datastores of a lab (the lab file's datastore field).
const (
	// DatastoreBolt: a bbolt file in the lab's state directory, shared by
	// the node agents of the one machine.
	DatastoreBolt = "bbolt"
	// DatastoreEtcd: a 3-member etcd cluster in namespaces of the lab's,
	// on a network of its own that every calico node joins.
	DatastoreEtcd = "etcd"
)

// Etcd reports whether the lab's nodes keep their state in etcd.
func (l *Lab) Etcd() bool { return l.Datastore == DatastoreEtcd }

// EtcdMemberNames are the names of an etcd lab's members, which no node,
// router or workload of the lab may take.
func EtcdMemberNames() []string { return []string{"etcd0", "etcd1", "etcd2"} }

// EtcdInterface is the interface of a calico node of an etcd lab on the
// lab's etcd network.
const EtcdInterface = "mgmt0"

// EtcdSubnetBits is the length of an etcd lab's etcd network: room for
// the members and MaxNodes nodes.
const EtcdSubnetBits = 22

// etcdSubnetRange is where an etcd lab's etcd network is taken from: the
// benchmarking range of RFC 2544, which no real network routes.
var etcdSubnetRange = netip.MustParsePrefix("198.18.0.0/15")

// EtcdSubnet returns the etcd network of an etcd lab: the first
// EtcdSubnetBits-long prefix of 198.18.0.0/15 that overlaps none of the
// lab's networks, pools, external routers' announced prefixes and peer
// addresses. found is false when there is none.
func (l *Lab) EtcdSubnet() (netip.Prefix, bool) {
	var taken []netip.Prefix
	for _, n := range l.Networks {
		taken = append(taken, n.CIDR)
	}
	for _, p := range l.IPPools {
		taken = append(taken, p.CIDR)
	}
	for _, r := range l.Routers {
		taken = append(taken, r.Announce...)
	}
	for _, bp := range l.BGPPeers {
		if bp.PeerIP.IsValid() {
			taken = append(taken, netip.PrefixFrom(bp.PeerIP, 32))
		}
	}
	start := etcdSubnetRange.Addr().As4()
	size := uint32(1) << (32 - EtcdSubnetBits)
	base := uint32(start[0])<<24 | uint32(start[1])<<16 | uint32(start[2])<<8 | uint32(start[3])
	for i := range uint32(1) << (EtcdSubnetBits - etcdSubnetRange.Bits()) {
		a := base + i*size
		c := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), EtcdSubnetBits)
		free := true
		for _, t := range taken {
			if t.Overlaps(c) {
				free = false
				break
			}
		}
		if free {
			return c, true
		}
	}
	return netip.Prefix{}, false
}

// The dataplanes of a lab (the lab file's dataplane field).
const (
	// DataplaneUserspace: each node's agent forwards in its userspace
	// engine; the networks are the lab's userspace fabric.
	DataplaneUserspace = "userspace"
	// DataplaneKernel: each node is a namespace whose Linux kernel
	// forwards, programmed by its agent; each network is a Linux bridge
	// in a namespace of the lab's, joined to the nodes by veth pairs.
	DataplaneKernel = "kernel"
)

// Kernel reports whether the lab's nodes forward in their kernels unless
// they say otherwise (the lab file's top-level dataplane).
func (l *Lab) Kernel() bool { return l.Dataplane == DataplaneKernel }

// NodeDataplane returns the dataplane of node n: its own, else the lab's,
// else DataplaneUserspace.
func (l *Lab) NodeDataplane(n Node) string {
	switch {
	case n.Dataplane != "":
		return n.Dataplane
	case l.Dataplane != "":
		return l.Dataplane
	}
	return DataplaneUserspace
}

// KernelNode reports whether node n forwards in its kernel.
func (l *Lab) KernelNode(n Node) bool { return l.NodeDataplane(n) == DataplaneKernel }

// KernelNetwork reports whether a kernel-mode node is on network, which
// is then a Linux bridge (joined to the userspace fabric if a userspace
// member is on it too: see MixedNetwork).
func (l *Lab) KernelNetwork(network string) bool {
	for _, n := range l.Nodes {
		if n.Network == network && l.KernelNode(n) {
			return true
		}
	}
	return false
}

// MixedNetwork reports whether network has kernel-mode nodes and members
// on the userspace fabric (userspace nodes, routers) both.
func (l *Lab) MixedNetwork(network string) bool {
	if !l.KernelNetwork(network) {
		return false
	}
	for _, n := range l.Nodes {
		if n.Network == network && !l.KernelNode(n) {
			return true
		}
	}
	for _, r := range l.Routers {
		if r.Network == network {
			return true
		}
	}
	for _, r := range l.RouterNodes {
		if _, ok := r.InterfaceOn(network); ok {
			return true
		}
	}
	return false
}

// IPAM is Calico's IPAMConfiguration.
type IPAM struct {
	// StrictAffinity forbids borrowing: a node whose blocks are full and
	// finds no free block gets an error instead of an address from another
	// node's block.
	StrictAffinity bool `json:",omitempty"`
}

// BGPPeer is Calico's BGPPeer resource: which nodes (Node, NodeSelector, or
// every node when both are empty) peer with which peers (PeerIP, or the lab
// nodes PeerSelector selects). Exactly one of PeerIP and PeerSelector is
// set, and at most one of Node and NodeSelector.
type BGPPeer struct {
	// Name names the peering.
	Name string
	// PeerIP is the address of the peer, inside or outside the lab.
	PeerIP netip.Addr `json:",omitzero"`
	// PeerSelector selects lab nodes to peer with (each selected node also
	// peers back, as Calico configures both ends).
	PeerSelector string `json:",omitempty"`
	// Node restricts the peering to one node ("node specific").
	Node string `json:",omitempty"`
	// NodeSelector restricts the peering to the nodes it selects.
	NodeSelector string `json:",omitempty"`
	// ASNumber is the peer's AS for a PeerIP peer; a PeerSelector peer's
	// AS is each selected node's own.
	ASNumber uint32 `json:",omitempty"`
	// Password is the TCP MD5 key (RFC 2385) of the sessions, if any.
	Password string `json:",omitempty"`
}

// Global reports whether the peering applies to every node without
// restriction. As in Calico, a peering with a node or a node selector (even
// all()) is "node specific"; only one with neither is "global".
func (p BGPPeer) Global() bool { return p.Node == "" && p.NodeSelector == "" }

// AppliesTo reports whether the node n is one of the local ends of p.
func (p BGPPeer) AppliesTo(n Node) bool {
	switch {
	case p.Node != "":
		return p.Node == n.Name
	case p.NodeSelector != "":
		return MustParseSelector(p.NodeSelector).Matches(n.Labels)
	}
	return true
}

// Peers returns the lab nodes p's PeerSelector selects (none for a PeerIP
// peering).
func (l *Lab) Peers(p BGPPeer) []Node {
	if p.PeerSelector == "" {
		return nil
	}
	sel := MustParseSelector(p.PeerSelector)
	var out []Node
	for _, n := range l.Nodes {
		if sel.Matches(n.Labels) {
			out = append(out, n)
		}
	}
	return out
}

// IPIPMode says when traffic between workloads on different nodes is
// encapsulated in IPIP (RFC 2003). The values are Calico's, spelled as
// Calico spells them.
type IPIPMode string

// The IPIP modes of an IP pool.
const (
	// IPIPNever routes workload traffic unencapsulated: the next hop of a
	// block is the node that owns it, reached over the underlay interface.
	IPIPNever IPIPMode = "Never"
	// IPIPAlways encapsulates all traffic to other nodes through tunl0.
	IPIPAlways IPIPMode = "Always"
	// IPIPCrossSubnet encapsulates only traffic to nodes on another
	// underlay network.
	IPIPCrossSubnet IPIPMode = "CrossSubnet"
)

// IPPool is a range of workload addresses, Calico's IPPool resource.
type IPPool struct {
	// Name names the pool (Calico's default is default-ipv4-ippool).
	Name string
	// CIDR is the pool's range; it has no host bits set.
	CIDR netip.Prefix
	// BlockSize is the prefix length of the blocks the pool is cut into;
	// nodes claim blocks and announce one route per block.
	BlockSize int
	// IPIPMode says when traffic to this pool's addresses is encapsulated.
	IPIPMode IPIPMode
	// MTU is the MTU of the interfaces of workloads with addresses from
	// the pool; 0 means Calico's choice, Lab.WorkloadMTU.
	MTU int `json:",omitempty"`
}

// WorkloadMTU is the MTU of a workload with an address from p on a node of
// network n: the pool's MTU if set, else the network's, or, when the pool
// may encapsulate, the smallest network's minus the IPIP header (as
// Calico's auto-detection does on one network: a tunnel packet may cross
// any of them, and a router cannot cut an IPIP super-packet).
func (l *Lab) WorkloadMTU(p IPPool, n Network) int {
	if p.MTU != 0 {
		return p.MTU
	}
	if p.IPIPMode == IPIPAlways || p.IPIPMode == IPIPCrossSubnet {
		m := n.MTU
		for _, o := range l.Networks {
			m = min(m, o.MTU)
		}
		return m - 20
	}
	return n.MTU
}

// BGP holds the lab-wide BGP settings, Calico's BGPConfiguration.
type BGP struct {
	// ASNumber is the AS every node belongs to.
	ASNumber uint32
	// NodeToNodeMesh makes every node peer with every other node (iBGP
	// full mesh).
	NodeToNodeMesh bool
	// KeepaliveTime is the interval between BGP KEEPALIVE messages.
	KeepaliveTime time.Duration
	// HoldTime is how long a session stays up without a message from the
	// peer; 0 disables it (RFC 4271).
	HoldTime time.Duration
	// GracefulRestart enables BGP graceful restart (RFC 4724) between the
	// nodes, as Calico's BIRD configuration does: when a node's agent
	// restarts, its peers keep its routes (stale) for up to RestartTime
	// and the restarting node keeps forwarding along the routes it had,
	// until the sessions are back and the routes refreshed.
	GracefulRestart bool
	// RestartTime is the time a node asks its peers to keep its routes
	// while it restarts.
	RestartTime time.Duration
}

// Network is an underlay network connecting nodes, like the LAN the
// nodes' ens33 interfaces sit on.
type Network struct {
	// Name names the network.
	Name string
	// CIDR is the network's subnet; it has no host bits set.
	CIDR netip.Prefix
	// MTU is the largest packet the network carries.
	MTU int
	// Gateway is the default gateway of the Calico nodes on the network
	// (`default via GATEWAY dev ens33 proto static`): by default the
	// address of the only router node on the network, if there is one;
	// the zero Addr means none, and the nodes reach only their own
	// network.
	Gateway netip.Addr `json:",omitzero"`
}

// Node is a router: in a lab, a network namespace running `vrouter node run`.
type Node struct {
	// Name names the node.
	Name string
	// Network is the name of the underlay network the node is on.
	Network string
	// Address is the node's address on that network; BGP runs over it.
	Address netip.Addr
	// Interface is the name of the node's underlay interface.
	Interface string
	// ASNumber is the node's own AS (Calico's spec.bgp.asNumber); the lab's
	// bgp.asNumber unless the file says otherwise. Nodes in different ASes
	// peer over eBGP.
	ASNumber uint32 `json:",omitempty"`
	// Labels are the node's labels, which BGPPeer selectors match.
	Labels map[string]string `json:",omitempty"`
	// RouteReflectorClusterID makes the node a route reflector with this
	// cluster ID (Calico's spec.bgp.routeReflectorClusterID); the zero Addr
	// means it is not one.
	RouteReflectorClusterID netip.Addr `json:",omitzero"`
	// CPUSet pins the node's agent (its engine and BGP) to these CPUs, as
	// containerlab's cpu-set pins a container; empty means any CPU.
	CPUSet []int `json:",omitempty"`
	// Impairment is what the node's underlay link does to the frames
	// the node sends (the file's impairments: delay, jitter, loss,
	// rate), as `vrouter link set NODE --delay` sets it; zero: none.
	Impairment config.Impairment `json:",omitzero"`
	// Dataplane is what forwards the node's packets, DataplaneUserspace
	// or DataplaneKernel, when the node's dataplane field says; empty
	// means the lab's (see Lab.NodeDataplane).
	Dataplane string `json:",omitempty"`
}

// RouteReflector reports whether the node is a route reflector.
func (n Node) RouteReflector() bool { return n.RouteReflectorClusterID.IsValid() }

// Workload is an endpoint attached to a node (Calico's pod).
type Workload struct {
	// Name names the workload.
	Name string
	// Node is the name of the node the workload is attached to.
	Node string
	// Address is the workload's fixed address; the zero Addr means the
	// node allocates one from its blocks.
	Address netip.Addr
	// Namespace is the workload's namespace; empty means
	// policy.DefaultNamespace ("default"). NetworkPolicies apply within
	// their namespace.
	Namespace string `json:",omitempty"`
	// Labels are the workload's labels, which policy selectors match.
	Labels map[string]string `json:",omitempty"`
	// Stack is what runs the workload's TCP/IP: empty for a network
	// namespace (config.StackNamespace), config.StackNetstack for a
	// gVisor stack inside the node agent.
	Stack string `json:",omitempty"`
	// Serve are the services a netstack workload runs, as
	// netstack.ParseService reads them (tcp:80:http, udp:53:echo).
	Serve []string `json:",omitempty"`
}

// Endpoints returns the lab's workloads as policy endpoints, with the
// addresses addr gives (a workload's fixed address when addr has none).
func (l *Lab) Endpoints(addr func(workload string) netip.Addr) []policy.Endpoint {
	eps := make([]policy.Endpoint, 0, len(l.Workloads))
	for _, w := range l.Workloads {
		a := w.Address
		if addr != nil {
			if x := addr(w.Name); x.IsValid() {
				a = x
			}
		}
		eps = append(eps, policy.Endpoint{Name: w.Name, Namespace: w.Namespace, Labels: w.Labels, Addr: a})
	}
	return eps
}

// IsNetstack reports whether w runs in a gVisor stack in its node's agent
// (no namespace).
func (w Workload) IsNetstack() bool { return w.Stack == config.StackNetstack }

// Node returns the node called name.
func (l *Lab) Node(name string) (Node, bool) {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Workload returns the workload called name.
func (l *Lab) Workload(name string) (Workload, bool) {
	for _, w := range l.Workloads {
		if w.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}

// Network returns the underlay network called name.
func (l *Lab) Network(name string) (Network, bool) {
	for _, n := range l.Networks {
		if n.Name == name {
			return n, true
		}
	}
	return Network{}, false
}

// NetworkOf returns the underlay network of the node called node.
func (l *Lab) NetworkOf(node string) (Network, bool) {
	n, ok := l.Node(node)
	if !ok {
		return Network{}, false
	}
	return l.Network(n.Network)
}

// PoolFor returns the IP pool that contains addr.
func (l *Lab) PoolFor(addr netip.Addr) (IPPool, bool) {
	for _, p := range l.IPPools {
		if p.CIDR.Contains(addr) {
			return p, true
		}
	}
	return IPPool{}, false
}

// NamespaceName returns the name of the network namespace of the node or
// workload called name: vr-<lab>.<name>. The dot, which no name may
// contain, keeps lab "a" node "b-c" apart from lab "a-b" node "c".
func (l *Lab) NamespaceName(name string) string {
	return LabNamespacePrefix(l.Name) + name
}

// LabNamespacePrefix starts the name of every namespace of the lab called
// lab, and of no other lab's: vr-<lab>.
func LabNamespacePrefix(lab string) string {
	return NamespacePrefix + lab + "."
}

// StateDir returns the lab's state directory, <StateRoot>/<lab>.
func (l *Lab) StateDir() string {
	return filepath.Join(StateRoot, l.Name)
}

package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"golang.org/x/sys/unix"
)

// calicoNode is a Calico node (kind: calico, the default): the vrouter
// node agent, `vrouter node run`, with its BGP speaker, IPAM blocks,
// workloads and tunl0, in the node's namespace.
type calicoNode struct {
	ns        NodeState
	cfg       *config.Node // the agent's config; nil for a node of a deployed lab
	cpus      []int        // the CPUs it runs on (cpuSet); any when empty
	workloads int          // how many workloads it serves at start
	// meshPeers: with the mesh from etcd, how many sessions the node
	// has once every node of the lab file registered; ready waits for
	// them (the agent alone counts only the nodes it has seen).
	meshPeers int
	last      *control.Status
}

// planCalicoNode computes node n's agent config and files.
func planCalicoNode(l *topology.Lab, dir string, n topology.Node) (*calicoNode, error) {
	cfg, err := nodeConfig(l, dir, n)
	if err != nil {
		return nil, err
	}
	files := nodePaths(dir, n.Name)
	return &calicoNode{
		ns: NodeState{
			Name:      n.Name,
			Namespace: cfg.Namespace,
			Address:   n.Address,
			Network:   n.Network,
			Interface: n.Interface,
			Config:    files.Config,
			Control:   cfg.Control,
			Log:       files.Log,
			PIDFile:   files.PIDFile,
		},
		cfg:       cfg,
		cpus:      n.CPUSet,
		workloads: len(cfg.Workloads),
		meshPeers: meshPeers(l, n, cfg),
	}, nil
}

func (c *calicoNode) Name() string                { return c.ns.Name }
func (c *calicoNode) Kind() string                { return topology.KindCalico }
func (c *calicoNode) Namespace() string           { return c.ns.Namespace }
func (c *calicoNode) CLI(args ...string) []string { return nil }
func (c *calicoNode) frrGroup() bool              { return false }
func (c *calicoNode) record(st *State)            { st.Nodes = append(st.Nodes, c.ns) }
func (c *calicoNode) cleanup()                    {}

// Status asks the agent.
func (c *calicoNode) Status(ctx context.Context, w io.Writer) error {
	s, err := control.NewClient(c.ns.Control).Status(ctx)
	return control.WriteNodeStatus(w, s, err)
}

// check checks that every CPU of the node's cpuSet is one this process
// may run on. The agent is this executable.
func (c *calicoNode) check() error {
	var avail unix.CPUSet
	if err := unix.SchedGetaffinity(0, &avail); err != nil {
		return fmt.Errorf("read CPU affinity: %w", err)
	}
	for _, cpu := range c.cpus {
		if !avail.IsSet(cpu) {
			return fmt.Errorf("node %s: cpuSet %s: CPU %d is not available here (this machine has %d CPUs, 0-%d)",
				c.ns.Name, topology.FormatCPUSet(c.cpus), cpu, runtime.NumCPU(), runtime.NumCPU()-1)
		}
	}
	return nil
}

func (c *calicoNode) prepare() error {
	if err := c.cfg.WriteFile(c.ns.Config); err != nil {
		return fmt.Errorf("node %s: write config: %w", c.ns.Name, err)
	}
	return nil
}

// start starts `vrouter node run` inside the node's namespace, detached
// from the caller (own session, output to the node's log file), on its
// CPUs. It does not wait for the agent: ready does.
func (c *calicoNode) start(_ context.Context, env startEnv) error {
	if err := startProcess(c.ns.Namespace, []string{env.bin, "node", "run", "--config", c.ns.Config}, c.ns.Log, c.ns.PIDFile, c.cpus); err != nil {
		return fmt.Errorf("node %s: start agent: %w", c.ns.Name, err)
	}
	env.progress("node %s: agent started in namespace %s", c.ns.Name, c.ns.Namespace)
	return nil
}

func (c *calicoNode) running() error {
	if !processAlive(c.ns.PIDFile) {
		return fmt.Errorf("node %s: agent exited; last log lines:\n%s", c.ns.Name, tail(c.ns.Log, 10))
	}
	return nil
}

// ready: every BGP session Established and every remote block routed.
func (c *calicoNode) ready(ctx context.Context, anyState bool) (bool, string) {
	s, err := control.NewClient(c.ns.Control).Status(ctx)
	if err != nil {
		return false, ""
	}
	c.last = s
	if (!s.Ready || s.PeersEstablished < c.meshPeers) && !anyState {
		return false, ""
	}
	return true, fmt.Sprintf("node %s: %d BGP sessions Established, %d routes", c.ns.Name, s.PeersEstablished, s.Routes)
}

// waitingFor says what the node waits for, from its last status (none: it
// never answered).
func (c *calicoNode) waitingFor() string {
	s := c.last
	if s == nil {
		return fmt.Sprintf("the agent (resources): it never answered on %s while starting (opening its TUN devices and %d workloads); see %s", c.ns.Control, c.workloads, c.ns.Log)
	}
	var down []string
	for _, p := range s.Peers {
		if p.State != bgp.StateEstablished {
			d := p.Address.String() + " " + p.State
			if p.Info != "" {
				d += " (" + p.Info + ")"
			}
			down = append(down, d)
		}
	}
	if len(down) > 0 {
		return fmt.Sprintf("BGP: %d of %d sessions Established; not up: %s", s.PeersEstablished, len(s.Peers), strings.Join(down, ", "))
	}
	if s.PeersEstablished < c.meshPeers {
		return fmt.Sprintf("BGP: %d of the lab's %d sessions Established (the mesh from etcd: the other nodes are not all registered and up yet)", s.PeersEstablished, c.meshPeers)
	}
	return fmt.Sprintf("routes: every BGP session is Established, but not every other node's blocks are routed yet (%d routes)", s.Routes)
}

// nodeConfig builds the agent config of one node from the lab file.
func nodeConfig(l *topology.Lab, dir string, n topology.Node) (*config.Node, error) {
	net, ok := l.NetworkOf(n.Name)
	if !ok {
		return nil, fmt.Errorf("node %s: unknown network %s", n.Name, n.Network)
	}
	c := &config.Node{
		Lab:            l.Name,
		Node:           n.Name,
		Control:        ControlSocket(dir, n.Name),
		Fabric:         fabricDir(dir),
		Routes:         routesPath(dir, n.Name),
		AddedWorkloads: addedWorkloadsPath(dir, n.Name),
		StateDir:       dir,
		Namespace:      l.NamespaceName(n.Name),
		Network:        net.Name,
		Prefix:         netip.PrefixFrom(n.Address, net.CIDR.Bits()),
		Interface:      n.Interface,
		MTU:            net.MTU,
		Datastore:      ipamPath(dir),
		StrictAffinity: l.IPAM.StrictAffinity,
		BGP: config.BGP{
			ASN:           nodeASN(l, n),
			KeepaliveTime: l.BGP.KeepaliveTime,
			HoldTime:      l.BGP.HoldTime,

			GracefulRestart: l.BGP.GracefulRestart,
			RestartTime:     l.BGP.RestartTime,
		},
	}
	if l.Etcd() {
		// The lab's etcd cluster, reached through the node's mgmt0
		// (etcd.go).
		eps, err := etcdEndpoints(l)
		if err != nil {
			return nil, err
		}
		c.Datastore, c.DatastoreType = "", config.DatastoreEtcd
		c.Etcd = config.Etcd{Endpoints: eps, Timeout: labEtcdTimeout}
		// The node registers itself and meshes with the nodes registered
		// in etcd, as Calico's do, not with the lab file's list.
		c.MeshFromDatastore = true
		c.Labels, c.RouteReflectorClusterID = n.Labels, n.RouteReflectorClusterID
	}
	if l.KernelNode(n) {
		// The node's kernel forwards, on the veth its network's bridge
		// joins (kernel.go); the agent makes its workloads' veths.
		c.Dataplane, c.Fabric = config.DataplaneKernel, ""
	}
	c.Neighbors = neighbors(l, n.Network)
	if !n.Impairment.IsZero() {
		imp := n.Impairment
		c.Impairment = &imp
	}
	c.Gateway = net.Gateway
	for _, o := range l.Nodes {
		c.TunnelSources = append(c.TunnelSources, o.Address)
	}
	c.BGP.Peers = bgpPeers(l, n)
	c.BGP.RouteNodes = routeNodes(l, n)
	if c.MeshFromDatastore {
		// The mesh comes from etcd: the config keeps the BGPPeers' peers
		// alone. RouteNodes stay the lab file's, so that deploy waits
		// for the blocks of the nodes the lab file meshes with.
		noMesh := *l
		noMesh.BGP.NodeToNodeMesh = false
		c.BGP.Peers = bgpPeers(&noMesh, n)
	}
	for _, p := range l.IPPools {
		c.Pools = append(c.Pools, config.Pool{Name: p.Name, CIDR: p.CIDR, BlockSize: p.BlockSize, IPIPMode: string(p.IPIPMode), MTU: l.WorkloadMTU(p, net)})
	}
	for _, w := range l.Workloads {
		if w.Node == n.Name {
			c.Workloads = append(c.Workloads, workloadConfig(l.Name, w))
		}
	}
	return c, nil
}

// meshType is the type of a node-to-node mesh peering (config.BGPPeer's
// Type, as calicoctl node status prints it).
const meshType = "node-to-node mesh"

// meshPeers is how many BGP sessions node n, whose mesh comes from
// etcd, has once every node of lab l registered: those its config
// would list with the mesh from the lab file. Zero without a mesh from
// etcd.
func meshPeers(l *topology.Lab, n topology.Node, cfg *config.Node) int {
	if !cfg.MeshFromDatastore {
		return 0
	}
	return len(bgpPeers(l, n))
}

// labEtcdTimeout bounds an etcd lab's agents' datastore transactions:
// with etcd down, a workload add fails with the agent's error naming etcd
// before the control client (10s) gives up on the agent.
const labEtcdTimeout = 3 * time.Second

// nodeASN is the AS of node n: its own, or the lab's for a lab state
// written before nodes had one.
func nodeASN(l *topology.Lab, n topology.Node) uint32 {
	if n.ASNumber != 0 {
		return n.ASNumber
	}
	return l.BGP.ASNumber
}

// bgpPeers computes node n's BGP peers as Calico does: the node-to-node
// mesh (each peer in its own AS, so nodes in different ASes mesh over
// eBGP), then every BGPPeer that applies to n. A peerSelector peering is
// configured at both ends: the nodes it applies to peer with the selected
// nodes, and the selected nodes peer back. A route reflector (a node with
// a cluster ID) treats an iBGP peer that is not a route reflector as its
// client; two route reflectors peer as plain iBGP. The first peering of an
// address wins.
func bgpPeers(l *topology.Lab, n topology.Node) []config.BGPPeer {
	var out []config.BGPPeer
	seen := map[netip.Addr]bool{n.Address: true}
	byAddr := map[netip.Addr]topology.Node{}
	for _, o := range l.Nodes {
		byAddr[o.Address] = o
	}
	add := func(p config.BGPPeer) {
		if seen[p.Address] {
			return
		}
		seen[p.Address] = true
		if net, ok := l.Network(n.Network); ok && p.ASN != nodeASN(l, n) && net.CIDR.Contains(p.Address) {
			// An eBGP peer on the node's own network is sent every
			// block with the owning node as next hop, as BIRD (Calico's
			// daemon) does for a peer on a shared subnet.
			_, isNode := byAddr[p.Address]
			p.KeepOriginalNextHop = !isNode
		}
		if o, isNode := byAddr[p.Address]; isNode {
			p.Node = o.Name
			if n.RouteReflector() && !o.RouteReflector() && p.ASN == nodeASN(l, n) {
				p.RouteReflectorClient, p.ClusterID = true, n.RouteReflectorClusterID
			}
		}
		out = append(out, p)
	}
	if l.BGP.NodeToNodeMesh {
		for _, o := range l.Nodes {
			add(config.BGPPeer{Address: o.Address, ASN: nodeASN(l, o), Type: meshType})
		}
	}
	for _, bp := range l.BGPPeers {
		typ := "node specific"
		if bp.Global() {
			typ = "global"
		}
		peer := func(addr netip.Addr, asn uint32) {
			add(config.BGPPeer{Address: addr, ASN: asn, Type: typ, Name: bp.Name, Password: bp.Password})
		}
		local := bp.AppliesTo(n)
		if bp.PeerIP.IsValid() {
			if local {
				peer(bp.PeerIP, bp.ASNumber)
			}
			continue
		}
		selected := l.Peers(bp)
		if local {
			for _, o := range selected {
				peer(o.Address, nodeASN(l, o))
			}
		}
		for _, o := range selected {
			if o.Name != n.Name {
				continue
			}
			// n is selected: it peers back with every node the peering
			// applies to.
			for _, o := range l.Nodes {
				if bp.AppliesTo(o) {
					peer(o.Address, nodeASN(l, o))
				}
			}
		}
	}
	return out
}

// routeNodes lists the lab nodes whose blocks node n learns: those it peers
// with, and those a route reflector among its peers reflects to it (a
// reflector passes its clients' routes to every peer, and every peer's
// routes to its clients).
func routeNodes(l *topology.Lab, n topology.Node) []string {
	set := map[string]bool{}
	for _, p := range bgpPeers(l, n) {
		if p.Node == "" {
			continue
		}
		set[p.Node] = true
		rr, _ := l.Node(p.Node)
		if !rr.RouteReflector() {
			continue
		}
		var nIsClient bool
		rrPeers := bgpPeers(l, rr)
		for _, q := range rrPeers {
			if q.Node == n.Name {
				nIsClient = q.RouteReflectorClient
			}
		}
		for _, q := range rrPeers {
			if q.Node != "" && q.Node != n.Name && (nIsClient || q.RouteReflectorClient) {
				set[q.Node] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for _, o := range l.Nodes {
		if set[o.Name] {
			out = append(out, o.Name)
		}
	}
	return out
}

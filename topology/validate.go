package topology

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// Names of labs, networks, nodes and workloads are DNS-1123 labels; pool
// names are DNS-1123 subdomains, as Calico's resource names are.
var (
	labelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	subdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// reservedRanges may hold neither pools nor underlay networks.
var reservedRanges = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `the "this network" range 0.0.0.0/8`},
	{netip.MustParsePrefix("127.0.0.0/8"), "the loopback range 127.0.0.0/8"},
	{netip.MustParsePrefix("169.254.0.0/16"), "the link-local range 169.254.0.0/16"},
	{netip.MustParsePrefix("224.0.0.0/4"), "the multicast range 224.0.0.0/4"},
	{netip.MustParsePrefix("240.0.0.0/4"), "the reserved range 240.0.0.0/4"},
}

// maxNetworkBits is the longest prefix of an underlay network: a /30 has a
// network address, two node addresses and a broadcast address.
const maxNetworkBits = 30

// checkName returns what is wrong with a lab, network, node or workload
// name, or "".
func checkName(s string, limit int, what, why string) string {
	if !labelRE.MatchString(s) {
		msg := fmt.Sprintf("%q is not a valid %s name: use lowercase letters, digits and '-', starting and ending with a letter or digit", Shorten(s), what)
		if l := strings.ToLower(s); l != s && labelRE.MatchString(l) && len(l) <= limit {
			msg += fmt.Sprintf("; did you mean %q?", l)
		}
		return msg
	}
	if len(s) > limit {
		return fmt.Sprintf("%q is %d characters long; %s names are at most %d%s", Shorten(s), len(s), what, limit, why)
	}
	return ""
}

// checkPoolName returns what is wrong with an IP pool name, or "".
func checkPoolName(s string) string {
	if len(s) > 253 || !subdomainRE.MatchString(s) {
		return fmt.Sprintf("%q is not a valid IP pool name: use lowercase letters, digits, '-' and '.', at most 253 characters, like default-ipv4-ippool", s)
	}
	return ""
}

// checkInterface returns what is wrong with a node's underlay interface
// name, or "". Linux accepts 1-15 bytes without '/', ':' or whitespace,
// other than "." and ".."; control characters are refused too, and names
// the node's engine uses itself.
func checkInterface(s string) string {
	switch {
	case len(s) > 15:
		return fmt.Sprintf("%q is %d bytes long; Linux interface names are at most 15", s, len(s))
	case s == "." || s == "..":
		return fmt.Sprintf("%q is not a valid Linux interface name", s)
	case s == "lo":
		return "lo is the loopback interface; pick another name, such as ens33"
	case s == "tunl0":
		return "tunl0 is the node's IPIP tunnel device; pick another name, such as ens33"
	case strings.HasPrefix(s, "cali"):
		return fmt.Sprintf("%q starts with cali, which is reserved for workload interfaces; pick another name, such as ens33", s)
	}
	for _, c := range []byte(s) {
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Sprintf("%q contains %q, which a Linux interface name cannot contain", s, c)
		}
	}
	return ""
}

// reservedOverlap returns the reserved range c overlaps, or "".
func reservedOverlap(c netip.Prefix) string {
	for _, r := range reservedRanges {
		if r.prefix.Overlaps(c) {
			return r.what
		}
	}
	return ""
}

// broadcast returns the last address of the IPv4 prefix c.
func broadcast(c netip.Prefix) netip.Addr {
	a := c.Masked().Addr().As4()
	u := binary.BigEndian.Uint32(a[:]) | uint32(1<<(32-c.Bits())-1)
	binary.BigEndian.PutUint32(a[:], u)
	return netip.AddrFrom4(a)
}

// maxKnown is the most names a "(known: ...)" hint lists.
const maxKnown = 10

// known lists names for "(known: ...)" hints: the first maxKnown in sort
// order, then how many there are in all. It costs one pass over names, not
// a sort, since a lab may give it a thousand names a hundred thousand times.
func known(names map[string]int) string {
	if len(names) == 0 {
		return "none are defined"
	}
	list := make([]string, 0, maxKnown+1)
	for n := range names {
		if len(list) == maxKnown && n > list[maxKnown-1] {
			continue
		}
		i := sort.SearchStrings(list, n)
		list = append(list, "")
		copy(list[i+1:], list[i:])
		list[i] = n
		if len(list) > maxKnown {
			list = list[:maxKnown]
		}
	}
	s := "known: " + strings.Join(list, ", ")
	if len(names) > maxKnown {
		s += fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return s
}

// check relates the fields of a raw lab to each other, applies defaults and
// returns the lab. The lab is meaningful only if no problem was reported.
func (p *parser) check(r *rawLab) *Lab {
	lab := &Lab{Name: r.name.v}
	switch r.name.st {
	case absent:
		p.errorf(r.line, "name", "is required (a short name such as calico-bgp)")
	case ok:
		if m := checkName(r.name.v, MaxLabNameLen, "lab", " (it is part of every namespace name, vr-<lab>-<name>)"); m != "" {
			p.errorf(r.name.line, "name", "%s", m)
		}
	}
	p.checkPools(r, lab)
	lab.BGP = p.checkBGP(r.bgp)
	lab.IPAM.StrictAffinity = r.strict.st == ok && r.strict.v
	nets := p.checkNetworks(r, lab)
	nodes := p.checkNodes(r, lab, nets)
	rnodes := p.checkRouterNodes(r, lab, nets)
	p.checkGateways(r, lab)
	p.checkWorkloads(r, lab, nodes, rnodes)
	p.checkRouters(r, lab, nets, nodes)
	p.checkPeers(r, lab, nodes, rnodes)
	p.routerPeers(r, lab)
	p.checkDataplane(r, lab)
	p.checkDatastore(r, lab)
	p.checkPolicies(r, lab)
	return lab
}

// checkDatastore sets the lab's datastore. An etcd lab joins each calico
// node to the lab's etcd network by an interface named EtcdInterface,
// which the node's underlay interface must not be, on a subnet
// (EtcdSubnet) no network, pool or peer of the lab overlaps.
func (p *parser) checkDatastore(r *rawLab, lab *Lab) {
	lab.Datastore = DatastoreBolt
	if r.datastore.st != ok {
		return
	}
	lab.Datastore = r.datastore.v
	if !lab.Etcd() {
		return
	}
	reserved := func(name val[string], path string) {
		if name.st == ok && slices.Contains(EtcdMemberNames(), name.v) {
			p.errorf(name.line, path, "%s is the name of one of the lab's etcd members (datastore: etcd, line %d); name it otherwise", name.v, r.datastore.line)
		}
	}
	for _, rn := range r.nodes {
		reserved(rn.name, rn.path)
	}
	for _, rn := range r.rnodes {
		reserved(rn.name, rn.path)
	}
	for _, rt := range r.routers {
		reserved(rt.name, rt.path)
	}
	for _, w := range r.workloads {
		reserved(w.name, w.path+".name")
	}
	for _, rn := range r.nodes {
		if rn.iface.st == ok && rn.iface.v == EtcdInterface {
			p.errorf(rn.iface.line, rn.path+".interface", "%s is the interface that joins a node to the lab's etcd network (datastore: etcd, line %d); name the underlay interface otherwise", EtcdInterface, r.datastore.line)
		}
	}
	if _, found := lab.EtcdSubnet(); !found {
		p.errorf(r.datastore.line, "datastore", "no /%d in %s is free for the lab's etcd network: the lab's networks, pools and peers cover them all", EtcdSubnetBits, etcdSubnetRange)
	}
}

// checkDataplane sets the lab's dataplane and the nodes' own (Node.Dataplane
// stays empty for a node without one: the lab's is its). A kernel-mode node's link is a veth on
// its network's bridge, which impairments do not reach yet. Router nodes
// and external routers forward in userspace: on a network with kernel
// nodes they reach them through the network's joint (see topology/lab).
func (p *parser) checkDataplane(r *rawLab, lab *Lab) {
	lab.Dataplane = DataplaneUserspace
	labLine := 0
	if r.dataplane.st == ok {
		lab.Dataplane, labLine = r.dataplane.v, r.dataplane.line
	}
	raw := map[string]*rawNode{}
	for i := range r.nodes {
		raw[r.nodes[i].name.v] = &r.nodes[i]
	}
	kernelLine := map[string]int{} // kernel-mode nodes: the line saying so
	for i := range lab.Nodes {
		n := &lab.Nodes[i]
		rn := raw[n.Name]
		if rn == nil {
			continue
		}
		line := labLine
		if rn.dplane.st == ok {
			n.Dataplane, line = rn.dplane.v, rn.dplane.line
		}
		if lab.KernelNode(*n) && rn.impair.st == ok {
			p.errorf(rn.impair.line, rn.path+".impairments", "link impairments are not supported on a kernel-mode node yet (dataplane: kernel, line %d): its link is a veth on a bridge, not a fabric link", line)
		}
		kernelLine[n.Name] = line
		if !lab.KernelNode(*n) {
			delete(kernelLine, n.Name)
		}
	}
	// A netstack workload is a stack inside the userspace engine: a
	// kernel-mode node has none.
	for _, rw := range r.workloads {
		line, kernel := kernelLine[rw.node.v]
		if kernel && rw.stack.st == ok && rw.stack.v == config.StackNetstack {
			p.errorf(rw.stack.line, rw.path+".stack", "netstack workloads need the userspace engine; node %s is kernel-mode (dataplane: kernel, line %d)", rw.node.v, line)
		}
	}
}

func (p *parser) checkPools(r *rawLab, lab *Lab) {
	if r.poolsN == 0 {
		p.errorf(r.poolsLine, "ipPools", "at least one IP pool is required (e.g. {name: default-ipv4-ippool, cidr: 10.244.0.0/16})")
	}
	names := map[string]int{}
	for i := range r.pools {
		rp := &r.pools[i]
		pool := IPPool{Name: rp.name.v, CIDR: rp.cidr.v, BlockSize: DefaultBlockSize, IPIPMode: DefaultIPIPMode}
		switch rp.name.st {
		case absent:
			p.errorf(rp.line, rp.path+".name", "is required (e.g. default-ipv4-ippool)")
		case ok:
			if m := checkPoolName(rp.name.v); m != "" {
				p.errorf(rp.name.line, rp.path+".name", "%s", m)
			} else if first, dup := names[rp.name.v]; dup {
				p.errorf(rp.name.line, rp.path+".name", "IP pool %s is already defined on line %d", rp.name.v, first)
			} else {
				names[rp.name.v] = rp.name.line
			}
		}
		if rp.blockSize.st == ok {
			pool.BlockSize = int(rp.blockSize.v)
		}
		if rp.mtu.st == ok {
			pool.MTU = int(rp.mtu.v)
		}
		if rp.ipipMode.st == ok {
			pool.IPIPMode = rp.ipipMode.v
		}
		switch rp.cidr.st {
		case absent:
			p.errorf(rp.line, rp.path+".cidr", "is required (e.g. 10.244.0.0/16)")
		case ok:
			c := rp.cidr.v
			if what := reservedOverlap(c); what != "" {
				p.errorf(rp.cidr.line, rp.path+".cidr", "%s overlaps %s", c, what)
			}
			for j := range i {
				q := &r.pools[j]
				if q.cidr.st == ok && q.cidr.v.Overlaps(c) {
					p.errorf(rp.cidr.line, rp.path+".cidr", "%s overlaps %s (%s, line %d); IP pools must not overlap", c, poolLabel(q, j), q.cidr.v, q.cidr.line)
				}
			}
			switch {
			case pool.BlockSize >= c.Bits():
			case rp.blockSize.st == ok:
				p.errorf(rp.blockSize.line, rp.path+".blockSize", "%d makes blocks (/%d) bigger than the pool %s; use a blockSize of at least %d or a bigger pool", pool.BlockSize, pool.BlockSize, c, c.Bits())
			case rp.blockSize.st == absent:
				p.errorf(rp.cidr.line, rp.path+".cidr", "%s is smaller than one block (blockSize %d by default); use a /%d or bigger pool, or set blockSize to at least %d", c, DefaultBlockSize, DefaultBlockSize, c.Bits())
			}
		}
		lab.IPPools = append(lab.IPPools, pool)
	}
}

// poolLabel names a pool in messages about another one.
func poolLabel(rp *rawPool, i int) string {
	if rp.name.st == ok {
		return fmt.Sprintf("ipPools[%d] %s", i, rp.name.v)
	}
	return fmt.Sprintf("ipPools[%d]", i)
}

func (p *parser) checkBGP(r rawBGP) BGP {
	b := BGP{
		ASNumber:       DefaultASNumber,
		NodeToNodeMesh: DefaultNodeToNodeMesh,
		KeepaliveTime:  DefaultKeepaliveTime,
		HoldTime:       DefaultHoldTime,
		RestartTime:    DefaultRestartTime,
	}
	if r.gr.st == ok {
		b.GracefulRestart = r.gr.v
	}
	if r.restart.st == ok {
		b.RestartTime = r.restart.v
	}
	if r.asNumber.st == ok {
		b.ASNumber = uint32(r.asNumber.v)
	}
	if r.mesh.st == ok {
		b.NodeToNodeMesh = r.mesh.v
	}
	ka, hold := r.keepalive, r.hold
	switch {
	case ka.st == ok && hold.st == ok:
		b.KeepaliveTime, b.HoldTime = ka.v, hold.v
		switch {
		case hold.v == 0:
			// No hold timer: RFC 4271 sends no keepalives, any value goes.
		case ka.v == 0:
			p.errorf(ka.line, "bgp.keepaliveTime", "0s sends no keepalives, which only works with holdTime 0; use e.g. %s, a third of holdTime", third(hold.v))
		case ka.v >= hold.v:
			p.errorf(ka.line, "bgp.keepaliveTime", "%s must be shorter than holdTime %s, or sessions expire between keepalives; RFC 4271 suggests a third of it, %s", ka.v, hold.v, third(hold.v))
		}
	case ka.st == ok && hold.st == absent:
		// Only the keepalive given: hold for three of them.
		b.KeepaliveTime, b.HoldTime = ka.v, min(3*ka.v, maxBGPTime)
	case hold.st == ok && ka.st == absent:
		b.HoldTime, b.KeepaliveTime = hold.v, third(hold.v)
	}
	return b
}

// third is a third of a hold time in whole seconds: the keepalive interval
// RFC 4271 suggests.
func third(hold time.Duration) time.Duration {
	return (hold / 3).Truncate(time.Second)
}

// checkNetworks checks the underlay networks and returns the names given,
// valid or not, with their lines.
func (p *parser) checkNetworks(r *rawLab, lab *Lab) map[string]int {
	if r.netsN == 0 {
		p.errorf(r.netsLine, "networks", "at least one underlay network is required (e.g. {name: lan, cidr: 192.168.50.0/24})")
	}
	names := map[string]int{}
	for i := range r.networks {
		rn := &r.networks[i]
		n := Network{Name: rn.name.v, CIDR: rn.cidr.v, MTU: DefaultMTU}
		switch rn.name.st {
		case absent:
			p.errorf(rn.line, rn.path+".name", "is required (e.g. lan)")
		case ok:
			if m := checkName(rn.name.v, MaxNameLen, "network", ""); m != "" {
				p.errorf(rn.name.line, rn.path+".name", "%s", m)
			}
			if first, dup := names[rn.name.v]; dup {
				p.errorf(rn.name.line, rn.path+".name", "network %s is already defined on line %d", rn.name.v, first)
			} else {
				names[rn.name.v] = rn.name.line
			}
		}
		if rn.mtu.st == ok {
			n.MTU = int(rn.mtu.v)
		}
		switch rn.cidr.st {
		case absent:
			p.errorf(rn.line, rn.path+".cidr", "is required (e.g. 192.168.50.0/24)")
		case ok:
			c, f := rn.cidr.v, rn.path+".cidr"
			if c.Bits() > maxNetworkBits {
				p.errorf(rn.cidr.line, f, "%s is too small for nodes; an underlay network is a /%d or bigger", c, maxNetworkBits)
			}
			if what := reservedOverlap(c); what != "" {
				p.errorf(rn.cidr.line, f, "%s overlaps %s", c, what)
			}
			for j := range i {
				q := &r.networks[j]
				if q.cidr.st == ok && q.cidr.v.Overlaps(c) {
					p.errorf(rn.cidr.line, f, "%s overlaps %s (%s, line %d); networks must not overlap", c, networkLabel(q, j), q.cidr.v, q.cidr.line)
				}
			}
			for j := range r.pools {
				q := &r.pools[j]
				if q.cidr.st == ok && q.cidr.v.Overlaps(c) {
					p.errorf(rn.cidr.line, f, "%s overlaps %s (%s, line %d); node and workload addresses must not mix", c, poolLabel(q, j), q.cidr.v, q.cidr.line)
				}
			}
		}
		lab.Networks = append(lab.Networks, n)
	}
	return names
}

// checkHostAddr reports a, the address in field f on line, unless it is
// a host address of network (CIDR c).
func (p *parser) checkHostAddr(line int, f string, a netip.Addr, network string, c netip.Prefix) {
	switch {
	case !c.Contains(a):
		p.errorf(line, f, "%s is not in network %s (%s)", a, network, c)
	case c.Bits() <= maxNetworkBits && a == c.Addr():
		p.errorf(line, f, "%s is the network address of %s (%s); pick a host address", a, network, c)
	case c.Bits() <= maxNetworkBits && a == broadcast(c):
		p.errorf(line, f, "%s is the broadcast address of %s (%s); pick a host address", a, network, c)
	}
}

// networkLabel names a network in messages about another one.
func networkLabel(rn *rawNetwork, i int) string {
	if rn.name.st == ok {
		return fmt.Sprintf("network %s", rn.name.v)
	}
	return fmt.Sprintf("networks[%d]", i)
}

// netRefs returns the networks by name (the first of each name), and
// whether references to networks can be checked: only if every network
// has a usable name; otherwise the missing name is the problem to report.
func netRefs(r *rawLab) (map[string]*rawNetwork, bool) {
	networks := map[string]*rawNetwork{}
	for i := range r.networks {
		if rn := &r.networks[i]; rn.name.st == ok {
			if _, dup := networks[rn.name.v]; !dup {
				networks[rn.name.v] = rn
			}
		}
	}
	checkRefs := r.netsN > 0 && len(r.networks) == r.netsN
	for i := range r.networks {
		if r.networks[i].name.st != ok {
			checkRefs = false
		}
	}
	return networks, checkRefs
}

// checkNodes checks the calico nodes against each other and their networks and
// returns the node names with their lines (router nodes excepted).
func (p *parser) checkNodes(r *rawLab, lab *Lab, nets map[string]int) map[string]int {
	if r.nodesN == 0 {
		p.errorf(r.nodesLine, "nodes", "a lab needs at least one node (e.g. node1: {network: lan, address: 192.168.50.10})")
	}
	if r.nodesN > 0 && len(r.nodes) == 0 && len(r.rnodes) > 0 {
		p.errorf(r.nodesLine, "nodes", "a lab needs at least one calico node (router nodes run no BGP and carry no workloads)")
	}
	networks, checkRefs := netRefs(r)
	names := map[string]int{}
	addrs := map[netip.Addr]*rawNode{}
	for i := range r.nodes {
		rn := &r.nodes[i]
		n := Node{Name: rn.name.v, Network: rn.network.v, Address: rn.address.v, Interface: DefaultInterface}
		if m := checkName(n.Name, MaxNameLen, "node", " (its namespace is vr-<lab>-<name>)"); m != "" {
			p.errorf(rn.line, rn.path, "%s", m)
		}
		names[n.Name] = rn.line
		if rn.kindBad {
			continue
		}
		var net *rawNetwork
		switch rn.network.st {
		case absent:
			p.errorf(rn.line, rn.path+".network", "is required (%s)", known(nets))
		case ok:
			if _, found := nets[n.Network]; !found && checkRefs {
				p.errorf(rn.network.line, rn.path+".network", "unknown network %s (%s)", n.Network, known(nets))
			}
			net = networks[n.Network]
		}
		switch rn.address.st {
		case absent:
			p.errorf(rn.line, rn.path+".address", "is required (the node's address on its network)")
		case ok:
			a, f := n.Address, rn.path+".address"
			if other, dup := addrs[a]; dup {
				p.errorf(rn.address.line, f, "%s is already the address of node %s (line %d)", a, other.name.v, other.address.line)
			} else {
				addrs[a] = rn
			}
			if net != nil && net.cidr.st == ok {
				p.checkHostAddr(rn.address.line, f, a, n.Network, net.cidr.v)
			}
		}
		n.ASNumber = lab.BGP.ASNumber
		if rn.asn.st == ok {
			n.ASNumber = uint32(rn.asn.v)
		}
		if rn.labels.st == ok && len(rn.labels.v) > 0 {
			n.Labels = rn.labels.v
		}
		if rn.cluster.st == ok {
			n.RouteReflectorClusterID = rn.cluster.v
		}
		if rn.cpuSet.st == ok {
			n.CPUSet = rn.cpuSet.v
		}
		if rn.impair.st == ok {
			n.Impairment = rn.impair.v
		}
		if rn.iface.st == ok {
			n.Interface = rn.iface.v
			if m := checkInterface(n.Interface); m != "" {
				p.errorf(rn.iface.line, rn.path+".interface", "%s", m)
			}
		}
		lab.Nodes = append(lab.Nodes, n)
	}
	return names
}

// checkWorkloads checks the workloads against each other, the nodes and
// the pools.
func (p *parser) checkWorkloads(r *rawLab, lab *Lab, nodes, rnodes map[string]int) {
	names := map[string]int{}
	addrs := map[netip.Addr]*rawWorkload{}
	nodeAddrs := map[netip.Addr]*rawNode{}
	for i := range r.nodes {
		if rn := &r.nodes[i]; rn.address.st == ok {
			nodeAddrs[rn.address.v] = rn
		}
	}
	// Whether every pool's range is known, so that an address outside all
	// of them is certainly wrong.
	poolsKnown := r.poolsN > 0 && len(r.pools) == r.poolsN
	for i := range r.pools {
		if r.pools[i].cidr.st != ok {
			poolsKnown = false
		}
	}
	// How many workloads each node has, to report the first one past
	// MaxWorkloadsPerNode (once per node).
	perNode := map[string]int{}
	for i := range r.workloads {
		if rw := &r.workloads[i]; rw.node.st == ok {
			perNode[rw.node.v]++
		}
	}
	seen := map[string]int{}
	for i := range r.workloads {
		rw := &r.workloads[i]
		w := Workload{Name: rw.name.v, Node: rw.node.v, Address: rw.address.v, Labels: rw.labels.v, Stack: rw.stack.v}
		if rw.ns.st == ok && rw.ns.v != policy.DefaultNamespace {
			w.Namespace = rw.ns.v
		}
		if w.Stack == config.StackNamespace {
			w.Stack = "" // the default, as the agent's config writes it
		}
		for _, sv := range rw.serve {
			w.Serve = append(w.Serve, sv.v)
		}
		if rw.serveN.st == ok && len(rw.serve) > 0 && !w.IsNetstack() {
			p.errorf(rw.serveN.line, rw.path+".serve", "services are for netstack workloads (stack: netstack); a namespace workload runs its own servers (vrouter exec %s -- ...)", w.Name)
		}
		switch rw.name.st {
		case absent:
			p.errorf(rw.line, rw.path+".name", "is required (e.g. web-1)")
		case ok:
			f := rw.path + ".name"
			if m := checkName(w.Name, MaxNameLen, "workload", " (its namespace is vr-<lab>-<name>)"); m != "" {
				p.errorf(rw.name.line, f, "%s", m)
			}
			if first, dup := names[w.Name]; dup {
				p.errorf(rw.name.line, f, "workload %s is already defined on line %d", w.Name, first)
			} else if line, isNode := nodes[w.Name]; isNode {
				p.errorf(rw.name.line, f, "%s is already the name of a node (line %d); nodes and workloads share names (vrouter exec NAME)", w.Name, line)
			} else if line, isNode := rnodes[w.Name]; isNode {
				p.errorf(rw.name.line, f, "%s is already the name of a router node (line %d); nodes and workloads share names (vrouter exec NAME)", w.Name, line)
			} else {
				names[w.Name] = rw.name.line
			}
		}
		switch rw.node.st {
		case absent:
			p.errorf(rw.line, rw.path+".node", "is required (%s)", known(nodes))
		case ok:
			if line, isRouter := rnodes[w.Node]; isRouter {
				p.errorf(rw.node.line, rw.path+".node", "%s is a router node (line %d): routers carry no workloads; put the workload on a calico node (%s)", w.Node, line, known(nodes))
			} else if _, found := nodes[w.Node]; !found && r.nodesN > 0 {
				p.errorf(rw.node.line, rw.path+".node", "unknown node %s (%s)", w.Node, known(nodes))
			} else if seen[w.Node]++; seen[w.Node] == MaxWorkloadsPerNode+1 {
				p.errorf(rw.node.line, rw.path+".node", "node %s has %d workloads, %d more than a node serves (at most %d; README: Limits); this is the first of them",
					w.Node, perNode[w.Node], perNode[w.Node]-MaxWorkloadsPerNode, MaxWorkloadsPerNode)
			}
		}
		if rw.address.st == ok {
			a, f := w.Address, rw.path+".address"
			if other, dup := addrs[a]; dup {
				p.errorf(rw.address.line, f, "%s is already the address of workload %s (line %d)", a, other.name.v, other.address.line)
			} else {
				addrs[a] = rw
			}
			if n, dup := nodeAddrs[a]; dup {
				p.errorf(rw.address.line, f, "%s is the address of node %s (line %d)", a, n.name.v, n.address.line)
			}
			if _, inPool := lab.PoolFor(a); !inPool && poolsKnown {
				var pools []string
				for _, pool := range lab.IPPools {
					pools = append(pools, pool.CIDR.String())
				}
				p.errorf(rw.address.line, f, "%s is not in any IP pool (%s)", a, strings.Join(pools, ", "))
			}
		}
		lab.Workloads = append(lab.Workloads, w)
	}
}

// CheckName reports whether s is a valid node or workload name: a DNS label
// of at most MaxNameLen characters, as the lab file requires.
func CheckName(s string) error {
	if msg := checkName(s, MaxNameLen, "workload", ""); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// checkPeers checks the BGP peers against each other and the nodes.
func (p *parser) checkPeers(r *rawLab, lab *Lab, nodes, rnodes map[string]int) {
	names := map[string]int{}
	nodeAddrs := map[netip.Addr]Node{}
	for _, n := range lab.Nodes {
		if n.Address.IsValid() {
			nodeAddrs[n.Address] = n
		}
	}
	// Selectors are checked against the nodes only if every node's labels
	// are known.
	labelsKnown := true
	for i := range r.nodes {
		if r.nodes[i].labels.st == bad {
			labelsKnown = false
		}
	}
	for i := range r.peers {
		rp := &r.peers[i]
		bp := BGPPeer{Name: rp.name.v, PeerIP: rp.peerIP.v, PeerSelector: rp.peerSelector.v, Node: rp.node.v, NodeSelector: rp.nodeSelector.v, Password: rp.password.v}
		switch rp.name.st {
		case absent:
			p.errorf(rp.line, rp.path+".name", "is required (e.g. peer-with-rr)")
		case ok:
			if m := checkPoolName(rp.name.v); m != "" {
				p.errorf(rp.name.line, rp.path+".name", "%s", strings.Replace(m, "IP pool name", "BGP peer name", 1))
			} else if first, dup := names[rp.name.v]; dup {
				p.errorf(rp.name.line, rp.path+".name", "BGP peer %s is already defined on line %d", rp.name.v, first)
			} else {
				names[rp.name.v] = rp.name.line
			}
		}
		usable := true
		// Where the peer is.
		switch {
		case rp.peerIP.st == absent && rp.peerSelector.st == absent:
			p.errorf(rp.line, rp.path, "needs peerIP (an address) or peerSelector (lab nodes, e.g. route-reflector == 'true')")
			usable = false
		case rp.peerIP.st != absent && rp.peerSelector.st != absent:
			p.errorf(rp.peerSelector.line, rp.path+".peerSelector", "peerIP and peerSelector exclude each other; give one")
			usable = false
		case rp.peerIP.st == bad || rp.peerSelector.st == bad:
			usable = false
		}
		// Which nodes peer.
		switch {
		case rp.node.st != absent && rp.nodeSelector.st != absent:
			p.errorf(rp.nodeSelector.line, rp.path+".nodeSelector", "node and nodeSelector exclude each other; give one")
			usable = false
		case rp.node.st == ok:
			if line, isRouter := rnodes[bp.Node]; isRouter {
				p.errorf(rp.node.line, rp.path+".node", "%s is a router node (line %d), which runs no BGP; name a calico node (%s)", bp.Node, line, known(nodes))
				usable = false
			} else if _, found := nodes[bp.Node]; !found {
				if r.nodesN > 0 {
					p.errorf(rp.node.line, rp.path+".node", "unknown node %s (%s)", bp.Node, known(nodes))
				}
				usable = false
			}
		case rp.node.st == bad || rp.nodeSelector.st == bad:
			usable = false
		}
		// The AS.
		switch {
		case rp.asn.st == ok && rp.peerSelector.st != absent && rp.peerIP.st == absent:
			p.errorf(rp.asn.line, rp.path+".asNumber", "a peerSelector peer's AS is each selected node's own; leave asNumber out")
		case rp.asn.st == ok:
			bp.ASNumber = uint32(rp.asn.v)
			if rt, isRouter := lab.RouterAt(bp.PeerIP); isRouter && rp.peerIP.st == ok && rt.ASNumber != bp.ASNumber {
				p.errorf(rp.asn.line, rp.path+".asNumber", "%d is not the AS of router %s (%d); leave asNumber out to use the router's", bp.ASNumber, rt.Name, rt.ASNumber)
			}
		case rp.asn.st == absent && rp.peerIP.st == ok:
			if n, isNode := nodeAddrs[bp.PeerIP]; isNode {
				bp.ASNumber = n.ASNumber
			} else if rt, isRouter := lab.RouterAt(bp.PeerIP); isRouter {
				bp.ASNumber = rt.ASNumber
			} else {
				p.errorf(rp.line, rp.path+".asNumber", "is required for a peer outside the lab (%s is no node's address)", bp.PeerIP)
			}
		}
		if usable && labelsKnown {
			var locals []Node
			for _, n := range lab.Nodes {
				if bp.AppliesTo(n) {
					locals = append(locals, n)
				}
			}
			if len(locals) == 0 && rp.nodeSelector.st == ok {
				p.errorf(rp.nodeSelector.line, rp.path+".nodeSelector", "%q selects no node", bp.NodeSelector)
			}
			if rp.peerSelector.st == ok && len(lab.Peers(bp)) == 0 {
				p.errorf(rp.peerSelector.line, rp.path+".peerSelector", "%q selects no node", bp.PeerSelector)
			}
			if rp.peerIP.st == ok {
				for _, n := range locals {
					if n.Address == bp.PeerIP {
						what := "node " + n.Name
						if len(locals) > 1 {
							what = "node " + n.Name + ", one of the nodes this peering applies to"
						}
						p.errorf(rp.peerIP.line, rp.path+".peerIP", "%s is the address of %s: a node cannot peer with itself", bp.PeerIP, what)
					}
				}
			}
		}
		lab.BGPPeers = append(lab.BGPPeers, bp)
	}
}

// checkRouterNodes checks the router nodes against each other, the
// networks and the calico nodes, and returns their names with their lines.
func (p *parser) checkRouterNodes(r *rawLab, lab *Lab, nets map[string]int) map[string]int {
	networks, checkRefs := netRefs(r)
	addrs := map[netip.Addr]string{} // addresses taken: by what
	for i := range r.nodes {
		if rn := &r.nodes[i]; rn.address.st == ok && !rn.kindBad {
			if _, dup := addrs[rn.address.v]; !dup {
				addrs[rn.address.v] = fmt.Sprintf("node %s (line %d)", rn.name.v, rn.address.line)
			}
		}
	}
	names := map[string]int{}
	for i := range r.rnodes {
		rn := &r.rnodes[i]
		rt := RouterNode{Name: rn.name.v}
		if m := checkName(rt.Name, MaxNameLen, "node", " (its namespace is vr-<lab>-<name>)"); m != "" {
			p.errorf(rn.line, rn.path, "%s", m)
		}
		names[rt.Name] = rn.line
		f := rn.path + ".interfaces"
		switch {
		case !rn.ifacesSeen:
			p.errorf(rn.line, f, "is required: a router node has interfaces (e.g. [{network: lan, address: 192.168.50.1}])")
		case rn.ifacesN == 0:
			p.errorf(rn.ifacesLine, f, "a router node needs at least one interface (e.g. {network: lan, address: 192.168.50.1})")
		case rn.ifacesN > MaxRouterInterfaces:
			p.errorf(rn.ifacesLine, f, "%d interfaces are too many; a router node has at most %d", rn.ifacesN, MaxRouterInterfaces)
		}
		// The router's own addresses and networks, for its routes. The
		// networks are complete only if every interface's is known.
		own := map[netip.Addr]string{}
		var ownNets []Network
		complete := rn.ifacesN > 0 && len(rn.ifaces) == rn.ifacesN
		ifNames := map[string]*rawRouterIface{}
		onNet := map[string]*rawRouterIface{}
		for j := range rn.ifaces {
			ri := &rn.ifaces[j]
			ifc := RouterInterface{Name: fmt.Sprintf("eth%d", ri.pos), Network: ri.network.v, Address: ri.address.v, Impairment: ri.impair.v}
			switch ri.name.st {
			case ok:
				ifc.Name = ri.name.v
				if m := checkInterface(ifc.Name); m != "" {
					p.errorf(ri.name.line, ri.path+".name", "%s", m)
				} else if other, dup := ifNames[ifc.Name]; dup {
					p.errorf(ri.name.line, ri.path+".name", "%s is already the name of %s (line %d)", ifc.Name, other.path, other.line)
				}
			case absent:
				if other, dup := ifNames[ifc.Name]; dup {
					p.errorf(ri.line, ri.path+".name", "%s, the default name of this interface, is already the name of %s (line %d); give this one a name", ifc.Name, other.path, other.line)
				}
			}
			if _, dup := ifNames[ifc.Name]; !dup && ri.name.st != bad {
				ifNames[ifc.Name] = ri
			}
			var net *rawNetwork
			switch ri.network.st {
			case absent:
				p.errorf(ri.line, ri.path+".network", "is required (%s)", known(nets))
				complete = false
			case bad:
				complete = false
			case ok:
				if _, found := nets[ifc.Network]; !found && checkRefs {
					p.errorf(ri.network.line, ri.path+".network", "unknown network %s (%s)", ifc.Network, known(nets))
				}
				if other, dup := onNet[ifc.Network]; dup {
					p.errorf(ri.network.line, ri.path+".network", "%s (line %d) is already on network %s; a router node has one interface per network", other.path, other.line, ifc.Network)
				} else {
					onNet[ifc.Network] = ri
				}
				net = networks[ifc.Network]
				if net != nil && net.cidr.st == ok {
					ownNets = append(ownNets, Network{Name: ifc.Network, CIDR: net.cidr.v})
				} else {
					complete = false
				}
			}
			switch ri.address.st {
			case absent:
				p.errorf(ri.line, ri.path+".address", "is required (the router's address on the interface's network)")
			case ok:
				a, f := ifc.Address, ri.path+".address"
				own[a] = ri.path
				if other, dup := addrs[a]; dup {
					p.errorf(ri.address.line, f, "%s is already the address of %s", a, other)
				} else {
					addrs[a] = fmt.Sprintf("router node %s (%s, line %d)", rt.Name, ri.path, ri.address.line)
				}
				if net != nil && net.cidr.st == ok {
					p.checkHostAddr(ri.address.line, f, a, ifc.Network, net.cidr.v)
				}
			}
			rt.Interfaces = append(rt.Interfaces, ifc)
		}
		dsts := map[netip.Prefix]int{}
		for j := range rn.routes {
			rr := &rn.routes[j]
			sr := StaticRoute{Dst: rr.dst.v, Via: rr.via.v}
			switch rr.dst.st {
			case absent:
				p.errorf(rr.line, rr.path+".dst", "is required (a CIDR such as 10.10.0.0/16, or default)")
			case ok:
				if first, dup := dsts[sr.Dst]; dup {
					p.errorf(rr.dst.line, rr.path+".dst", "a route to %s is already given on line %d", sr.Dst, first)
				} else {
					dsts[sr.Dst] = rr.dst.line
				}
			}
			switch rr.via.st {
			case absent:
				p.errorf(rr.line, rr.path+".via", "is required (the next hop, an address on one of the router's networks)")
			case ok:
				a, f := sr.Via, rr.path+".via"
				if path, isOwn := own[a]; isOwn {
					p.errorf(rr.via.line, f, "%s is the router's own address (%s); the next hop is another router on one of its networks", a, path)
					break
				}
				on := false
				var list []string
				for _, n := range ownNets {
					on = on || n.CIDR.Contains(a)
					list = append(list, fmt.Sprintf("%s %s", n.Name, n.CIDR))
				}
				if !on && complete {
					p.errorf(rr.via.line, f, "%s is on none of the router's networks (%s)", a, strings.Join(list, ", "))
				}
			}
			rt.Routes = append(rt.Routes, sr)
		}
		lab.RouterNodes = append(lab.RouterNodes, rt)
	}
	return names
}

// checkGateways checks the networks' gateways against the networks and
// the calico nodes, and gives a network without one the address of the
// only router node on it, if there is exactly one.
func (p *parser) checkGateways(r *rawLab, lab *Lab) {
	for i := range r.networks {
		rn, n := &r.networks[i], &lab.Networks[i]
		switch rn.gateway.st {
		case absent:
			var on []netip.Addr
			for _, rt := range lab.RouterNodes {
				if ifc, found := rt.InterfaceOn(n.Name); found && n.Name != "" {
					on = append(on, ifc.Address)
				}
			}
			if len(on) == 1 {
				n.Gateway = on[0]
			}
		case ok:
			a, f := rn.gateway.v, rn.path+".gateway"
			n.Gateway = a
			if rn.cidr.st == ok {
				c := rn.cidr.v
				switch {
				case !c.Contains(a):
					p.errorf(rn.gateway.line, f, "%s is not in network %s (%s)", a, n.Name, c)
				case c.Bits() <= maxNetworkBits && a == c.Addr():
					p.errorf(rn.gateway.line, f, "%s is the network address of %s (%s); the gateway is a router's address", a, n.Name, c)
				case c.Bits() <= maxNetworkBits && a == broadcast(c):
					p.errorf(rn.gateway.line, f, "%s is the broadcast address of %s (%s); the gateway is a router's address", a, n.Name, c)
				}
			}
			for j := range r.nodes {
				if nd := &r.nodes[j]; nd.address.st == ok && !nd.kindBad && nd.address.v == a && nd.network.v == n.Name {
					p.errorf(rn.gateway.line, f, "%s is the address of node %s (line %d); the gateway is a router's address, not a calico node's", a, nd.name.v, nd.address.line)
				}
			}
		}
	}
}

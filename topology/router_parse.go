package topology

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// routers reads the routers mapping, router name to router, keeping file
// order.
func (p *parser) routers(n *yaml.Node) []rawRouter {
	line := n.Line
	if n = deref(n); isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(line, "routers", "must be a mapping of router name to router (e.g. ext1: {network: lan, address: 192.168.50.100, daemon: bird}), not %s", kindName(n))
		return nil
	}
	var out []rawRouter
	p.pairs(n, "routers", "router name", func(name string, line int, v *yaml.Node) {
		path := join("routers", name)
		r := rawRouter{line: line, path: path, name: val[string]{v: name, line: line, st: ok}}
		vLine := v.Line
		v = deref(v)
		switch {
		case isNull(v):
			// Reported below as missing fields.
		case v.Kind != yaml.MappingNode:
			p.errorf(vLine, path, "must be a mapping (fields: %s), not %s", strings.Join(routerFields, ", "), kindName(v))
			r.network.st, r.address.st, r.daemon.st = bad, bad, bad
		default:
			p.fields(v, path, routerFields, func(key string, v *yaml.Node) {
				f := join(path, key)
				switch key {
				case "network":
					r.network = p.str(v, f, "")
				case "address":
					r.address = p.addr(v, f, "the prefix length comes from the router's network")
				case "interface":
					r.iface = p.str(v, f, "leave it out for the default, ens33")
				case "asNumber":
					r.asn = p.integer(v, f, "leave it out for the lab's bgp.asNumber", 1, math.MaxUint32)
					if r.asn.st == ok && uint32(r.asn.v) == ASTrans {
						p.errorf(r.asn.line, f, "23456 is AS_TRANS (RFC 6793), reserved for 4-byte AS transition; pick another AS number, e.g. 64600")
						r.asn.st = bad
					}
				case "daemon":
					r.daemon = p.daemon(v, f)
				case "binary":
					r.binary = p.path(v, f, "leave it out for the daemon's usual place", false)
				case "config":
					r.config = p.path(v, f, "leave it out to have vrouter generate one", true)
				case "announce":
					items, _ := p.scalars(v, f, "prefixes")
					for _, it := range items {
						r.announce = append(r.announce, p.prefix(it.node, it.path))
					}
				case "routeReflectorClusterID":
					r.cluster = p.addr(v, f, "a cluster ID is written like an IPv4 address, e.g. 244.0.0.2")
				case "password":
					r.password = p.str(v, f, "leave it out to use the bgpPeers entries' passwords")
				case "holdTime":
					r.hold = p.duration(v, f, "leave it out for the lab's bgp.holdTime")
					if r.hold.st == ok && r.hold.v < 3*time.Second {
						p.errorf(r.hold.line, f, "%s is less than 3s, the shortest hold time a router here proposes (RFC 4271 4.2)", r.hold.v)
						r.hold.st = bad
					}
				case "impairments":
					r.impair = p.impairment(v, f)
				}
			})
		}
		out = append(out, r)
	})
	return out
}

// daemon reads a router's daemon.
func (p *parser) daemon(n *yaml.Node, path string) val[Daemon] {
	s, line, good := p.scalar(n, path, "")
	if !good {
		return val[Daemon]{line: line, st: bad}
	}
	var names []string
	for _, d := range daemons {
		if s == string(d) {
			return val[Daemon]{v: d, line: line, st: ok}
		}
		names = append(names, string(d))
	}
	hint := ""
	switch strings.ToLower(s) {
	case "bird1", "bird1.6", "bird16":
		hint = "; did you mean bird? (BIRD 1.6)"
	case "bird2.0", "bird-2":
		hint = "; did you mean bird2?"
	case "bgpd", "frrouting", "quagga":
		hint = "; did you mean frr?"
	case "gobgp", "gobgp3":
		hint = "; did you mean gobgpd?"
	}
	p.errorf(line, path, "%s is not a supported daemon (valid: %s)%s", strconv.Quote(s), strings.Join(names, ", "), hint)
	return val[Daemon]{line: line, st: bad}
}

// path reads a file path, relative ones being relative to the lab file's
// directory, and returns it absolute. With mustExist the file must be a
// readable regular file now.
func (p *parser) path(n *yaml.Node, f, hint string, mustExist bool) val[string] {
	v := p.str(n, f, hint)
	if v.st != ok {
		return v
	}
	if !filepath.IsAbs(v.v) {
		v.v = filepath.Join(p.dir, v.v)
	}
	abs, err := filepath.Abs(v.v)
	if err == nil {
		v.v = abs
	}
	if mustExist {
		st, err := os.Stat(v.v)
		switch {
		case err != nil:
			p.errorf(v.line, f, "%s: %v", v.v, unwrapPathError(err))
			v.st = bad
		case !st.Mode().IsRegular():
			p.errorf(v.line, f, "%s is not a regular file", v.v)
			v.st = bad
		}
	}
	return v
}

func unwrapPathError(err error) error {
	if pe, isPE := err.(*os.PathError); isPE {
		return pe.Err
	}
	return err
}

// item is one scalar of a list with its field path.
type item struct {
	node *yaml.Node
	path string
}

// scalars returns the items of the list n (a single scalar counts as a
// list of one), reporting items that are not single values.
func (p *parser) scalars(n *yaml.Node, path, plural string) ([]item, bool) {
	line := n.Line
	n = deref(n)
	switch {
	case isNull(n):
		return nil, true
	case n.Kind != yaml.SequenceNode:
		p.errorf(line, path, "must be a list of %s, not %s", plural, kindName(n))
		return nil, false
	}
	var out []item
	for i, it := range n.Content {
		out = append(out, item{node: it, path: index(path, i)})
	}
	return out, true
}

// checkRouters checks the routers against each other, the networks, the
// nodes, the workloads and the pools.
func (p *parser) checkRouters(r *rawLab, lab *Lab, nets map[string]int, nodes map[string]int) {
	networks := map[string]*rawNetwork{}
	for i := range r.networks {
		if rn := &r.networks[i]; rn.name.st == ok {
			networks[rn.name.v] = rn
		}
	}
	taken := map[string]string{} // names of nodes and workloads: what they are
	for _, n := range lab.Nodes {
		taken[n.Name] = "node"
	}
	for _, n := range lab.RouterNodes {
		taken[n.Name] = "router node"
	}
	for _, w := range lab.Workloads {
		if _, dup := taken[w.Name]; !dup && w.Name != "" {
			taken[w.Name] = "workload"
		}
	}
	addrs := map[netip.Addr]string{}
	for _, n := range lab.Nodes {
		if n.Address.IsValid() {
			addrs[n.Address] = "node " + n.Name
		}
	}
	for _, n := range lab.RouterNodes {
		for _, i := range n.Interfaces {
			if _, dup := addrs[i.Address]; !dup && i.Address.IsValid() {
				addrs[i.Address] = "router node " + n.Name
			}
		}
	}
	var announced []struct {
		c      netip.Prefix
		router string
		line   int
	}
	for i := range r.routers {
		rr := &r.routers[i]
		before := len(p.probs)
		rt := Router{Name: rr.name.v, Network: rr.network.v, Address: rr.address.v, Interface: DefaultInterface, ASNumber: lab.BGP.ASNumber,
			Daemon: rr.daemon.v, Binary: rr.binary.v, Config: rr.config.v,
			RouteReflectorClusterID: rr.cluster.v, Password: rr.password.v, HoldTime: rr.hold.v, Impairment: rr.impair.v}
		if m := checkName(rt.Name, MaxNameLen, "router", " (its namespace is vr-<lab>.<name>)"); m != "" {
			p.errorf(rr.line, rr.path, "%s", m)
		} else if what, dup := taken[rt.Name]; dup {
			p.errorf(rr.line, rr.path, "%s is already the name of a %s; nodes, workloads and routers share names (vrouter exec NAME)", rt.Name, what)
		}
		taken[rt.Name] = "router"
		var net *rawNetwork
		switch rr.network.st {
		case absent:
			p.errorf(rr.line, rr.path+".network", "is required (%s)", known(nets))
		case ok:
			net = networks[rt.Network]
			if _, found := nets[rt.Network]; !found && len(networks) == len(r.networks) {
				p.errorf(rr.network.line, rr.path+".network", "unknown network %s (%s)", rt.Network, known(nets))
			}
		}
		switch rr.address.st {
		case absent:
			p.errorf(rr.line, rr.path+".address", "is required (the router's address on its network)")
		case ok:
			a, f := rt.Address, rr.path+".address"
			if other, dup := addrs[a]; dup {
				p.errorf(rr.address.line, f, "%s is already the address of %s", a, other)
			} else {
				addrs[a] = "router " + rt.Name
			}
			if net != nil && net.cidr.st == ok {
				c := net.cidr.v
				switch {
				case !c.Contains(a):
					p.errorf(rr.address.line, f, "%s is not in network %s (%s)", a, rt.Network, c)
				case c.Bits() <= maxNetworkBits && (a == c.Addr() || a == broadcast(c)):
					p.errorf(rr.address.line, f, "%s is the network or broadcast address of %s (%s); pick a host address", a, rt.Network, c)
				}
			}
		}
		if rr.config.st == ok {
			for _, g := range []struct {
				field string
				line  int
				st    state
			}{{"routeReflectorClusterID", rr.cluster.line, rr.cluster.st}, {"password", rr.password.line, rr.password.st}, {"holdTime", rr.hold.line, rr.hold.st}} {
				if g.st == ok {
					p.errorf(g.line, rr.path+"."+g.field, "shapes the configuration vrouter generates, but config: names your own (line %d); set it there", rr.config.line)
				}
			}
		}
		if rr.daemon.st == absent {
			p.errorf(rr.line, rr.path+".daemon", "is required (bird, bird2, frr or gobgpd)")
		}
		if rr.asn.st == ok {
			rt.ASNumber = uint32(rr.asn.v)
		}
		if rr.iface.st == ok {
			rt.Interface = rr.iface.v
			if m := checkInterface(rt.Interface); m != "" {
				p.errorf(rr.iface.line, rr.path+".interface", "%s", m)
			}
		}
		for j, av := range rr.announce {
			if av.st != ok {
				continue
			}
			c, f := av.v, index(rr.path+".announce", j)
			if c.Bits() == 0 {
				p.errorf(av.line, f, "a default route cannot be put behind the router; announce a smaller prefix")
				continue
			}
			if what := reservedOverlap(c); what != "" {
				p.errorf(av.line, f, "%s overlaps %s", c, what)
			}
			for _, pool := range lab.IPPools {
				if pool.CIDR.IsValid() && pool.CIDR.Overlaps(c) {
					p.errorf(av.line, f, "%s overlaps IP pool %s (%s); workload addresses belong to the lab's nodes", c, pool.Name, pool.CIDR)
				}
			}
			for _, n := range lab.Networks {
				if n.CIDR.IsValid() && n.CIDR.Overlaps(c) {
					p.errorf(av.line, f, "%s overlaps network %s (%s)", c, n.Name, n.CIDR)
				}
			}
			for _, o := range announced {
				if o.c.Overlaps(c) {
					p.errorf(av.line, f, "%s overlaps %s, announced by router %s (line %d)", c, o.c, o.router, o.line)
				}
			}
			announced = append(announced, struct {
				c      netip.Prefix
				router string
				line   int
			}{c, rt.Name, av.line})
			rt.Announce = append(rt.Announce, c)
		}
		rr.clean = len(p.probs) == before && rr.daemon.st == ok && rr.config.st != bad
		lab.Routers = append(lab.Routers, rt)
	}
}

// routerPeers sets the peers of each router: the nodes a bgpPeers entry
// makes peer with the router's address. A router whose configuration
// vrouter generates must peer with some node.
func (p *parser) routerPeers(r *rawLab, lab *Lab) {
	for i := range lab.Routers {
		rt := &lab.Routers[i]
		rr := &r.routers[i]
		for _, n := range lab.Nodes {
			for j, bp := range lab.BGPPeers {
				if bp.PeerIP != rt.Address || !bp.AppliesTo(n) || contains(rt.Peers, n.Name) {
					continue
				}
				if n.Network != rt.Network && rt.Network != "" && j < len(r.peers) {
					// Labs route nothing between underlay networks.
					p.errorf(r.peers[j].peerIP.line, r.peers[j].path+".peerIP", "router %s is on network %s but node %s is on %s: a node peers only with routers on its own network", rt.Name, rt.Network, n.Name, n.Network)
					rr.clean = false
					continue
				}
				rt.Peers = append(rt.Peers, n.Name)
			}
		}
		// Only a router without other problems: a wrong address or
		// daemon is the thing to fix first.
		if len(rt.Peers) == 0 && rt.Config == "" && rr.clean {
			p.errorf(rr.line, rr.path, "no node peers with router %s: add a bgpPeers entry with peerIP: %s", rt.Name, rt.Address)
		}
	}
}

// RouterAt returns the router whose address is a.
func (l *Lab) RouterAt(a netip.Addr) (Router, bool) {
	for _, r := range l.Routers {
		if r.Address == a {
			return r, true
		}
	}
	return Router{}, false
}

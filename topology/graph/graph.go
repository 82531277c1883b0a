// Package graph draws a lab: its underlay networks, Calico nodes, router
// nodes, external routers and workloads, and its BGP sessions, as a
// Graphviz DOT graph, a Mermaid flowchart, or a self-contained HTML page
// with an SVG drawing laid out here (no script, no network access when
// viewed), like containerlab's graph command. `vrouter graph` uses it,
// from a lab file or a deployed lab.
package graph

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/vrouter-lab/vrouter/topology"
)

// Node kinds.
const (
	KindNode     = "node"     // a Calico node (agent)
	KindRouter   = "router"   // a node of kind router: static routes between networks
	KindExternal = "external" // an external router running a BGP daemon
	KindPeer     = "peer"     // a BGP peer outside the lab (a bgpPeers peerIP nothing in the lab has)
)

// Graph is a lab as drawn.
type Graph struct {
	Name      string
	Networks  []Network
	Nodes     []Node // Calico nodes, router nodes, external routers, peers outside, in that order
	Workloads []Workload
	Links     []Link // a node's interface on a network
	Sessions  []Session
}

// Network is an underlay network.
type Network struct {
	Name, CIDR string
	MTU        int
	Gateway    string // "" when none
}

// Node is anything with an address on a network, or a BGP peer.
type Node struct {
	Name, Kind string
	// Detail says more: the AS and route-reflector cluster of a Calico
	// node, the daemon and AS of an external router, the AS of a peer.
	Detail string
}

// Workload is a workload on a node.
type Workload struct {
	Name, Node string
	Address    string // "" when IPAM assigns it
}

// Link is one interface of a node on a network.
type Link struct {
	Node, Network, Interface, Address string
}

// Session is a BGP session between two nodes (A, B: names in Nodes).
type Session struct {
	A, B string
	// Type is "node-to-node mesh", "global" or "node specific".
	Type string
	EBGP bool
	// RouteReflectorClient: A is a route reflector, B its client.
	RouteReflectorClient bool
}

// Label is the session's text: "iBGP node-to-node mesh", "eBGP global",
// "iBGP RR client".
func (s Session) Label() string {
	proto := "iBGP"
	if s.EBGP {
		proto = "eBGP"
	}
	if s.RouteReflectorClient {
		return proto + " RR client"
	}
	return proto + " " + s.Type
}

// Build makes the graph of l with its BGP sessions (as
// topology/lab.Sessions computes them); a session's end that is no node
// or router of the lab becomes a peer outside it.
func Build(l *topology.Lab, sessions []Session) *Graph {
	g := &Graph{Name: l.Name}
	for _, n := range l.Networks {
		nw := Network{Name: n.Name, CIDR: n.CIDR.String(), MTU: n.MTU}
		if n.Gateway.IsValid() {
			nw.Gateway = n.Gateway.String()
		}
		g.Networks = append(g.Networks, nw)
	}
	known := map[string]bool{}
	for _, n := range l.Nodes {
		as := n.ASNumber
		if as == 0 {
			as = l.BGP.ASNumber
		}
		d := fmt.Sprintf("AS %d", as)
		if n.RouteReflector() {
			d += ", route reflector " + n.RouteReflectorClusterID.String()
		}
		g.Nodes = append(g.Nodes, Node{Name: n.Name, Kind: KindNode, Detail: d})
		g.Links = append(g.Links, Link{Node: n.Name, Network: n.Network, Interface: n.Interface, Address: n.Address.String()})
		known[n.Name] = true
	}
	for _, r := range l.RouterNodes {
		d := fmt.Sprintf("%d static routes", len(r.Routes))
		if len(r.Routes) == 1 {
			d = "1 static route"
		}
		g.Nodes = append(g.Nodes, Node{Name: r.Name, Kind: KindRouter, Detail: d})
		for _, i := range r.Interfaces {
			g.Links = append(g.Links, Link{Node: r.Name, Network: i.Network, Interface: i.Name, Address: i.Address.String()})
		}
		known[r.Name] = true
	}
	for _, r := range l.Routers {
		g.Nodes = append(g.Nodes, Node{Name: r.Name, Kind: KindExternal, Detail: fmt.Sprintf("%s, AS %d", r.Daemon, r.ASNumber)})
		g.Links = append(g.Links, Link{Node: r.Name, Network: r.Network, Interface: r.Interface, Address: r.Address.String()})
		known[r.Name] = true
	}
	for _, s := range sessions {
		for _, end := range []string{s.A, s.B} {
			if known[end] {
				continue
			}
			known[end] = true
			d := "outside the lab"
			if a, err := netip.ParseAddr(end); err == nil {
				for _, bp := range l.BGPPeers {
					if bp.PeerIP == a && bp.ASNumber != 0 {
						d = fmt.Sprintf("outside the lab, AS %d", bp.ASNumber)
						break
					}
				}
			}
			g.Nodes = append(g.Nodes, Node{Name: end, Kind: KindPeer, Detail: d})
		}
		g.Sessions = append(g.Sessions, s)
	}
	for _, w := range l.Workloads {
		wl := Workload{Name: w.Name, Node: w.Node}
		if w.Address.IsValid() {
			wl.Address = w.Address.String()
		}
		g.Workloads = append(g.Workloads, wl)
	}
	return g
}

// linksOf returns the links of the node called name.
func (g *Graph) linksOf(name string) []Link {
	var out []Link
	for _, l := range g.Links {
		if l.Node == name {
			out = append(out, l)
		}
	}
	return out
}

// workloadsOf returns the workloads on the node called name.
func (g *Graph) workloadsOf(name string) []Workload {
	var out []Workload
	for _, w := range g.Workloads {
		if w.Node == name {
			out = append(out, w)
		}
	}
	return out
}

// Formats are the output formats, as -o names them.
var Formats = []string{"dot", "mermaid", "html"}

// Write writes g in format: "dot", "mermaid" or "html".
func Write(w io.Writer, format string, g *Graph) error {
	switch format {
	case "dot":
		return WriteDOT(w, g)
	case "mermaid":
		return WriteMermaid(w, g)
	case "html":
		return WriteHTML(w, g)
	}
	return fmt.Errorf("graph: unknown format %q (want %s)", format, strings.Join(Formats, ", "))
}

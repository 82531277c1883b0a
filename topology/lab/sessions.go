package lab

import (
	"github.com/vrouter-lab/vrouter/topology"
)

// Session is one BGP session of a lab as deploy configures it (for
// `vrouter graph`): between two nodes, a node and an external router, or
// a node and a peer outside the lab.
type Session struct {
	// A is a node; B a node, an external router, or the peer's address
	// when nothing in the lab has it. With RouteReflectorClient, A is the
	// reflector and B its client.
	A, B string
	// Type is the peering's type as calicoctl node status prints it:
	// "node-to-node mesh", "global" or "node specific".
	Type                 string
	EBGP                 bool
	RouteReflectorClient bool
}

// Sessions lists the lab's BGP sessions, each once (a session is
// configured at both ends), in the order of the nodes and their peers.
func Sessions(l *topology.Lab) []Session {
	routers := map[string]string{}
	for _, r := range l.Routers {
		routers[r.Address.String()] = r.Name
	}
	var out []Session
	index := map[[2]string]int{}
	for _, n := range l.Nodes {
		for _, p := range bgpPeers(l, n) {
			other := p.Node
			if other == "" {
				other = routers[p.Address.String()]
			}
			if other == "" {
				other = p.Address.String()
			}
			s := Session{A: n.Name, B: other, Type: p.Type, EBGP: p.ASN != nodeASN(l, n), RouteReflectorClient: p.RouteReflectorClient}
			key := [2]string{min(n.Name, other), max(n.Name, other)}
			if i, ok := index[key]; ok {
				if s.RouteReflectorClient {
					out[i] = s // the reflector's view says who reflects
				}
				continue
			}
			index[key] = len(out)
			out = append(out, s)
		}
	}
	return out
}

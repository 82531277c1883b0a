package topology

import (
	"net/netip"

	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// Node kinds, the `kind` field of a node in a lab file.
const (
	// KindCalico is a Calico node: BGP, IPAM blocks, workloads, tunl0.
	// It is the default kind.
	KindCalico = "calico"
	// KindRouter is a plain layer-3 router joining several underlay
	// networks, with static routes and no workloads: the router between
	// two racks, which knows nothing about pod addresses.
	KindRouter = "router"
)

// MaxRouterInterfaces is the most interfaces a router node may have.
const MaxRouterInterfaces = 8

// RouterNode is a node of kind router: a network namespace with one
// interface on each of several underlay networks, forwarding between them
// with the userspace engine by its connected and static routes, answering
// ICMP errors (time exceeded, unreachable) like any router. It runs no BGP
// (yet): pod addresses are unknown to it, which is what breaks ipipMode
// Never across it.
type RouterNode struct {
	// Name names the router; it shares the namespace of node, workload
	// and router names.
	Name string
	// Interfaces are the router's interfaces, in file order, at most one
	// per network.
	Interfaces []RouterInterface
	// Routes are the router's static routes (proto static).
	Routes []StaticRoute `json:",omitempty"`
}

// RouterInterface is one interface of a router node.
type RouterInterface struct {
	// Name is the interface's name; eth0, eth1, ... in file order by
	// default.
	Name string
	// Network is the underlay network the interface is on.
	Network string
	// Address is the router's address on that network.
	Address netip.Addr
	// Impairment is what the interface's link does to the frames the
	// router sends on it (the file's impairments); zero: none.
	Impairment config.Impairment `json:",omitzero"`
}

// StaticRoute is a static route of a router node: Dst via Via, where Via
// is on one of the router's networks.
type StaticRoute struct {
	Dst netip.Prefix
	Via netip.Addr
}

// RouterNode returns the router node called name.
func (l *Lab) RouterNode(name string) (RouterNode, bool) {
	for _, r := range l.RouterNodes {
		if r.Name == name {
			return r, true
		}
	}
	return RouterNode{}, false
}

// InterfaceOn returns r's interface on network.
func (r RouterNode) InterfaceOn(network string) (RouterInterface, bool) {
	for _, i := range r.Interfaces {
		if i.Network == network {
			return i, true
		}
	}
	return RouterInterface{}, false
}

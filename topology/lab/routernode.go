package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// KindRouterNode is the Daemon a RouterState of a router node (kind:
// router) has: none, it forwards by its static routes.
const KindRouterNode topology.Daemon = ""

// InterfaceState is one interface of a router node as deployed.
type InterfaceState struct {
	Name    string     `json:"name"`
	Network string     `json:"network"`
	Address netip.Addr `json:"address"`
}

// InterfaceOn returns the name and address of router r's interface on
// network.
func (r RouterState) InterfaceOn(network string) (string, netip.Addr, bool) {
	if r.Network == network {
		return r.Interface, r.Address, true
	}
	for _, i := range r.Interfaces {
		if i.Network == network {
			return i.Name, i.Address, true
		}
	}
	return "", netip.Addr{}, false
}

// routerNodeConfig builds the forwarder config of router node r: its
// first interface is the forwarder's primary one, the others extra
// interfaces, and its static routes.
func routerNodeConfig(l *topology.Lab, dir string, r topology.RouterNode) (*config.Router, error) {
	var ifaces []config.RouterInterface
	var impairments map[string]config.Impairment
	for _, ri := range r.Interfaces {
		if !ri.Impairment.IsZero() {
			if impairments == nil {
				impairments = map[string]config.Impairment{}
			}
			impairments[ri.Name] = ri.Impairment
		}
		net, ok := l.Network(ri.Network)
		if !ok {
			return nil, fmt.Errorf("router %s: interface %s: unknown network %s", r.Name, ri.Name, ri.Network)
		}
		ifaces = append(ifaces, config.RouterInterface{
			Network:   net.Name,
			Prefix:    netip.PrefixFrom(ri.Address, net.CIDR.Bits()),
			Interface: ri.Name,
			MTU:       net.MTU,
			Neighbors: neighbors(l, net.Name),
		})
	}
	if len(ifaces) == 0 {
		return nil, fmt.Errorf("router %s: no interfaces", r.Name)
	}
	first := ifaces[0]
	c := &config.Router{
		Lab:        l.Name,
		Router:     r.Name,
		Control:    ControlSocket(dir, r.Name),
		Fabric:     fabricDir(dir),
		Namespace:  l.NamespaceName(r.Name),
		Network:    first.Network,
		Prefix:     first.Prefix,
		Interface:  first.Interface,
		MTU:        first.MTU,
		Neighbors:  first.Neighbors,
		Interfaces: ifaces[1:],

		Impairments: impairments,

		ErrorsToIngress: true,
	}
	for _, s := range r.Routes {
		c.Routes = append(c.Routes, config.StaticRoute{Dst: s.Dst, Via: s.Via})
	}
	return c, nil
}

// planRouterNode computes router node r's forwarder config and files.
func planRouterNode(l *topology.Lab, dir string, r topology.RouterNode) (Node, error) {
	cfg, err := routerNodeConfig(l, dir, r)
	if err != nil {
		return nil, err
	}
	files := routerPaths(dir, r.Name)
	rs := RouterState{
		Name:      r.Name,
		Namespace: cfg.Namespace,
		Address:   cfg.Prefix.Addr(),
		Network:   cfg.Network,
		Interface: cfg.Interface,
		Daemon:    KindRouterNode,
		Config:    files.Config,
		Control:   cfg.Control,
		Log:       files.Log,
		PIDFile:   files.PIDFile,
		Dir:       daemonDir(dir, r.Name),
	}
	for _, ri := range r.Interfaces[1:] {
		rs.Interfaces = append(rs.Interfaces, InterfaceState{Name: ri.Name, Network: ri.Network, Address: ri.Address})
	}
	return routerKind(forwarder{rs: rs, cfg: cfg, lab: l})
}

// routerNode is a router node (kind: router): the forwarder alone, which
// routes by the static routes of the lab file between its interfaces.
type routerNode struct{ forwarder }

func (n *routerNode) Kind() string                { return topology.KindRouter }
func (n *routerNode) CLI(args ...string) []string { return nil }
func (n *routerNode) check() error                { return nil }
func (n *routerNode) frrGroup() bool              { return false }
func (n *routerNode) running() error              { return n.forwarderRunning() }
func (n *routerNode) cleanup()                    {}

// Status: a router node speaks no BGP.
func (n *routerNode) Status(context.Context, io.Writer) error {
	return fmt.Errorf("%s is a router (kind: router): it runs no BGP; its routes: vrouter route %s", n.rs.Name, n.rs.Name)
}

func (n *routerNode) prepare() error {
	if err := n.makeDir(); err != nil {
		return err
	}
	return n.writeConfig()
}

func (n *routerNode) start(ctx context.Context, env startEnv) error {
	if err := n.startForwarder(ctx, env.bin); err != nil {
		return err
	}
	env.progress("router %s: forwarding in namespace %s", n.rs.Name, n.rs.Namespace)
	return nil
}

// routerNetworks returns the networks of r's extra interfaces.
func routerNetworks(r RouterState) []string {
	var out []string
	for _, i := range r.Interfaces {
		out = append(out, i.Network)
	}
	return out
}

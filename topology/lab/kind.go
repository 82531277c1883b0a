package lab

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/vrouter-lab/vrouter/topology"
)

// Node is one member of a deployed lab, run by its kind:
//
//	calico          the vrouter node agent (`vrouter node run`): BGP, IPAM, workloads (calicoNode)
//	router          a router node (kind: router): the forwarder alone, with static routes (routerNode)
//	bird, bird2,    an external router: the forwarder beside a BGP daemon
//	frr, gobgpd     (externalRouter, with the daemon's part in bird, frr or gobgpd)
//
// Deploy takes every node through the same phases, each a method:
// check (its executables are there, before anything is created),
// prepare (its files in the state directory), start (its processes, in
// its namespace, which deploy created), ready (BGP sessions and routes).
// Destroy stops whatever a lab runs by its pid files, then lets each
// node's kind clean what its processes leave outside the state directory.
// The lab's State records the nodes; State.Member finds a node's kind
// again from it (a router's by its Daemon, in routerKinds).
type Node interface {
	Name() string
	// Kind is the kind's name: topology.KindCalico, topology.KindRouter,
	// or the external router's daemon (bird, bird2, frr, gobgpd).
	Kind() string
	Namespace() string
	// Status writes the node's BGP status as `vrouter node status`
	// shows it, or says (as an error) where to look for a node whose
	// BGP vrouter does not speak.
	Status(ctx context.Context, w io.Writer) error
	// CLI returns the command line, to be run in the node's namespace,
	// of its BGP daemon's client with args; nil when it has none.
	CLI(args ...string) []string

	// check finds the node's executables, or says what to install.
	check() error
	// frrGroup reports whether the node's processes run as user frr and
	// must pass through the lab's state directory.
	frrGroup() bool
	// prepare writes the node's files into the state directory (which
	// exists, with the nodes and routers directories).
	prepare() error
	// record adds the node to the lab's state.
	record(st *State)
	// start starts the node's processes in its namespace and returns
	// once those that must answer before the next node starts do (ctx
	// bounds that wait).
	start(ctx context.Context, env startEnv) error
	// running says which of the node's processes exited, if one did.
	running() error
	// ready reports whether the node is ready (with anyState: whether
	// it answers at all), and a progress line when it is.
	ready(ctx context.Context, anyState bool) (bool, string)
	// waitingFor says what a node that is not ready waits for.
	waitingFor() string
	// cleanup removes what the node's stopped processes left outside
	// the state directory.
	cleanup()
}

// startEnv is what a node's processes start with.
type startEnv struct {
	bin      string // the vrouter executable
	progress func(format string, args ...any)
}

// routerKinds finds the kind of a router by the Daemon its RouterState
// records (KindRouterNode for a router node): each constructor wraps the
// router's forwarder in its kind.
var routerKinds = map[topology.Daemon]func(forwarder) Node{
	KindRouterNode:       func(f forwarder) Node { return &routerNode{forwarder: f} },
	topology.DaemonBIRD:  func(f forwarder) Node { return &externalRouter{forwarder: f, daemon: bird{}} },
	topology.DaemonBIRD2: func(f forwarder) Node { return &externalRouter{forwarder: f, daemon: bird{v2: true}} },
	topology.DaemonFRR:   func(f forwarder) Node { return &externalRouter{forwarder: f, daemon: frr{}} },
	topology.DaemonGoBGP: func(f forwarder) Node { return &externalRouter{forwarder: f, daemon: gobgpd{}} },
}

// routerKind returns router f in its kind.
func routerKind(f forwarder) (Node, error) {
	k, ok := routerKinds[f.rs.Daemon]
	if !ok {
		return nil, fmt.Errorf("router %s: unknown daemon %q", f.rs.Name, topology.Shorten(string(f.rs.Daemon)))
	}
	return k(f), nil
}

// Member returns the named node or router of the lab, in its kind.
func (s *State) Member(name string) (Node, error) {
	if n, ok := s.Node(name); ok {
		return s.calicoNode(n), nil
	}
	if r, ok := s.Router(name); ok {
		return routerKind(forwarder{rs: r})
	}
	return nil, fmt.Errorf("lab %s has no node %q", s.Name, topology.Shorten(name))
}

// members returns every node and router of the lab in its kind (leaving
// out a router of a kind this vrouter does not know).
func (s *State) members() []Node {
	var out []Node
	for _, n := range s.Nodes {
		out = append(out, s.calicoNode(n))
	}
	for _, r := range s.Routers {
		if n, err := routerKind(forwarder{rs: r}); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// calicoNode returns node n of the lab, as deployed.
func (s *State) calicoNode(n NodeState) *calicoNode {
	c := &calicoNode{ns: n, workloads: s.workloadsOn(n.Name)}
	if s.Spec != nil {
		if spec, ok := s.Spec.Node(n.Name); ok {
			c.cpus = spec.CPUSet
		}
	}
	return c
}

// shellJoin joins args into a command line a shell splits back into them.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

package lab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

// SetImpairment applies imp to the underlay link of a node of a running
// lab, or to a router's interface iface (which may be empty for a router
// with one interface); the zero imp clears it. A node's is recorded in its
// config, a router's in the forwarder's, so that a restarted agent keeps
// it. A kernel-mode node has no fabric endpoint to impair: the error then
// matches control.ErrImpairmentUnsupported.
func SetImpairment(ctx context.Context, st *State, node, iface string, imp config.Impairment) (*control.Link, error) {
	if err := imp.Validate(); err != nil {
		return nil, fmt.Errorf("impairment: %w", err)
	}
	var stored *config.Impairment
	if !imp.IsZero() {
		stored = &imp
	}
	if r, ok := st.Router(node); ok {
		l, err := control.NewRouterClient(r.Control).SetImpairment(ctx, iface, imp)
		if err != nil {
			return nil, fmt.Errorf("router %s: %w", node, err)
		}
		if err := updateRouterConfig(r, func(c *config.Router) {
			if stored == nil {
				delete(c.Impairments, l.Interface)
				return
			}
			if c.Impairments == nil {
				c.Impairments = map[string]config.Impairment{}
			}
			c.Impairments[l.Interface] = imp
		}); err != nil {
			return nil, fmt.Errorf("router %s: %w", node, err)
		}
		return l, nil
	}
	n, ok := st.Node(node)
	if !ok {
		return nil, fmt.Errorf("lab %s has no node or router %q", st.Name, node)
	}
	if iface != "" && iface != n.Interface {
		return nil, fmt.Errorf("node %s has no interface %q (its underlay is %s)", node, iface, n.Interface)
	}
	// The config first, so that an agent restarted meanwhile keeps the
	// impairment; put back as it was if the agent does not take it.
	var was *config.Impairment
	if err := updateNodeConfig(n, func(c *config.Node) { was, c.Impairment = c.Impairment, stored }); err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	l, err := control.NewClient(n.Control).SetImpairment(ctx, "", imp)
	if err != nil {
		_ = updateNodeConfig(n, func(c *config.Node) { c.Impairment = was })
		if errors.Is(err, control.ErrImpairmentUnsupported) {
			return nil, fmt.Errorf("node %s: %w (its dataplane is kernel: only userspace nodes' fabric links can be impaired)", node, control.ErrImpairmentUnsupported)
		}
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	return l, nil
}

// updateRouterConfig changes the config file of router r.
func updateRouterConfig(r RouterState, change func(*config.Router)) error {
	c, err := config.LoadRouter(r.Config)
	if err != nil {
		return err
	}
	change(c)
	return c.WriteFile(r.Config)
}

// LinkState is one link of a lab as `vrouter link show` lists it.
type LinkState struct {
	Node   string // a node or router
	Router bool
	control.Link
	Err error // the agent or forwarder did not answer
}

// Links returns the links of the lab's nodes and routers, with their state
// and impairments as their agents and forwarders report them; only node's
// if node is not empty. A node whose agent does not answer is listed with
// Err set.
func Links(ctx context.Context, st *State, node string) ([]LinkState, error) {
	var out []LinkState
	found := node == ""
	for _, n := range st.Nodes {
		if node != "" && n.Name != node {
			continue
		}
		found = true
		l, err := control.NewClient(n.Control).Link(ctx)
		if err != nil {
			out = append(out, LinkState{Node: n.Name, Link: control.Link{Interface: n.Interface, Network: n.Network}, Err: err})
			continue
		}
		out = append(out, LinkState{Node: n.Name, Link: *l})
	}
	for _, r := range st.Routers {
		if node != "" && r.Name != node {
			continue
		}
		found = true
		ls, err := control.NewRouterClient(r.Control).Links(ctx)
		if err != nil {
			out = append(out, LinkState{Node: r.Name, Router: true, Link: control.Link{Interface: r.Interface, Network: r.Network}, Err: err})
			continue
		}
		slices.SortFunc(ls, func(a, b control.Link) int { return strings.Compare(a.Interface, b.Interface) })
		for _, l := range ls {
			out = append(out, LinkState{Node: r.Name, Router: true, Link: l})
		}
	}
	if !found {
		return nil, fmt.Errorf("lab %s has no node or router %q", st.Name, node)
	}
	return out, nil
}

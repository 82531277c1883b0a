package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

// Apply brings the running lab st to the lab file l where that needs no
// restart: the IP pools' ipipMode and mtu, the link impairments of the
// nodes, router nodes' interfaces and external routers, and, in a lab
// with datastore: etcd, new nodes at the end of the file's nodes
// (addnode.go), the policies and the workloads' namespaces and labels
// (which policies select by: every agent gets the new policy set at
// once). Every node's agent reprograms its routes (through tunl0
// or not) at once, and each changed
// link takes its new impairment (as `vrouter link set` would set it); the
// configuration files and the lab's state are updated so that a restarted
// node keeps the new settings. Any other difference is refused before
// anything changes, with the advice to destroy and deploy. It returns one
// line per change.
func Apply(ctx context.Context, st *State, l *topology.Lab) ([]string, error) {
	if l.Name != st.Name {
		return nil, fmt.Errorf("the file describes lab %s, not %s", l.Name, st.Name)
	}
	if len(l.IPPools) != len(st.Spec.IPPools) {
		return nil, fmt.Errorf("ipPools: %d pools in the file, %d in the running lab; only a pool's ipipMode and mtu can change on a running lab (destroy and deploy for the rest)", len(l.IPPools), len(st.Spec.IPPools))
	}
	var changes []string
	for i, p := range l.IPPools {
		old := st.Spec.IPPools[i]
		if p.Name != old.Name || p.CIDR != old.CIDR || p.BlockSize != old.BlockSize {
			return nil, fmt.Errorf("ipPools[%d]: %s %s /%d in the file, %s %s /%d running; only ipipMode and mtu can change on a running lab (destroy and deploy for the rest)",
				i, p.Name, p.CIDR, p.BlockSize, old.Name, old.CIDR, old.BlockSize)
		}
		if p.IPIPMode != old.IPIPMode {
			changes = append(changes, fmt.Sprintf("pool %s: ipipMode %s -> %s", p.Name, old.IPIPMode, p.IPIPMode))
		}
		if p.MTU != old.MTU {
			changes = append(changes, fmt.Sprintf("pool %s: mtu %d -> %d (new workloads)", p.Name, old.MTU, p.MTU))
		}
	}
	full := l
	if added := addedNodes(st, l); len(added) > 0 && st.Etcd != nil {
		// Compared without the new nodes, added below.
		lc := *l
		lc.Nodes = l.Nodes[:len(st.Spec.Nodes)]
		l = &lc
	}
	imps := impairmentChanges(l, st.Spec)
	for _, c := range imps {
		changes = append(changes, c.String())
	}
	file, running := withoutImpairments(*l), withoutImpairments(*st.Spec)
	// Everything else must be as deployed.
	for _, part := range []struct {
		field     string
		file, lab any
	}{
		{"ipam", file.IPAM, running.IPAM},
		{"bgp", file.BGP, running.BGP},
		{"networks", file.Networks, running.Networks},
		{"nodes", file.Nodes, running.Nodes},
		{"workloads", withoutLabels(file.Workloads), withoutLabels(running.Workloads)},
		{"bgpPeers", file.BGPPeers, running.BGPPeers},
		{"routers", file.Routers, running.Routers},
		{"router nodes", file.RouterNodes, running.RouterNodes},
	} {
		if !sameJSON(part.file, part.lab) {
			hint := ""
			if part.field == "nodes" {
				hint = "; a lab with datastore: etcd can add nodes after its own"
			}
			return nil, fmt.Errorf("%s: the file differs from the running lab %s; only the pools' ipipMode and mtu and the links' impairments can change on a running lab (destroy and deploy to change the rest)%s", part.field, st.Name, hint)
		}
	}
	if !sameJSON(withoutPools(file), withoutPools(running)) {
		return nil, fmt.Errorf("the file differs from the running lab %s beyond its pools' ipipMode and mtu and the links' impairments; destroy and deploy to change the rest", st.Name)
	}
	polChanges := policyChanges(st.Spec.Policies, l.Policies)
	if !sameJSON(l.Workloads, st.Spec.Workloads) {
		polChanges = append(polChanges, "workloads: namespaces or labels changed")
	}
	if len(polChanges) > 0 {
		if err := PushPolicies(ctx, st, l); err != nil {
			return nil, err
		}
		st.Spec.Policies, st.Spec.Workloads = l.Policies, l.Workloads
		if err := st.save(); err != nil {
			return nil, err
		}
	}
	added := addedNodes(st, full)
	if len(changes) == 0 && len(added) == 0 {
		return polChanges, nil
	}
	for _, c := range imps {
		if _, err := SetImpairment(ctx, st, c.node, c.iface, c.imp); err != nil {
			return nil, err
		}
	}
	if len(imps) > 0 {
		st.Spec.Nodes, st.Spec.Routers, st.Spec.RouterNodes = l.Nodes, l.Routers, l.RouterNodes
		if err := st.save(); err != nil {
			return nil, err
		}
	}
	if len(imps) == len(changes) && len(added) == 0 {
		return append(changes, polChanges...), nil
	}
	for _, n := range st.Nodes {
		spec, _ := l.Node(n.Name)
		cfg, err := nodeConfig(full, st.Dir, spec)
		if err != nil {
			return nil, err
		}
		if err := control.NewClient(n.Control).SetPools(ctx, cfg.Pools); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := cfg.WriteFile(n.Config); err != nil {
			return nil, fmt.Errorf("node %s: write config: %w", n.Name, err)
		}
	}
	st.Spec.IPPools = l.IPPools
	if err := st.save(); err != nil {
		return nil, err
	}
	for i, n := range added {
		if err := addNode(ctx, st, full, n, len(st.Spec.Nodes)); err != nil {
			return changes, fmt.Errorf("add node %s: %w", n.Name, err)
		}
		changes = append(changes, fmt.Sprintf("node %s: added (%d of %d), in every mesh through etcd", n.Name, i+1, len(added)))
	}
	return append(changes, polChanges...), nil
}

// impairmentChange is a link whose impairment the file changes.
type impairmentChange struct {
	node, iface string // iface: a router node's interface, else empty
	was, imp    config.Impairment
}

func (c impairmentChange) String() string {
	name := c.node
	if c.iface != "" {
		name += " " + c.iface
	}
	show := func(i config.Impairment) string {
		if i.IsZero() {
			return "none"
		}
		return i.String()
	}
	return fmt.Sprintf("link %s: impairments %s -> %s", name, show(c.was), show(c.imp))
}

// impairmentChanges lists the links whose impairment differs between the
// file l and the running lab's spec, for the nodes, routers and router
// node interfaces both have.
func impairmentChanges(l, running *topology.Lab) []impairmentChange {
	var out []impairmentChange
	for _, n := range l.Nodes {
		if old, ok := running.Node(n.Name); ok && old.Impairment != n.Impairment {
			out = append(out, impairmentChange{node: n.Name, was: old.Impairment, imp: n.Impairment})
		}
	}
	for _, r := range l.Routers {
		if old, ok := running.Router(r.Name); ok && old.Impairment != r.Impairment {
			out = append(out, impairmentChange{node: r.Name, was: old.Impairment, imp: r.Impairment})
		}
	}
	for _, r := range l.RouterNodes {
		old, ok := running.RouterNode(r.Name)
		if !ok {
			continue
		}
		for i, ifc := range r.Interfaces {
			if i < len(old.Interfaces) && old.Interfaces[i].Name == ifc.Name && old.Interfaces[i].Impairment != ifc.Impairment {
				out = append(out, impairmentChange{node: r.Name, iface: ifc.Name, was: old.Interfaces[i].Impairment, imp: ifc.Impairment})
			}
		}
	}
	return out
}

// withoutImpairments returns a copy of l without link impairments.
func withoutImpairments(l topology.Lab) topology.Lab {
	l.Nodes = append([]topology.Node(nil), l.Nodes...)
	for i := range l.Nodes {
		l.Nodes[i].Impairment = config.Impairment{}
	}
	l.Routers = append([]topology.Router(nil), l.Routers...)
	for i := range l.Routers {
		l.Routers[i].Impairment = config.Impairment{}
	}
	l.RouterNodes = append([]topology.RouterNode(nil), l.RouterNodes...)
	for i := range l.RouterNodes {
		ifcs := append([]topology.RouterInterface(nil), l.RouterNodes[i].Interfaces...)
		for j := range ifcs {
			ifcs[j].Impairment = config.Impairment{}
		}
		l.RouterNodes[i].Interfaces = ifcs
	}
	return l
}

// withoutPools is the part of a lab Apply cannot change.
func withoutPools(l topology.Lab) topology.Lab {
	l.IPPools, l.Policies, l.Workloads = nil, nil, withoutLabels(l.Workloads)
	return l
}

// withoutLabels returns the workloads without what Apply can change.
func withoutLabels(ws []topology.Workload) []topology.Workload {
	out := make([]topology.Workload, len(ws))
	for i, w := range ws {
		w.Namespace, w.Labels = "", nil
		out[i] = w
	}
	return out
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && reflect.DeepEqual(ja, jb)
}

package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

// Apply brings the running lab st to the lab file l where that needs no
// restart: the IP pools' ipipMode and mtu, the policies, the workloads'
// namespaces and labels (which policies select by): every agent gets the
// new policy set at once; and, in a lab with datastore: etcd, new nodes at
// the end of the file's nodes (addnode.go). Every node's agent reprograms
// its routes (through tunl0 or not) at once; the node configuration files
// and the lab's state are updated so that a restarted node keeps the new
// settings. Any other difference is refused before anything changes, with
// the advice to destroy and deploy. It returns one line per change.
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
	// Everything else must be as deployed.
	for _, part := range []struct {
		field     string
		file, lab any
	}{
		{"ipam", l.IPAM, st.Spec.IPAM},
		{"bgp", l.BGP, st.Spec.BGP},
		{"networks", l.Networks, st.Spec.Networks},
		{"nodes", l.Nodes, st.Spec.Nodes},
		{"workloads", withoutLabels(l.Workloads), withoutLabels(st.Spec.Workloads)},
		{"bgpPeers", l.BGPPeers, st.Spec.BGPPeers},
	} {
		if !sameJSON(part.file, part.lab) {
			hint := ""
			if part.field == "nodes" {
				hint = "; a lab with datastore: etcd can add nodes after its own"
			}
			return nil, fmt.Errorf("%s: the file differs from the running lab %s; only the pools' ipipMode and mtu can change on a running lab (destroy and deploy to change the rest)%s", part.field, st.Name, hint)
		}
	}
	if want, have := *l, *st.Spec; !sameJSON(withoutPools(want), withoutPools(have)) {
		return nil, fmt.Errorf("the file differs from the running lab %s beyond its pools' ipipMode and mtu; destroy and deploy to change the rest", st.Name)
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

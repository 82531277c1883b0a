package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// AddWorkload adds a workload to a running lab: it creates the workload's
// namespace, asks the node's agent to serve it (the agent allocates its
// address, opens eth0 and routes it) and records it in the lab's state and
// the node's config, so a restarted agent serves it again. addr is a fixed
// address, or the zero Addr for IPAM's choice.
func AddWorkload(ctx context.Context, st *State, name, node string, addr netip.Addr, opts ...func(*config.Workload)) (*control.WorkloadInfo, error) {
	if err := topology.CheckName(name); err != nil {
		return nil, err
	}
	if _, taken := st.Namespace(name); taken {
		return nil, fmt.Errorf("lab %s already has a node or workload named %s", st.Name, name)
	}
	n, ok := st.Node(node)
	if !ok {
		return nil, fmt.Errorf("lab %s has no node %q", st.Name, topology.Shorten(node))
	}
	if k := st.workloadsOn(node); k >= topology.MaxWorkloadsPerNode {
		return nil, fmt.Errorf("node %s already has %d workloads, the most a node serves (README: Limits); add the workload to another node", node, k)
	}
	w := config.Workload{Name: name, Namespace: topology.LabNamespacePrefix(st.Name) + name, Address: addr}
	for _, o := range opts {
		o(&w)
	}
	if err := createNamespace(w.Namespace); err != nil {
		return nil, err
	}
	info, err := control.NewClient(n.Control).AddWorkload(ctx, w)
	if err != nil {
		_ = netns.Delete(w.Namespace)
		return nil, err
	}
	st.Workloads = append(st.Workloads, WorkloadState{Name: name, Node: node, Namespace: w.Namespace, Interface: info.Interface})
	if err := st.save(); err != nil {
		return info, err
	}
	return info, updateNodeConfig(n, func(c *config.Node) { c.Workloads = append(c.Workloads, w) })
}

// DeleteWorkload removes a workload from a running lab and releases its
// address.
func DeleteWorkload(ctx context.Context, st *State, name string) error {
	i := slices.IndexFunc(st.Workloads, func(w WorkloadState) bool { return w.Name == name })
	if i < 0 {
		return fmt.Errorf("lab %s has no workload %q", st.Name, topology.Shorten(name))
	}
	w := st.Workloads[i]
	n, _ := st.Node(w.Node)
	if err := control.NewClient(n.Control).DeleteWorkload(ctx, name); err != nil {
		return err
	}
	if err := netns.Delete(w.Namespace); err != nil {
		return err
	}
	st.Workloads = slices.Delete(st.Workloads, i, i+1)
	if err := st.save(); err != nil {
		return err
	}
	return updateNodeConfig(n, func(c *config.Node) {
		c.Workloads = slices.DeleteFunc(c.Workloads, func(x config.Workload) bool { return x.Name == name })
	})
}

func updateNodeConfig(n NodeState, change func(*config.Node)) error {
	c, err := config.LoadNode(n.Config)
	if err != nil {
		return err
	}
	change(c)
	return c.WriteFile(n.Config)
}

// workloadsOn counts the workloads of node.
func (s *State) workloadsOn(node string) int {
	k := 0
	for _, w := range s.Workloads {
		if w.Node == node {
			k++
		}
	}
	return k
}

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
	"github.com/vrouter-lab/vrouter/vrouter/netstack"
)

// AddWorkload adds a namespace workload to a running lab: it creates the
// workload's namespace, asks the node's agent to serve it (the agent
// allocates its address, opens eth0 and routes it) and records it in the
// lab's state and the node's config, so a restarted agent serves it
// again. addr is a fixed address, or the zero Addr for IPAM's choice.
func AddWorkload(ctx context.Context, st *State, name, node string, addr netip.Addr) (*control.WorkloadInfo, error) {
	return AddWorkloadSpec(ctx, st, topology.Workload{Name: name, Node: node, Address: addr})
}

// AddWorkloadSpec adds the workload w describes to a running lab, as
// AddWorkload does; a netstack workload (w.Stack) gets no namespace: the
// node's agent runs its gVisor stack and its services (w.Serve).
func AddWorkloadSpec(ctx context.Context, st *State, w topology.Workload) (*control.WorkloadInfo, error) {
	name, node := w.Name, w.Node
	if err := topology.CheckName(name); err != nil {
		return nil, err
	}
	if err := config.CheckStack(w.Stack); err != nil {
		return nil, err
	}
	if w.Stack == config.StackNamespace {
		w.Stack = ""
	}
	if len(w.Serve) > 0 && !w.IsNetstack() {
		return nil, fmt.Errorf("workload %s: services are for netstack workloads (--stack netstack); a namespace workload runs its own servers", name)
	}
	if _, err := netstack.ParseServices(w.Serve); err != nil {
		return nil, fmt.Errorf("workload %s: %w", name, err)
	}
	if w.IsNetstack() && st.Spec != nil && st.Spec.Kernel() {
		return nil, fmt.Errorf("workload %s: netstack workloads need the userspace engine; lab %s is a kernel lab", name, st.Name)
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
	c := workloadConfig(st.Name, w)
	if c.Namespace != "" {
		if err := createNamespace(c.Namespace); err != nil {
			return nil, err
		}
	}
	info, err := control.NewClient(n.Control).AddWorkload(ctx, c)
	if err != nil {
		if c.Namespace != "" {
			_ = netns.Delete(c.Namespace)
		}
		return nil, err
	}
	st.Workloads = append(st.Workloads, WorkloadState{Name: name, Node: node, Namespace: c.Namespace, Interface: info.Interface, Stack: c.Stack})
	if err := st.save(); err != nil {
		return info, err
	}
	if err := updateNodeConfig(n, func(cfg *config.Node) { cfg.Workloads = append(cfg.Workloads, c) }); err != nil {
		return info, err
	}
	return info, refreshPolicies(ctx, st)
}

// workloadConfig is a lab workload as its node's agent serves it: a
// namespace named after the lab and the workload, or a netstack with its
// services.
func workloadConfig(labName string, w topology.Workload) config.Workload {
	c := config.Workload{Name: w.Name, Address: w.Address, PolicyNamespace: w.Namespace, Labels: w.Labels}
	if w.IsNetstack() {
		c.Stack, c.Serve = config.StackNetstack, w.Serve
	} else {
		c.Namespace = topology.LabNamespacePrefix(labName) + w.Name
	}
	return c
}

// refreshPolicies sends the lab's policies again after its workloads
// changed, so that selectors resolve to the addresses of the workloads
// there are now (as Felix updates its IP sets).
func refreshPolicies(ctx context.Context, st *State) error {
	if st.Spec == nil || len(st.Spec.Policies) == 0 {
		return nil
	}
	return PushPolicies(ctx, st, st.Spec)
}

// DeleteWorkload removes a workload from a running lab and releases its
// address (a netstack workload's stack is freed by its agent).
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
	if w.Namespace != "" {
		if err := netns.Delete(w.Namespace); err != nil {
			return err
		}
	}
	st.Workloads = slices.Delete(st.Workloads, i, i+1)
	if err := st.save(); err != nil {
		return err
	}
	if err := updateNodeConfig(n, func(c *config.Node) {
		c.Workloads = slices.DeleteFunc(c.Workloads, func(x config.Workload) bool { return x.Name == name })
	}); err != nil {
		return err
	}
	return refreshPolicies(ctx, st)
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

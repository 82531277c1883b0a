package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// Policies from the datastore (an agent with the cluster in etcd,
// config.Node.MeshFromDatastore): the agent writes a WorkloadEndpoint for
// each of its workloads (and deletes it with the workload; it owns the
// WorkloadEndpoints whose spec.node is its node), and at every change of
// the NetworkPolicies, GlobalNetworkPolicies or WorkloadEndpoints in etcd
// it compiles the policies against its own workloads and every other
// node's endpoints and installs them through setPolicies, as Felix does.
// A policy set a lab sends (PUT /v1/policies) is merged in: its policies
// and endpoints besides etcd's. With etcd down nothing changes: the agent
// enforces what it last compiled (and, restarted, what it saved).

// clusterPolicy is the agent's policy input from etcd and from the lab.
type clusterPolicy struct {
	recompMu sync.Mutex // serializes recompilePolicies
	mu       sync.Mutex
	fromEtcd bool              // a snapshot was seen
	pols     []policy.Policy   // etcd's policies
	eps      []policy.Endpoint // other nodes' endpoints in etcd
	lab      *control.PolicySet
	last     *control.PolicySet                     // what was last installed
	mine     map[string]*resources.WorkloadEndpoint // this node's endpoints in etcd, by ID
	kick     chan struct{}
}

// kickCh returns the channel that wakes endpointLoop.
func (c *clusterPolicy) kickCh() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kick == nil {
		c.kick = make(chan struct{}, 1)
	}
	return c.kick
}

// workloadMeta is what policy sees of a workload: config.Workload's
// PolicyNamespace, Labels and Pod.
type workloadMeta struct {
	Namespace string
	Labels    map[string]string
	Pod       string
}

// checkPolicyMeta checks a workload's policy namespace and labels.
func checkPolicyMeta(w config.Workload) error {
	if w.PolicyNamespace != "" {
		if m := policy.CheckNamespace(w.PolicyNamespace); m != "" {
			return fmt.Errorf("workload %s: %s", w.Name, m)
		}
	}
	if err := resources.CheckLabels(w.Labels); err != nil {
		return fmt.Errorf("workload %s: labels: %w", w.Name, err)
	}
	return nil
}

// workloadsChanged is called after a workload was added or deleted.
func (a *Agent) workloadsChanged() {
	if a.res == nil {
		return
	}
	select {
	case a.cpol.kickCh() <- struct{}{}:
	default:
	}
	a.recompilePolicies()
}

// workloadEndpoint is the WorkloadEndpoint of one of the node's
// workloads.
func (a *Agent) workloadEndpoint(w control.WorkloadInfo, m workloadMeta) *resources.WorkloadEndpoint {
	orch, name := "vrouter", w.Name
	if m.Pod != "" {
		orch, name = "k8s", m.Pod
	}
	return resources.NewWorkloadEndpoint(a.cfg.Node, orch, name, w.PodInterface, m.Namespace, m.Labels, w.Address, w.Interface)
}

// desiredEndpoints are the node's WorkloadEndpoints, by ID: namespace and
// labels as a lab's policy set gives them, else as the workloads were
// added with.
func (a *Agent) desiredEndpoints() map[string]*resources.WorkloadEndpoint {
	labEP := map[string]policy.Endpoint{}
	a.cpol.mu.Lock()
	if a.cpol.lab != nil {
		for _, e := range a.cpol.lab.Endpoints {
			if e.Namespace != "" || len(e.Labels) > 0 {
				labEP[e.Name] = e
			}
		}
	}
	a.cpol.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]*resources.WorkloadEndpoint, len(a.workloads))
	for n, w := range a.workloads {
		m := a.wmeta[n]
		if e, ok := labEP[n]; ok {
			m.Namespace, m.Labels = e.Namespace, e.Labels
		}
		wep := a.workloadEndpoint(w, m)
		out[resources.ID(wep)] = wep
	}
	return out
}

// sameEndpoint reports whether a stored endpoint says what want says.
func sameEndpoint(have, want *resources.WorkloadEndpoint) bool {
	return have != nil && maps.Equal(have.Metadata.Labels, want.Metadata.Labels) && reflect.DeepEqual(have.Spec, want.Spec)
}

// endpointsInSync reports whether the node's endpoints in etcd (as last
// seen) are the ones it should have.
func (a *Agent) endpointsInSync() bool {
	want := a.desiredEndpoints()
	a.cpol.mu.Lock()
	defer a.cpol.mu.Unlock()
	if a.cpol.mine == nil || len(a.cpol.mine) != len(want) {
		return false
	}
	for id, w := range want {
		if !sameEndpoint(a.cpol.mine[id], w) {
			return false
		}
	}
	return true
}

// syncEndpoints makes the node's WorkloadEndpoints in etcd its
// workloads': it writes the missing or changed ones and deletes those of
// workloads it no longer serves.
func (a *Agent) syncEndpoints(ctx context.Context) error {
	have, err := a.res.List(ctx, resources.KindWorkloadEndpoint)
	if err != nil {
		return err
	}
	want := a.desiredEndpoints()
	var errs []error
	for _, r := range have {
		w := r.(*resources.WorkloadEndpoint)
		if w.Spec.Node != a.cfg.Node {
			continue
		}
		id := resources.ID(w)
		if d, ok := want[id]; ok {
			if sameEndpoint(w, d) {
				delete(want, id)
			}
			continue
		}
		if err := a.res.Delete(ctx, resources.KindWorkloadEndpoint, id); err != nil && !errors.Is(err, resources.ErrNotFound) {
			errs = append(errs, err)
		} else {
			a.log.Info("workload endpoint deleted from etcd", "endpoint", id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if err := a.res.Put(ctx, want[id]); err != nil {
			errs = append(errs, err)
			continue
		}
		a.log.Info("workload endpoint written to etcd", "endpoint", id, "networks", want[id].Spec.IPNetworks)
	}
	return errors.Join(errs...)
}

// endpointLoop keeps the node's WorkloadEndpoints in etcd in step with
// its workloads: at once when a workload comes or goes, when a snapshot
// shows them out of step, and every few seconds after a failure (etcd
// down).
func (a *Agent) endpointLoop(ctx context.Context) {
	kick := a.cpol.kickCh()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	dirty := true
	for {
		if dirty {
			err := a.syncEndpoints(ctx)
			if err != nil && ctx.Err() == nil {
				a.log.Warn("write the workload endpoints to etcd (retrying)", "err", err)
			}
			dirty = err != nil
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
			dirty = true
		case <-t.C:
		}
	}
}

// applyClusterPolicies takes the policies and endpoints of a snapshot and
// installs the result.
func (a *Agent) applyClusterPolicies(snap *resources.Snapshot) {
	pols, eps, bad := snap.PolicySet(a.cfg.Node)
	for _, err := range bad {
		a.log.Error("policy in etcd ignored", "err", err)
	}
	mine := map[string]*resources.WorkloadEndpoint{}
	for _, w := range snap.WorkloadEndpoints {
		if w.Spec.Node == a.cfg.Node {
			mine[resources.ID(w)] = w
		}
	}
	a.cpol.mu.Lock()
	a.cpol.fromEtcd, a.cpol.pols, a.cpol.eps, a.cpol.mine = true, pols, eps, mine
	a.cpol.mu.Unlock()
	if !a.endpointsInSync() {
		select {
		case a.cpol.kickCh() <- struct{}{}:
		default:
		}
	}
	a.recompilePolicies()
}

// setLabPolicies merges a lab's policy set with etcd's and installs it.
func (a *Agent) setLabPolicies(s control.PolicySet) error {
	if err := checkPolicySet(&s); err != nil {
		return err
	}
	a.cpol.mu.Lock()
	a.cpol.lab = &s
	a.cpol.mu.Unlock()
	if !a.endpointsInSync() {
		select {
		case a.cpol.kickCh() <- struct{}{}:
		default:
		}
	}
	return a.recompilePolicies()
}

// recompilePolicies installs the merged policy set, unless it is what is
// installed already or there is nothing to merge yet (the restored set
// stays until etcd or the lab says something).
func (a *Agent) recompilePolicies() error {
	a.cpol.recompMu.Lock()
	defer a.cpol.recompMu.Unlock()
	set, ok := a.mergedPolicySet()
	if !ok {
		return nil
	}
	a.cpol.mu.Lock()
	same := a.cpol.last != nil && reflect.DeepEqual(*a.cpol.last, set)
	a.cpol.mu.Unlock()
	if same {
		return nil
	}
	if _, ok := a.dp.(Policer); !ok && len(set.Policies) == 0 {
		return nil
	}
	if err := a.setPolicies(set, true); err != nil {
		a.log.Error("install the policies from etcd", "err", err)
		return err
	}
	a.cpol.mu.Lock()
	a.cpol.last = &set
	a.cpol.mu.Unlock()
	return nil
}

// mergedPolicySet is etcd's policies and the lab's (a lab's policy of the
// same kind and key wins), with the node's own workloads (namespace and
// labels from the lab's endpoint of the same name if it gives any, else
// their own)
// and every other endpoint.
func (a *Agent) mergedPolicySet() (control.PolicySet, bool) {
	a.cpol.mu.Lock()
	fromEtcd, lab := a.cpol.fromEtcd, a.cpol.lab
	pols, eps := slices.Clone(a.cpol.pols), slices.Clone(a.cpol.eps)
	a.cpol.mu.Unlock()
	if !fromEtcd && lab == nil {
		return control.PolicySet{}, false
	}
	set := control.PolicySet{Policies: []policy.Policy{}, Endpoints: []policy.Endpoint{}}
	labEP := map[string]policy.Endpoint{}
	if lab != nil {
		keys := map[string]bool{}
		for _, p := range lab.Policies {
			keys[p.Kind+" "+p.Key()] = true
		}
		set.Policies = append(set.Policies, lab.Policies...)
		for _, p := range pols {
			if !keys[p.Kind+" "+p.Key()] {
				set.Policies = append(set.Policies, p)
			}
		}
		for _, e := range lab.Endpoints {
			labEP[e.Name] = e
		}
	} else {
		set.Policies = append(set.Policies, pols...)
	}
	a.mu.Lock()
	for _, w := range a.workloads {
		e, ok := labEP[w.Name]
		if !ok || (e.Namespace == "" && len(e.Labels) == 0) {
			m := a.wmeta[w.Name]
			e = policy.Endpoint{Name: w.Name, Namespace: m.Namespace, Labels: m.Labels}
		}
		e.Addr = w.Address
		set.Endpoints = append(set.Endpoints, e)
		delete(labEP, w.Name)
	}
	a.mu.Unlock()
	for _, e := range labEP {
		set.Endpoints = append(set.Endpoints, e)
	}
	set.Endpoints = append(set.Endpoints, eps...)
	slices.SortFunc(set.Policies, func(x, y policy.Policy) int {
		return strings.Compare(x.Kind+" "+x.Key(), y.Kind+" "+y.Key())
	})
	slices.SortFunc(set.Endpoints, func(x, y policy.Endpoint) int { return strings.Compare(x.Name, y.Name) })
	return set, true
}

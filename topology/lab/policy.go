package lab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// PolicySet returns the lab's policies with every endpoint of the running
// lab: each workload the nodes serve, with its address, and with the
// namespace and labels the lab file l gives it (none for a workload added
// with `vrouter workload add`).
func PolicySet(ctx context.Context, st *State, l *topology.Lab) (control.PolicySet, error) {
	set := control.PolicySet{Policies: l.Policies}
	if set.Policies == nil {
		set.Policies = []policy.Policy{}
	}
	spec := map[string]topology.Workload{}
	for _, w := range l.Workloads {
		spec[w.Name] = w
	}
	for _, n := range st.Nodes {
		s, err := control.NewClient(n.Control).Status(ctx)
		if err != nil {
			return set, fmt.Errorf("node %s: %w", n.Name, err)
		}
		for _, w := range s.Workloads {
			ep := policy.Endpoint{Name: w.Name, Addr: w.Address}
			if sw, ok := spec[w.Name]; ok {
				ep.Namespace, ep.Labels = sw.Namespace, sw.Labels
			}
			set.Endpoints = append(set.Endpoints, ep)
		}
	}
	slices.SortFunc(set.Endpoints, func(a, b policy.Endpoint) int { return strings.Compare(a.Name, b.Name) })
	return set, nil
}

// PushPolicies sends the lab file's policies and the lab's endpoints to
// every node's agent. A lab whose file has no policies and whose agents
// have none is left alone (so that a dataplane without policy is not
// asked to enforce nothing).
func PushPolicies(ctx context.Context, st *State, l *topology.Lab) error {
	set, err := PolicySet(ctx, st, l)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range st.Nodes {
		err := control.NewClient(n.Control).SetPolicies(ctx, set)
		if err != nil && len(l.Policies) == 0 && strings.Contains(err.Error(), "does not enforce network policy") {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: policies: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Policies returns every node's policy status, in node order.
func Policies(ctx context.Context, st *State) ([]control.PolicyStatus, error) {
	var out []control.PolicyStatus
	for _, n := range st.Nodes {
		s, err := control.NewClient(n.Control).Policies(ctx)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		out = append(out, *s)
	}
	return out, nil
}

// policyChanges describes the difference between two policy lists, one
// line per policy added, removed or changed.
func policyChanges(old, cur []policy.Policy) []string {
	byKey := func(ps []policy.Policy) map[string]policy.Policy {
		m := map[string]policy.Policy{}
		for _, p := range ps {
			m[p.Kind+" "+p.Key()] = p
		}
		return m
	}
	o, c := byKey(old), byKey(cur)
	var out []string
	for k, p := range c {
		if op, ok := o[k]; !ok {
			out = append(out, "policy "+k+": added")
		} else if !sameJSON(op, p) {
			out = append(out, "policy "+k+": changed")
		}
	}
	for k := range o {
		if _, ok := c[k]; !ok {
			out = append(out, "policy "+k+": removed")
		}
	}
	slices.Sort(out)
	return out
}

// policyListing is `vrouter get policies`: one row per policy, its hits
// summed over the nodes; wide adds each rule's hits.
func policyListing(ctx context.Context, st *State) (*Table, error) {
	all, err := Policies(ctx, st)
	if err != nil {
		return nil, err
	}
	l := &Table{Columns: []string{"NAME", "KIND", "ORDER", "SELECTOR", "TYPES", "ENDPOINTS", "HITS", "RULES (HITS)"}, Narrow: 7}
	type agg struct {
		info  control.PolicyInfo
		eps   []string
		rules []uint64
	}
	var order []string
	byKey := map[string]*agg{}
	for _, s := range all {
		for _, p := range s.Policies {
			k := p.Kind + " " + p.Namespace + "/" + p.Name
			a, ok := byKey[k]
			if !ok {
				a = &agg{info: p, rules: make([]uint64, len(p.Rules))}
				a.info.Hits = 0
				byKey[k] = a
				order = append(order, k)
			}
			a.info.Hits += p.Hits
			a.eps = append(a.eps, p.Endpoints...)
			for i, r := range p.Rules {
				if i < len(a.rules) {
					a.rules[i] += r.Hits
				}
			}
		}
	}
	for _, k := range order {
		a := byKey[k]
		p := a.info
		name := p.Name
		if p.Namespace != "" {
			name = p.Namespace + "/" + p.Name
		}
		ord := "-"
		if p.Order != nil {
			ord = fmt.Sprint(*p.Order)
		}
		slices.Sort(a.eps)
		var rules []string
		items := []map[string]any{}
		for i, r := range p.Rules {
			rules = append(rules, fmt.Sprintf("%s[%d] %s (%d)", strings.ToLower(r.Direction), r.Index, r.Action, a.rules[i]))
			items = append(items, map[string]any{"direction": r.Direction, "index": r.Index, "action": r.Action, "hits": a.rules[i]})
		}
		eps := strings.Join(a.eps, ",")
		if eps == "" {
			eps = "-"
		}
		l.add(map[string]any{"name": p.Name, "namespace": p.Namespace, "kind": p.Kind, "order": p.Order, "selector": p.Selector,
			"types": p.Types, "endpoints": a.eps, "hits": p.Hits, "rules": items},
			name, p.Kind, ord, p.Selector, strings.Join(p.Types, ","), eps, fmt.Sprint(p.Hits), strings.Join(rules, ", "))
	}
	return l, nil
}

// denialListing is `vrouter get denied`: per node, the packets policy
// denied by reason and the connection tracking table.
func denialListing(ctx context.Context, st *State) (*Table, error) {
	all, err := Policies(ctx, st)
	if err != nil {
		return nil, err
	}
	l := &Table{Columns: []string{"NODE", "INGRESS-DENY-RULE", "INGRESS-DEFAULT-DENY", "EGRESS-DENY-RULE", "EGRESS-DEFAULT-DENY", "REVOKED", "MALFORMED",
		"ALLOWED-FLOWS", "PASSED", "RELATED", "CT-ENTRIES", "CT-CAPACITY", "CT-EVICTED", "CT-EXPIRED"}, Narrow: 7}
	for _, s := range all {
		d := s.Denied
		c := s.Conntrack
		u := func(v uint64) string { return fmt.Sprint(v) }
		if !s.Enforced {
			l.add(map[string]any{"node": s.Node, "enforced": false}, append([]string{s.Node}, slices.Repeat([]string{"-"}, len(l.Columns)-1)...)...)
			continue
		}
		l.add(map[string]any{"node": s.Node, "enforced": true, "denied": d, "allowedFlows": s.AllowedFlows, "passed": s.Passed, "related": s.Related, "conntrack": c},
			s.Node, u(d["ingress_deny_rule"]), u(d["ingress_default_deny"]), u(d["egress_deny_rule"]), u(d["egress_default_deny"]), u(d["revoked"]), u(d["malformed"]),
			u(s.AllowedFlows), u(s.Passed), u(s.Related), u(c.Entries), u(c.Capacity), u(c.Evicted), u(c.Expired))
	}
	return l, nil
}

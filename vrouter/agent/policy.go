package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// Policer is a Dataplane that enforces network policy (the userspace
// engine; the kernel dataplane once it renders nftables).
type Policer interface {
	// SetPolicy installs compiled chains keyed by workload port name
	// (caliXXXXXXXXXXX); ports without chains are not policed.
	SetPolicy(chains map[string]*policy.EndpointRules) error
	// PolicyCounters returns the rule hit counters and the rest of the
	// status's counters (Policies left empty).
	PolicyCounters() (map[policy.RuleID]uint64, control.PolicyStatus)
}

// ErrPolicyUnsupported is what setting policies on a dataplane that does
// not enforce them answers.
var ErrPolicyUnsupported = errors.New("this dataplane does not enforce network policy yet")

// policiesFile is where the agent keeps the last policy set, for the next
// agent of the node.
func (a *Agent) policiesFile() string {
	return filepath.Join(filepath.Dir(a.cfg.WorkloadsFile()), a.cfg.Node+".policies.json")
}

// checkPolicySet applies defaults to the set's policies and validates
// them.
func checkPolicySet(s *control.PolicySet) error {
	var msgs []string
	for i := range s.Policies {
		p := &s.Policies[i]
		p.Default()
		for _, fe := range policy.Validate(p) {
			msgs = append(msgs, fmt.Sprintf("policies[%d] (%s): %s", i, p.Key(), fe))
		}
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// setPolicies validates, compiles and installs a policy set, and keeps it.
func (a *Agent) setPolicies(s control.PolicySet, save bool) error {
	pd, ok := a.dp.(Policer)
	if !ok {
		return ErrPolicyUnsupported
	}
	if err := checkPolicySet(&s); err != nil {
		return err
	}
	c := policy.Compile(s.Policies, s.Endpoints)
	chains := make(map[string]*policy.EndpointRules, len(c.Endpoints))
	for name, er := range c.Endpoints {
		chains[config.InterfaceName(a.cfg.Lab, name)] = er
	}
	a.polMu.Lock()
	defer a.polMu.Unlock()
	if err := pd.SetPolicy(chains); err != nil {
		return err
	}
	a.policies = c
	a.log.Info("policies set", "policies", len(s.Policies), "endpoints", len(s.Endpoints))
	if save {
		data, err := json.Marshal(s)
		if err == nil {
			path := a.policiesFile()
			tmp := path + ".tmp"
			if err = os.WriteFile(tmp, data, 0o600); err == nil {
				err = os.Rename(tmp, path)
			}
		}
		if err != nil {
			a.log.Error("save the policies", "err", err)
		}
	}
	return nil
}

// restorePolicies installs the policy set an earlier agent kept.
func (a *Agent) restorePolicies() {
	data, err := os.ReadFile(a.policiesFile())
	if err != nil {
		return
	}
	var s control.PolicySet
	if err := json.Unmarshal(data, &s); err != nil {
		a.log.Error("unreadable policies file: no policies", "err", err)
		return
	}
	if err := a.setPolicies(s, false); err != nil {
		a.log.Error("restore the policies", "err", err)
	}
}

// policyStatus reports the policies that apply on this node and their
// counters.
func (a *Agent) policyStatus() control.PolicyStatus {
	pd, ok := a.dp.(Policer)
	if !ok {
		return control.PolicyStatus{Node: a.cfg.Node}
	}
	hits, st := pd.PolicyCounters()
	st.Node, st.Enforced = a.cfg.Node, true
	a.polMu.Lock()
	c := a.policies
	a.polMu.Unlock()
	if c == nil {
		return st
	}
	a.mu.Lock()
	local := make([]string, 0, len(a.workloads))
	for name := range a.workloads {
		local = append(local, name)
	}
	a.mu.Unlock()
	slices.Sort(local)
	for _, p := range c.Policies {
		info := control.PolicyInfo{Kind: p.Kind, Name: p.Name, Namespace: p.Namespace, Order: p.Order, Selector: p.Selector}
		for _, t := range p.Types {
			info.Types = append(info.Types, string(t))
		}
		for _, w := range local {
			if er, ok := c.Endpoints[w]; ok && (slices.Contains(er.Ingress.Policies, p.Key()) || slices.Contains(er.Egress.Policies, p.Key())) {
				info.Endpoints = append(info.Endpoints, w)
			}
		}
		for _, d := range []struct {
			dir   policy.Direction
			rules []policy.Rule
		}{{policy.Ingress, p.Ingress}, {policy.Egress, p.Egress}} {
			for i, r := range d.rules {
				n := hits[policy.RuleID{Policy: p.Key(), Direction: d.dir, Index: i}]
				info.Rules = append(info.Rules, control.RuleInfo{Direction: string(d.dir), Index: i, Action: string(r.Action), Hits: n})
				if r.Action != policy.Log {
					info.Hits += n
				}
			}
		}
		st.Policies = append(st.Policies, info)
	}
	return st
}

// servePolicies adds the policy requests to the control API.
func (a *Agent) servePolicies(mux *http.ServeMux) {
	mux.HandleFunc("PUT /v1/policies", func(w http.ResponseWriter, r *http.Request) {
		var s control.PolicySet
		if err := control.Decode(r, &s); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		set := a.setPolicies
		if a.res != nil {
			// The cluster is in etcd: the lab's set is merged with etcd's.
			set = func(s control.PolicySet, _ bool) error { return a.setLabPolicies(s) }
		}
		if err := set(s, true); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrPolicyUnsupported) {
				code = http.StatusNotImplemented
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/policies", func(w http.ResponseWriter, r *http.Request) {
		control.Reply(w, a.policyStatus(), nil)
	})
}

package agent

import (
	"fmt"
	"sync"

	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/nftpolicy"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// kernelPolicy enforces a kernel-mode node's policies as nftables rules
// in its namespace (package nftpolicy). The table outlives the agent, as
// the routes do: a restarted agent replaces it whole with what it is given.
type kernelPolicy struct {
	namespace string

	mu     sync.Mutex
	table  *nftpolicy.Table                 // opened on the first SetPolicy
	chains map[string]*policy.EndpointRules // the chains in force, by interface
}

// SetPolicy writes chains (keyed by the workloads' host-side interface
// names) as the node's nftables table, replacing the previous one in one
// transaction.
func (k kernelDataplane) SetPolicy(chains map[string]*policy.EndpointRules) error {
	p := k.policy
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.table == nil {
		t, err := nftpolicy.Open(p.namespace)
		if err != nil {
			return fmt.Errorf("kernel dataplane policy: %w", err)
		}
		p.table = t
	}
	ifaces := make(map[string]string, len(chains))
	for ifname := range chains {
		ifaces[ifname] = ifname
	}
	if err := p.table.Apply(&policy.Compiled{Endpoints: chains}, ifaces); err != nil {
		return fmt.Errorf("kernel dataplane policy: %w", err)
	}
	p.chains = chains
	return nil
}

// PolicyCounters reads the rules' counters back from the table. Denials
// are counted by the rules that drop (Deny rules and each chain's default
// deny); conntrack is the kernel's, so its figures are not reported.
func (k kernelDataplane) PolicyCounters() (map[policy.RuleID]uint64, control.PolicyStatus) {
	p := k.policy
	p.mu.Lock()
	defer p.mu.Unlock()
	st := control.PolicyStatus{Denied: map[string]uint64{}}
	if p.table == nil {
		return nil, st
	}
	hits, defaults, err := p.table.Counters()
	if err != nil {
		return nil, st
	}
	deny := map[policy.RuleID]bool{}
	for _, er := range p.chains {
		for dir, ch := range map[policy.Direction]*policy.Chain{policy.Ingress: &er.Ingress, policy.Egress: &er.Egress} {
			for _, r := range ch.Rules {
				if r.Action == policy.Deny {
					deny[policy.RuleID{Policy: r.Policy, Direction: dir, Index: r.Index}] = true
				}
			}
		}
	}
	for id, n := range hits {
		switch {
		case deny[id] && id.Direction == policy.Ingress:
			st.Denied[dataplane.DeniedIngressRule] += n
		case deny[id]:
			st.Denied[dataplane.DeniedEgressRule] += n
		}
	}
	st.Denied[dataplane.DeniedIngressDefault] += defaults[policy.Ingress]
	st.Denied[dataplane.DeniedEgressDefault] += defaults[policy.Egress]
	return hits, st
}

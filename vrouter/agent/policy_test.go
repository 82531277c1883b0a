package agent

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// policingFake is the fake dataplane with policy: it keeps what it is
// given and answers fixed counters.
type policingFake struct {
	*fakeDataplane
	chains map[string]*policy.EndpointRules
}

func (p *policingFake) SetPolicy(c map[string]*policy.EndpointRules) error {
	p.chains = c
	return nil
}

func (p *policingFake) PolicyCounters() (map[policy.RuleID]uint64, control.PolicyStatus) {
	return map[policy.RuleID]uint64{{Policy: "prod/web", Direction: policy.Ingress, Index: 0}: 7},
		control.PolicyStatus{Denied: map[string]uint64{"ingress_default_deny": 3}}
}

func policyTestSet() control.PolicySet {
	return control.PolicySet{
		Policies: []policy.Policy{{Kind: policy.KindNetworkPolicy, Name: "web", Namespace: "prod", Selector: "app == 'web'",
			Ingress: []policy.Rule{{Action: policy.Allow, Protocol: policy.ProtoTCP, Destination: policy.EntityRule{Ports: []policy.PortRange{{First: 80, Last: 80}}}}}}},
		Endpoints: []policy.Endpoint{
			{Name: "web-1", Namespace: "prod", Labels: map[string]string{"app": "web"}, Addr: netip.MustParseAddr("10.244.0.1")},
			{Name: "cli-1", Labels: map[string]string{"app": "web"}, Addr: netip.MustParseAddr("10.244.0.2")},
		},
	}
}

func TestSetPolicies(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "nodes"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, dir)
	a.cfg.Lab, a.cfg.AddedWorkloads = "lab", filepath.Join(dir, "nodes", "node2.workloads.json")
	a.workloads = map[string]control.WorkloadInfo{"web-1": {Name: "web-1"}, "cli-1": {Name: "cli-1"}}
	if err := a.setPolicies(policyTestSet(), true); !errors.Is(err, ErrPolicyUnsupported) {
		t.Fatalf("fake without policy: %v, want ErrPolicyUnsupported", err)
	}
	pf := &policingFake{fakeDataplane: a.dp.(*fakeDataplane)}
	a.dp = pf
	bad := policyTestSet()
	bad.Policies[0].Ingress[0].Action = "allow"
	if err := a.setPolicies(bad, true); err == nil || !strings.Contains(err.Error(), `"allow" is not an action`) {
		t.Fatalf("invalid policy: %v", err)
	}
	if err := a.setPolicies(policyTestSet(), true); err != nil {
		t.Fatal(err)
	}
	// Chains are keyed by port name; web-1 (prod) is policed, cli-1
	// (default namespace) is not.
	web := pf.chains[config.InterfaceName("lab", "web-1")]
	cli := pf.chains[config.InterfaceName("lab", "cli-1")]
	if web == nil || !web.Ingress.Policed || web.Egress.Policed || cli == nil || cli.Ingress.Policed {
		t.Fatalf("chains: web %+v cli %+v", web, cli)
	}
	st := a.policyStatus()
	if !st.Enforced || len(st.Policies) != 1 || st.Policies[0].Hits != 7 || strings.Join(st.Policies[0].Endpoints, ",") != "web-1" ||
		st.Policies[0].Types[0] != "Ingress" || st.Denied["ingress_default_deny"] != 3 {
		t.Errorf("status %+v", st)
	}
	// The next agent of the node enforces the same policies at once.
	b := testAgent(t, dir)
	b.cfg.Lab, b.cfg.AddedWorkloads = "lab", a.cfg.AddedWorkloads
	pf2 := &policingFake{fakeDataplane: b.dp.(*fakeDataplane)}
	b.dp = pf2
	b.restorePolicies()
	if c := pf2.chains[config.InterfaceName("lab", "web-1")]; c == nil || !c.Ingress.Policed {
		t.Errorf("restored chains %v", pf2.chains)
	}
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// lockedPolicer is the fake dataplane with policy, safe to read while the
// agent's watch installs chains.
type lockedPolicer struct {
	*fakeDataplane
	pmu    sync.Mutex
	chains map[string]*policy.EndpointRules
	sets   int
}

func (p *lockedPolicer) SetPolicy(c map[string]*policy.EndpointRules) error {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	p.chains = c
	p.sets++
	return nil
}

func (p *lockedPolicer) PolicyCounters() (map[policy.RuleID]uint64, control.PolicyStatus) {
	return nil, control.PolicyStatus{}
}

func (p *lockedPolicer) chain(port string) (*policy.EndpointRules, int) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return p.chains[port], p.sets
}

// startPolicyNode is startTestNode with a dataplane that takes policies.
func startPolicyNode(t *testing.T, cfg *config.Node) (*testNode, *lockedPolicer) {
	t.Helper()
	n := &testNode{dp: newFakeDataplane(), speaker: newFakeSpeaker()}
	pd := &lockedPolicer{fakeDataplane: n.dp}
	n.Agent = newAgent(cfg, slog.New(slog.DiscardHandler))
	n.newDataplane = func(context.Context, *config.Node, *slog.Logger) (Dataplane, error) { return pd, nil }
	n.newSpeaker = func(context.Context, bgp.Config) (Speaker, error) { return n.speaker, nil }
	ctx, cancel := context.WithCancel(context.Background())
	if err := n.start(ctx); err != nil {
		cancel()
		n.close()
		t.Fatal(err)
	}
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); n.close() }) }
	t.Cleanup(n.stop)
	return n, pd
}

// ruleAddrs returns the source (ingress) or destination (egress)
// addresses the first rule of a chain's policy pol selects, or nil.
func ruleAddrs(c policy.Chain, pol string, dst bool) []netip.Addr {
	for _, r := range c.Rules {
		if r.Policy == pol {
			if dst {
				return r.Dst.Addrs
			}
			return r.Src.Addrs
		}
	}
	return nil
}

// Agents on etcd write a WorkloadEndpoint per workload (labels and
// namespace as added, deleted with the workload), pick up policies put in
// etcd within seconds, resolve selectors to other nodes' endpoints, and
// keep what they enforce while etcd is down.
func TestPoliciesFromEtcd(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	res := resourceStore(t, srv)
	ctx := context.Background()
	n1, pd1 := startPolicyNode(t, meshConfig(t, srv, "node1", "192.168.50.10"))
	n2, pd2 := startPolicyNode(t, meshConfig(t, srv, "node2", "192.168.50.11"))
	c1 := control.NewClient(control.Socket(n1.cfg.StateDir, "node1"))
	c2 := control.NewClient(control.Socket(n2.cfg.StateDir, "node2"))

	if _, err := c1.AddWorkload(ctx, config.Workload{Name: "web-1", Stack: config.StackNetstack, Labels: map[string]string{"Bad Key": "x"}}); err == nil {
		t.Fatal("a workload with an invalid label was added")
	}
	web, err := c1.AddWorkload(ctx, config.Workload{Name: "web-1", Stack: config.StackNetstack, PolicyNamespace: "prod", Labels: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	db, err := c2.AddWorkload(ctx, config.Workload{Name: "db-1", Stack: config.StackNetstack, PolicyNamespace: "prod", Labels: map[string]string{"app": "db"}})
	if err != nil {
		t.Fatal(err)
	}
	// The endpoints, in Calico's shape, under the workloads' namespace.
	var wep *resources.WorkloadEndpoint
	eventually(t, func() string {
		r, err := res.Get(ctx, resources.KindWorkloadEndpoint, "prod/node2-vrouter-db--1-eth0")
		if err != nil {
			return err.Error()
		}
		wep = r.(*resources.WorkloadEndpoint)
		return ""
	})
	if wep.Spec.Node != "node2" || !slices.Equal(wep.Spec.IPNetworks, []string{db.Address.String() + "/32"}) ||
		wep.Spec.InterfaceName != db.Interface || wep.Metadata.Labels["app"] != "db" || wep.Metadata.Labels[policy.LabelNamespace] != "prod" {
		t.Errorf("db-1's endpoint: %+v %+v", wep.Metadata, wep.Spec)
	}

	// A policy put in etcd: node2 polices db-1's ingress, allowing web-1
	// (node1's workload, known from its endpoint in etcd).
	np := resources.FromPolicy(policy.Policy{Kind: policy.KindNetworkPolicy, Name: "db", Namespace: "prod", Selector: "app == 'db'",
		Ingress: []policy.Rule{{Action: policy.Allow, Protocol: policy.ProtoTCP, Source: policy.EntityRule{Selector: "app == 'web'"},
			Destination: policy.EntityRule{Ports: []policy.PortRange{{First: 5432, Last: 5432}}}}}})
	start := time.Now()
	if err := res.Put(ctx, np); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		er, _ := pd2.chain(db.Interface)
		if er == nil || !er.Ingress.Policed || er.Egress.Policed {
			return fmt.Sprintf("db-1's chains %+v", er)
		}
		if got := ruleAddrs(er.Ingress, "prod/db", false); !slices.Equal(got, []netip.Addr{web.Address}) {
			return fmt.Sprintf("db-1's ingress rule selects %v, want web-1's %v", got, web.Address)
		}
		return ""
	})
	t.Logf("policy from etcd enforced on node2 after %v", time.Since(start))
	if er, _ := pd1.chain(web.Interface); er == nil || er.Ingress.Policed {
		t.Errorf("web-1 is policed by a policy that does not select it: %+v", er)
	}
	st, err := c2.Policies(ctx)
	if err != nil || len(st.Policies) != 1 || !slices.Equal(st.Policies[0].Endpoints, []string{"db-1"}) {
		t.Errorf("node2's policy status %+v %v", st, err)
	}

	// An egress GlobalNetworkPolicy on node1 toward db-1 (node2's).
	gnp := resources.FromPolicy(policy.Policy{Kind: policy.KindGlobalNetworkPolicy, Name: "web-out", Selector: "app == 'web'",
		Types: []policy.Direction{policy.Egress}, Egress: []policy.Rule{{Action: policy.Allow, Destination: policy.EntityRule{Selector: "app == 'db'"}}}})
	if err := res.Put(ctx, gnp); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		er, _ := pd1.chain(web.Interface)
		if er == nil || !er.Egress.Policed {
			return fmt.Sprintf("web-1's chains %+v", er)
		}
		if got := ruleAddrs(er.Egress, "web-out", true); !slices.Equal(got, []netip.Addr{db.Address}) {
			return fmt.Sprintf("web-1's egress rule selects %v, want db-1's %v", got, db.Address)
		}
		return ""
	})

	// A second db workload on node2 joins the egress rule's addresses on
	// node1; deleted, it leaves them and its endpoint leaves etcd.
	db2, err := c2.AddWorkload(ctx, config.Workload{Name: "db-2", Stack: config.StackNetstack, PolicyNamespace: "prod", Labels: map[string]string{"app": "db"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{db.Address, db2.Address}
	slices.SortFunc(want, netip.Addr.Compare)
	eventually(t, func() string {
		er, _ := pd1.chain(web.Interface)
		got := slices.Clone(ruleAddrs(er.Egress, "web-out", true))
		slices.SortFunc(got, netip.Addr.Compare)
		if !slices.Equal(got, want) {
			return fmt.Sprintf("web-1's egress rule selects %v, want %v", got, want)
		}
		return ""
	})
	if err := c2.DeleteWorkload(ctx, "db-2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if _, err := res.Get(ctx, resources.KindWorkloadEndpoint, "prod/node2-vrouter-db--2-eth0"); !errors.Is(err, resources.ErrNotFound) {
			return fmt.Sprintf("db-2's endpoint after delete: %v", err)
		}
		er, _ := pd1.chain(web.Interface)
		if got := ruleAddrs(er.Egress, "web-out", true); !slices.Equal(got, []netip.Addr{db.Address}) {
			return fmt.Sprintf("web-1's egress rule selects %v, want db-1's only", got)
		}
		return ""
	})

	// The policy deleted from etcd: db-1 is no longer policed.
	if err := res.Delete(ctx, resources.KindNetworkPolicy, "prod/db"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if er, _ := pd2.chain(db.Interface); er == nil || er.Ingress.Policed {
			return fmt.Sprintf("db-1's chains after the policy's delete: %+v", er)
		}
		return ""
	})

	// A lab's set (PUT /v1/policies) is merged with etcd's: its policy
	// applies beside etcd's, and its labels for web-1 go to web-1's
	// endpoint in etcd.
	labSet := control.PolicySet{
		Policies: []policy.Policy{{Kind: policy.KindGlobalNetworkPolicy, Name: "lab-in", Selector: "role == 'front'",
			Ingress: []policy.Rule{{Action: policy.Allow, Protocol: policy.ProtoICMP}}}},
		Endpoints: []policy.Endpoint{{Name: "web-1", Namespace: "prod", Labels: map[string]string{"app": "web", "role": "front"}, Addr: web.Address}},
	}
	if err := c1.SetPolicies(ctx, labSet); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		er, _ := pd1.chain(web.Interface)
		if er == nil || !er.Ingress.Policed || !er.Egress.Policed {
			return fmt.Sprintf("web-1's chains with the lab's set %+v", er)
		}
		r, err := res.Get(ctx, resources.KindWorkloadEndpoint, "prod/node1-vrouter-web--1-eth0")
		if err != nil || r.Meta().Labels["role"] != "front" {
			return fmt.Sprintf("web-1's endpoint %+v %v", r, err)
		}
		return ""
	})

	// etcd down: node1 keeps enforcing what it has, and installs nothing
	// else (the watch retries in the background).
	_, before := pd1.chain(web.Interface)
	srv.Stop()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		er, sets := pd1.chain(web.Interface)
		if er == nil || !er.Egress.Policed || sets != before {
			t.Fatalf("with etcd down, node1's chains changed: %+v (installed %d times, was %d)", er, sets, before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// node1 restarted with etcd still down enforces what it saved, from
	// the start: web-1's egress toward db-1 only.
	n1.stop()
	n1, pd1 = startPolicyNode(t, n1.cfg)
	if !n1.degraded.Load() {
		t.Fatal("node1 not degraded with etcd down")
	}
	if er, _ := pd1.chain(web.Interface); er == nil || !er.Egress.Policed || !slices.Equal(ruleAddrs(er.Egress, "web-out", true), []netip.Addr{db.Address}) {
		t.Errorf("node1 restarted with etcd down: web-1's chains %+v", er)
	}
}

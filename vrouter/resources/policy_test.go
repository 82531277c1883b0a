package resources

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

const policyFile = `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-frontend
  namespace: prod
spec:
  order: 100
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'frontend'
    destination:
      ports: [5432, "8000:8080"]
  - action: Deny
    protocol: 1
    icmp: {type: 8}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: egress-cidr
spec:
  namespaceSelector: projectcalico.org/name == 'prod'
  types: [Egress]
  egress:
  - action: Allow
    protocol: TCP
    destination:
      nets: [10.0.0.0/8, 192.168.1.1]
      notPorts: [22]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node2-k8s-db--0-eth0
  namespace: prod
  labels:
    app: db
    projectcalico.org/namespace: prod
spec:
  node: node2
  pod: db-0
  endpoint: eth0
  interfaceName: cali1234567890a
  ipNetworks: [10.244.1.5/32]
`

// A policy file parses into resources whose policies are vrouter/policy's
// (defaults applied), and back: FromPolicy gives the same resource, and
// JSON in Calico's shape round-trips.
func TestPolicyResourcesParse(t *testing.T) {
	rs, err := ParseYAML("p.yaml", []byte(policyFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("%d resources", len(rs))
	}
	np := rs[0].(*NetworkPolicy)
	p, err := np.Policy()
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != policy.KindNetworkPolicy || p.Key() != "prod/allow-frontend" || *p.Order != 100 || len(p.Types) != 1 || p.Types[0] != policy.Ingress {
		t.Errorf("policy %+v", p)
	}
	in := p.Ingress[0]
	if in.Protocol != policy.ProtoTCP || in.Source.Selector != "app == 'frontend'" ||
		!reflect.DeepEqual(in.Destination.Ports, []policy.PortRange{{First: 5432, Last: 5432}, {First: 8000, Last: 8080}}) {
		t.Errorf("ingress[0] %+v", in)
	}
	if r := p.Ingress[1]; r.Action != policy.Deny || r.Protocol != policy.ProtoICMP || r.ICMP == nil || *r.ICMP.Type != 8 {
		t.Errorf("ingress[1] %+v", r)
	}
	g, err := rs[1].(*GlobalNetworkPolicy).Policy()
	if err != nil {
		t.Fatal(err)
	}
	if g.Selector != "all()" || g.NamespaceSelector == "" ||
		!reflect.DeepEqual(g.Egress[0].Destination.Nets, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")}) ||
		!reflect.DeepEqual(g.Egress[0].Destination.NotPorts, []policy.PortRange{{First: 22, Last: 22}}) {
		t.Errorf("global %+v", g)
	}
	wep := rs[2].(*WorkloadEndpoint)
	e := wep.Endpoint(ID(wep))
	if e.Name != "prod/node2-k8s-db--0-eth0" || e.Namespace != "prod" || e.Addr != netip.MustParseAddr("10.244.1.5") ||
		!reflect.DeepEqual(e.Labels, map[string]string{"app": "db"}) {
		t.Errorf("endpoint %+v", e)
	}

	// Back: the resource of the policy is the policy again.
	back := FromPolicy(p).(*NetworkPolicy)
	p2, err := back.Policy()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, p2) {
		t.Errorf("round trip:\n%+v\n%+v", p, p2)
	}
	data, err := json.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"NetworkPolicy"`, `"namespace":"prod"`, `"protocol":"TCP"`, `"ports":[5432,"8000:8080"]`, `"icmp":{"type":8}`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %s", data, want)
		}
	}
	dec, err := Decode(KindNetworkPolicy, data)
	if err != nil {
		t.Fatal(err)
	}
	p3, err := dec.(*NetworkPolicy).Policy()
	if err != nil || !reflect.DeepEqual(p, p3) {
		t.Errorf("JSON round trip: %v\n%+v\n%+v", err, p, p3)
	}
}

// Errors name the file, the line and the field, as vrouter/policy's
// validation reports them.
func TestPolicyResourcesYAMLErrors(t *testing.T) {
	head := "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: all()\n  ingress:\n  - action: Allow\n"
	for _, c := range []struct{ body, want string }{
		{"    protocol: tcp\n", `p.yaml:9: spec.ingress[0].protocol: "tcp" is not a protocol; did you mean TCP?`},
		{"    destination:\n      ports: [99999]\n", `p.yaml:10: spec.ingress[0].destination.ports[0]:`},
		{"    destination:\n      nets: [10.0.0.1/8]\n", `p.yaml:10: spec.ingress[0].destination.nets[0]: 10.0.0.1/8 has host bits set`},
		{"    source:\n      selector: app ==\n", `p.yaml:10: spec.ingress[0].source.selector:`},
		{"    bogus: 1\n", `p.yaml:9: spec.ingress[0].bogus: unknown field`},
		{"    icmp: {type: 300}\n", `p.yaml:9: spec.ingress[0].icmp.type: 300: want 0 to 255`},
		{"    destination:\n      ports: 80\n", `p.yaml:10: spec.ingress[0].destination.ports: want a list`},
		{"  - action: allow\n", `p.yaml:9: spec.ingress[1].action: "allow" is not an action`},
		{"  types: [Egress]\n", `p.yaml:9: spec.types: the policy has ingress rules but its types do not include Ingress`},
	} {
		_, err := ParseYAML("p.yaml", []byte(head+c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %s", c.body, err, c.want)
		}
	}
	for _, c := range []struct{ doc, want string }{
		{"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: g\n  namespace: x\nspec: {}\n", `g.yaml:5: metadata.namespace: a GlobalNetworkPolicy has no namespace`},
		{"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\n  namespace: x\nspec:\n  cidr: 10.0.0.0/16\n", `g.yaml:5: metadata.namespace: a IPPool has no namespace`},
		{"apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: w\nspec:\n  ipNetworks: [10.0.0.1/32]\n", `g.yaml:6: spec.node: missing`},
		{"apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: w\nspec:\n  node: n1\n  ipNetworks: [fe80::1/128]\n", `g.yaml:7: spec.ipNetworks[0]:`},
		{"apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: Bad_NS\nspec: {}\n", `g.yaml:5: metadata.namespace:`},
		{"apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  order: high\n", `g.yaml:6: spec.order: "high": want a number`},
	} {
		_, err := ParseYAML("g.yaml", []byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %s", c.doc, err, c.want)
		}
	}
	// A NetworkPolicy without a namespace is in "default".
	rs, err := ParseYAML("d.yaml", []byte("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec: {}\n"))
	if err != nil || rs[0].Meta().Namespace != "default" || ID(rs[0]) != "default/p" {
		t.Fatalf("%v %v", rs, err)
	}
}

// Policies and endpoints go to Calico's keys, namespaced ones under their
// namespace; Get, List, Delete and the snapshot's PolicySet see them.
func TestPolicyResourcesStore(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	s := openStore(t, srv)
	ctx := context.Background()
	rs, err := ParseYAML("p.yaml", []byte(policyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	mine := NewWorkloadEndpoint("node1", "vrouter", "web-1", "", "", map[string]string{"app": "frontend"}, netip.MustParseAddr("10.244.0.2"), "cali0")
	if err := s.Put(ctx, mine); err != nil {
		t.Fatal(err)
	}
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, key := range []string{
		"/calico/resources/v3/projectcalico.org/networkpolicies/prod/allow-frontend",
		"/calico/resources/v3/projectcalico.org/globalnetworkpolicies/egress-cidr",
		"/calico/resources/v3/projectcalico.org/workloadendpoints/prod/node2-k8s-db--0-eth0",
		"/calico/resources/v3/projectcalico.org/workloadendpoints/default/node1-vrouter-web--1-eth0",
	} {
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Errorf("%s: %v %v", key, resp, err)
		}
	}
	got, err := s.Get(ctx, KindNetworkPolicy, "prod/allow-frontend")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := got.(*NetworkPolicy).Policy(); err != nil || len(p.Ingress) != 2 {
		t.Errorf("got %+v %v", p, err)
	}
	list, err := s.List(ctx, KindWorkloadEndpoint)
	if err != nil || len(list) != 2 || ID(list[0]) != "default/node1-vrouter-web--1-eth0" {
		t.Fatalf("list %v %v", list, err)
	}
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pols, eps, bad := snap.PolicySet("node1")
	if len(pols) != 2 || len(bad) != 0 || len(eps) != 1 || eps[0].Addr != netip.MustParseAddr("10.244.1.5") {
		t.Errorf("policy set %v %v %v", pols, eps, bad)
	}
	if err := s.Delete(ctx, KindNetworkPolicy, "prod/allow-frontend"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, KindNetworkPolicy, "prod/allow-frontend"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	// A policy that fails validation is refused before it reaches etcd.
	bad1 := FromPolicy(policy.Policy{Kind: policy.KindGlobalNetworkPolicy, Name: "x", Ingress: []policy.Rule{{Action: "Accept"}}})
	if err := s.Put(ctx, bad1); err == nil || !strings.Contains(err.Error(), "spec.ingress[0].action") {
		t.Errorf("bad put: %v", err)
	}
}

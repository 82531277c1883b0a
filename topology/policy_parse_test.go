package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

func TestPolicyValid(t *testing.T) {
	lab, err := Load("testdata/policy-valid.lab")
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := lab.Workload("web"); w.Namespace != "prod" || w.Labels["app"] != "web" {
		t.Errorf("web: %+v", w)
	}
	if w, _ := lab.Workload("cli"); w.Namespace != "" || w.Labels["role"] != "client" {
		t.Errorf("cli: %+v", w)
	}
	if len(lab.Policies) != 2 {
		t.Fatalf("%d policies", len(lab.Policies))
	}
	np, gnp := lab.Policies[0], lab.Policies[1]
	order := 100.0
	u8 := func(v uint8) *uint8 { return &v }
	want := policy.Policy{Kind: "NetworkPolicy", Name: "allow-web", Namespace: "prod", Order: &order,
		Selector: "app == 'web' && env not in {'dev'}", Types: []policy.Direction{policy.Ingress},
		Ingress: []policy.Rule{
			{Action: policy.Allow, Protocol: policy.ProtoTCP,
				Source:      policy.EntityRule{NamespaceSelector: "all()", Selector: "role == 'client'", NotNets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
				Destination: policy.EntityRule{Ports: []policy.PortRange{{First: 80, Last: 80}, {First: 8000, Last: 8080}}, NotPorts: []policy.PortRange{{First: 8081, Last: 8081}}}},
			{Action: policy.Allow, Protocol: policy.ProtoICMP, ICMP: &policy.ICMPMatch{Type: u8(8), Code: u8(0)}},
		}}
	if !reflect.DeepEqual(np, want) {
		t.Errorf("policy 0:\n%+v\nwant\n%+v", np, want)
	}
	if gnp.Kind != policy.KindGlobalNetworkPolicy || gnp.Namespace != "" || gnp.Order != nil ||
		!reflect.DeepEqual(gnp.Types, []policy.Direction{policy.Egress}) || len(gnp.Egress) != 3 ||
		gnp.Egress[1].Destination.Nets[0] != netip.MustParsePrefix("192.0.2.53/32") || gnp.Egress[2].NotProtocol != policy.ProtoTCP {
		t.Errorf("policy 1: %+v", gnp)
	}
}

func TestPolicyInvalid(t *testing.T) {
	_, err := Load("testdata/policy-invalid.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v", err)
	}
	checkProblems(t, ve, []want{
		{6, "workloads[0].namespace", `"Prod" is not a valid namespace`},
		{11, "policies[0].spec.order", `"first" is not a number`},
		{12, "policies[0].spec.selector", `selector "app == web": at offset 7: expected a quoted value`},
		{13, "policies[0].spec.types[1]", `"egress" is not a policy type (Ingress or Egress; case matters)`},
		{15, "policies[0].spec.ingress[0].action", `"allow" is not an action (Allow, Deny, Log or Pass); did you mean Allow?`},
		{16, "policies[0].spec.ingress[0].protocol", `"tcp" is not a protocol; did you mean TCP?`},
		{17, "policies[0].spec.ingress[0].destination.ports[1]", "the range ends before it starts"},
		{17, "policies[0].spec.ingress[0].destination.ports[2]", "named ports are not supported"},
		{18, "policies[0].spec.ingress[1].action", "is required (Allow, Deny, Log or Pass)"},
		{19, "policies[0].spec.ingress[1].source.nets[0]", "has host bits set; did you mean 10.0.0.0/8?"},
		{19, "policies[0].spec.ingress[1].source.selector", `selector "has(app": at offset 7: missing ) after has(app`},
		{21, "policies[0].spec.ingress[2].destination.ports", "ports need protocol TCP, UDP, SCTP or UDPLite"},
		{24, "policies[0].spec.ingress[3].icmp.code", "needs a type"},
		{25, "policies[0].spec.ingress[3].ipVersion", "only IPv4"},
		{27, "policies[1].metadata.namespace", "a GlobalNetworkPolicy has no namespace"},
		{28, "policies[1].spec.types", "egress rules but its types do not include Egress"},
		{30, "policies[2].metadata.name", "NetworkPolicy prod/bad is already defined on line 9"},
		{31, "policies[3].kind", `"Policy" is not a policy kind`},
		{32, "policies[3].metadata.name", "is required"},
		{33, "policies[3].spec.ingress", "must be a list of rules"},
		{33, "policies[3].spec.colour", "unknown field"},
	})
}

// The README's example, compiled: what applies to each workload.
func TestPolicyExample(t *testing.T) {
	lab, err := Load("../examples/calico-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]netip.Addr{"web-1": netip.MustParseAddr("10.244.0.1"), "db-1": netip.MustParseAddr("10.244.0.2"), "client-1": netip.MustParseAddr("10.244.0.3")}
	c := policy.Compile(lab.Policies, lab.Endpoints(func(w string) netip.Addr { return addrs[w] }))
	web, db, cli := c.Endpoints["web-1"], c.Endpoints["db-1"], c.Endpoints["client-1"]
	if got := fmt.Sprint(web.Ingress.Policies, web.Egress.Policed); got != "[shop/web shop-default-deny] false" {
		t.Errorf("web-1: %s", got)
	}
	if got := fmt.Sprint(db.Ingress.Policies, db.Egress.Policies); got != "[shop-default-deny shop/db] [shop/db]" {
		t.Errorf("db-1: %s", got)
	}
	if cli.Ingress.Policed || cli.Egress.Policed {
		t.Errorf("client-1 is policed: %+v", cli)
	}
	// web's first rule: clients anywhere; db's: web only.
	if got := fmt.Sprint(web.Ingress.Rules[0].Src.Addrs); got != "[10.244.0.3]" {
		t.Errorf("web rule 0 sources %s", got)
	}
	if got := fmt.Sprint(db.Ingress.Rules[0].Src.Addrs, db.Egress.Rules[0].Dst.Addrs); got != "[10.244.0.1] [10.244.0.1]" {
		t.Errorf("db rules: %s", got)
	}
}

package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestSelector(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front", "env": "prod-eu"}
	cases := []struct {
		sel  string
		want bool
	}{
		{"all()", true},
		{"app == 'web'", true},
		{`app == "db"`, false},
		{"app != 'db'", true},
		{"missing != 'x'", true},
		{"has(app)", true},
		{"!has(app)", false},
		{"!has(missing)", true},
		{"app in {'web', 'api'}", true},
		{"app in {}", false},
		{"app not in {'web'}", false},
		{"missing not in {'web'}", true},
		{"missing in {'web'}", false},
		{"app == 'web' && tier == 'back'", false},
		{"app == 'db' || tier == 'front'", true},
		{"app == 'db' || tier == 'back' && has(app)", false},
		{"(app == 'db' || tier == 'front') && has(env)", true},
		{"!(app == 'web')", false},
		{"env starts with 'prod'", true},
		{"env ends with 'eu'", true},
		{"env contains 'd-e'", true},
		{"env contains 'us'", false},
	}
	for _, c := range cases {
		s, err := ParseSelector(c.sel)
		if err != nil {
			t.Errorf("%s: %v", c.sel, err)
			continue
		}
		if got := s.Matches(labels); got != c.want {
			t.Errorf("%s: Matches = %v, want %v", c.sel, got, c.want)
		}
	}
	for _, bad := range []string{"", "app ==", "app = 'web'", "app == web", "has(app", "(app == 'x'", "app in {'a' 'b'}", "app not 'x'", "all() &&", "app == 'x' extra", "Bad_Key- == 'x'", "||"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("%q: parsed, want an error", bad)
		}
	}
	deep := strings.Repeat("!", 100) + "all()"
	if _, err := ParseSelector(deep); err == nil {
		t.Errorf("100 negations: parsed, want too deep")
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"all()", "a == 'b' && !has(c) || d in {'x','y'}", "(a not in {}) && b starts with \"q\"", "!(!(has(x)))"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		if sel.String() != s {
			t.Fatalf("String() = %q, want %q", sel.String(), s)
		}
		sel.Matches(map[string]string{"a": "b", "x": "y"})
		sel.Matches(nil)
	})
}

func ord(f float64) *float64 { return &f }
func u8(v uint8) *uint8      { return &v }

func TestDefaultTypes(t *testing.T) {
	r := []Rule{{Action: Allow}}
	cases := []struct {
		p    Policy
		want string
	}{
		{Policy{}, "Ingress"},
		{Policy{Ingress: r}, "Ingress"},
		{Policy{Egress: r}, "Egress"},
		{Policy{Ingress: r, Egress: r}, "Ingress,Egress"},
		{Policy{Types: []Direction{Egress}}, "Egress"},
	}
	for _, c := range cases {
		c.p.Kind = KindNetworkPolicy
		c.p.Default()
		var got []string
		for _, d := range c.p.Types {
			got = append(got, string(d))
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%+v: types %v, want %s", c.p, got, c.want)
		}
		if c.p.Namespace != "default" || c.p.Selector != "all()" {
			t.Errorf("namespace %q selector %q, want default and all()", c.p.Namespace, c.p.Selector)
		}
	}
}

func TestValidate(t *testing.T) {
	p := Policy{Kind: KindNetworkPolicy, Name: "Bad_Name", Namespace: "default", Selector: "app ==", NamespaceSelector: "all()",
		Types: []Direction{Ingress, "ingress", Ingress},
		Ingress: []Rule{
			{Action: "allow", Destination: EntityRule{Ports: []PortRange{{80, 80}}}},
			{Action: Allow, Protocol: ProtoUDP, ICMP: &ICMPMatch{Code: u8(1)}},
			{Action: Deny, Protocol: ProtoTCP, NotProtocol: ProtoTCP, Source: EntityRule{Selector: "x in {"}},
		},
		Egress: []Rule{{Action: Pass}},
	}
	want := []string{
		"metadata.name: \"Bad_Name\" is not a valid name",
		"spec.namespaceSelector: only a GlobalNetworkPolicy",
		"spec.selector: selector \"app ==\"",
		"spec.types[1]: \"ingress\" is not a policy type",
		"spec.types[2]: Ingress is given twice",
		"spec.types: the policy has egress rules",
		"spec.ingress[0].action: \"allow\" is not an action (Allow, Deny, Log or Pass); did you mean Allow?",
		"spec.ingress[0].destination.ports: ports need protocol",
		"spec.ingress[1].icmp: needs protocol ICMP",
		"spec.ingress[1].icmp.code: needs a type",
		"spec.ingress[2].notProtocol: equals protocol",
		"spec.ingress[2].source.selector: selector",
	}
	errs := Validate(&p)
	if len(errs) != len(want) {
		t.Errorf("%d problems, want %d: %v", len(errs), len(want), errs)
	}
	for i := 0; i < len(errs) && i < len(want); i++ {
		if !strings.HasPrefix(errs[i].Error(), want[i]) {
			t.Errorf("problem %d: %q, want it to start with %q", i, errs[i].Error(), want[i])
		}
	}
	good := Policy{Kind: KindGlobalNetworkPolicy, Name: "ok", Egress: []Rule{{Action: Allow, Protocol: ProtoICMP, ICMP: &ICMPMatch{Type: u8(8), Code: u8(0)}}}}
	good.Default()
	if errs := Validate(&good); len(errs) != 0 {
		t.Errorf("valid policy: %v", errs)
	}
}

var (
	a1 = netip.MustParseAddr("10.0.0.1")
	a2 = netip.MustParseAddr("10.0.0.2")
	a3 = netip.MustParseAddr("10.0.0.3")
	b1 = netip.MustParseAddr("10.0.1.1")
)

// endpoints: web and client in default, db in prod, other in prod.
var testEndpoints = []Endpoint{
	{Name: "web", Labels: map[string]string{"app": "web"}, Addr: a1},
	{Name: "client", Labels: map[string]string{"role": "client"}, Addr: a2},
	{Name: "db", Namespace: "prod", Labels: map[string]string{"app": "db"}, Addr: a3},
	{Name: "other", Namespace: "prod", Labels: map[string]string{"role": "client"}, Addr: b1},
}

func flow(src, dst netip.Addr, proto uint8, dport uint16) *Flow {
	return &Flow{Src: U32(src), Dst: U32(dst), Proto: proto, SrcPort: 40000, DstPort: dport}
}

func TestCompileSemantics(t *testing.T) {
	pols := []Policy{
		// Ingress to web: allow TCP 80 from role=client in its namespace.
		{Kind: KindNetworkPolicy, Name: "web-allow", Selector: "app == 'web'", Order: ord(100),
			Ingress: []Rule{{Action: Allow, Protocol: ProtoTCP, Source: EntityRule{Selector: "role == 'client'"}, Destination: EntityRule{Ports: []PortRange{{80, 80}}}}}},
		// Order 10 before it: log everything, deny port 81.
		{Kind: KindGlobalNetworkPolicy, Name: "early", Selector: "app == 'web'", Order: ord(10),
			Ingress: []Rule{{Action: Log}, {Action: Deny, Protocol: ProtoTCP, Destination: EntityRule{Ports: []PortRange{{81, 81}}}}}},
		// db: pass from anything in prod, then (no order, later) deny.
		{Kind: KindNetworkPolicy, Name: "db-pass", Namespace: "prod", Selector: "app == 'db'", Order: ord(1),
			Ingress: []Rule{{Action: Pass, Source: EntityRule{NamespaceSelector: "projectcalico.org/name == 'prod'"}}}},
		{Kind: KindNetworkPolicy, Name: "db-deny", Namespace: "prod", Selector: "app == 'db'",
			Ingress: []Rule{{Action: Deny}}},
	}
	var ctr Counters
	c := Compile(pols, testEndpoints)
	if got := c.Policies[0].Name + "," + c.Policies[1].Name + "," + c.Policies[2].Name + "," + c.Policies[3].Name; got != "db-pass,early,web-allow,db-deny" {
		t.Errorf("order %s", got)
	}
	web := NewMatcher(&c.Endpoints["web"].Ingress, Ingress, &ctr)
	var logged []RuleID
	web.SetLog(func(r RuleID, f Flow) { logged = append(logged, r) })
	cases := []struct {
		name string
		m    *Matcher
		f    *Flow
		want Verdict
	}{
		{"client to web:80", web, flow(a2, a1, ProtoTCP, 80), Allowed},
		{"client to web:81 denied by the earlier policy", web, flow(a2, a1, ProtoTCP, 81), Denied},
		{"client to web:82 default deny", web, flow(a2, a1, ProtoTCP, 82), DefaultDenied},
		{"other (prod, role=client) to web:80: selector is namespaced", web, flow(b1, a1, ProtoTCP, 80), DefaultDenied},
		{"UDP to web:80", web, flow(a2, a1, ProtoUDP, 80), DefaultDenied},
		{"web egress not policed", NewMatcher(&c.Endpoints["web"].Egress, Egress, &ctr), flow(a1, a2, ProtoTCP, 1), NotPoliced},
		{"client ingress not policed", NewMatcher(&c.Endpoints["client"].Ingress, Ingress, &ctr), flow(a1, a2, ProtoTCP, 1), NotPoliced},
		{"other to db passes", NewMatcher(&c.Endpoints["db"].Ingress, Ingress, &ctr), flow(b1, a3, ProtoUDP, 53), Passed},
		{"client to db denied", NewMatcher(&c.Endpoints["db"].Ingress, Ingress, &ctr), flow(a2, a3, ProtoUDP, 53), Denied},
	}
	for _, cs := range cases {
		if got, _ := cs.m.Evaluate(cs.f); got != cs.want {
			t.Errorf("%s: %v, want %v", cs.name, got, cs.want)
		}
	}
	snap := ctr.Snapshot()
	// The Log rule saw the five flows to web.
	if got := snap[RuleID{"early", Ingress, 0}]; got != 5 {
		t.Errorf("log rule hits %d, want 5", got)
	}
	if len(logged) != 5 || logged[0] != (RuleID{"early", Ingress, 0}) {
		t.Errorf("logged %v, want the early policy's rule 0 five times", logged)
	}
	if got := snap[RuleID{"default/web-allow", Ingress, 0}]; got != 1 {
		t.Errorf("allow rule hits %d, want 1", got)
	}
}

func TestMatchFields(t *testing.T) {
	r := func(rule Rule) *Matcher {
		p := Policy{Kind: KindGlobalNetworkPolicy, Name: "p", Ingress: []Rule{rule}}
		c := Compile([]Policy{p}, testEndpoints)
		return NewMatcher(&c.Endpoints["web"].Ingress, Ingress, nil)
	}
	icmp := func(typ, code uint8) *Flow {
		return &Flow{Src: U32(a2), Dst: U32(a1), Proto: ProtoICMP, ICMPType: typ, ICMPCode: code}
	}
	cases := []struct {
		name string
		rule Rule
		f    *Flow
		want bool
	}{
		{"nets", Rule{Action: Allow, Source: EntityRule{Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/30")}}}, flow(a2, a1, ProtoTCP, 1), true},
		{"nets miss", Rule{Action: Allow, Source: EntityRule{Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/31")}}}, flow(a2, a1, ProtoTCP, 1), false},
		{"notNets", Rule{Action: Allow, Source: EntityRule{NotNets: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}}}, flow(a2, a1, ProtoTCP, 1), false},
		{"port range", Rule{Action: Allow, Protocol: ProtoTCP, Destination: EntityRule{Ports: []PortRange{{8000, 8080}}}}, flow(a2, a1, ProtoTCP, 8080), true},
		{"notPorts", Rule{Action: Allow, Protocol: ProtoTCP, Destination: EntityRule{NotPorts: []PortRange{{22, 22}}}}, flow(a2, a1, ProtoTCP, 22), false},
		{"notPorts other port", Rule{Action: Allow, Protocol: ProtoTCP, Destination: EntityRule{NotPorts: []PortRange{{22, 22}}}}, flow(a2, a1, ProtoTCP, 23), true},
		{"source ports", Rule{Action: Allow, Protocol: ProtoTCP, Source: EntityRule{Ports: []PortRange{{40000, 40000}}}}, flow(a2, a1, ProtoTCP, 1), true},
		{"notProtocol", Rule{Action: Allow, NotProtocol: ProtoTCP}, flow(a2, a1, ProtoTCP, 1), false},
		{"protocol number", Rule{Action: Allow, Protocol: 17}, flow(a2, a1, ProtoUDP, 1), true},
		{"icmp type", Rule{Action: Allow, Protocol: ProtoICMP, ICMP: &ICMPMatch{Type: u8(8)}}, icmp(8, 0), true},
		{"icmp type miss", Rule{Action: Allow, Protocol: ProtoICMP, ICMP: &ICMPMatch{Type: u8(8)}}, icmp(0, 0), false},
		{"icmp code", Rule{Action: Allow, Protocol: ProtoICMP, ICMP: &ICMPMatch{Type: u8(3), Code: u8(4)}}, icmp(3, 3), false},
		{"notICMP", Rule{Action: Allow, Protocol: ProtoICMP, NotICMP: &ICMPMatch{Type: u8(8)}}, icmp(8, 0), false},
		{"selector across namespaces (global)", Rule{Action: Allow, Source: EntityRule{Selector: "role == 'client'"}}, flow(b1, a1, ProtoTCP, 1), true},
		{"notSelector", Rule{Action: Allow, Source: EntityRule{NotSelector: "role == 'client'"}}, flow(b1, a1, ProtoTCP, 1), false},
		{"selector matching nothing", Rule{Action: Allow, Source: EntityRule{Selector: "app == 'none'"}}, flow(a2, a1, ProtoTCP, 1), false},
		{"namespaceSelector", Rule{Action: Allow, Source: EntityRule{NamespaceSelector: "kubernetes.io/metadata.name == 'prod'"}}, flow(a3, a1, ProtoTCP, 1), true},
		{"namespaceSelector other ns", Rule{Action: Allow, Source: EntityRule{NamespaceSelector: "kubernetes.io/metadata.name == 'prod'"}}, flow(a2, a1, ProtoTCP, 1), false},
		{"non-endpoint source matches nets only", Rule{Action: Allow, Source: EntityRule{Selector: "all()"}}, flow(netip.MustParseAddr("192.0.2.1"), a1, ProtoTCP, 1), false},
	}
	for _, c := range cases {
		got, _ := r(c.rule).Evaluate(c.f)
		if got.Allows() != c.want {
			t.Errorf("%s: %v, want allowed=%v", c.name, got, c.want)
		}
	}
}

// BenchmarkNewFlow1000Rules evaluates a new flow against 1,000 rules of
// which only the last matches, each rule on its own destination port (the
// matcher's port index finds the candidates).
func BenchmarkNewFlow1000Rules(b *testing.B) {
	bench1000(b, func(i int) uint16 { return uint16(1000 + i) })
}

// BenchmarkNewFlow1000RulesSamePort is the worst case: the 1,000 rules
// are all on the flow's port (the index does not help; every rule's
// compact test runs).
func BenchmarkNewFlow1000RulesSamePort(b *testing.B) {
	bench1000(b, func(int) uint16 { return 80 })
}

func bench1000(b *testing.B, port func(i int) uint16) {
	var rules []Rule
	for i := 0; i < 999; i++ {
		rules = append(rules, Rule{Action: Allow, Protocol: ProtoTCP,
			Source:      EntityRule{Nets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 32)}},
			Destination: EntityRule{Ports: []PortRange{{port(i), port(i)}}}})
	}
	rules = append(rules, Rule{Action: Allow, Protocol: ProtoTCP, Source: EntityRule{Selector: "role == 'client'"}, Destination: EntityRule{Ports: []PortRange{{80, 80}}}})
	p := Policy{Kind: KindNetworkPolicy, Name: "big", Selector: "app == 'web'", Ingress: rules}
	c := Compile([]Policy{p}, testEndpoints)
	m := NewMatcher(&c.Endpoints["web"].Ingress, Ingress, nil)
	if m.Len() != 1000 {
		b.Fatalf("%d rules", m.Len())
	}
	f := flow(a2, a1, ProtoTCP, 80)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v, _ := m.Evaluate(f); v != Allowed {
			b.Fatal(v)
		}
	}
}

// BenchmarkCompile compiles 1,000 policies of 10 rules against 1,000
// endpoints: what an agent does on every policy change.
func BenchmarkCompile(b *testing.B) {
	var pols []Policy
	for i := 0; i < 1000; i++ {
		var rules []Rule
		for k := 0; k < 10; k++ {
			rules = append(rules, Rule{Action: Allow, Protocol: ProtoTCP, Source: EntityRule{Selector: fmt.Sprintf("app == 'a%d'", (i+k)%100)}, Destination: EntityRule{Ports: []PortRange{{80, 80}}}})
		}
		pols = append(pols, Policy{Kind: KindNetworkPolicy, Name: fmt.Sprintf("p%d", i), Selector: fmt.Sprintf("app == 'a%d'", i%100), Ingress: rules})
	}
	var eps []Endpoint
	for i := 0; i < 1000; i++ {
		eps = append(eps, Endpoint{Name: fmt.Sprintf("w%d", i), Labels: map[string]string{"app": fmt.Sprintf("a%d", i%100)}, Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Compile(pols, eps)
	}
}

package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// Compiled is a policy set compiled against the endpoints it applies to.
type Compiled struct {
	// Policies are the policies in evaluation order, defaulted.
	Policies []Policy
	// Endpoints maps an endpoint's name to its chains.
	Endpoints map[string]*EndpointRules
}

// EndpointRules are the chains of one endpoint.
type EndpointRules struct {
	Endpoint Endpoint
	Ingress  Chain
	Egress   Chain
}

// Chain is what applies to one endpoint in one direction.
type Chain struct {
	// Policed is set when at least one policy selects the endpoint for
	// this direction: then a flow no rule allows is denied. When it is
	// not set, Rules is empty and everything is allowed.
	Policed bool
	// Policies are the keys of the policies that select the endpoint for
	// this direction, in order.
	Policies []string
	// Rules are their rules, in order. Evaluate them in order: Allow and
	// Deny decide, Log continues, Pass ends the tier (and, there being
	// one tier, the profile allows: see the package doc). No match:
	// deny.
	Rules []CompiledRule
}

// CompiledRule is one rule with its selectors resolved to addresses.
type CompiledRule struct {
	Policy string // the policy's key
	Index  int    // the rule's index in the policy's ingress or egress list
	Action Action
	// Protocol, when not 0, must equal the packet's; NotProtocol, when
	// not 0, must not.
	Protocol, NotProtocol uint8
	// ICMPType/ICMPCode, when not -1, must equal the message's;
	// NotICMPType/NotICMPCode, when not -1, exclude the messages with
	// that type (and code, when given).
	ICMPType, ICMPCode       int16
	NotICMPType, NotICMPCode int16
	Src, Dst                 Match
}

// Match is a resolved source or destination.
type Match struct {
	// Nets: the address is in one of them (when not empty). NotNets: in
	// none of them.
	Nets, NotNets []netip.Prefix
	// Selected: when set, the address must be one of Addrs, the addresses
	// of the endpoints the rule's selector and namespaceSelector select
	// (none may: then the rule matches nothing).
	Selected bool
	Addrs    []netip.Addr
	// NotAddrs are the addresses of the endpoints notSelector selects.
	NotAddrs []netip.Addr
	// Ports, when not empty, must contain the port; NotPorts must not.
	Ports, NotPorts []PortRange
}

// Sort orders policies as Calico evaluates them: by order (none last),
// then by key.
func Sort(pols []Policy) {
	slices.SortStableFunc(pols, func(a, b Policy) int {
		switch {
		case a.Order != nil && b.Order != nil:
			if c := cmp.Compare(*a.Order, *b.Order); c != 0 {
				return c
			}
		case a.Order != nil:
			return -1
		case b.Order != nil:
			return 1
		}
		return cmp.Compare(a.Key(), b.Key())
	})
}

// policySelectors are a policy's selector and namespace selector, parsed.
type policySelectors struct {
	sel, nsSel Selector
	hasNS      bool
}

func selectorsOf(p *Policy) policySelectors {
	ps := policySelectors{sel: MustParseSelector(p.Selector)}
	if p.NamespaceSelector != "" {
		ps.nsSel, ps.hasNS = MustParseSelector(p.NamespaceSelector), true
	}
	return ps
}

// selects reports whether p applies to e (for some direction).
func selects(p *Policy, ps *policySelectors, e *Endpoint, labels map[string]string) bool {
	if p.Kind == KindNetworkPolicy && p.Namespace != e.ns() {
		return false
	}
	if ps.hasNS && !ps.nsSel.Matches(NamespaceLabels(e.ns())) {
		return false
	}
	return ps.sel.Matches(labels)
}

// Compile compiles valid policies (see [Validate]) against endpoints: it
// applies defaults to copies of the policies, sorts them, and resolves
// every rule's selectors to the addresses of the endpoints they select.
// Endpoints without an address are given chains but match no selector.
func Compile(pols []Policy, eps []Endpoint) *Compiled {
	c := &Compiled{Policies: slices.Clone(pols), Endpoints: make(map[string]*EndpointRules, len(eps))}
	for i := range c.Policies {
		c.Policies[i].Default()
	}
	Sort(c.Policies)
	labels := make([]map[string]string, len(eps))
	for i := range eps {
		labels[i] = eps[i].labels()
	}
	// Resolve each policy's rules once; they are the same for every
	// endpoint the policy selects.
	type resolved struct {
		in, out []CompiledRule
		sels    policySelectors
	}
	rules := make([]resolved, len(c.Policies))
	cache := map[string][]netip.Addr{} // resolved selectors, see resolveEntity
	for i := range c.Policies {
		p := &c.Policies[i]
		rules[i].in = resolveRules(p, p.Ingress, eps, labels, cache)
		rules[i].out = resolveRules(p, p.Egress, eps, labels, cache)
		rules[i].sels = selectorsOf(p)
	}
	for i := range eps {
		e := eps[i]
		er := &EndpointRules{Endpoint: e}
		for j := range c.Policies {
			p := &c.Policies[j]
			if !selects(p, &rules[j].sels, &e, labels[i]) {
				continue
			}
			if p.Applies(Ingress) {
				er.Ingress.Policed = true
				er.Ingress.Policies = append(er.Ingress.Policies, p.Key())
				er.Ingress.Rules = append(er.Ingress.Rules, rules[j].in...)
			}
			if p.Applies(Egress) {
				er.Egress.Policed = true
				er.Egress.Policies = append(er.Egress.Policies, p.Key())
				er.Egress.Rules = append(er.Egress.Rules, rules[j].out...)
			}
		}
		c.Endpoints[e.Name] = er
	}
	return c
}

func resolveRules(p *Policy, rs []Rule, eps []Endpoint, labels []map[string]string, cache map[string][]netip.Addr) []CompiledRule {
	out := make([]CompiledRule, 0, len(rs))
	for i := range rs {
		r := &rs[i]
		cr := CompiledRule{Policy: p.Key(), Index: i, Action: r.Action, Protocol: r.Protocol, NotProtocol: r.NotProtocol,
			ICMPType: -1, ICMPCode: -1, NotICMPType: -1, NotICMPCode: -1}
		if r.ICMP != nil {
			cr.ICMPType, cr.ICMPCode = icmpField(r.ICMP.Type), icmpField(r.ICMP.Code)
		}
		if r.NotICMP != nil {
			cr.NotICMPType, cr.NotICMPCode = icmpField(r.NotICMP.Type), icmpField(r.NotICMP.Code)
		}
		cr.Src = resolveEntity(p, &r.Source, eps, labels, cache)
		cr.Dst = resolveEntity(p, &r.Destination, eps, labels, cache)
		out = append(out, cr)
	}
	return out
}

func icmpField(v *uint8) int16 {
	if v == nil {
		return -1
	}
	return int16(*v)
}

// resolveEntity resolves an entity rule. As Calico does, a selector in a
// NetworkPolicy's rule selects endpoints of the policy's namespace unless
// the rule has a namespaceSelector, which selects the namespaces instead;
// in a GlobalNetworkPolicy it selects in every namespace. notSelector is
// not limited to a namespace.
func resolveEntity(p *Policy, e *EntityRule, eps []Endpoint, labels []map[string]string, cache map[string][]netip.Addr) Match {
	m := Match{Nets: e.Nets, NotNets: e.NotNets, Ports: e.Ports, NotPorts: e.NotPorts}
	if e.Selector != "" || e.NamespaceSelector != "" {
		scope := "*" // every namespace
		if e.NamespaceSelector == "" && p.Kind == KindNetworkPolicy {
			scope = "ns:" + p.Namespace
		}
		m.Selected = true
		m.Addrs = selectAddrs(cache, scope, e.Selector, e.NamespaceSelector, eps, labels)
	}
	if e.NotSelector != "" {
		m.NotAddrs = selectAddrs(cache, "*", e.NotSelector, "", eps, labels)
	}
	return m
}

// selectAddrs returns the sorted addresses of the endpoints in scope
// ("*" or "ns:NAME") that sel selects (all if empty) in the namespaces
// nsSel selects (all if empty), memoized in cache. The slice is shared:
// read only.
func selectAddrs(cache map[string][]netip.Addr, scope, sel, nsSel string, eps []Endpoint, labels []map[string]string) []netip.Addr {
	key := scope + "\x00" + sel + "\x00" + nsSel
	if a, ok := cache[key]; ok {
		return a
	}
	var s, ns Selector
	if sel != "" {
		s = MustParseSelector(sel)
	}
	if nsSel != "" {
		ns = MustParseSelector(nsSel)
	}
	nsOK := map[string]bool{}
	addrs := []netip.Addr{}
	for i := range eps {
		ep := &eps[i]
		if !ep.Addr.IsValid() {
			continue
		}
		if name, ok := strings.CutPrefix(scope, "ns:"); ok && ep.ns() != name {
			continue
		}
		if nsSel != "" {
			ok, seen := nsOK[ep.ns()]
			if !seen {
				ok = ns.Matches(NamespaceLabels(ep.ns()))
				nsOK[ep.ns()] = ok
			}
			if !ok {
				continue
			}
		}
		if sel != "" && !s.Matches(labels[i]) {
			continue
		}
		addrs = append(addrs, ep.Addr)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	cache[key] = addrs
	return addrs
}

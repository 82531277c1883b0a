// Package policy is Calico's network policy model: NetworkPolicy and
// GlobalNetworkPolicy resources (types, selectors, rules), Calico's
// defaulting and validation, and their compiled form: for each endpoint
// (workload), the ordered rules that apply to its ingress and its egress,
// with selectors resolved to addresses and Pass resolved.
//
// The compiled form ([Compiled], [Chain]) is what the dataplanes consume:
// the userspace engine turns a Chain into a [Matcher] and evaluates new
// flows with it (vrouter/dataplane), and a kernel renderer can write the
// same Chain as nftables rules. Nothing here depends on a dataplane.
//
// Semantics, as Calico documents them: an endpoint no policy selects for a
// direction is not policed in it (everything allowed); once a policy
// selects it for a direction, traffic in that direction is denied unless a
// rule allows it. Policies are evaluated in order (lower first, no order
// last, ties by name); within the tier the first Allow or Deny decides, Log
// records and continues, Pass ends the tier. There is one tier (Calico's
// default); after it come the endpoint's profiles, which in a Kubernetes
// cluster allow everything: so Pass allows, unless a later tier existed.
package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Kinds of policy resources.
const (
	KindNetworkPolicy       = "NetworkPolicy"
	KindGlobalNetworkPolicy = "GlobalNetworkPolicy"
)

// DefaultNamespace is the namespace of a workload or NetworkPolicy that
// names none.
const DefaultNamespace = "default"

// Labels Calico gives every workload endpoint, and the labels a namespace
// selector sees on a namespace besides none of its own (this lab has no
// namespace resources: a namespace's only labels are its name, under both
// keys Calico and Kubernetes use).
const (
	LabelNamespace    = "projectcalico.org/namespace"
	LabelOrchestrator = "projectcalico.org/orchestrator"
	LabelName         = "projectcalico.org/name"
	LabelK8sName      = "kubernetes.io/metadata.name"
)

// Action is a rule's action.
type Action string

// Rule actions.
const (
	Allow Action = "Allow"
	Deny  Action = "Deny"
	Log   Action = "Log"
	Pass  Action = "Pass"
)

// Actions lists the valid actions.
var Actions = []Action{Allow, Deny, Log, Pass}

// Direction is a policy type: Ingress (traffic to the endpoint) or Egress
// (traffic from it).
type Direction string

// Directions.
const (
	Ingress Direction = "Ingress"
	Egress  Direction = "Egress"
)

// Protocol numbers with names.
const (
	ProtoICMP    uint8 = 1
	ProtoTCP     uint8 = 6
	ProtoUDP     uint8 = 17
	ProtoSCTP    uint8 = 132
	ProtoUDPLite uint8 = 136
)

var protoNames = map[string]uint8{"TCP": ProtoTCP, "UDP": ProtoUDP, "ICMP": ProtoICMP, "SCTP": ProtoSCTP, "UDPLite": ProtoUDPLite}

// ParseProtocol reads a protocol: TCP, UDP, ICMP, SCTP, UDPLite (as Calico
// spells them) or a number 1-255.
func ParseProtocol(s string) (uint8, error) {
	if n, ok := protoNames[s]; ok {
		return n, nil
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil && n > 0 {
		return uint8(n), nil
	}
	for name := range protoNames {
		if strings.EqualFold(name, s) {
			return 0, fmt.Errorf("%q is not a protocol; did you mean %s? (case matters)", s, name)
		}
	}
	if strings.EqualFold(s, "ICMPv6") {
		return 0, fmt.Errorf("ICMPv6 is not supported (IPv4 only)")
	}
	return 0, fmt.Errorf("%q is not a protocol (TCP, UDP, ICMP, SCTP, UDPLite or a number 1-255)", s)
}

// ProtocolName returns TCP, UDP, ... or the number.
func ProtocolName(p uint8) string {
	for n, v := range protoNames {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(int(p))
}

// hasPorts reports whether a protocol has ports Calico can match.
func hasPorts(p uint8) bool {
	return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP || p == ProtoUDPLite
}

// PortRange is an inclusive range of ports; a single port has First == Last.
type PortRange struct {
	First, Last uint16
}

// String returns "80" or "8000:8080", as Calico writes them.
func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + ":" + strconv.Itoa(int(r.Last))
}

// ParsePort reads a port (0-65535) or a range "first:last".
func ParsePort(s string) (PortRange, error) {
	first, last, isRange := strings.Cut(s, ":")
	a, err := strconv.ParseUint(strings.TrimSpace(first), 10, 16)
	if err != nil {
		return PortRange{}, fmt.Errorf("%q is not a port (0-65535) or a range such as 8000:8080 (named ports are not supported)", s)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(strings.TrimSpace(last), 10, 16); err != nil {
			return PortRange{}, fmt.Errorf("%q is not a port range such as 8000:8080", s)
		}
		if b < a {
			return PortRange{}, fmt.Errorf("%q: the range ends before it starts", s)
		}
	}
	return PortRange{uint16(a), uint16(b)}, nil
}

// ICMPMatch matches ICMP messages by type and, optionally, code.
type ICMPMatch struct {
	Type *uint8 `json:",omitempty"`
	Code *uint8 `json:",omitempty"`
}

// EntityRule is a rule's source or destination.
type EntityRule struct {
	Nets              []netip.Prefix `json:",omitempty"`
	NotNets           []netip.Prefix `json:",omitempty"`
	Selector          string         `json:",omitempty"`
	NotSelector       string         `json:",omitempty"`
	NamespaceSelector string         `json:",omitempty"`
	Ports             []PortRange    `json:",omitempty"`
	NotPorts          []PortRange    `json:",omitempty"`
}

// Rule is one ingress or egress rule.
type Rule struct {
	Action      Action
	Protocol    uint8      `json:",omitempty"` // 0: any
	NotProtocol uint8      `json:",omitempty"` // 0: none
	ICMP        *ICMPMatch `json:",omitempty"`
	NotICMP     *ICMPMatch `json:",omitempty"`
	Source      EntityRule `json:",omitzero"`
	Destination EntityRule `json:",omitzero"`
}

// Policy is a NetworkPolicy (namespaced: it selects endpoints of its own
// namespace only) or a GlobalNetworkPolicy.
type Policy struct {
	Kind      string
	Name      string
	Namespace string `json:",omitempty"` // NetworkPolicy only
	// Order: lower first; nil is after every ordered policy ("infinite").
	Order *float64 `json:",omitempty"`
	// Selector selects the endpoints the policy applies to; empty is all().
	Selector string `json:",omitempty"`
	// NamespaceSelector (GlobalNetworkPolicy only) restricts it to the
	// endpoints of the namespaces it selects.
	NamespaceSelector string      `json:",omitempty"`
	Types             []Direction `json:",omitempty"`
	Ingress           []Rule      `json:",omitempty"`
	Egress            []Rule      `json:",omitempty"`
}

// Key is the policy's unique name: namespace/name for a NetworkPolicy, the
// name for a GlobalNetworkPolicy.
func (p *Policy) Key() string {
	if p.Kind == KindNetworkPolicy {
		return p.Namespace + "/" + p.Name
	}
	return p.Name
}

// Applies reports whether the policy has the type d.
func (p *Policy) Applies(d Direction) bool {
	for _, t := range p.Types {
		if t == d {
			return true
		}
	}
	return false
}

// Default applies Calico's defaults: a NetworkPolicy's namespace is
// "default"; an empty selector is all(); types, when not given, are
// Ingress, plus Egress when the policy has egress rules (Egress alone when
// it has egress rules and no ingress rules).
func (p *Policy) Default() {
	if p.Kind == KindNetworkPolicy && p.Namespace == "" {
		p.Namespace = DefaultNamespace
	}
	if strings.TrimSpace(p.Selector) == "" {
		p.Selector = "all()"
	}
	if len(p.Types) == 0 {
		switch {
		case len(p.Egress) > 0 && len(p.Ingress) == 0:
			p.Types = []Direction{Egress}
		case len(p.Egress) > 0:
			p.Types = []Direction{Ingress, Egress}
		default:
			p.Types = []Direction{Ingress}
		}
	}
}

// Endpoint is a workload as policy sees it.
type Endpoint struct {
	Name      string
	Namespace string            `json:",omitempty"` // empty: DefaultNamespace
	Labels    map[string]string `json:",omitempty"`
	Addr      netip.Addr        `json:",omitzero"`
}

// ns returns the endpoint's namespace.
func (e *Endpoint) ns() string {
	if e.Namespace == "" {
		return DefaultNamespace
	}
	return e.Namespace
}

// labels returns the labels selectors see: the endpoint's own and Calico's
// namespace and orchestrator labels.
func (e *Endpoint) labels() map[string]string {
	l := make(map[string]string, len(e.Labels)+2)
	for k, v := range e.Labels {
		l[k] = v
	}
	l[LabelNamespace] = e.ns()
	l[LabelOrchestrator] = "k8s"
	return l
}

// NamespaceLabels returns the labels a namespace selector sees on the
// namespace ns.
func NamespaceLabels(ns string) map[string]string {
	return map[string]string{LabelName: ns, LabelK8sName: ns}
}

// ParseNet reads a rule's CIDR: an IPv4 CIDR without host bits, or an
// address (a /32).
func ParseNet(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 CIDR or address", s)
		}
		return netip.PrefixFrom(a, 32), nil
	}
	c, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return c, fmt.Errorf("%q is not a CIDR (such as 10.244.0.0/16)", s)
	case !c.Addr().Is4():
		return c, fmt.Errorf("%s is not an IPv4 CIDR (only IPv4 is supported)", s)
	case c != c.Masked():
		return c, fmt.Errorf("%s has host bits set; did you mean %s?", s, c.Masked())
	}
	return c, nil
}

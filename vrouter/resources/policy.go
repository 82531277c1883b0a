package resources

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// Policy resources, in Calico's shape, and the workload endpoints their
// selectors match. Their keys carry the namespace for the namespaced
// kinds, as Calico's do:
//
//	/calico/resources/v3/projectcalico.org/networkpolicies/<namespace>/<name>
//	/calico/resources/v3/projectcalico.org/globalnetworkpolicies/<name>
//	/calico/resources/v3/projectcalico.org/workloadendpoints/<namespace>/<name>
//
// Their meaning and validation are vrouter/policy's: a resource converts
// to a policy.Policy (Policy) or a policy.Endpoint (Endpoint) and back.

// NetworkPolicy is a namespaced policy.
type NetworkPolicy struct {
	TypeMeta `json:",inline"`
	Metadata Metadata   `json:"metadata"`
	Spec     PolicySpec `json:"spec"`
}

// GlobalNetworkPolicy is a policy of every namespace (or of those its
// namespaceSelector picks).
type GlobalNetworkPolicy struct {
	TypeMeta `json:",inline"`
	Metadata Metadata   `json:"metadata"`
	Spec     PolicySpec `json:"spec"`
}

// PolicySpec is a policy's spec, as Calico writes it.
type PolicySpec struct {
	// Tier is Calico's tier; only the default tier exists here.
	Tier              string     `json:"tier,omitempty"`
	Order             *float64   `json:"order,omitempty"`
	Selector          string     `json:"selector,omitempty"`
	NamespaceSelector string     `json:"namespaceSelector,omitempty"`
	Types             []string   `json:"types,omitempty"`
	Ingress           []RuleSpec `json:"ingress,omitempty"`
	Egress            []RuleSpec `json:"egress,omitempty"`
}

// RuleSpec is one ingress or egress rule, as Calico writes it.
type RuleSpec struct {
	Action      string       `json:"action"`
	IPVersion   *int         `json:"ipVersion,omitempty"`
	Protocol    *NumOrString `json:"protocol,omitempty"`
	NotProtocol *NumOrString `json:"notProtocol,omitempty"`
	ICMP        *ICMPSpec    `json:"icmp,omitempty"`
	NotICMP     *ICMPSpec    `json:"notICMP,omitempty"`
	Source      *EntitySpec  `json:"source,omitempty"`
	Destination *EntitySpec  `json:"destination,omitempty"`
}

// ICMPSpec matches ICMP messages by type and code.
type ICMPSpec struct {
	Type *int `json:"type,omitempty"`
	Code *int `json:"code,omitempty"`
}

// EntitySpec is a rule's source or destination.
type EntitySpec struct {
	Nets              []string      `json:"nets,omitempty"`
	NotNets           []string      `json:"notNets,omitempty"`
	Selector          string        `json:"selector,omitempty"`
	NotSelector       string        `json:"notSelector,omitempty"`
	NamespaceSelector string        `json:"namespaceSelector,omitempty"`
	Ports             []NumOrString `json:"ports,omitempty"`
	NotPorts          []NumOrString `json:"notPorts,omitempty"`
}

// NumOrString is Calico's numorstring: a protocol or port written as a
// number (6, 80) or a string ("TCP", "8000:8080"). It is kept as text
// and written back as a number when it is one.
type NumOrString string

// MarshalJSON writes a number as a number.
func (v NumOrString) MarshalJSON() ([]byte, error) {
	if _, err := strconv.ParseUint(string(v), 10, 32); err == nil {
		return []byte(v), nil
	}
	return json.Marshal(string(v))
}

// UnmarshalJSON reads a number or a string.
func (v *NumOrString) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*v = NumOrString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return &json.UnmarshalTypeError{Value: "non-scalar", Type: numOrStringType}
	}
	*v = NumOrString(n.String())
	return nil
}

var numOrStringType = reflect.TypeOf(NumOrString(""))

// WorkloadEndpoint is a workload's interface, as the agent serving it
// registers it: its node, addresses and labels (metadata.labels, with
// projectcalico.org/namespace and projectcalico.org/orchestrator).
type WorkloadEndpoint struct {
	TypeMeta `json:",inline"`
	Metadata Metadata             `json:"metadata"`
	Spec     WorkloadEndpointSpec `json:"spec"`
}

// WorkloadEndpointSpec is a WorkloadEndpoint's spec.
type WorkloadEndpointSpec struct {
	Orchestrator  string   `json:"orchestrator,omitempty"`
	Workload      string   `json:"workload,omitempty"`
	Node          string   `json:"node"`
	ContainerID   string   `json:"containerID,omitempty"`
	Pod           string   `json:"pod,omitempty"`
	Endpoint      string   `json:"endpoint,omitempty"`
	IPNetworks    []string `json:"ipNetworks,omitempty"`
	Profiles      []string `json:"profiles,omitempty"`
	InterfaceName string   `json:"interfaceName,omitempty"`
	MAC           string   `json:"mac,omitempty"`
}

func (r *NetworkPolicy) Type() *TypeMeta       { return &r.TypeMeta }
func (r *NetworkPolicy) Meta() *Metadata       { return &r.Metadata }
func (r *GlobalNetworkPolicy) Type() *TypeMeta { return &r.TypeMeta }
func (r *GlobalNetworkPolicy) Meta() *Metadata { return &r.Metadata }
func (r *WorkloadEndpoint) Type() *TypeMeta    { return &r.TypeMeta }
func (r *WorkloadEndpoint) Meta() *Metadata    { return &r.Metadata }

// Validate checks a NetworkPolicy as vrouter/policy does.
func (r *NetworkPolicy) Validate() error {
	if err := validateMeta(&r.Metadata); err != nil {
		return err
	}
	_, err := toPolicy(policy.KindNetworkPolicy, &r.Metadata, &r.Spec)
	return err
}

// Validate checks a GlobalNetworkPolicy as vrouter/policy does.
func (r *GlobalNetworkPolicy) Validate() error {
	if err := validateMeta(&r.Metadata); err != nil {
		return err
	}
	_, err := toPolicy(policy.KindGlobalNetworkPolicy, &r.Metadata, &r.Spec)
	return err
}

// Policy returns the policy, with Calico's defaults applied.
func (r *NetworkPolicy) Policy() (policy.Policy, error) {
	return toPolicy(policy.KindNetworkPolicy, &r.Metadata, &r.Spec)
}

// Policy returns the policy, with Calico's defaults applied.
func (r *GlobalNetworkPolicy) Policy() (policy.Policy, error) {
	return toPolicy(policy.KindGlobalNetworkPolicy, &r.Metadata, &r.Spec)
}

// toPolicy converts a policy resource, reporting the first problem as a
// FieldError with its path in the resource.
func toPolicy(kind string, m *Metadata, s *PolicySpec) (policy.Policy, error) {
	p := policy.Policy{Kind: kind, Name: m.Name, Namespace: m.Namespace, Order: s.Order,
		Selector: s.Selector, NamespaceSelector: s.NamespaceSelector}
	if s.Tier != "" && s.Tier != "default" {
		return p, fieldErr("spec.tier", "%q: only the default tier exists", s.Tier)
	}
	for _, t := range s.Types {
		p.Types = append(p.Types, policy.Direction(t))
	}
	for _, d := range []struct {
		name  string
		rules []RuleSpec
		out   *[]policy.Rule
	}{{"spec.ingress", s.Ingress, &p.Ingress}, {"spec.egress", s.Egress, &p.Egress}} {
		for i := range d.rules {
			r, err := toRule(&d.rules[i], d.name+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return p, err
			}
			*d.out = append(*d.out, r)
		}
	}
	p.Default()
	if errs := policy.Validate(&p); len(errs) > 0 {
		return p, &FieldError{Field: errs[0].Path, Msg: errs[0].Msg}
	}
	return p, nil
}

func toRule(rs *RuleSpec, path string) (policy.Rule, error) {
	r := policy.Rule{Action: policy.Action(rs.Action)}
	if rs.IPVersion != nil && *rs.IPVersion != 4 {
		return r, fieldErr(path+".ipVersion", "%d: only IPv4 (4) is supported", *rs.IPVersion)
	}
	for _, f := range []struct {
		name string
		v    *NumOrString
		out  *uint8
	}{{"protocol", rs.Protocol, &r.Protocol}, {"notProtocol", rs.NotProtocol, &r.NotProtocol}} {
		if f.v == nil {
			continue
		}
		n, err := policy.ParseProtocol(string(*f.v))
		if err != nil {
			return r, fieldErr(path+"."+f.name, "%v", err)
		}
		*f.out = n
	}
	for _, f := range []struct {
		name string
		v    *ICMPSpec
		out  **policy.ICMPMatch
	}{{"icmp", rs.ICMP, &r.ICMP}, {"notICMP", rs.NotICMP, &r.NotICMP}} {
		if f.v == nil {
			continue
		}
		m := &policy.ICMPMatch{}
		for _, g := range []struct {
			name string
			v    *int
			out  **uint8
		}{{"type", f.v.Type, &m.Type}, {"code", f.v.Code, &m.Code}} {
			if g.v == nil {
				continue
			}
			if *g.v < 0 || *g.v > 255 {
				return r, fieldErr(path+"."+f.name+"."+g.name, "%d: want 0 to 255", *g.v)
			}
			x := uint8(*g.v)
			*g.out = &x
		}
		*f.out = m
	}
	var err error
	if rs.Source != nil {
		if r.Source, err = toEntity(rs.Source, path+".source"); err != nil {
			return r, err
		}
	}
	if rs.Destination != nil {
		if r.Destination, err = toEntity(rs.Destination, path+".destination"); err != nil {
			return r, err
		}
	}
	return r, nil
}

func toEntity(es *EntitySpec, path string) (policy.EntityRule, error) {
	e := policy.EntityRule{Selector: es.Selector, NotSelector: es.NotSelector, NamespaceSelector: es.NamespaceSelector}
	for _, f := range []struct {
		name string
		in   []string
		out  *[]netip.Prefix
	}{{"nets", es.Nets, &e.Nets}, {"notNets", es.NotNets, &e.NotNets}} {
		for i, s := range f.in {
			c, err := policy.ParseNet(s)
			if err != nil {
				return e, fieldErr(path+"."+f.name+"["+strconv.Itoa(i)+"]", "%v", err)
			}
			*f.out = append(*f.out, c)
		}
	}
	for _, f := range []struct {
		name string
		in   []NumOrString
		out  *[]policy.PortRange
	}{{"ports", es.Ports, &e.Ports}, {"notPorts", es.NotPorts, &e.NotPorts}} {
		for i, s := range f.in {
			pr, err := policy.ParsePort(string(s))
			if err != nil {
				return e, fieldErr(path+"."+f.name+"["+strconv.Itoa(i)+"]", "%v", err)
			}
			*f.out = append(*f.out, pr)
		}
	}
	return e, nil
}

// FromPolicy returns the resource (a *NetworkPolicy or a
// *GlobalNetworkPolicy) of a policy.
func FromPolicy(p policy.Policy) Resource {
	m := Metadata{Name: p.Name}
	s := PolicySpec{Order: p.Order, Selector: p.Selector, NamespaceSelector: p.NamespaceSelector}
	for _, t := range p.Types {
		s.Types = append(s.Types, string(t))
	}
	for _, r := range p.Ingress {
		s.Ingress = append(s.Ingress, fromRule(r))
	}
	for _, r := range p.Egress {
		s.Egress = append(s.Egress, fromRule(r))
	}
	if p.Kind == policy.KindNetworkPolicy {
		m.Namespace = p.Namespace
		if m.Namespace == "" {
			m.Namespace = policy.DefaultNamespace
		}
		return &NetworkPolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindNetworkPolicy}, Metadata: m, Spec: s}
	}
	return &GlobalNetworkPolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindGlobalNetworkPolicy}, Metadata: m, Spec: s}
}

func fromRule(r policy.Rule) RuleSpec {
	rs := RuleSpec{Action: string(r.Action)}
	if r.Protocol != 0 {
		v := NumOrString(policy.ProtocolName(r.Protocol))
		rs.Protocol = &v
	}
	if r.NotProtocol != 0 {
		v := NumOrString(policy.ProtocolName(r.NotProtocol))
		rs.NotProtocol = &v
	}
	icmp := func(m *policy.ICMPMatch) *ICMPSpec {
		if m == nil {
			return nil
		}
		s := &ICMPSpec{}
		if m.Type != nil {
			t := int(*m.Type)
			s.Type = &t
		}
		if m.Code != nil {
			c := int(*m.Code)
			s.Code = &c
		}
		return s
	}
	rs.ICMP, rs.NotICMP = icmp(r.ICMP), icmp(r.NotICMP)
	rs.Source, rs.Destination = fromEntity(r.Source), fromEntity(r.Destination)
	return rs
}

func fromEntity(e policy.EntityRule) *EntitySpec {
	es := &EntitySpec{Selector: e.Selector, NotSelector: e.NotSelector, NamespaceSelector: e.NamespaceSelector}
	for _, n := range e.Nets {
		es.Nets = append(es.Nets, n.String())
	}
	for _, n := range e.NotNets {
		es.NotNets = append(es.NotNets, n.String())
	}
	for _, p := range e.Ports {
		es.Ports = append(es.Ports, NumOrString(p.String()))
	}
	for _, p := range e.NotPorts {
		es.NotPorts = append(es.NotPorts, NumOrString(p.String()))
	}
	if es.Selector == "" && es.NotSelector == "" && es.NamespaceSelector == "" && es.Nets == nil && es.NotNets == nil && es.Ports == nil && es.NotPorts == nil {
		return nil
	}
	return es
}

// Validate checks a WorkloadEndpoint.
func (r *WorkloadEndpoint) Validate() error {
	if err := validateMeta(&r.Metadata); err != nil {
		return err
	}
	if m := policy.CheckNamespace(r.Metadata.Namespace); m != "" {
		return fieldErr("metadata.namespace", "%s", m)
	}
	if ns, ok := r.Metadata.Labels[policy.LabelNamespace]; ok && ns != r.Metadata.Namespace {
		return fieldErr("metadata.labels."+policy.LabelNamespace, "%q is not the endpoint's namespace %q", ns, r.Metadata.Namespace)
	}
	s := r.Spec
	if s.Node == "" {
		return fieldErr("spec.node", "missing: the node that serves the endpoint")
	}
	if !nameRE.MatchString(s.Node) {
		return fieldErr("spec.node", "%q is not a node name", s.Node)
	}
	for i, n := range s.IPNetworks {
		if _, err := policy.ParseNet(n); err != nil {
			return fieldErr("spec.ipNetworks["+strconv.Itoa(i)+"]", "%v", err)
		}
	}
	return nil
}

// Endpoint returns the endpoint as policy sees it, named name: its
// namespace, labels (without Calico's own) and first address.
func (r *WorkloadEndpoint) Endpoint(name string) policy.Endpoint {
	e := policy.Endpoint{Name: name, Namespace: r.Metadata.Namespace}
	for k, v := range r.Metadata.Labels {
		if k == policy.LabelNamespace || k == policy.LabelOrchestrator {
			continue
		}
		if e.Labels == nil {
			e.Labels = map[string]string{}
		}
		e.Labels[k] = v
	}
	for _, n := range r.Spec.IPNetworks {
		if c, err := policy.ParseNet(n); err == nil {
			e.Addr = c.Addr()
			break
		}
	}
	return e
}

// escapeWEP doubles the dashes of one part of a workload endpoint's name,
// as Calico does, so that the parts can be told apart.
func escapeWEP(s string) string { return strings.ReplaceAll(s, "-", "--") }

// WorkloadEndpointName is Calico's name of a workload endpoint:
// <node>-<orchestrator>-<workload>-<endpoint>, each part's dashes doubled.
func WorkloadEndpointName(node, orchestrator, workload, endpoint string) string {
	return strings.ToLower(strings.Join([]string{escapeWEP(node), escapeWEP(orchestrator), escapeWEP(workload), escapeWEP(endpoint)}, "-"))
}

// NewWorkloadEndpoint returns the WorkloadEndpoint of a workload's
// interface endpoint (empty: eth0) served by node at iface: its labels
// get Calico's namespace and orchestrator labels.
func NewWorkloadEndpoint(node, orchestrator, workload, endpoint, namespace string, labels map[string]string, addr netip.Addr, iface string) *WorkloadEndpoint {
	if endpoint == "" {
		endpoint = "eth0"
	}
	if namespace == "" {
		namespace = policy.DefaultNamespace
	}
	l := map[string]string{policy.LabelNamespace: namespace, policy.LabelOrchestrator: orchestrator}
	for k, v := range labels {
		if k != policy.LabelNamespace && k != policy.LabelOrchestrator {
			l[k] = v
		}
	}
	w := &WorkloadEndpoint{
		TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindWorkloadEndpoint},
		Metadata: Metadata{Name: WorkloadEndpointName(node, orchestrator, workload, endpoint), Namespace: namespace, Labels: l},
		Spec: WorkloadEndpointSpec{Orchestrator: orchestrator, Node: node, Endpoint: endpoint,
			InterfaceName: iface, Profiles: []string{"kns." + namespace}},
	}
	if orchestrator == "k8s" {
		w.Spec.Pod = workload
	} else {
		w.Spec.Workload = workload
	}
	if addr.IsValid() {
		w.Spec.IPNetworks = []string{netip.PrefixFrom(addr, 32).String()}
	}
	return w
}

// PolicySet returns the snapshot's policies (those that convert; the
// others are reported in bad) and its workload endpoints, except those
// of the node skip, as policy sees them: each named <namespace>/<name>.
func (s *Snapshot) PolicySet(skip string) (pols []policy.Policy, eps []policy.Endpoint, bad []error) {
	for _, r := range s.NetworkPolicies {
		p, err := r.Policy()
		if err != nil {
			bad = append(bad, fmt.Errorf("NetworkPolicy %s/%s: %w", r.Metadata.Namespace, r.Metadata.Name, err))
			continue
		}
		pols = append(pols, p)
	}
	for _, r := range s.GlobalNetworkPolicies {
		p, err := r.Policy()
		if err != nil {
			bad = append(bad, fmt.Errorf("GlobalNetworkPolicy %s: %w", r.Metadata.Name, err))
			continue
		}
		pols = append(pols, p)
	}
	for _, w := range s.WorkloadEndpoints {
		if w.Spec.Node == skip {
			continue
		}
		eps = append(eps, w.Endpoint(ID(w)))
	}
	slices.SortFunc(eps, func(a, b policy.Endpoint) int { return strings.Compare(a.Name, b.Name) })
	return pols, eps, bad
}

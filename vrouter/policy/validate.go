package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// FieldError is one problem with a policy: the field's path in Calico's
// resource shape (metadata.name, spec.ingress[0].destination.ports, ...)
// and what is wrong.
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Msg }

// nameRE is a DNS-1123 subdomain, the syntax of Calico's resource names;
// namespaces are DNS-1123 labels.
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	nsRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// CheckNamespace returns what is wrong with a namespace name, or "".
func CheckNamespace(ns string) string {
	if len(ns) > 63 || !nsRE.MatchString(ns) {
		return fmt.Sprintf("%q is not a valid namespace: lowercase letters, digits and '-', at most 63 characters", ns)
	}
	return ""
}

// Validate checks a policy whose defaults were applied (see
// [Policy.Default]) and returns every problem found, as Calico's
// validation would.
func Validate(p *Policy) []FieldError {
	var errs []FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{path, fmt.Sprintf(format, args...)})
	}
	switch p.Kind {
	case KindNetworkPolicy, KindGlobalNetworkPolicy:
	case "":
		add("kind", "is required (NetworkPolicy or GlobalNetworkPolicy)")
	default:
		add("kind", "%q is not a policy kind (NetworkPolicy or GlobalNetworkPolicy)", p.Kind)
	}
	switch {
	case p.Name == "":
		add("metadata.name", "is required")
	case len(p.Name) > 253 || !nameRE.MatchString(p.Name):
		add("metadata.name", "%q is not a valid name: lowercase letters, digits, '-' and '.', at most 253 characters", p.Name)
	}
	if p.Kind == KindGlobalNetworkPolicy && p.Namespace != "" {
		add("metadata.namespace", "a GlobalNetworkPolicy has no namespace (use a NetworkPolicy, or spec.namespaceSelector)")
	}
	if p.Kind == KindNetworkPolicy {
		if m := CheckNamespace(p.Namespace); m != "" {
			add("metadata.namespace", "%s", m)
		}
		if p.NamespaceSelector != "" {
			add("spec.namespaceSelector", "only a GlobalNetworkPolicy has a namespaceSelector; a NetworkPolicy applies to its own namespace")
		}
	}
	if _, err := ParseSelector(p.Selector); err != nil {
		add("spec.selector", "%s", err)
	}
	if p.NamespaceSelector != "" {
		if _, err := ParseSelector(p.NamespaceSelector); err != nil {
			add("spec.namespaceSelector", "%s", err)
		}
	}
	seen := map[Direction]bool{}
	for i, t := range p.Types {
		path := "spec.types[" + strconv.Itoa(i) + "]"
		switch {
		case t != Ingress && t != Egress:
			add(path, "%q is not a policy type (Ingress or Egress; case matters)", t)
		case seen[t]:
			add(path, "%s is given twice", t)
		}
		seen[t] = true
	}
	if len(p.Ingress) > 0 && !seen[Ingress] && len(p.Types) > 0 {
		add("spec.types", "the policy has ingress rules but its types do not include Ingress")
	}
	if len(p.Egress) > 0 && !seen[Egress] && len(p.Types) > 0 {
		add("spec.types", "the policy has egress rules but its types do not include Egress")
	}
	for i := range p.Ingress {
		errs = append(errs, ValidateRule(&p.Ingress[i], "spec.ingress["+strconv.Itoa(i)+"]")...)
	}
	for i := range p.Egress {
		errs = append(errs, ValidateRule(&p.Egress[i], "spec.egress["+strconv.Itoa(i)+"]")...)
	}
	return errs
}

// ValidateRule checks one rule; path is its path in the resource.
func ValidateRule(r *Rule, path string) []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{path + "." + field, fmt.Sprintf(format, args...)})
	}
	switch r.Action {
	case Allow, Deny, Log, Pass:
	case "":
		add("action", "is required (Allow, Deny, Log or Pass)")
	default:
		hint := ""
		for _, a := range Actions {
			if strings.EqualFold(string(a), string(r.Action)) {
				hint = fmt.Sprintf("; did you mean %s? (case matters)", a)
			}
		}
		add("action", "%q is not an action (Allow, Deny, Log or Pass)%s", r.Action, hint)
	}
	if r.Protocol != 0 && r.Protocol == r.NotProtocol {
		add("notProtocol", "equals protocol: the rule would match nothing")
	}
	for _, e := range []struct {
		name string
		x    *EntityRule
	}{{"source", &r.Source}, {"destination", &r.Destination}} {
		if (len(e.x.Ports) > 0 || len(e.x.NotPorts) > 0) && !hasPorts(r.Protocol) {
			f := "ports"
			if len(e.x.Ports) == 0 {
				f = "notPorts"
			}
			add(e.name+"."+f, "ports need protocol TCP, UDP, SCTP or UDPLite")
		}
		for _, s := range []struct{ f, v string }{{"selector", e.x.Selector}, {"notSelector", e.x.NotSelector}, {"namespaceSelector", e.x.NamespaceSelector}} {
			if s.v == "" {
				continue
			}
			if _, err := ParseSelector(s.v); err != nil {
				add(e.name+"."+s.f, "%s", err)
			}
		}
		for _, nets := range []struct {
			f string
			v []netip.Prefix
		}{{"nets", e.x.Nets}, {"notNets", e.x.NotNets}} {
			for i, n := range nets.v {
				if !n.IsValid() || !n.Addr().Is4() {
					add(fmt.Sprintf("%s.%s[%d]", e.name, nets.f, i), "%s is not an IPv4 CIDR", n)
				}
			}
		}
	}
	for _, m := range []struct {
		f string
		v *ICMPMatch
	}{{"icmp", r.ICMP}, {"notICMP", r.NotICMP}} {
		if m.v == nil {
			continue
		}
		if r.Protocol != ProtoICMP {
			add(m.f, "needs protocol ICMP")
		}
		if m.v.Code != nil && m.v.Type == nil {
			add(m.f+".code", "needs a type")
		}
		if m.v.Type != nil && *m.v.Type == 255 {
			add(m.f+".type", "255 is outside 0-254")
		}
	}
	return errs
}

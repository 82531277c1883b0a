package topology

import (
	"strconv"
	"strings"

	"github.com/vrouter-lab/vrouter/vrouter/policy"
	"gopkg.in/yaml.v3"
)

// The fields of a policy resource, in Calico's shape.
var (
	policyFields   = []string{"apiVersion", "kind", "metadata", "spec"}
	metadataFields = []string{"name", "namespace"}
	specFields     = []string{"order", "selector", "namespaceSelector", "types", "ingress", "egress"}
	ruleFields     = []string{"action", "protocol", "notProtocol", "icmp", "notICMP", "ipVersion", "source", "destination"}
	entityFields   = []string{"nets", "notNets", "selector", "notSelector", "namespaceSelector", "ports", "notPorts"}
	icmpFields     = []string{"type", "code"}
)

// calicoAPIVersion is the only apiVersion a policy may name.
const calicoAPIVersion = "projectcalico.org/v3"

// rawPolicy is a policy as read, with the line of every field it gave
// (by its path, e.g. spec.ingress[0].destination.ports) so that the
// policy package's problems can be reported where they are.
type rawPolicy struct {
	line  int
	path  string
	pol   policy.Policy
	lines map[string]int
	clean bool     // no problem found while reading
	bad   []string // the paths (relative) of the problems found while reading
}

// policyReader reads one policy, recording lines and problems.
type policyReader struct {
	p *parser
	r *rawPolicy
}

func (pr policyReader) errorf(line int, field, format string, args ...any) {
	pr.r.clean = false
	pr.p.errorf(line, join(pr.r.path, field), format, args...)
}

// fields is parser.fields for a mapping inside the policy; rel is the
// mapping's path relative to the policy.
func (pr policyReader) fields(n *yaml.Node, rel string, known []string, fn func(key, rel string, v *yaml.Node)) {
	line := n.Line
	n = deref(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		pr.errorf(line, rel, "must be a mapping (fields: %s), not %s", strings.Join(known, ", "), kindName(n))
		return
	}
	before := len(pr.p.probs)
	pr.p.fields(n, join(pr.r.path, rel), known, func(key string, v *yaml.Node) {
		f := join(rel, key)
		pr.r.lines[f] = v.Line
		fn(key, f, v)
	})
	if len(pr.p.probs) != before {
		pr.r.clean = false
	}
}

func (pr policyReader) str(v *yaml.Node, rel string) (string, bool) {
	s := pr.p.str(v, join(pr.r.path, rel), "")
	if s.st != ok {
		pr.r.clean = false
	}
	return s.v, s.st == ok
}

// items calls fn for each scalar of the list v (one scalar counts as a
// list of one).
func (pr policyReader) items(v *yaml.Node, rel string, fn func(s string, line int, rel string)) {
	line := v.Line
	v = deref(v)
	if isNull(v) {
		return
	}
	if v.Kind == yaml.ScalarNode {
		fn(v.Value, line, rel)
		return
	}
	if v.Kind != yaml.SequenceNode {
		pr.errorf(line, rel, "must be a list, not %s", kindName(v))
		return
	}
	for i, it := range v.Content {
		f := index(rel, i)
		pr.r.lines[f] = it.Line
		itl := it.Line
		if it = deref(it); it.Kind != yaml.ScalarNode || isNull(it) {
			pr.errorf(itl, f, "must be a single value, not %s", kindName(it))
			continue
		}
		fn(it.Value, itl, f)
	}
}

// policies reads the policies list.
func (p *parser) policies(v *yaml.Node) []rawPolicy {
	var out []rawPolicy
	p.list(v, "policies", "policies", "a policy (NetworkPolicy or GlobalNetworkPolicy)", func(i int, item *yaml.Node) {
		out = append(out, p.policy(item, index("policies", i)))
	})
	return out
}

func (p *parser) policy(n *yaml.Node, path string) rawPolicy {
	r := &rawPolicy{line: n.Line, path: path, lines: map[string]int{"": n.Line}, clean: true}
	start := len(p.probs)
	pr := policyReader{p, r}
	pol := &r.pol
	var specNode *yaml.Node
	pr.fields(n, "", policyFields, func(key, rel string, v *yaml.Node) {
		switch key {
		case "apiVersion":
			if s, good := pr.str(v, rel); good && s != calicoAPIVersion {
				pr.errorf(v.Line, rel, "%q is not Calico's API version; write %s or leave it out", s, calicoAPIVersion)
			}
		case "kind":
			if s, good := pr.str(v, rel); good {
				pol.Kind = s
				if s != policy.KindNetworkPolicy && s != policy.KindGlobalNetworkPolicy {
					pr.errorf(v.Line, rel, "%q is not a policy kind (NetworkPolicy or GlobalNetworkPolicy)", s)
				}
			}
		case "metadata":
			pr.fields(v, rel, metadataFields, func(key, rel string, v *yaml.Node) {
				s, _ := pr.str(v, rel)
				if key == "name" {
					pol.Name = s
				} else {
					pol.Namespace = s
				}
			})
		case "spec":
			specNode = v
		}
	})
	if specNode != nil {
		pr.spec(specNode, pol)
	}
	for _, pb := range p.probs[start:] {
		r.bad = append(r.bad, strings.TrimPrefix(strings.TrimPrefix(pb.Field, path), "."))
	}
	return *r
}

// reported reports whether the problem at path follows from one found
// while reading: the same field, a field inside it or around it, or a
// rule field that depends on a protocol that could not be read.
func (rp *rawPolicy) reported(path, msg string) bool {
	for _, b := range rp.bad {
		switch {
		case b == path, within(b, path), within(path, b):
			return true
		case strings.HasSuffix(b, ".protocol") && within(path, strings.TrimSuffix(b, ".protocol")) && strings.Contains(msg, "protocol"):
			return true
		}
	}
	return false
}

// within reports whether the field at path is inside the one at outer.
func within(path, outer string) bool {
	return outer == "" || strings.HasPrefix(path, outer+".") || strings.HasPrefix(path, outer+"[")
}

func (pr policyReader) spec(n *yaml.Node, pol *policy.Policy) {
	pr.fields(n, "spec", specFields, func(key, rel string, v *yaml.Node) {
		switch key {
		case "order":
			s, good := pr.str(v, rel)
			if !good {
				return
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || f != f || f > 1e300 || f < -1e300 {
				pr.errorf(v.Line, rel, "%q is not a number", s)
				return
			}
			pol.Order = &f
		case "selector":
			pol.Selector, _ = pr.str(v, rel)
		case "namespaceSelector":
			pol.NamespaceSelector, _ = pr.str(v, rel)
		case "types":
			pr.items(v, rel, func(s string, _ int, _ string) {
				pol.Types = append(pol.Types, policy.Direction(s))
			})
		case "ingress", "egress":
			line := v.Line
			v = deref(v)
			if isNull(v) {
				return
			}
			if v.Kind != yaml.SequenceNode {
				pr.errorf(line, rel, "must be a list of rules, not %s", kindName(v))
				return
			}
			for i, item := range v.Content {
				f := index(rel, i)
				pr.r.lines[f] = item.Line
				rule := pr.rule(item, f)
				if key == "ingress" {
					pol.Ingress = append(pol.Ingress, rule)
				} else {
					pol.Egress = append(pol.Egress, rule)
				}
			}
		}
	})
}

func (pr policyReader) rule(n *yaml.Node, rel string) policy.Rule {
	var r policy.Rule
	if deref(n).Kind != yaml.MappingNode {
		pr.errorf(n.Line, rel, "must be a rule (a mapping with an action), not %s", kindName(deref(n)))
		return r
	}
	pr.fields(n, rel, ruleFields, func(key, rel string, v *yaml.Node) {
		switch key {
		case "action":
			s, _ := pr.str(v, rel)
			r.Action = policy.Action(s)
		case "protocol", "notProtocol":
			s, good := pr.str(v, rel)
			if !good {
				return
			}
			proto, err := policy.ParseProtocol(s)
			if err != nil {
				pr.errorf(v.Line, rel, "%s", err)
				return
			}
			if key == "protocol" {
				r.Protocol = proto
			} else {
				r.NotProtocol = proto
			}
		case "icmp", "notICMP":
			m := &policy.ICMPMatch{}
			pr.fields(v, rel, icmpFields, func(key, rel string, v *yaml.Node) {
				i := pr.p.integer(v, join(pr.r.path, rel), "", 0, 255)
				if i.st != ok {
					pr.r.clean = false
					return
				}
				x := uint8(i.v)
				if key == "type" {
					m.Type = &x
				} else {
					m.Code = &x
				}
			})
			if key == "icmp" {
				r.ICMP = m
			} else {
				r.NotICMP = m
			}
		case "ipVersion":
			if i := pr.p.integer(v, join(pr.r.path, rel), "", 0, 255); i.st == ok && i.v != 4 {
				pr.errorf(v.Line, rel, "%d: only IPv4 (4) is supported", i.v)
			} else if i.st != ok {
				pr.r.clean = false
			}
		case "source":
			r.Source = pr.entity(v, rel)
		case "destination":
			r.Destination = pr.entity(v, rel)
		}
	})
	return r
}

func (pr policyReader) entity(n *yaml.Node, rel string) policy.EntityRule {
	var e policy.EntityRule
	pr.fields(n, rel, entityFields, func(key, rel string, v *yaml.Node) {
		switch key {
		case "nets", "notNets":
			pr.items(v, rel, func(s string, line int, f string) {
				c, err := policy.ParseNet(s)
				if err != nil {
					pr.errorf(line, f, "%s", err)
					return
				}
				if key == "nets" {
					e.Nets = append(e.Nets, c)
				} else {
					e.NotNets = append(e.NotNets, c)
				}
			})
		case "selector":
			e.Selector, _ = pr.str(v, rel)
		case "notSelector":
			e.NotSelector, _ = pr.str(v, rel)
		case "namespaceSelector":
			e.NamespaceSelector, _ = pr.str(v, rel)
		case "ports", "notPorts":
			pr.items(v, rel, func(s string, line int, f string) {
				r, err := policy.ParsePort(s)
				if err != nil {
					pr.errorf(line, f, "%s", err)
					return
				}
				if key == "ports" {
					e.Ports = append(e.Ports, r)
				} else {
					e.NotPorts = append(e.NotPorts, r)
				}
			})
		}
	})
	return e
}

// checkPolicies applies Calico's defaults to the policies read, validates
// them and adds them to the lab.
func (p *parser) checkPolicies(r *rawLab, lab *Lab) {
	keys := map[string]int{}
	for i := range r.policies {
		rp := &r.policies[i]
		pol := rp.pol
		pol.Default()
		for _, fe := range policy.Validate(&pol) {
			if !rp.reported(fe.Path, fe.Msg) {
				p.errorf(rp.lineOf(fe.Path), join(rp.path, fe.Path), "%s", fe.Msg)
			}
		}
		if pol.Name != "" {
			k := pol.Kind + " " + pol.Key()
			if first, dup := keys[k]; dup {
				p.errorf(rp.lineOf("metadata.name"), rp.path+".metadata.name", "%s %s is already defined on line %d", pol.Kind, pol.Key(), first)
			} else {
				keys[k] = rp.lineOf("metadata.name")
			}
		}
		lab.Policies = append(lab.Policies, pol)
	}
}

// lineOf returns the line of the field at path, or of the nearest field
// that contains it.
func (rp *rawPolicy) lineOf(path string) int {
	for {
		if l, ok := rp.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return rp.line
		}
		path = path[:i]
	}
}

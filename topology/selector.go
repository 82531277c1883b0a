package topology

import (
	"fmt"
	"regexp"
	"strings"
)

// A label selector, in the subset of Calico's selector syntax a lab file
// accepts: terms joined by &&, each one of
//
//	all()               every node
//	has(key)            nodes that have the label key
//	!has(key)           nodes that do not
//	key == 'value'      nodes whose label key is value ("value" works too)
//	key != 'value'      nodes whose label key is missing or another value
type Selector struct {
	terms []selTerm
}

type selOp int

const (
	selAll selOp = iota
	selHas
	selNotHas
	selEq
	selNe
)

type selTerm struct {
	op         selOp
	key, value string
}

// labelKeyRE and labelValueRE are the syntax of label keys (with an optional
// DNS-subdomain prefix and '/') and values, as Kubernetes and Calico have them.
var (
	labelKeyRE   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
	selTermRE    = regexp.MustCompile(`^(?:(all)\(\s*\)|(!?)\s*has\(\s*([^()\s]+)\s*\)|([^\s=!'"]+)\s*(==|!=)\s*(?:'([^']*)'|"([^"]*)"))$`)
)

// checkLabelKey returns what is wrong with a label key, or "".
func checkLabelKey(k string) string {
	name := k
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		name = k[i+1:]
	}
	if !labelKeyRE.MatchString(k) || len(name) > 63 || len(k) > 253+1+63 {
		return fmt.Sprintf("%q is not a valid label key: letters, digits, '-', '_' and '.', at most 63 characters, starting and ending with a letter or digit, optionally prefixed by a DNS name and '/'", k)
	}
	return ""
}

// checkLabelValue returns what is wrong with a label value, or "".
func checkLabelValue(v string) string {
	if !labelValueRE.MatchString(v) || len(v) > 63 {
		return fmt.Sprintf("%q is not a valid label value: letters, digits, '-', '_' and '.', at most 63 characters, starting and ending with a letter or digit", v)
	}
	return ""
}

// ParseSelector parses a label selector (see [Selector]).
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	if strings.TrimSpace(s) == "" {
		return sel, fmt.Errorf("empty selector (write all() to select every node)")
	}
	for _, part := range strings.Split(s, "&&") {
		part = strings.TrimSpace(part)
		m := selTermRE.FindStringSubmatch(part)
		if m == nil {
			return sel, fmt.Errorf("cannot parse %q in selector %q (supported: all(), has(key), !has(key), key == 'value', key != 'value', joined by &&)", part, s)
		}
		var t selTerm
		switch {
		case m[1] != "":
			t.op = selAll
		case m[3] != "":
			t.op, t.key = selHas, m[3]
			if m[2] == "!" {
				t.op = selNotHas
			}
		default:
			t.op, t.key, t.value = selEq, m[4], m[6]+m[7]
			if m[5] == "!=" {
				t.op = selNe
			}
		}
		if t.op != selAll {
			if msg := checkLabelKey(t.key); msg != "" {
				return sel, fmt.Errorf("selector %q: %s", s, msg)
			}
		}
		sel.terms = append(sel.terms, t)
	}
	return sel, nil
}

// MustParseSelector is ParseSelector for selectors known to be valid, such
// as those of a validated Lab; it panics on error.
func MustParseSelector(s string) Selector {
	sel, err := ParseSelector(s)
	if err != nil {
		panic(err)
	}
	return sel
}

// Matches reports whether a node with these labels is selected.
func (s Selector) Matches(labels map[string]string) bool {
	for _, t := range s.terms {
		v, has := labels[t.key]
		switch t.op {
		case selHas:
			if !has {
				return false
			}
		case selNotHas:
			if has {
				return false
			}
		case selEq:
			if !has || v != t.value {
				return false
			}
		case selNe:
			if has && v == t.value {
				return false
			}
		}
	}
	return true
}

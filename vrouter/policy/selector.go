package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// Selector is a parsed label selector in Calico's syntax:
//
//	all()                      every endpoint
//	has(k), !has(k)            the label k is present / absent
//	k == 'v', k != 'v'         the label equals v / is absent or differs
//	k in {'a', 'b'}            the label is one of the values
//	k not in {'a', 'b'}        the label is absent or none of the values
//	k contains 's', k starts with 's', k ends with 's'
//	!expr, (expr), a && b, a || b
//
// && binds tighter than ||, as in Calico. Values are quoted with ' or ".
// The zero Selector matches nothing; use [ParseSelector].
type Selector struct {
	src  string
	root node
}

// String returns the selector as written.
func (s Selector) String() string { return s.src }

// Matches reports whether an endpoint with these labels is selected.
func (s Selector) Matches(labels map[string]string) bool {
	if s.root == nil {
		return false
	}
	return s.root.eval(labels)
}

// IsAll reports whether the selector is all() alone.
func (s Selector) IsAll() bool {
	_, ok := s.root.(allNode)
	return ok
}

type node interface {
	eval(map[string]string) bool
}

type (
	allNode struct{}
	hasNode struct{ key string }
	notNode struct{ x node }
	andNode struct{ a, b node }
	orNode  struct{ a, b node }
	cmpNode struct {
		key, val string
		op       string // == != contains starts ends
	}
	inNode struct {
		key  string
		vals map[string]bool
	}
)

func (allNode) eval(map[string]string) bool     { return true }
func (n hasNode) eval(l map[string]string) bool { _, ok := l[n.key]; return ok }
func (n notNode) eval(l map[string]string) bool { return !n.x.eval(l) }
func (n andNode) eval(l map[string]string) bool { return n.a.eval(l) && n.b.eval(l) }
func (n orNode) eval(l map[string]string) bool  { return n.a.eval(l) || n.b.eval(l) }
func (n inNode) eval(l map[string]string) bool {
	v, ok := l[n.key]
	return ok && n.vals[v]
}
func (n cmpNode) eval(l map[string]string) bool {
	v, ok := l[n.key]
	switch n.op {
	case "==":
		return ok && v == n.val
	case "!=":
		return !ok || v != n.val
	case "contains":
		return ok && strings.Contains(v, n.val)
	case "starts":
		return ok && strings.HasPrefix(v, n.val)
	case "ends":
		return ok && strings.HasSuffix(v, n.val)
	}
	return false
}

// MaxSelectorLen bounds a selector's length.
const MaxSelectorLen = 4096

// maxDepth bounds the nesting of parentheses and negations.
const maxDepth = 64

// keyRE is a label key (optionally prefixed by a DNS name and '/').
var keyRE = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// ParseSelector parses a selector (see [Selector]). An empty selector is an
// error: write all().
func ParseSelector(s string) (Selector, error) {
	if len(s) > MaxSelectorLen {
		return Selector{}, fmt.Errorf("selector is %d bytes long; at most %d", len(s), MaxSelectorLen)
	}
	if strings.TrimSpace(s) == "" {
		return Selector{}, fmt.Errorf("empty selector (write all() to select every endpoint)")
	}
	p := &selParser{s: s}
	n, err := p.or(0)
	if err == nil {
		p.space()
		if p.i < len(p.s) {
			err = p.errorf("unexpected %q", p.rest())
		}
	}
	if err != nil {
		return Selector{}, fmt.Errorf("selector %q: %w", s, err)
	}
	return Selector{src: s, root: n}, nil
}

// MustParseSelector is ParseSelector for selectors known to be valid.
func MustParseSelector(s string) Selector {
	sel, err := ParseSelector(s)
	if err != nil {
		panic(err)
	}
	return sel
}

type selParser struct {
	s string
	i int
}

func (p *selParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *selParser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20] + "..."
	}
	return r
}

func (p *selParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

// lit consumes t (after spaces) if it is next.
func (p *selParser) lit(t string) bool {
	p.space()
	if strings.HasPrefix(p.s[p.i:], t) {
		p.i += len(t)
		return true
	}
	return false
}

// word consumes the keyword w if it is next and not part of a longer word.
func (p *selParser) word(w string) bool {
	p.space()
	if !strings.HasPrefix(p.s[p.i:], w) {
		return false
	}
	if j := p.i + len(w); j < len(p.s) && isKeyChar(p.s[j]) {
		return false
	}
	p.i += len(w)
	return true
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/'
}

func (p *selParser) or(depth int) (node, error) {
	n, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.lit("||") {
		m, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		n = orNode{n, m}
	}
	return n, nil
}

func (p *selParser) and(depth int) (node, error) {
	n, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.lit("&&") {
		m, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		n = andNode{n, m}
	}
	return n, nil
}

func (p *selParser) unary(depth int) (node, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested more than %d deep", maxDepth)
	}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '!' && !strings.HasPrefix(p.s[p.i:], "!=") {
		p.i++
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return notNode{x}, nil
	}
	if p.lit("(") {
		x, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.lit(")") {
			return nil, p.errorf("missing )")
		}
		return x, nil
	}
	return p.term()
}

func (p *selParser) key() (string, error) {
	p.space()
	j := p.i
	for j < len(p.s) && isKeyChar(p.s[j]) {
		j++
	}
	k := p.s[p.i:j]
	if k == "" {
		if p.i >= len(p.s) {
			return "", p.errorf("unexpected end, expected a label key, all() or has(key)")
		}
		return "", p.errorf("unexpected %q, expected a label key, all() or has(key)", p.rest())
	}
	if !keyRE.MatchString(k) || len(k) > 253+1+63 {
		return "", p.errorf("%q is not a valid label key", k)
	}
	p.i = j
	return k, nil
}

func (p *selParser) value() (string, error) {
	p.space()
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", p.errorf("expected a quoted value ('value' or \"value\")")
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", p.errorf("unterminated quoted value")
	}
	v := p.s[p.i+1 : p.i+1+end]
	p.i += end + 2
	return v, nil
}

func (p *selParser) term() (node, error) {
	save := p.i
	if p.word("all") && p.lit("(") && p.lit(")") {
		return allNode{}, nil
	}
	p.i = save
	if p.word("has") && p.lit("(") {
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		if !p.lit(")") {
			return nil, p.errorf("missing ) after has(%s", k)
		}
		return hasNode{k}, nil
	}
	p.i = save
	k, err := p.key()
	if err != nil {
		return nil, err
	}
	switch {
	case p.lit("=="):
		v, err := p.value()
		return cmpNode{key: k, val: v, op: "=="}, err
	case p.lit("!="):
		v, err := p.value()
		return cmpNode{key: k, val: v, op: "!="}, err
	case p.word("in"):
		return p.set(k, false)
	case p.word("not"):
		if !p.word("in") {
			return nil, p.errorf("expected 'in' after 'not'")
		}
		return p.set(k, true)
	case p.word("contains"):
		v, err := p.value()
		return cmpNode{key: k, val: v, op: "contains"}, err
	case p.word("starts"):
		if !p.word("with") {
			return nil, p.errorf("expected 'with' after 'starts'")
		}
		v, err := p.value()
		return cmpNode{key: k, val: v, op: "starts"}, err
	case p.word("ends"):
		if !p.word("with") {
			return nil, p.errorf("expected 'with' after 'ends'")
		}
		v, err := p.value()
		return cmpNode{key: k, val: v, op: "ends"}, err
	}
	return nil, p.errorf("expected ==, !=, in, not in, contains, starts with or ends with after %s", k)
}

func (p *selParser) set(k string, negate bool) (node, error) {
	if !p.lit("{") {
		return nil, p.errorf("expected { after in")
	}
	vals := map[string]bool{}
	if !p.lit("}") {
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			vals[v] = true
			if p.lit("}") {
				break
			}
			if !p.lit(",") {
				return nil, p.errorf("expected , or } in the set")
			}
		}
	}
	var n node = inNode{key: k, vals: vals}
	if negate {
		n = notNode{n}
	}
	return n, nil
}

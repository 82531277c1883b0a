package resources

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Selector is a parsed Calico label selector: all(), has(k), !has(k),
// k == 'v', k != 'v', k in {'a', 'b'}, k not in {...}, combined with !,
// &&, || and parentheses.
type Selector struct {
	match func(labels map[string]string) bool
	text  string
}

// Matches reports whether labels satisfy the selector.
func (s *Selector) Matches(labels map[string]string) bool { return s.match(labels) }

// String returns the selector's text.
func (s *Selector) String() string { return s.text }

// maxSelector bounds a selector's length.
const maxSelector = 1024

// ParseSelector parses a Calico selector. The empty selector matches
// nothing.
func ParseSelector(text string) (*Selector, error) {
	if len(text) > maxSelector {
		return nil, fmt.Errorf("selector longer than %d characters", maxSelector)
	}
	if strings.TrimSpace(text) == "" {
		return &Selector{match: func(map[string]string) bool { return false }, text: text}, nil
	}
	p := &selParser{s: text}
	m, err := p.or(0)
	if err != nil {
		return nil, fmt.Errorf("selector %q: %w", text, err)
	}
	p.space()
	if p.i < len(p.s) {
		return nil, fmt.Errorf("selector %q: unexpected %q at %d", text, p.s[p.i:], p.i)
	}
	return &Selector{match: m, text: text}, nil
}

type matcher = func(map[string]string) bool

type selParser struct {
	s string
	i int
}

const maxDepth = 32

var errDepth = errors.New("nested too deeply")

func (p *selParser) space() {
	for p.i < len(p.s) && unicode.IsSpace(rune(p.s[p.i])) {
		p.i++
	}
}

func (p *selParser) eat(tok string) bool {
	p.space()
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

func (p *selParser) or(depth int) (matcher, error) {
	if depth > maxDepth {
		return nil, errDepth
	}
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.eat("||") {
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(m map[string]string) bool { return a(m) || b(m) }
	}
	return l, nil
}

func (p *selParser) and(depth int) (matcher, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.eat("&&") {
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(m map[string]string) bool { return a(m) && b(m) }
	}
	return l, nil
}

func (p *selParser) unary(depth int) (matcher, error) {
	if depth > maxDepth {
		return nil, errDepth
	}
	if p.eat("!") {
		m, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return func(l map[string]string) bool { return !m(l) }, nil
	}
	if p.eat("(") {
		m, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, fmt.Errorf("missing ) at %d", p.i)
		}
		return m, nil
	}
	if p.eat("all()") {
		return func(map[string]string) bool { return true }, nil
	}
	if p.eat("has(") {
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, fmt.Errorf("missing ) after has(%s", k)
		}
		return func(l map[string]string) bool { _, ok := l[k]; return ok }, nil
	}
	k, err := p.key()
	if err != nil {
		return nil, err
	}
	switch {
	case p.eat("=="):
		v, err := p.str()
		if err != nil {
			return nil, err
		}
		return func(l map[string]string) bool { x, ok := l[k]; return ok && x == v }, nil
	case p.eat("!="):
		v, err := p.str()
		if err != nil {
			return nil, err
		}
		return func(l map[string]string) bool { x, ok := l[k]; return !ok || x != v }, nil
	case p.eat("not in"):
		set, err := p.set()
		if err != nil {
			return nil, err
		}
		return func(l map[string]string) bool { x, ok := l[k]; return !ok || !set[x] }, nil
	case p.eat("in"):
		set, err := p.set()
		if err != nil {
			return nil, err
		}
		return func(l map[string]string) bool { x, ok := l[k]; return ok && set[x] }, nil
	}
	return nil, fmt.Errorf("want ==, !=, in or not in after %s at %d", k, p.i)
}

// key reads a label name.
func (p *selParser) key() (string, error) {
	p.space()
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/' {
			p.i++
			continue
		}
		break
	}
	if p.i == start {
		return "", fmt.Errorf("want a label name at %d", start)
	}
	return p.s[start:p.i], nil
}

// str reads a quoted value.
func (p *selParser) str() (string, error) {
	p.space()
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", fmt.Errorf("want a quoted value at %d", p.i)
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", fmt.Errorf("unterminated string at %d", p.i)
	}
	v := p.s[p.i+1 : p.i+1+end]
	p.i += end + 2
	return v, nil
}

// set reads {'a', 'b'}.
func (p *selParser) set() (map[string]bool, error) {
	if !p.eat("{") {
		return nil, fmt.Errorf("want { at %d", p.i)
	}
	set := map[string]bool{}
	if p.eat("}") {
		return set, nil
	}
	for {
		v, err := p.str()
		if err != nil {
			return nil, err
		}
		set[v] = true
		if p.eat("}") {
			return set, nil
		}
		if !p.eat(",") {
			return nil, fmt.Errorf("want , or } at %d", p.i)
		}
	}
}

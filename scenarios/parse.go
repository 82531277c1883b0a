package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest scenario file Load reads: that of a lab file.
const MaxFileSize = topology.MaxLabFileSize

// maxSteps bounds the steps of one scenario.
const maxSteps = 1000

// Load reads and validates the scenario file at path. Problems are returned
// as a [*topology.ValidationError] naming path, one FILE:LINE: FIELD:
// message per problem.
func Load(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return Parse(path, data)
}

// Fields of a scenario and of each step kind, in the order messages list
// them.
var (
	scenarioFields = []string{"name", "description", "rfc", "lab", "dut", "steps"}
	stepKinds      = []string{"deploy", "destroy", "workloadAdd", "workloadDel", "apply", "linkDown", "linkUp", "impair", "restart",
		"stop", "start", "pause", "resume", "captureStart", "captureStop", "wait", "routes", "bgp", "ping", "traceroute", "tcp", "packets", "bgpMessages"}
	assertKinds = map[string]bool{"routes": true, "bgp": true, "ping": true, "traceroute": true, "tcp": true, "packets": true, "bgpMessages": true}
)

// parser collects the problems of one scenario file.
type parser struct {
	file  string
	data  []byte
	root  *yaml.Node // the document
	probs []topology.Problem
	// names of the lab's nodes, routers and workloads, and those added by
	// steps, and its networks; nil when the lab did not parse
	nodes, workloads, networks map[string]bool
	captures                   map[string]bool // started so far
	running                    map[string]bool // started and not stopped
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.probs = append(p.probs, topology.Problem{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Parse validates the scenario file data; name is the file's path, used
// in messages and to resolve a lab given by path. Every problem found is
// returned at once as a [*topology.ValidationError].
func Parse(name string, data []byte) (*Scenario, error) {
	p := &parser{file: name, data: data}
	s := p.parse()
	if len(p.probs) > 0 {
		sort.SliceStable(p.probs, func(i, j int) bool { return p.probs[i].Line < p.probs[j].Line })
		return nil, &topology.ValidationError{File: name, Problems: p.probs}
	}
	return s, nil
}

func (p *parser) parse() *Scenario {
	if len(p.data) > MaxFileSize {
		p.errorf(nil, "", "the file is larger than the limit of %d MiB", MaxFileSize>>20)
		return nil
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(p.data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, "", "the file is empty: a scenario needs name, lab and steps")
			return nil
		}
		p.probs = append(p.probs, yamlProblem(err))
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf(&extra, "", "a scenario file holds one scenario (one YAML document); found a second one")
		return nil
	} else if !errors.Is(err, io.EOF) {
		p.probs = append(p.probs, yamlProblem(err))
		return nil
	}
	p.root = &doc
	top := &doc
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	fields := p.mapping(top, "", scenarioFields)
	if fields == nil {
		return nil
	}
	s := &Scenario{File: p.file}
	s.Name = p.requiredString(top, fields, "name", "")
	if n := fields["name"]; n != nil && s.Name != "" && (len(s.Name) > 200 || strings.ContainsAny(s.Name, "\n\r")) {
		p.errorf(n, "name", "must be one line of at most 200 characters")
	}
	if n := fields["description"]; n != nil {
		s.Description, _ = p.str(n, "description")
	}
	if n := fields["rfc"]; n != nil {
		s.RFC, _ = p.str(n, "rfc")
	}
	if n := fields["lab"]; n == nil {
		p.errorf(top, "lab", "missing: give the lab inline (a mapping, as in a lab file) or the path of a lab file")
	} else {
		s.Lab, s.LabFile = p.lab(n, "lab")
	}
	if s.Lab != nil {
		p.nodes, p.workloads, p.networks = map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, n := range s.Lab.Nodes {
			p.nodes[n.Name] = true
		}
		for _, r := range s.Lab.Routers {
			p.nodes[r.Name] = true
		}
		for _, r := range s.Lab.RouterNodes {
			p.nodes[r.Name] = true
		}
		for _, w := range s.Lab.Workloads {
			p.workloads[w.Name] = true
		}
		for _, n := range s.Lab.Networks {
			p.networks[n.Name] = true
		}
	}
	if n := fields["dut"]; n != nil {
		if s.DUT, _ = p.str(n, "dut"); s.DUT != "" {
			p.checkNode(n, "dut", s.DUT)
		}
	}
	p.captures, p.running = map[string]bool{}, map[string]bool{}
	if n := fields["steps"]; n == nil {
		p.errorf(top, "steps", "missing: a scenario needs at least one step")
	} else if n.Kind != yaml.SequenceNode {
		p.errorf(n, "steps", "must be a list of steps")
	} else if len(n.Content) == 0 {
		p.errorf(n, "steps", "empty: a scenario needs at least one step")
	} else if len(n.Content) > maxSteps {
		p.errorf(n, "steps", "%d steps, more than the limit of %d", len(n.Content), maxSteps)
	} else {
		deployed := false
		for i, sn := range n.Content {
			st, ok := p.step(sn, fmt.Sprintf("steps[%d]", i), s.DUT)
			if !ok {
				continue
			}
			switch {
			case st.Kind == "deploy" && deployed:
				p.errorf(sn, fmt.Sprintf("steps[%d].deploy", i), "the lab is already deployed by an earlier step (destroy it first)")
			case st.Kind == "deploy":
				deployed = true
			case st.Kind == "destroy" && !deployed:
				p.errorf(sn, fmt.Sprintf("steps[%d].destroy", i), "the lab is not deployed at this step")
			case st.Kind == "destroy":
				deployed = false
			case st.Kind != "wait" && !deployed:
				p.errorf(sn, fmt.Sprintf("steps[%d].%s", i, st.Kind), "the lab is not deployed at this step: add a deploy step before it")
			}
			s.Steps = append(s.Steps, st)
		}
	}
	return s
}

// yamlProblem turns a YAML syntax error into a problem with its line.
func yamlProblem(err error) topology.Problem {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	var line int
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return topology.Problem{Line: line, Msg: "YAML: " + msg}
}

// mapping checks that n is a mapping whose keys are all in allowed, each
// once, and returns the values by key; nil (with a problem) otherwise.
func (p *parser) mapping(n *yaml.Node, field string, allowed []string) map[string]*yaml.Node {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "must be a mapping (%s)", strings.Join(allowed, ", "))
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if k.Kind != yaml.ScalarNode || !contains(allowed, key) {
			p.errorf(k, join(field, topology.Shorten(key)), "unknown field (known: %s)", strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[key]; dup {
			p.errorf(k, join(field, key), "given twice")
			continue
		}
		out[key] = v
	}
	return out
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 10; i++ {
		n = n.Alias
	}
	return n
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func (p *parser) requiredString(parent *yaml.Node, fields map[string]*yaml.Node, key, field string) string {
	n := fields[key]
	if n == nil {
		p.errorf(parent, join(field, key), "missing")
		return ""
	}
	s, ok := p.str(n, join(field, key))
	if ok && s == "" {
		p.errorf(n, join(field, key), "must not be empty")
	}
	return s
}

// str returns a scalar's text; a mapping or list is a problem.
func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, field, "must be a string")
		return "", false
	}
	return n.Value, true
}

// strs returns a list of strings; a single scalar is a list of one.
func (p *parser) strs(n *yaml.Node, field string) []string {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode {
		s, _ := p.str(n, field)
		return []string{s}
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, field, "must be a string or a list of strings")
		return nil
	}
	var out []string
	for i, c := range n.Content {
		if s, ok := p.str(c, fmt.Sprintf("%s[%d]", field, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) boolean(n *yaml.Node, field string) (bool, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "true", "True", "TRUE", "yes":
			return true, true
		case "false", "False", "FALSE", "no":
			return false, true
		}
	}
	p.errorf(n, field, "must be true or false")
	return false, false
}

func (p *parser) integer(n *yaml.Node, field string, lo, hi int64) (int64, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode {
		if v, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			if v < lo || v > hi {
				p.errorf(n, field, "%d is out of range %d-%d", v, lo, hi)
				return 0, false
			}
			return v, true
		}
	}
	p.errorf(n, field, "must be a whole number (%d-%d)", lo, hi)
	return 0, false
}

// duration parses a Go duration such as 30s or 1m30s (a bare number is
// seconds), between 0 and an hour.
func (p *parser) duration(n *yaml.Node, field string) (time.Duration, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode {
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			if f, ferr := strconv.ParseFloat(n.Value, 64); ferr == nil && !math.IsNaN(f) && f >= 0 && f <= maxTimeout.Seconds() {
				d, err = time.Duration(f*float64(time.Second)), nil
			}
		}
		if err == nil && d >= 0 && d <= maxTimeout {
			return d, true
		}
	}
	p.errorf(n, field, "must be a duration such as 500ms, 30s or 2m, at most 1h")
	return 0, false
}

func (p *parser) addr(n *yaml.Node, field string) (netip.Addr, bool) {
	s, ok := p.str(n, field)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		p.errorf(n, field, "%q is not an IPv4 address", topology.Shorten(s))
		return netip.Addr{}, false
	}
	return a, true
}

// prefix parses an address or a prefix (an address is its /32).
func (p *parser) prefix(n *yaml.Node, field string) (netip.Prefix, bool) {
	s, ok := p.str(n, field)
	if !ok {
		return netip.Prefix{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return netip.PrefixFrom(a, 32), true
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil || !pf.Addr().Is4() || pf.Masked() != pf {
		p.errorf(n, field, "%q is not an IPv4 address or prefix (such as 10.244.0.0/26)", topology.Shorten(s))
		return netip.Prefix{}, false
	}
	return pf, true
}

func (p *parser) regex(n *yaml.Node, field string) (*regexp.Regexp, bool) {
	s, ok := p.str(n, field)
	if !ok {
		return nil, false
	}
	re, err := regexp.Compile(s)
	if err != nil {
		p.errorf(n, field, "bad regular expression: %v", err)
		return nil, false
	}
	return re, true
}

// checkNode reports a name that is no node or router of the lab.
func (p *parser) checkNode(n *yaml.Node, field, name string) {
	if p.nodes != nil && !p.nodes[name] {
		p.errorf(n, field, "the lab has no node or router %q (its nodes: %s)", topology.Shorten(name), keys(p.nodes))
	}
}

// checkWorkload reports a name that is no workload of the lab (or added
// by an earlier step).
func (p *parser) checkWorkload(n *yaml.Node, field, name string) {
	if p.workloads != nil && !p.workloads[name] {
		p.errorf(n, field, "the lab has no workload %q (its workloads: %s)", topology.Shorten(name), keys(p.workloads))
	}
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	if len(out) > 10 {
		out = append(out[:10], "...")
	}
	return strings.Join(out, ", ")
}

// lab parses a lab given inline (a mapping) or by path (a string, relative
// to the scenario file's directory). An inline lab's problems carry their
// lines in the scenario file and fields prefixed with field.
func (p *parser) lab(n *yaml.Node, field string) (*topology.Lab, string) {
	n = resolve(n)
	switch n.Kind {
	case yaml.ScalarNode:
		path, ok := p.str(n, field)
		if !ok || path == "" {
			if ok {
				p.errorf(n, field, "must not be empty")
			}
			return nil, ""
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(p.file), path)
		}
		l, err := topology.Load(path)
		if err != nil {
			var ve *topology.ValidationError
			if errors.As(err, &ve) {
				for _, pr := range ve.Problems {
					p.errorf(n, field, "%s:%d: %s%s", path, pr.Line, prefixField(pr.Field), pr.Msg)
				}
			} else {
				p.errorf(n, field, "%v", err)
			}
			return nil, ""
		}
		return l, path
	case yaml.MappingNode:
		data, exact := p.extract(n)
		l, err := topology.Parse(p.file, data)
		if err != nil {
			var ve *topology.ValidationError
			if !errors.As(err, &ve) {
				p.errorf(n, field, "%v", err)
				return nil, ""
			}
			for _, pr := range ve.Problems {
				line := pr.Line
				if !exact || line == 0 {
					line = n.Line
				}
				p.probs = append(p.probs, topology.Problem{Line: line, Field: join(field, pr.Field), Msg: pr.Msg})
			}
			return nil, ""
		}
		return l, ""
	}
	p.errorf(n, field, "must be a lab (a mapping, as in a lab file) or the path of a lab file")
	return nil, ""
}

func prefixField(f string) string {
	if f == "" {
		return ""
	}
	return f + ": "
}

// extract returns the text of the mapping n for topology.Parse. When n's
// lines hold nothing else, that is the scenario file with every other
// line blanked (and the start of n's first line), so that the lab's
// problems carry the scenario file's line numbers (exact is true);
// otherwise n re-encoded, whose lines mean nothing in the scenario file.
func (p *parser) extract(n *yaml.Node) ([]byte, bool) {
	first, last := n.Line, maxLine(n)
	next := 0 // the first line after n's subtree holding another node
	inside := map[*yaml.Node]bool{}
	markAll(n, inside)
	shared := false
	walk(p.root, func(o *yaml.Node) {
		if inside[o] || o.Kind == yaml.DocumentNode {
			return
		}
		if o.Line >= first && o.Line <= last && (o.Line > first || o.Column > n.Column) {
			shared = true
		}
		if o.Line > last && (next == 0 || o.Line < next) {
			next = o.Line
		}
	})
	lines := bytes.Split(p.data, []byte("\n"))
	end := len(lines)
	if next > 0 {
		end = next - 1
	}
	if shared || first < 1 || first > len(lines) || n.Column < 1 || n.Column-1 > len(lines[first-1]) || bytes.ContainsRune(p.data, '\r') || bytes.Contains(p.data, []byte("\t")) {
		return reencode(n), false
	}
	var b bytes.Buffer
	for i := range lines {
		ln := i + 1
		switch {
		case ln < first || ln > end:
		case ln == first:
			b.Write(bytes.Repeat([]byte(" "), n.Column-1))
			b.Write(lines[i][n.Column-1:])
		default:
			b.Write(lines[i])
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), true
}

func reencode(n *yaml.Node) []byte {
	data, err := yaml.Marshal(n)
	if err != nil {
		return []byte("{}")
	}
	return data
}

func walk(n *yaml.Node, fn func(*yaml.Node)) {
	if n == nil {
		return
	}
	fn(n)
	for _, c := range n.Content {
		walk(c, fn)
	}
}

func markAll(n *yaml.Node, m map[*yaml.Node]bool) {
	walk(n, func(o *yaml.Node) { m[o] = true })
}

func maxLine(n *yaml.Node) int {
	m := n.Line
	walk(n, func(o *yaml.Node) {
		l := o.Line
		if o.Kind == yaml.ScalarNode && (o.Style == yaml.LiteralStyle || o.Style == yaml.FoldedStyle) {
			l += strings.Count(o.Value, "\n")
		}
		if l > m {
			m = l
		}
	})
	return m
}

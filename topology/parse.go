package topology

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netstack"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
	"gopkg.in/yaml.v3"
)

// Load reads and validates the lab file at path. Problems with the file's
// contents are returned as a [*ValidationError] naming path. A file larger
// than [MaxLabFileSize] is refused before it is read whole (a regular file
// by its size, a pipe or device once it gives more) with an error matching
// [ErrFileTooLarge].
func Load(path string) (*Lab, error) {
	data, err := readLabFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse validates the lab file data; name is the file name used in error
// messages. Every problem found is returned at once as a [*ValidationError];
// a Lab is returned only when there is none. Data over [MaxLabFileSize],
// or a lab over one of the count limits ([MaxNodes], [MaxNetworks],
// [MaxIPPools]), is refused with only that problem.
func Parse(name string, data []byte) (*Lab, error) {
	p := &parser{dir: filepath.Dir(name)}
	if len(data) > MaxLabFileSize {
		p.errorf(0, "", "the file is %s, larger than the limit of %s (topology.MaxLabFileSize)", size(int64(len(data))), mib(MaxLabFileSize))
	} else if root := p.decode(data); root != nil && !p.overLimits(root) {
		raw := p.lab(root)
		if lab := p.check(raw); len(p.probs) == 0 {
			return lab, nil
		}
	}
	sort.SliceStable(p.probs, func(i, j int) bool { return p.probs[i].Line < p.probs[j].Line })
	return nil, &ValidationError{File: name, Problems: p.probs}
}

// The fields each part of a lab file may have, in the order error messages
// list them.
var (
	labFields     = []string{"name", "ipPools", "ipam", "bgp", "networks", "nodes", "workloads", "bgpPeers", "routers", "dataplane", "datastore", "policies"}
	ipamFields    = []string{"strictAffinity"}
	poolFields    = []string{"name", "cidr", "blockSize", "ipipMode", "mtu"}
	bgpFields     = []string{"asNumber", "nodeToNodeMesh", "keepaliveTime", "holdTime", "gracefulRestart", "restartTime"}
	networkFields = []string{"name", "cidr", "mtu", "gateway"}
	nodeFields    = []string{"kind", "network", "address", "interface", "asNumber", "labels", "routeReflectorClusterID", "cpuSet", "impairments", "dataplane"}
	// A router node's fields; the fields of nodeFields after kind are
	// for calico nodes only.
	routerNodeFields = []string{"kind", "interfaces", "routes"}
	ifaceFields      = []string{"name", "network", "address", "impairments"}
	routeFields      = []string{"dst", "via"}
	peerFields       = []string{"name", "peerIP", "peerSelector", "node", "nodeSelector", "asNumber", "password"}
	workloadFields   = []string{"name", "node", "address", "namespace", "labels", "stack", "serve"}
	routerFields     = []string{"network", "address", "interface", "asNumber", "daemon", "binary", "config", "announce", "routeReflectorClusterID", "password", "holdTime", "impairments"}
)

// state says whether a field was given and whether its value was usable.
type state uint8

const (
	absent state = iota // not in the file
	bad                 // in the file, but unusable; a problem was reported
	ok                  // in the file and well-formed
)

// val is one field's value with the line it came from.
type val[T any] struct {
	v    T
	line int
	st   state
}

// The raw lab: what the file says, field by field, with lines, before the
// checks that relate one field to another and before defaults.
type (
	rawLab struct {
		line      int // of the top-level mapping
		name      val[string]
		pools     []rawPool
		poolsLine int // of the ipPools value, or of the top level if absent
		poolsN    int // entries in the file, -1 if ipPools is not a list
		bgp       rawBGP
		strict    val[bool]
		networks  []rawNetwork
		netsLine  int
		netsN     int
		nodes     []rawNode // calico nodes, and nodes of an unusable kind
		nodesLine int
		nodesN    int
		rnodes    []rawRouterNode
		workloads []rawWorkload
		peers     []rawPeer
		routers   []rawRouter
		dataplane val[string]
		datastore val[string]
		policies  []rawPolicy
	}
	rawPool struct {
		line      int
		path      string
		name      val[string]
		cidr      val[netip.Prefix]
		blockSize val[int64]
		ipipMode  val[IPIPMode]
		mtu       val[int64]
	}
	rawBGP struct {
		asNumber  val[int64]
		mesh      val[bool]
		keepalive val[time.Duration]
		hold      val[time.Duration]
		gr        val[bool]
		restart   val[time.Duration]
	}
	rawNetwork struct {
		line    int
		path    string
		name    val[string]
		cidr    val[netip.Prefix]
		mtu     val[int64]
		gateway val[netip.Addr]
	}
	rawNode struct {
		line    int
		path    string
		name    val[string]
		kindBad bool // kind was given but is unusable; only the name counts
		network val[string]
		address val[netip.Addr]
		iface   val[string]
		asn     val[int64]
		labels  val[map[string]string]
		cluster val[netip.Addr]
		cpuSet  val[[]int]
		impair  val[config.Impairment]
		dplane  val[string] // the node's own dataplane
	}
	rawRouterNode struct {
		line       int
		path       string
		name       val[string]
		ifaces     []rawRouterIface
		ifacesLine int // of the interfaces value, or of the node if absent
		ifacesN    int // entries in the file, -1 if not a list
		ifacesSeen bool
		routes     []rawStaticRoute
	}
	rawRouterIface struct {
		line    int
		path    string
		pos     int // in the list, for the default name
		name    val[string]
		network val[string]
		address val[netip.Addr]
		impair  val[config.Impairment]
	}
	rawStaticRoute struct {
		line int
		path string
		dst  val[netip.Prefix]
		via  val[netip.Addr]
	}
	rawPeer struct {
		line         int
		path         string
		name         val[string]
		peerIP       val[netip.Addr]
		peerSelector val[string]
		node         val[string]
		nodeSelector val[string]
		asn          val[int64]
		password     val[string]
	}
	rawRouter struct {
		line     int
		path     string
		name     val[string]
		network  val[string]
		address  val[netip.Addr]
		iface    val[string]
		asn      val[int64]
		daemon   val[Daemon]
		binary   val[string]
		config   val[string]
		announce []val[netip.Prefix]
		cluster  val[netip.Addr]
		password val[string]
		hold     val[time.Duration]
		impair   val[config.Impairment]
		clean    bool // no problem found in the router's own fields
	}
	rawWorkload struct {
		line    int
		path    string
		name    val[string]
		node    val[string]
		address val[netip.Addr]
		ns      val[string]
		labels  val[map[string]string]
		stack   val[string]
		serve   []val[string]
		serveN  val[int] // the serve list's line; st absent if not given
	}
)

// parser collects problems while it reads a lab file.
type parser struct {
	probs []Problem
	dir   string // the lab file's directory, for relative paths in it
}

func (p *parser) errorf(line int, field, format string, args ...any) {
	p.probs = append(p.probs, Problem{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// decode parses data as one YAML document and returns its top-level node,
// or nil after reporting why it cannot.
func (p *parser) decode(data []byte) (root *yaml.Node) {
	defer func() {
		// The YAML library is not ours; never let it take the caller down.
		if r := recover(); r != nil {
			p.errorf(0, "", "invalid YAML: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "", "the file is empty; a lab needs at least a name, an IP pool, a network and a node")
		} else {
			p.yamlError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.yamlError(err)
		return nil
	case len(next.Content) > 0 && next.Content[0].Tag != "!!null":
		p.errorf(next.Line, "", "a lab file holds one YAML document; remove the second one (after ---)")
		return nil
	}
	if len(doc.Content) == 0 {
		p.errorf(0, "", "the file is empty; a lab needs at least a name, an IP pool, a network and a node")
		return nil
	}
	root = deref(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		if root.Tag == "!!null" {
			p.errorf(0, "", "the file is empty; a lab needs at least a name, an IP pool, a network and a node")
		} else {
			p.errorf(root.Line, "", "a lab file is a YAML mapping with the fields %s", strings.Join(labFields, ", "))
		}
		return nil
	}
	return root
}

// yamlError reports an error from the YAML library, keeping its line.
func (p *parser) yamlError(err error) {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errorf(line, "", "invalid YAML: %s", m[2])
		return
	}
	p.errorf(0, "", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
}

// deref follows an alias (*name) to the node it stands for.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// kindName names what a node is, for "must be X, not Y" messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// pairs calls fn for each key of the mapping n in file order, after
// reporting keys that are not plain scalars and keys given twice. The line
// passed to fn is the key's.
func (p *parser) pairs(n *yaml.Node, path, what string, fn func(key string, line int, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(n.Content[i].Line, path, "%s keys must be plain names, not %s", what, kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(n.Content[i].Line, join(path, k.Value), "given twice (first on line %d)", first)
			continue
		}
		seen[k.Value] = n.Content[i].Line
		fn(k.Value, n.Content[i].Line, v)
	}
}

// fields is pairs for a mapping with a fixed set of fields: it reports
// unknown fields and calls fn for known ones.
func (p *parser) fields(n *yaml.Node, path string, known []string, fn func(key string, v *yaml.Node)) {
	p.pairs(n, path, "field", func(key string, line int, v *yaml.Node) {
		switch {
		case key == "<<":
			p.errorf(line, join(path, key), "YAML merge keys are not supported; write the fields out")
		case !contains(known, key):
			p.errorf(line, join(path, key), "unknown field (known: %s)", strings.Join(known, ", "))
		default:
			fn(key, v)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// scalar returns n's text. Empty values are reported; hint, if any, says
// what leaving the field out would do.
func (p *parser) scalar(n *yaml.Node, path, hint string) (string, int, bool) {
	line := n.Line
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		p.errorf(line, path, "must be a single value, not %s", kindName(n))
		return "", line, false
	}
	if n.Tag == "!!null" || n.Value == "" {
		if hint != "" {
			p.errorf(line, path, "must not be empty (%s)", hint)
		} else {
			p.errorf(line, path, "must not be empty")
		}
		return "", line, false
	}
	return n.Value, line, true
}

func (p *parser) str(n *yaml.Node, path, hint string) val[string] {
	s, line, good := p.scalar(n, path, hint)
	if !good {
		return val[string]{line: line, st: bad}
	}
	return val[string]{v: s, line: line, st: ok}
}

var intText = regexp.MustCompile(`^[-+]?[0-9][0-9_]*$`)

// integer reads a whole number in [lo, hi].
func (p *parser) integer(n *yaml.Node, path, hint string, lo, hi int64) val[int64] {
	s, line, good := p.scalar(n, path, hint)
	if !good {
		return val[int64]{line: line, st: bad}
	}
	n = deref(n)
	var i int64
	switch {
	case n.Tag == "!!int" && n.Decode(&i) == nil:
		if i < lo || i > hi {
			p.errorf(line, path, "%s is outside %d-%d", s, lo, hi)
			return val[int64]{line: line, st: bad}
		}
		return val[int64]{v: i, line: line, st: ok}
	case (n.Tag == "!!int" || n.Tag == "!!float") && intText.MatchString(s):
		p.errorf(line, path, "%s is outside %d-%d", s, lo, hi)
	case n.Tag == "!!str" && intText.MatchString(s):
		p.errorf(line, path, "must be a number, not the string %q (remove the quotes)", s)
	default:
		p.errorf(line, path, "%s is not a whole number", strconv.Quote(s))
	}
	return val[int64]{line: line, st: bad}
}

func (p *parser) boolean(n *yaml.Node, path string) val[bool] {
	s, line, good := p.scalar(n, path, "leave it out for the default")
	if !good {
		return val[bool]{line: line, st: bad}
	}
	var b bool
	if n = deref(n); n.Tag != "!!bool" || n.Decode(&b) != nil {
		p.errorf(line, path, "%s is not true or false", strconv.Quote(s))
		return val[bool]{line: line, st: bad}
	}
	return val[bool]{v: b, line: line, st: ok}
}

// maxBGPTime is the largest BGP timer, the hold time field being 16 bits of
// seconds (RFC 4271).
const maxBGPTime = 65535 * time.Second

// duration reads a BGP timer: a Go duration of whole seconds, at most 65535s.
func (p *parser) duration(n *yaml.Node, path, hint string) val[time.Duration] {
	s, line, good := p.scalar(n, path, hint)
	if !good {
		return val[time.Duration]{line: line, st: bad}
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil && intText.MatchString(s):
		p.errorf(line, path, "%s needs a unit; did you mean %ss?", s, strings.TrimPrefix(s, "+"))
	case err != nil:
		p.errorf(line, path, "%s is not a duration (write e.g. 3s, 90s or 1m30s)", strconv.Quote(s))
	case d < 0:
		p.errorf(line, path, "%s is negative", s)
	case d%time.Second != 0:
		p.errorf(line, path, "%s is not a whole number of seconds; BGP timers count seconds", s)
	case d > maxBGPTime:
		p.errorf(line, path, "%s is longer than BGP's maximum of 65535s", s)
	default:
		return val[time.Duration]{v: d, line: line, st: ok}
	}
	return val[time.Duration]{line: line, st: bad}
}

// addr reads an IPv4 address without prefix length.
func (p *parser) addr(n *yaml.Node, path, what string) val[netip.Addr] {
	s, line, good := p.scalar(n, path, "")
	if !good {
		return val[netip.Addr]{line: line, st: bad}
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil && strings.Contains(s, "/"):
		p.errorf(line, path, "%s: write the address without a prefix length; %s", s, what)
	case err != nil:
		p.errorf(line, path, "%s is not an IPv4 address", strconv.Quote(s))
	case !a.Is4():
		p.errorf(line, path, "%s is not an IPv4 address (only IPv4 is supported)", s)
	default:
		return val[netip.Addr]{v: a, line: line, st: ok}
	}
	return val[netip.Addr]{line: line, st: bad}
}

// prefix reads an IPv4 CIDR without host bits.
func (p *parser) prefix(n *yaml.Node, path string) val[netip.Prefix] {
	s, line, good := p.scalar(n, path, "")
	if !good {
		return val[netip.Prefix]{line: line, st: bad}
	}
	c, err := netip.ParsePrefix(s)
	switch {
	case err != nil && !strings.Contains(s, "/"):
		p.errorf(line, path, "%s has no prefix length; write a CIDR such as 10.244.0.0/16", s)
	case err != nil:
		p.errorf(line, path, "%s is not a CIDR (such as 10.244.0.0/16)", strconv.Quote(s))
	case !c.Addr().Is4():
		p.errorf(line, path, "%s is not an IPv4 CIDR (only IPv4 is supported)", s)
	case c != c.Masked():
		p.errorf(line, path, "%s has host bits set; did you mean %s?", s, c.Masked())
	default:
		return val[netip.Prefix]{v: c, line: line, st: ok}
	}
	return val[netip.Prefix]{line: line, st: bad}
}

// ipipModes are the valid ipipMode values in the order messages list them.
var ipipModes = []IPIPMode{IPIPAlways, IPIPCrossSubnet, IPIPNever}

// ipipMode reads an ipipMode. Like Calico, it is case-sensitive; a value
// that differs only in case or dashes gets a suggestion.
func (p *parser) ipipMode(n *yaml.Node, path string) val[IPIPMode] {
	s, line, good := p.scalar(n, path, "leave it out for the default, Never")
	if !good {
		return val[IPIPMode]{line: line, st: bad}
	}
	for _, m := range ipipModes {
		if s == string(m) {
			return val[IPIPMode]{v: m, line: line, st: ok}
		}
	}
	valid := "valid: Always, CrossSubnet, Never"
	if t := deref(n).Tag; t == "!!bool" {
		p.errorf(line, path, "%s is not an IPIP mode; did you mean Always or Never? (%s)", s, valid)
		return val[IPIPMode]{line: line, st: bad}
	}
	fold := strings.NewReplacer("-", "", "_", "", " ", "").Replace(s)
	for _, m := range ipipModes {
		if strings.EqualFold(fold, string(m)) {
			p.errorf(line, path, "%s is not an IPIP mode; did you mean %s? (%s; case matters)", strconv.Quote(s), m, valid)
			return val[IPIPMode]{line: line, st: bad}
		}
	}
	p.errorf(line, path, "%s is not an IPIP mode (%s)", strconv.Quote(s), valid)
	return val[IPIPMode]{line: line, st: bad}
}

// list calls fn for each item of the list n, reporting items that are not
// mappings, and returns the number of items, or -1 if n is not a list. An
// empty value counts as an empty list.
func (p *parser) list(n *yaml.Node, path, plural, singular string, fn func(i int, item *yaml.Node)) int {
	line := n.Line
	n = deref(n)
	if isNull(n) {
		return 0
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(line, path, "must be a list of %s, not %s", plural, kindName(n))
		return -1
	}
	for i, item := range n.Content {
		itemLine := item.Line
		if item = deref(item); item.Kind != yaml.MappingNode {
			p.errorf(itemLine, index(path, i), "must be %s (a mapping), not %s", singular, kindName(item))
			continue
		}
		fn(i, item)
	}
	return len(n.Content)
}

// lab reads the top-level mapping.
func (p *parser) lab(root *yaml.Node) *rawLab {
	r := &rawLab{line: root.Line, poolsLine: root.Line, netsLine: root.Line, nodesLine: root.Line}
	p.fields(root, "", labFields, func(key string, v *yaml.Node) {
		switch key {
		case "name":
			r.name = p.str(v, "name", "")
		case "ipPools":
			r.poolsLine = v.Line
			r.poolsN = p.list(v, "ipPools", "IP pools", "an IP pool", func(i int, item *yaml.Node) {
				r.pools = append(r.pools, p.pool(item, index("ipPools", i)))
			})
		case "bgp":
			r.bgp = p.bgpSettings(v)
		case "ipam":
			line := v.Line
			if v = deref(v); isNull(v) {
				return
			}
			if v.Kind != yaml.MappingNode {
				p.errorf(line, "ipam", "must be a mapping (fields: %s), not %s", strings.Join(ipamFields, ", "), kindName(v))
				return
			}
			p.fields(v, "ipam", ipamFields, func(key string, v *yaml.Node) {
				r.strict = p.boolean(v, join("ipam", key))
			})
		case "networks":
			r.netsLine = v.Line
			r.netsN = p.list(v, "networks", "networks", "a network", func(i int, item *yaml.Node) {
				r.networks = append(r.networks, p.network(item, index("networks", i)))
			})
		case "nodes":
			r.nodesLine = v.Line
			r.nodes, r.rnodes, r.nodesN = p.nodes(v)
		case "workloads":
			p.list(v, "workloads", "workloads", "a workload", func(i int, item *yaml.Node) {
				r.workloads = append(r.workloads, p.workload(item, index("workloads", i)))
			})
		case "bgpPeers":
			p.list(v, "bgpPeers", "BGP peers", "a BGP peer", func(i int, item *yaml.Node) {
				r.peers = append(r.peers, p.bgpPeer(item, index("bgpPeers", i)))
			})
		case "routers":
			r.routers = p.routers(v)
		case "dataplane":
			r.dataplane = p.dataplane(v, "dataplane")
		case "datastore":
			r.datastore = p.datastore(v, "datastore")
		case "policies":
			r.policies = p.policies(v)
		}
	})
	return r
}

// dataplanes are the valid values of dataplane, in the order messages
// list them.
var dataplanes = []string{DataplaneUserspace, DataplaneKernel}

// dataplane reads a dataplane: userspace or kernel.
func (p *parser) dataplane(n *yaml.Node, path string) val[string] {
	v := p.str(n, path, "leave it out for the default, userspace")
	if v.st != ok {
		return v
	}
	if !contains(dataplanes, v.v) {
		hint := ""
		if l := strings.ToLower(v.v); l != v.v && contains(dataplanes, l) {
			hint = fmt.Sprintf("; did you mean %s? (case matters)", l)
		}
		p.errorf(v.line, path, "%s is not a dataplane (valid: %s)%s", strconv.Quote(v.v), strings.Join(dataplanes, ", "), hint)
		v.st = bad
	}
	return v
}

// datastores are the valid values of datastore, in the order messages
// list them.
var datastores = []string{DatastoreBolt, DatastoreEtcd}

// datastore reads a datastore: bbolt or etcd.
func (p *parser) datastore(n *yaml.Node, path string) val[string] {
	v := p.str(n, path, "leave it out for the default, bbolt")
	if v.st != ok {
		return v
	}
	if !contains(datastores, v.v) {
		hint := ""
		if l := strings.ToLower(v.v); l != v.v && contains(datastores, l) {
			hint = fmt.Sprintf("; did you mean %s? (case matters)", l)
		}
		p.errorf(v.line, path, "%s is not a datastore (valid: %s)%s", strconv.Quote(v.v), strings.Join(datastores, ", "), hint)
		v.st = bad
	}
	return v
}

func (p *parser) pool(n *yaml.Node, path string) rawPool {
	r := rawPool{line: n.Line, path: path}
	p.fields(n, path, poolFields, func(key string, v *yaml.Node) {
		f := join(path, key)
		switch key {
		case "name":
			r.name = p.str(v, f, "")
		case "cidr":
			r.cidr = p.prefix(v, f)
		case "blockSize":
			r.blockSize = p.integer(v, f, "leave it out for the default, 26", MinBlockSize, MaxBlockSize)
		case "ipipMode":
			r.ipipMode = p.ipipMode(v, f)
		case "mtu":
			r.mtu = p.integer(v, f, "leave it out for Calico's choice: the network's MTU, minus 20 with IPIP", MinMTU, MaxMTU)
		}
	})
	return r
}

func (p *parser) bgpSettings(n *yaml.Node) rawBGP {
	var r rawBGP
	line := n.Line
	if n = deref(n); isNull(n) {
		return r
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(line, "bgp", "must be a mapping (fields: %s), not %s", strings.Join(bgpFields, ", "), kindName(n))
		return r
	}
	p.fields(n, "bgp", bgpFields, func(key string, v *yaml.Node) {
		f := join("bgp", key)
		switch key {
		case "asNumber":
			r.asNumber = p.asNumber(v, f)
		case "nodeToNodeMesh":
			r.mesh = p.boolean(v, f)
		case "keepaliveTime":
			r.keepalive = p.duration(v, f, "leave it out for the default, 3s")
		case "holdTime":
			r.hold = p.duration(v, f, "leave it out for the default, 9s")
			if r.hold.st == ok && r.hold.v != 0 && r.hold.v < 3*time.Second {
				p.errorf(r.hold.line, f, "%s is too short; RFC 4271 allows 0 (no hold timer) or at least 3s", r.hold.v)
				r.hold.st = bad
			}
		case "gracefulRestart":
			r.gr = p.boolean(v, f)
		case "restartTime":
			r.restart = p.duration(v, f, "leave it out for the default, 120s")
			if r.restart.st == ok && (r.restart.v == 0 || r.restart.v > MaxRestartTime) {
				p.errorf(r.restart.line, f, "%s is out of range; the graceful restart capability carries 1s to 4095s (RFC 4724)", r.restart.v)
				r.restart.st = bad
			}
		}
	})
	return r
}

func (p *parser) asNumber(n *yaml.Node, path string) val[int64] {
	v := p.integer(n, path, "leave it out for the default, 64512", 1, math.MaxUint32)
	if v.st == ok && uint32(v.v) == ASTrans {
		p.errorf(v.line, path, "23456 is AS_TRANS (RFC 6793), reserved for 4-byte AS transition; pick another AS number, e.g. 64512")
		v.st = bad
	}
	return v
}

func (p *parser) network(n *yaml.Node, path string) rawNetwork {
	r := rawNetwork{line: n.Line, path: path}
	p.fields(n, path, networkFields, func(key string, v *yaml.Node) {
		f := join(path, key)
		switch key {
		case "name":
			r.name = p.str(v, f, "")
		case "cidr":
			r.cidr = p.prefix(v, f)
		case "mtu":
			r.mtu = p.integer(v, f, "leave it out for the default, 1500", MinMTU, MaxMTU)
		case "gateway":
			r.gateway = p.addr(v, f, "the prefix length comes from the network")
		}
	})
	return r
}

// nodes reads the nodes mapping, node name to node, keeping file order. It
// returns the calico nodes (and those of an unusable kind), the router
// nodes, and how many entries the mapping has, or -1 if nodes is not a
// mapping.
func (p *parser) nodes(n *yaml.Node) ([]rawNode, []rawRouterNode, int) {
	line := n.Line
	if n = deref(n); isNull(n) {
		return nil, nil, 0
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(line, "nodes", "must be a mapping of node name to node (e.g. node1: {network: lan, address: 192.168.50.10}), not %s", kindName(n))
		return nil, nil, -1
	}
	var out []rawNode
	var routers []rawRouterNode
	p.pairs(n, "nodes", "node name", func(name string, line int, v *yaml.Node) {
		path := join("nodes", name)
		vLine := v.Line
		v = deref(v)
		kind := val[string]{v: KindCalico}
		if v.Kind == yaml.MappingNode {
			kind = p.nodeKind(v, path)
		}
		switch {
		case kind.st == ok && kind.v == KindRouter:
			routers = append(routers, p.routerNode(v, name, line, path))
		case kind.st == bad:
			// The fields cannot be judged without the kind; read them
			// for their own problems only.
			p.nodeFieldsOf(v, path, "", nil, func(key string, line int, v *yaml.Node) {
				switch key {
				case "interfaces", "routes":
					p.routerNodeField(&rawRouterNode{path: path}, key, line, v)
				default:
					p.calicoNodeField(&rawNode{}, key, v, join(path, key))
				}
			})
			out = append(out, rawNode{line: line, path: path, name: val[string]{v: name, line: line, st: ok}, kindBad: true})
		default:
			out = append(out, p.calicoNode(v, name, line, vLine, path))
		}
	})
	return out, routers, len(n.Content) / 2
}

// nodeKinds are the valid kinds of node, in the order messages list them.
var nodeKinds = []string{KindCalico, KindRouter}

// nodeKind reads the kind field of the node mapping n, calico if absent.
func (p *parser) nodeKind(n *yaml.Node, path string) val[string] {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := deref(n.Content[i]); k.Kind != yaml.ScalarNode || k.Value != "kind" {
			continue
		}
		f := join(path, "kind")
		v := p.str(n.Content[i+1], f, "leave it out for a calico node")
		if v.st != ok {
			return v
		}
		if !contains(nodeKinds, v.v) {
			hint := ""
			if l := strings.ToLower(v.v); l != v.v && contains(nodeKinds, l) {
				hint = fmt.Sprintf("; did you mean %s? (case matters)", l)
			}
			p.errorf(v.line, f, "%s is not a kind of node (valid: %s)%s", strconv.Quote(v.v), strings.Join(nodeKinds, ", "), hint)
			v.st = bad
		}
		return v
	}
	return val[string]{v: KindCalico}
}

// nodeFieldsOf calls fn for the fields of the node mapping n other than
// kind. With kind set, fields of the other kind are reported as such, and
// unknown fields with the fields of this kind; with kind empty (unknown),
// every field of either kind is passed to fn.
func (p *parser) nodeFieldsOf(n *yaml.Node, path, kind string, known []string, fn func(key string, line int, v *yaml.Node)) {
	p.pairs(n, path, "field", func(key string, line int, v *yaml.Node) {
		f := join(path, key)
		switch {
		case key == "kind":
			// Read by nodeKind.
		case key == "<<":
			p.errorf(line, f, "YAML merge keys are not supported; write the fields out")
		case kind == KindRouter && contains(nodeFields, key):
			p.errorf(line, f, "is a field of calico nodes; a router node has interfaces instead (fields of a router node: %s)", strings.Join(routerNodeFields, ", "))
		case kind == KindCalico && contains(routerNodeFields, key):
			p.errorf(line, f, "is a field of router nodes (kind: router); a calico node has one network and address")
		case kind != "" && !contains(known, key):
			p.errorf(line, f, "unknown field (known: %s)", strings.Join(known, ", "))
		case kind == "" && !contains(nodeFields, key) && !contains(routerNodeFields, key):
			p.errorf(line, f, "unknown field (known for calico nodes: %s; for router nodes: %s)", strings.Join(nodeFields, ", "), strings.Join(routerNodeFields, ", "))
		default:
			fn(key, line, v)
		}
	})
}

// calicoNode reads a calico node; n is the node's value, vLine its line.
func (p *parser) calicoNode(n *yaml.Node, name string, line, vLine int, path string) rawNode {
	r := rawNode{line: line, path: path, name: val[string]{v: name, line: line, st: ok}}
	switch {
	case isNull(n):
		// Reported later as missing fields.
	case n.Kind != yaml.MappingNode:
		p.errorf(vLine, path, "must be a mapping (fields: %s), not %s", strings.Join(nodeFields, ", "), kindName(n))
		r.network.st, r.address.st = bad, bad
	default:
		p.nodeFieldsOf(n, path, KindCalico, nodeFields, func(key string, _ int, v *yaml.Node) {
			p.calicoNodeField(&r, key, v, join(path, key))
		})
	}
	return r
}

// calicoNodeField reads the field key of a calico node into r.
func (p *parser) calicoNodeField(r *rawNode, key string, v *yaml.Node, f string) {
	switch key {
	case "network":
		r.network = p.str(v, f, "")
	case "address":
		r.address = p.addr(v, f, "the prefix length comes from the node's network")
	case "interface":
		r.iface = p.str(v, f, "leave it out for the default, ens33")
	case "asNumber":
		r.asn = p.integer(v, f, "leave it out for the lab's bgp.asNumber", 1, math.MaxUint32)
		if r.asn.st == ok && uint32(r.asn.v) == ASTrans {
			p.errorf(r.asn.line, f, "23456 is AS_TRANS (RFC 6793), reserved for 4-byte AS transition; pick another AS number, e.g. 64513")
			r.asn.st = bad
		}
	case "labels":
		r.labels = p.labels(v, f)
	case "routeReflectorClusterID":
		r.cluster = p.addr(v, f, "a cluster ID is written like an IPv4 address, e.g. 244.0.0.1")
	case "impairments":
		r.impair = p.impairment(v, f)
	case "dataplane":
		r.dplane = p.dataplane(v, f)
	case "cpuSet":
		str := p.str(v, f, `CPUs like taskset -c takes them, e.g. "0" or "0-1,3"`)
		if str.st == ok {
			cpus, err := ParseCPUSet(str.v)
			if err != nil {
				p.errorf(str.line, f, "%v", err)
				str.st = bad
			}
			r.cpuSet = val[[]int]{v: cpus, line: str.line, st: str.st}
		}
	}
}

// routerNode reads a node of kind router; n is the node's mapping.
func (p *parser) routerNode(n *yaml.Node, name string, line int, path string) rawRouterNode {
	r := rawRouterNode{line: line, path: path, name: val[string]{v: name, line: line, st: ok}, ifacesLine: line}
	p.nodeFieldsOf(n, path, KindRouter, routerNodeFields, func(key string, line int, v *yaml.Node) {
		p.routerNodeField(&r, key, line, v)
	})
	return r
}

// routerNodeField reads the field key (interfaces or routes) of a router
// node into r; line is the key's.
func (p *parser) routerNodeField(r *rawRouterNode, key string, line int, v *yaml.Node) {
	f := join(r.path, key)
	switch key {
	case "interfaces":
		r.ifacesSeen, r.ifacesLine = true, line
		r.ifacesN = p.list(v, f, "interfaces", "an interface", func(i int, item *yaml.Node) {
			r.ifaces = append(r.ifaces, p.routerIface(item, index(f, i), i))
		})
	case "routes":
		p.list(v, f, "static routes", "a static route", func(i int, item *yaml.Node) {
			r.routes = append(r.routes, p.staticRoute(item, index(f, i)))
		})
	}
}

func (p *parser) routerIface(n *yaml.Node, path string, i int) rawRouterIface {
	r := rawRouterIface{line: n.Line, path: path, pos: i}
	p.fields(n, path, ifaceFields, func(key string, v *yaml.Node) {
		f := join(path, key)
		switch key {
		case "name":
			r.name = p.str(v, f, fmt.Sprintf("leave it out for the default, eth%d", i))
		case "network":
			r.network = p.str(v, f, "")
		case "address":
			r.address = p.addr(v, f, "the prefix length comes from the interface's network")
		case "impairments":
			r.impair = p.impairment(v, f)
		}
	})
	return r
}

func (p *parser) staticRoute(n *yaml.Node, path string) rawStaticRoute {
	r := rawStaticRoute{line: n.Line, path: path}
	p.fields(n, path, routeFields, func(key string, v *yaml.Node) {
		f := join(path, key)
		switch key {
		case "dst":
			if s := deref(v); s.Kind == yaml.ScalarNode && s.Value == "default" {
				r.dst = val[netip.Prefix]{v: netip.PrefixFrom(netip.IPv4Unspecified(), 0), line: v.Line, st: ok}
			} else {
				r.dst = p.prefix(v, f)
			}
		case "via":
			r.via = p.addr(v, f, "a gateway is one address")
		}
	})
	return r
}

func (p *parser) workload(n *yaml.Node, path string) rawWorkload {
	r := rawWorkload{line: n.Line, path: path}
	p.fields(n, path, workloadFields, func(key string, v *yaml.Node) {
		f := join(path, key)
		switch key {
		case "name":
			r.name = p.str(v, f, "")
		case "node":
			r.node = p.str(v, f, "")
		case "address":
			r.address = p.addr(v, f, "a workload's address is a /32")
		case "namespace":
			r.ns = p.str(v, f, "leave it out for the namespace default")
			if r.ns.st == ok {
				if m := policy.CheckNamespace(r.ns.v); m != "" {
					p.errorf(r.ns.line, f, "%s", m)
					r.ns.st = bad
				}
			}
		case "labels":
			r.labels = p.labels(v, f)
		case "stack":
			r.stack = p.str(v, f, "namespace or netstack")
			if r.stack.st == ok {
				if err := config.CheckStack(r.stack.v); err != nil {
					p.errorf(r.stack.line, f, "%q is not a workload stack (valid: %s, %s; case matters)", r.stack.v, config.StackNamespace, config.StackNetstack)
					r.stack.st = bad
				}
			}
		case "serve":
			r.serveN = val[int]{line: v.Line, st: ok}
			items, good := p.scalars(v, f, "services (e.g. [tcp:80:http, udp:53:echo])")
			if !good {
				r.serveN.st = bad
			}
			seen := map[string]int{}
			for _, it := range items {
				sv := p.str(it.node, it.path, "a service is PROTO:PORT:KIND, e.g. tcp:80:http")
				if sv.st == ok {
					s, err := netstack.ParseService(sv.v)
					if err != nil {
						p.errorf(sv.line, it.path, "%s", strings.TrimPrefix(err.Error(), fmt.Sprintf("service %q: ", sv.v)))
						sv.st = bad
					} else if key := s.Proto + ":" + strconv.Itoa(int(s.Port)); seen[key] != 0 {
						p.errorf(sv.line, it.path, "%s port %d is already served (line %d); a port serves one service per protocol", s.Proto, s.Port, seen[key])
						sv.st = bad
					} else {
						seen[key] = sv.line
						sv.v = s.String()
					}
				}
				r.serve = append(r.serve, sv)
			}
		}
	})
	return r
}

// labels reads a mapping of label keys to values.
func (p *parser) labels(n *yaml.Node, path string) val[map[string]string] {
	line := n.Line
	n = deref(n)
	if isNull(n) {
		return val[map[string]string]{line: line, st: ok}
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(line, path, "must be a mapping of label to value (e.g. {route-reflector: 'true'}), not %s", kindName(n))
		return val[map[string]string]{line: line, st: bad}
	}
	out := map[string]string{}
	st := ok
	p.pairs(n, path, "label", func(key string, kline int, v *yaml.Node) {
		f := join(path, key)
		if m := checkLabelKey(key); m != "" {
			p.errorf(kline, f, "%s", m)
			st = bad
			return
		}
		vline := v.Line
		v = deref(v)
		if v.Kind != yaml.ScalarNode || isNull(v) {
			p.errorf(vline, f, "must be a single value, not %s", kindName(v))
			st = bad
			return
		}
		if m := checkLabelValue(v.Value); m != "" {
			p.errorf(vline, f, "%s", m)
			st = bad
			return
		}
		out[key] = v.Value
	})
	return val[map[string]string]{v: out, line: line, st: st}
}

// selector reads a label selector.
func (p *parser) selector(n *yaml.Node, path string) val[string] {
	v := p.str(n, path, "")
	if v.st != ok {
		return v
	}
	if _, err := ParseSelector(v.v); err != nil {
		p.errorf(v.line, path, "%s", err)
		v.st = bad
	}
	return v
}

func (p *parser) bgpPeer(n *yaml.Node, path string) rawPeer {
	r := rawPeer{line: n.Line, path: path}
	p.fields(n, path, peerFields, func(key string, v *yaml.Node) {
		f := join(path, key)
		switch key {
		case "name":
			r.name = p.str(v, f, "")
		case "peerIP":
			r.peerIP = p.addr(v, f, "a peer is one address")
		case "peerSelector":
			r.peerSelector = p.selector(v, f)
		case "node":
			r.node = p.str(v, f, "leave it out to peer from every node")
		case "nodeSelector":
			r.nodeSelector = p.selector(v, f)
		case "asNumber":
			r.asn = p.asNumber(v, f)
		case "password":
			r.password = p.str(v, f, "leave it out for no TCP MD5 signature")
			// Linux accepts TCP MD5 keys of up to 80 bytes (TCP_MD5SIG_MAXKEYLEN).
			if r.password.st == ok && len(r.password.v) > 80 {
				p.errorf(r.password.line, f, "is %d bytes long; TCP MD5 keys are at most 80", len(r.password.v))
				r.password.st = bad
			}
		}
	})
	return r
}

package scenarios

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"gopkg.in/yaml.v3"
)

// step parses one step: a mapping with exactly one key, the step's kind.
func (p *parser) step(n *yaml.Node, field, dut string) (Step, bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		p.errorf(n, field, "a step is a mapping with one key, its kind (%s)", strings.Join(stepKinds, ", "))
		return Step{}, false
	}
	k, v := n.Content[0], resolve(n.Content[1])
	kind := k.Value
	if !contains(stepKinds, kind) {
		p.errorf(k, join(field, topology.Shorten(kind)), "unknown step (known: %s)", strings.Join(stepKinds, ", "))
		return Step{}, false
	}
	field = join(field, kind)
	st := Step{Line: k.Line, Kind: kind, Assert: assertKinds[kind], Timeout: DefaultAssertTimeout}
	before := len(p.probs)
	switch kind {
	case "deploy":
		st.act = p.deploy(v, field, &st)
	case "destroy":
		if !isNull(v) {
			p.errorf(v, field, "takes no value")
		}
		st.act = destroyStep{}
		p.running = map[string]bool{} // destroy stops every capture
	case "workloadAdd":
		st.act = p.workloadAdd(v, field)
	case "workloadDel":
		s, _ := p.str(v, field)
		p.checkWorkload(v, field, s)
		if p.workloads != nil {
			delete(p.workloads, s)
		}
		st.act = workloadDelStep{name: s}
	case "apply":
		l, _ := p.lab(v, field)
		st.act = applyStep{lab: l}
	case "linkDown", "linkUp":
		st.act = p.link(v, field, kind == "linkUp")
	case "impair":
		st.act = p.impair(v, field)
	case "restart", "stop", "start":
		st.act = p.restart(v, field, kind, &st)
	case "pause", "resume":
		name, _ := p.str(v, field)
		p.checkNode(v, field, name)
		st.act = pauseStep{name: name, pause: kind == "pause"}
	case "captureStart":
		st.act = p.captureStart(v, field)
	case "captureStop":
		s, _ := p.str(v, field)
		if !p.captures[s] {
			p.errorf(v, field, "no capture %q was started before this step", topology.Shorten(s))
		}
		delete(p.running, s)
		st.act = captureStopStep{name: s}
	case "wait":
		d, _ := p.duration(v, field)
		st.act = waitStep{d: d}
	case "routes":
		st.act = p.routes(v, field, dut, &st)
	case "bgp":
		st.act = p.bgp(v, field, dut, &st)
	case "ping":
		st.act = p.ping(v, field, &st)
	case "traceroute":
		st.act = p.traceroute(v, field, &st)
	case "tcp":
		st.act = p.tcp(v, field, &st)
	case "packets":
		st.act = p.packets(v, field, &st)
	case "bgpMessages":
		st.act = p.bgpMessages(v, field, &st)
	}
	return st, len(p.probs) == before && st.act != nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// fieldsOf is mapping for a step value that may be null (no fields).
func (p *parser) fieldsOf(n *yaml.Node, field string, allowed []string) map[string]*yaml.Node {
	if isNull(n) {
		return map[string]*yaml.Node{}
	}
	return p.mapping(n, field, allowed)
}

// timeout reads the timeout field into st, if given.
func (p *parser) timeout(f map[string]*yaml.Node, field string, st *Step) {
	if n := f["timeout"]; n != nil {
		if d, ok := p.duration(n, join(field, "timeout")); ok {
			if d == 0 {
				p.errorf(n, join(field, "timeout"), "must be more than 0")
			}
			st.Timeout = d
		}
	}
}

func (p *parser) deploy(n *yaml.Node, field string, st *Step) action {
	f := p.fieldsOf(n, field, []string{"wait", "timeout"})
	if f == nil {
		return nil
	}
	st.Timeout = DefaultDeployTimeout
	s := deployStep{}
	if w := f["wait"]; w != nil {
		wait, _ := p.boolean(w, join(field, "wait"))
		s.noWait = !wait
	}
	p.timeout(f, field, st)
	s.timeout = st.Timeout
	return s
}

func (p *parser) workloadAdd(n *yaml.Node, field string) action {
	f := p.mapping(n, field, []string{"name", "node", "address"})
	if f == nil {
		return nil
	}
	s := workloadAddStep{name: p.requiredString(n, f, "name", field), node: p.requiredString(n, f, "node", field)}
	if s.node != "" {
		p.checkNode(f["node"], join(field, "node"), s.node)
	}
	if s.name != "" {
		if err := topology.CheckName(s.name); err != nil {
			p.errorf(f["name"], join(field, "name"), "%v", err)
		}
		if p.workloads != nil {
			if p.workloads[s.name] {
				p.errorf(f["name"], join(field, "name"), "the lab already has a workload %q", s.name)
			}
			p.workloads[s.name] = true
		}
	}
	if a := f["address"]; a != nil {
		s.addr, _ = p.addr(a, join(field, "address"))
	}
	return s
}

// nodeAndIface reads NODE or {node, interface}.
func (p *parser) nodeAndIface(n *yaml.Node, field string, extra ...string) (node, iface string, f map[string]*yaml.Node) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		node, _ = p.str(n, field)
		p.checkNode(n, field, node)
		return node, "", map[string]*yaml.Node{}
	}
	f = p.mapping(n, field, append([]string{"node", "interface"}, extra...))
	if f == nil {
		return "", "", nil
	}
	node = p.requiredString(n, f, "node", field)
	if node != "" {
		p.checkNode(f["node"], join(field, "node"), node)
	}
	if i := f["interface"]; i != nil {
		iface, _ = p.str(i, join(field, "interface"))
	}
	return node, iface, f
}

func (p *parser) link(n *yaml.Node, field string, up bool) action {
	node, iface, f := p.nodeAndIface(n, field)
	if f == nil {
		return nil
	}
	return linkStep{node: node, iface: iface, up: up}
}

// restart parses restart, stop (kill) and start (wait, timeout).
func (p *parser) restart(n *yaml.Node, field, kind string, st *Step) action {
	st.Timeout = DefaultDeployTimeout
	var extra []string
	switch kind {
	case "restart":
		extra = []string{"kill", "wait", "timeout"}
	case "stop":
		extra = []string{"kill"}
	case "start":
		extra = []string{"wait", "timeout"}
	}
	node, iface, f := p.nodeAndIface(n, field, extra...)
	if f == nil {
		return nil
	}
	if iface != "" {
		p.errorf(f["interface"], join(field, "interface"), "%s takes no interface", kind)
	}
	s := restartStep{node: node, mode: kind}
	if k := f["kill"]; k != nil {
		s.kill, _ = p.boolean(k, join(field, "kill"))
	}
	if w := f["wait"]; w != nil {
		wait, _ := p.boolean(w, join(field, "wait"))
		s.noWait = !wait
	}
	p.timeout(f, field, st)
	s.timeout = st.Timeout
	return s
}

func (p *parser) captureStart(n *yaml.Node, field string) action {
	var s captureStartStep
	var at *yaml.Node = n
	if n.Kind == yaml.ScalarNode {
		s.network, _ = p.str(n, field)
		s.name = s.network
	} else {
		f := p.mapping(n, field, []string{"network", "name"})
		if f == nil {
			return nil
		}
		s.network = p.requiredString(n, f, "network", field)
		at = f["network"]
		s.name = s.network
		if nn := f["name"]; nn != nil {
			s.name, _ = p.str(nn, join(field, "name"))
		}
	}
	if p.networks != nil && s.network != "" && !p.networks[s.network] {
		p.errorf(at, field, "the lab has no network %q (its networks: %s)", topology.Shorten(s.network), keys(p.networks))
	}
	if s.name != "" {
		if err := topology.CheckName(s.name); err != nil {
			p.errorf(n, field, "capture name: %v", err)
		} else if p.captures[s.name] {
			p.errorf(n, field, "a capture %q was already started; name this one with name:", s.name)
		}
		p.captures[s.name] = true
		p.running[s.name] = true
	}
	return s
}

// nodeField reads the node of an assertion, defaulting to the DUT.
func (p *parser) nodeField(n *yaml.Node, f map[string]*yaml.Node, field, dut string) string {
	if nn := f["node"]; nn != nil {
		s, _ := p.str(nn, join(field, "node"))
		p.checkNode(nn, join(field, "node"), s)
		return s
	}
	if dut == "" {
		p.errorf(n, join(field, "node"), "missing (and the scenario names no dut)")
	}
	return dut
}

func (p *parser) routes(n *yaml.Node, field, dut string, st *Step) action {
	f := p.mapping(n, field, []string{"node", "contains", "lacks", "matches", "notMatches", "equals", "timeout"})
	if f == nil {
		return nil
	}
	s := routesAssert{node: p.nodeField(n, f, field, dut)}
	if c := f["contains"]; c != nil {
		s.contains = p.strs(c, join(field, "contains"))
	}
	if c := f["lacks"]; c != nil {
		s.lacks = p.strs(c, join(field, "lacks"))
	}
	for _, k := range []string{"matches", "notMatches"} {
		c := f[k]
		if c == nil {
			continue
		}
		list := p.strs(c, join(field, k))
		for _, re := range list {
			if _, err := regexp.Compile(re); err != nil {
				p.errorf(c, join(field, k), "bad regular expression %q: %v", topology.Shorten(re), err)
			}
		}
		if k == "matches" {
			s.matches = list
		} else {
			s.notMatches = list
		}
	}
	if e := f["equals"]; e != nil {
		if t, ok := p.str(e, join(field, "equals")); ok {
			s.equals = &t
		}
	}
	if s.contains == nil && s.lacks == nil && s.matches == nil && s.notMatches == nil && s.equals == nil {
		p.errorf(n, field, "say what to check: contains, lacks, matches, notMatches or equals")
	}
	p.timeout(f, field, st)
	return s
}

func (p *parser) bgp(n *yaml.Node, field, dut string, st *Step) action {
	f := p.mapping(n, field, []string{"node", "peer", "state", "info", "established", "timeout"})
	if f == nil {
		return nil
	}
	s := bgpAssert{node: p.nodeField(n, f, field, dut)}
	if pn := f["peer"]; pn == nil {
		p.errorf(n, join(field, "peer"), "missing: the peer's address")
	} else {
		s.peer, _ = p.addr(pn, join(field, "peer"))
	}
	if sn := f["state"]; sn != nil {
		s.state, _ = p.str(sn, join(field, "state"))
		if s.state != "up" && s.state != "start" && s.state != "down" {
			p.errorf(sn, join(field, "state"), "must be up, start or down, as node status prints it")
		}
	}
	if in := f["info"]; in != nil {
		s.info, _ = p.regex(in, join(field, "info"))
	}
	if e := f["established"]; e != nil {
		if est, ok := p.boolean(e, join(field, "established")); ok {
			if s.state != "" || s.info != nil {
				p.errorf(e, join(field, "established"), "give established, or state and info, not both")
			}
			if est {
				s.state = "up"
				s.info = regexp.MustCompile(`^Established`)
			} else {
				s.info = regexp.MustCompile(`^(Idle|Connect|Active|OpenSent|OpenConfirm)\b`)
			}
		}
	}
	if s.state == "" && s.info == nil {
		p.errorf(n, field, "say what to check: established, state or info")
	}
	p.timeout(f, field, st)
	return s
}

// endpoint reads a workload name or an address (from and to).
func (p *parser) endpoint(n *yaml.Node, field string, workloadOnly bool) string {
	s, ok := p.str(n, field)
	if !ok || s == "" {
		if ok {
			p.errorf(n, field, "must not be empty")
		}
		return ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if workloadOnly {
			p.errorf(n, field, "must name a workload, not an address")
		} else if !a.Is4() {
			p.errorf(n, field, "%s is not an IPv4 address", s)
		}
		return s
	}
	if strings.Contains(s, "${") {
		return s // expanded at run time
	}
	p.checkWorkload(n, field, s)
	return s
}

func (p *parser) ping(n *yaml.Node, field string, st *Step) action {
	f := p.mapping(n, field, []string{"from", "to", "expect", "count", "ttl", "size", "output", "timeout"})
	if f == nil {
		return nil
	}
	s := pingAssert{success: true, count: 1}
	if fr := f["from"]; fr == nil {
		p.errorf(n, join(field, "from"), "missing: the workload to ping from")
	} else {
		s.from = p.endpoint(fr, join(field, "from"), true)
	}
	if to := f["to"]; to == nil {
		p.errorf(n, join(field, "to"), "missing: a workload or an address")
	} else {
		s.to = p.endpoint(to, join(field, "to"), false)
	}
	if e := f["expect"]; e != nil {
		switch v, _ := p.str(e, join(field, "expect")); v {
		case "success":
		case "failure":
			s.success = false
		default:
			p.errorf(e, join(field, "expect"), "must be success or failure")
		}
	}
	if c := f["count"]; c != nil {
		v, _ := p.integer(c, join(field, "count"), 1, 100)
		s.count = int(v)
	}
	if t := f["ttl"]; t != nil {
		v, _ := p.integer(t, join(field, "ttl"), 1, 255)
		s.ttl = int(v)
	}
	if sz := f["size"]; sz != nil {
		v, _ := p.integer(sz, join(field, "size"), 0, 65507)
		s.size = int(v)
	}
	if o := f["output"]; o != nil {
		s.output, _ = p.regex(o, join(field, "output"))
	}
	p.timeout(f, field, st)
	return s
}

var hopRE = regexp.MustCompile(`^(\*|\d+\.\d+\.\d+\.\d+)( !\S+)?$`)

func (p *parser) traceroute(n *yaml.Node, field string, st *Step) action {
	f := p.mapping(n, field, []string{"from", "to", "hops", "maxHops", "timeout"})
	if f == nil {
		return nil
	}
	s := tracerouteAssert{maxHops: 10}
	if fr := f["from"]; fr == nil {
		p.errorf(n, join(field, "from"), "missing: the workload to trace from")
	} else {
		s.from = p.endpoint(fr, join(field, "from"), true)
	}
	if to := f["to"]; to == nil {
		p.errorf(n, join(field, "to"), "missing: a workload or an address")
	} else {
		s.to = p.endpoint(to, join(field, "to"), false)
	}
	if h := f["hops"]; h == nil {
		p.errorf(n, join(field, "hops"), "missing: the addresses expected at each hop")
	} else {
		s.hops = p.strs(h, join(field, "hops"))
		for i, hop := range s.hops {
			if !hopRE.MatchString(hop) {
				p.errorf(h, fmt.Sprintf("%s.hops[%d]", field, i), "%q is not a hop: an address or *, optionally followed by an annotation such as !N", topology.Shorten(hop))
			}
		}
	}
	if m := f["maxHops"]; m != nil {
		v, _ := p.integer(m, join(field, "maxHops"), 1, 30)
		s.maxHops = int(v)
	}
	if len(s.hops) > s.maxHops {
		p.errorf(n, field, "%d hops expected but maxHops is %d", len(s.hops), s.maxHops)
	}
	p.timeout(f, field, st)
	return s
}

func (p *parser) tcp(n *yaml.Node, field string, st *Step) action {
	f := p.mapping(n, field, []string{"from", "to", "port", "listen", "expect", "timeout"})
	if f == nil {
		return nil
	}
	s := tcpAssert{expect: expectConnected}
	if fr := f["from"]; fr == nil {
		p.errorf(n, join(field, "from"), "missing: the workload to connect from")
	} else {
		s.from = p.endpoint(fr, join(field, "from"), true)
	}
	if to := f["to"]; to == nil {
		p.errorf(n, join(field, "to"), "missing: a workload or an address")
	} else {
		s.to = p.endpoint(to, join(field, "to"), false)
	}
	if pt := f["port"]; pt == nil {
		p.errorf(n, join(field, "port"), "missing")
	} else {
		v, _ := p.integer(pt, join(field, "port"), 1, 65535)
		s.port = uint16(v)
	}
	if l := f["listen"]; l != nil {
		s.listen, _ = p.boolean(l, join(field, "listen"))
		if s.listen {
			if _, err := netip.ParseAddr(s.to); err == nil {
				p.errorf(l, join(field, "listen"), "listen needs to to name a workload (whose namespace listens)")
			}
		}
	}
	if e := f["expect"]; e != nil {
		v, _ := p.str(e, join(field, "expect"))
		switch v {
		case expectConnected, expectRefused, expectUnreachable:
			s.expect = v
		default:
			p.errorf(e, join(field, "expect"), "must be connected, refused or unreachable")
		}
	}
	p.timeout(f, field, st)
	return s
}

// capture reads the capture field of a wire assertion.
func (p *parser) capture(n *yaml.Node, f map[string]*yaml.Node, field string) string {
	c := f["capture"]
	if c == nil {
		p.errorf(n, join(field, "capture"), "missing: the name of a capture started earlier")
		return ""
	}
	s, _ := p.str(c, join(field, "capture"))
	if !p.captures[s] {
		p.errorf(c, join(field, "capture"), "no capture %q was started before this step", topology.Shorten(s))
	}
	return s
}

// count reads expect (present, absent), count and min. Absence and an
// exact count are final only once the capture has stopped: asserted on a
// running capture they would pass before the packets arrive.
func (p *parser) count(n *yaml.Node, f map[string]*yaml.Node, field, capture string) countSpec {
	c := countSpec{exact: -1, min: 1}
	if e := f["expect"]; e != nil {
		switch v, _ := p.str(e, join(field, "expect")); v {
		case "present":
		case "absent":
			c.absent, c.min = true, 0
		default:
			p.errorf(e, join(field, "expect"), "must be present or absent")
		}
	}
	if cn := f["count"]; cn != nil {
		v, _ := p.integer(cn, join(field, "count"), 0, math32)
		c.exact = int(v)
	}
	if m := f["min"]; m != nil {
		v, _ := p.integer(m, join(field, "min"), 0, math32)
		c.min = int(v)
	}
	if c.absent && (f["count"] != nil || f["min"] != nil) {
		p.errorf(n, field, "expect: absent takes no count or min")
	}
	if f["count"] != nil && f["min"] != nil {
		p.errorf(n, field, "give count or min, not both")
	}
	if (c.absent || c.exact >= 0) && p.running[capture] {
		p.errorf(n, field, "capture %s still runs: stop it (captureStop) before asserting absence or an exact count, which a running capture would satisfy too early", capture)
	}
	return c
}

const math32 = 1 << 31

func (p *parser) packets(n *yaml.Node, field string, st *Step) action {
	f := p.mapping(n, field, []string{"capture", "match", "check", "expect", "count", "min", "timeout"})
	if f == nil {
		return nil
	}
	s := packetsAssert{capture: p.capture(n, f, field), match: &filter{}}
	s.count = p.count(n, f, field, s.capture)
	if m := f["match"]; m != nil {
		s.match = p.filter(m, join(field, "match"), 0)
	}
	if c := f["check"]; c != nil {
		s.check = p.filter(c, join(field, "check"), 0)
		if s.count.absent {
			p.errorf(c, join(field, "check"), "expect: absent takes no check")
		}
	}
	p.timeout(f, field, st)
	return s
}

var protoNames = map[string]uint8{"icmp": 1, "ipip": 4, "tcp": 6, "udp": 17}

var filterFields = []string{"interface", "proto", "src", "dst", "ttl", "df", "icmpType", "icmpCode", "mtu", "port", "inner", "quoted"}

// filter parses a packet filter.
func (p *parser) filter(n *yaml.Node, field string, depth int) *filter {
	f := p.mapping(n, field, filterFields)
	if f == nil {
		return nil
	}
	out := &filter{text: flowText(n)}
	u8 := func(k string) *uint8 {
		if v := f[k]; v != nil {
			if x, ok := p.integer(v, join(field, k), 0, 255); ok {
				b := uint8(x)
				return &b
			}
		}
		return nil
	}
	if v := f["interface"]; v != nil {
		out.iface, _ = p.str(v, join(field, "interface"))
	}
	if v := f["proto"]; v != nil {
		if s, ok := p.str(v, join(field, "proto")); ok {
			if b, ok := protoNames[s]; ok {
				out.proto = &b
			} else {
				out.proto = u8("proto")
			}
		}
	}
	for _, k := range []string{"src", "dst"} {
		if v := f[k]; v != nil {
			if pf, ok := p.prefix(v, join(field, k)); ok {
				if k == "src" {
					out.src = &pf
				} else {
					out.dst = &pf
				}
			}
		}
	}
	out.ttl, out.icmpType, out.icmpCode = u8("ttl"), u8("icmpType"), u8("icmpCode")
	if v := f["df"]; v != nil {
		if b, ok := p.boolean(v, join(field, "df")); ok {
			out.df = &b
		}
	}
	if v := f["port"]; v != nil {
		if x, ok := p.integer(v, join(field, "port"), 1, 65535); ok {
			b := uint16(x)
			out.port = &b
		}
	}
	if v := f["mtu"]; v != nil {
		if x, ok := p.integer(v, join(field, "mtu"), 0, 65535); ok {
			b := uint16(x)
			out.mtu = &b
		}
	}
	for _, k := range []string{"inner", "quoted"} {
		v := f[k]
		if v == nil {
			continue
		}
		if depth > 1 {
			p.errorf(v, join(field, k), "at most two levels of inner and quoted packets")
			continue
		}
		if k == "inner" {
			out.inner = p.filter(v, join(field, k), depth+1)
		} else {
			out.quoted = p.filter(v, join(field, k), depth+1)
		}
	}
	return out
}

var msgTypes = map[string]uint8{"open": 1, "update": 2, "notification": 3, "keepalive": 4, "route-refresh": 5}

func (p *parser) bgpMessages(n *yaml.Node, field string, st *Step) action {
	f := p.mapping(n, field, []string{"capture", "type", "from", "to", "open", "update", "notification", "expect", "count", "min", "interval", "timeout"})
	if f == nil {
		return nil
	}
	s := bgpMessagesAssert{capture: p.capture(n, f, field)}
	s.count = p.count(n, f, field, s.capture)
	m := &msgFilter{}
	var parts []string
	if t := f["type"]; t != nil {
		if v, ok := p.str(t, join(field, "type")); ok {
			if b, ok := msgTypes[v]; ok {
				m.typ = b
				parts = append(parts, v)
			} else {
				p.errorf(t, join(field, "type"), "must be open, update, notification, keepalive or route-refresh")
			}
		}
	}
	for _, k := range []string{"from", "to"} {
		if v := f[k]; v != nil {
			if a, ok := p.addr(v, join(field, k)); ok {
				if k == "from" {
					m.from = &a
				} else {
					m.to = &a
				}
				parts = append(parts, k+" "+a.String())
			}
		}
	}
	checkType := func(k string, typ uint8) {
		if m.typ == 0 {
			m.typ = typ
			parts = append([]string{k}, parts...)
		} else if m.typ != typ {
			p.errorf(f[k], join(field, k), "type says another message type")
		}
	}
	if v := f["open"]; v != nil {
		checkType("open", 1)
		m.open = p.openFilter(v, join(field, "open"))
		parts = append(parts, flowText(v))
	}
	if v := f["update"]; v != nil {
		checkType("update", 2)
		m.update = p.updateFilter(v, join(field, "update"))
		parts = append(parts, flowText(v))
	}
	if v := f["notification"]; v != nil {
		checkType("notification", 3)
		nf := p.mapping(v, join(field, "notification"), []string{"code", "subcode"})
		if nf != nil {
			m.notification = &notificationFilter{}
			if c := nf["code"]; c != nil {
				if x, ok := p.integer(c, join(field, "notification.code"), 0, 255); ok {
					b := uint8(x)
					m.notification.code = &b
				}
			}
			if c := nf["subcode"]; c != nil {
				if x, ok := p.integer(c, join(field, "notification.subcode"), 0, 255); ok {
					b := uint8(x)
					m.notification.subcode = &b
				}
			}
		}
		parts = append(parts, flowText(v))
	}
	if len(parts) == 0 {
		parts = []string{"any"}
	}
	m.text = strings.Join(parts, " ")
	s.match = m
	if v := f["interval"]; v != nil {
		iv := p.mapping(v, join(field, "interval"), []string{"min", "max"})
		if iv != nil {
			s.interval = &interval{max: maxTimeout}
			if x := iv["min"]; x != nil {
				s.interval.min, _ = p.duration(x, join(field, "interval.min"))
			}
			if x := iv["max"]; x != nil {
				s.interval.max, _ = p.duration(x, join(field, "interval.max"))
			}
			if s.interval.min > s.interval.max {
				p.errorf(v, join(field, "interval"), "min is more than max")
			}
		}
		if s.count.absent {
			p.errorf(v, join(field, "interval"), "expect: absent takes no interval")
		}
	}
	p.timeout(f, field, st)
	return s
}

func (p *parser) openFilter(n *yaml.Node, field string) *openFilter {
	f := p.mapping(n, field, []string{"as", "holdTime", "routerID", "capabilities"})
	if f == nil {
		return nil
	}
	o := &openFilter{}
	if v := f["as"]; v != nil {
		if x, ok := p.integer(v, join(field, "as"), 0, math.MaxUint32); ok {
			a := uint32(x)
			o.as = &a
		}
	}
	if v := f["holdTime"]; v != nil {
		if d, ok := p.duration(v, join(field, "holdTime")); ok {
			if d%time.Second != 0 || d > 65535*time.Second {
				p.errorf(v, join(field, "holdTime"), "must be whole seconds, at most 65535s")
			}
			h := uint16(d / time.Second)
			o.holdTime = &h
		}
	}
	if v := f["routerID"]; v != nil {
		if a, ok := p.addr(v, join(field, "routerID")); ok {
			o.routerID = &a
		}
	}
	if v := f["capabilities"]; v != nil {
		o.caps = p.strs(v, join(field, "capabilities"))
	}
	return o
}

func (p *parser) updateFilter(n *yaml.Node, field string) *updateFilter {
	f := p.mapping(n, field, []string{"nlri", "withdrawn", "nextHop", "asPath", "originatorID", "clusterList", "endOfRib"})
	if f == nil {
		return nil
	}
	u := &updateFilter{}
	prefixes := func(k string) []netip.Prefix {
		v := f[k]
		if v == nil {
			return nil
		}
		var out []netip.Prefix
		if v.Kind == yaml.ScalarNode {
			if pf, ok := p.prefix(v, join(field, k)); ok {
				out = append(out, pf)
			}
			return out
		}
		if v.Kind != yaml.SequenceNode {
			p.errorf(v, join(field, k), "must be a prefix or a list of prefixes")
			return nil
		}
		for i, c := range v.Content {
			if pf, ok := p.prefix(c, fmt.Sprintf("%s.%s[%d]", field, k, i)); ok {
				out = append(out, pf)
			}
		}
		return out
	}
	u.nlri, u.withdrawn = prefixes("nlri"), prefixes("withdrawn")
	if v := f["nextHop"]; v != nil {
		if a, ok := p.addr(v, join(field, "nextHop")); ok {
			u.nextHop = &a
		}
	}
	if v := f["originatorID"]; v != nil {
		if a, ok := p.addr(v, join(field, "originatorID")); ok {
			u.originatorID = &a
		}
	}
	if v := f["asPath"]; v != nil {
		path := []uint32{}
		v = resolve(v)
		if v.Kind != yaml.SequenceNode {
			p.errorf(v, join(field, "asPath"), "must be a list of AS numbers ([] for an empty path)")
		} else {
			for i, c := range v.Content {
				if x, ok := p.integer(c, fmt.Sprintf("%s.asPath[%d]", field, i), 0, math.MaxUint32); ok {
					path = append(path, uint32(x))
				}
			}
			u.asPath = &path
		}
	}
	if v := f["clusterList"]; v != nil {
		list := []netip.Addr{}
		v = resolve(v)
		if v.Kind != yaml.SequenceNode {
			p.errorf(v, join(field, "clusterList"), "must be a list of cluster IDs")
		} else {
			for i, c := range v.Content {
				if a, ok := p.addr(c, fmt.Sprintf("%s.clusterList[%d]", field, i)); ok {
					list = append(list, a)
				}
			}
			u.clusterList = &list
		}
	}
	if v := f["endOfRib"]; v != nil {
		if b, ok := p.boolean(v, join(field, "endOfRib")); ok {
			u.endOfRib = &b
		}
	}
	return u
}

// flowText renders n on one line, for messages.
func flowText(n *yaml.Node) string {
	c := cloneFlow(n, 0)
	data, err := yaml.Marshal(c)
	if err != nil {
		return "?"
	}
	s := strings.TrimSpace(string(data))
	return topology.Shorten(s)
}

func cloneFlow(n *yaml.Node, depth int) *yaml.Node {
	n = resolve(n)
	c := *n
	c.HeadComment, c.LineComment, c.FootComment, c.Anchor = "", "", "", ""
	if c.Kind == yaml.MappingNode || c.Kind == yaml.SequenceNode {
		c.Style = yaml.FlowStyle
		c.Content = nil
		if depth < 8 {
			for _, x := range n.Content {
				c.Content = append(c.Content, cloneFlow(x, depth+1))
			}
		}
	}
	if c.Kind == yaml.AliasNode {
		return &yaml.Node{Kind: yaml.ScalarNode, Value: "*"}
	}
	return &c
}

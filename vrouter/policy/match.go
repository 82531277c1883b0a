package policy

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Flow is the part of a packet rules look at: addresses as big-endian
// uint32s, ports for TCP, UDP, SCTP and UDPLite, type and code for ICMP.
type Flow struct {
	Src, Dst         uint32
	SrcPort, DstPort uint16
	Proto            uint8
	ICMPType         uint8
	ICMPCode         uint8
}

// Verdict is the outcome of a chain for a flow.
type Verdict uint8

// Verdicts.
const (
	// NotPoliced: no policy selects the endpoint in this direction.
	NotPoliced Verdict = iota
	// Allowed by an Allow rule.
	Allowed
	// Denied by a Deny rule.
	Denied
	// Passed: a Pass rule ended the tier and the profile allowed.
	Passed
	// DefaultDenied: policies select the endpoint and none allowed.
	DefaultDenied
)

var verdictNames = [...]string{"not-policed", "allowed", "denied", "passed", "default-denied"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict?"
}

// Allows reports whether the verdict lets the flow through.
func (v Verdict) Allows() bool { return v == NotPoliced || v == Allowed || v == Passed }

// RuleID names one rule of one policy.
type RuleID struct {
	Policy    string
	Direction Direction
	Index     int
}

// Counters are rule hit counters that outlive recompilations: a rule keeps
// its counter as long as its policy keeps its name and the rule its index.
type Counters struct {
	mu sync.Mutex
	m  map[RuleID]*atomic.Uint64
}

// Counter returns id's counter, made on first use.
func (c *Counters) Counter(id RuleID) *atomic.Uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[RuleID]*atomic.Uint64{}
	}
	x, ok := c.m[id]
	if !ok {
		x = new(atomic.Uint64)
		c.m[id] = x
	}
	return x
}

// Snapshot returns every counter's value.
func (c *Counters) Snapshot() map[RuleID]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[RuleID]uint64, len(c.m))
	for k, v := range c.m {
		out[k] = v.Load()
	}
	return out
}

// Matcher evaluates a chain for flows, without allocating.
type Matcher struct {
	policed bool
	// hot holds what most rules check, 32 bytes a rule so that a long
	// chain stays in the CPU's caches; rules[i] is the whole rule, looked
	// at only when hot[i] has cold set.
	hot   []hotRule
	rules []fastRule
	// onLog, if set, is called for every flow a Log rule matches.
	onLog func(RuleID, Flow)
	// idx, for long chains, finds the rules whose compact test a flow
	// passes without running each (bitvec.go); nil: check all in order.
	idx *bitIndex
}

// minIndexed is the chain length from which a matcher builds its index.
const minIndexed = 32

// hotRule is the first, compact test of a rule: protocol, one range of
// destination ports, one range of source ports, one source and one
// destination prefix (mask 0: any). cold says the rule has more to check.
type hotRule struct {
	proto, notProto  uint8
	cold             bool
	_                uint8
	dportLo, dportHi uint16
	sportLo, sportHi uint16
	src, dst         pfx
	_                [4]byte
}

type pfx struct{ addr, mask uint32 }

type fastMatch struct {
	nets, notNets   []pfx
	selected        bool
	addrs, notAddrs []uint32 // sorted
	ports, notPorts []PortRange
}

type fastRule struct {
	proto, notProto          uint8
	action                   Action
	icmpType, icmpCode       int16
	notICMPType, notICMPCode int16
	src, dst                 fastMatch
	hits                     *atomic.Uint64
	id                       RuleID
}

// NewMatcher compiles a chain of direction dir; counters, if not nil,
// give each rule its hit counter.
func NewMatcher(ch *Chain, dir Direction, counters *Counters) *Matcher {
	m := &Matcher{policed: ch.Policed, rules: make([]fastRule, len(ch.Rules)), hot: make([]hotRule, len(ch.Rules))}
	for i := range ch.Rules {
		r := &ch.Rules[i]
		f := &m.rules[i]
		m.hot[i] = hotOf(r)
		f.proto, f.notProto, f.action = r.Protocol, r.NotProtocol, r.Action
		f.icmpType, f.icmpCode, f.notICMPType, f.notICMPCode = r.ICMPType, r.ICMPCode, r.NotICMPType, r.NotICMPCode
		f.src, f.dst = fastMatchOf(&r.Src), fastMatchOf(&r.Dst)
		f.id = RuleID{r.Policy, dir, r.Index}
		if counters != nil {
			f.hits = counters.Counter(f.id)
		} else {
			f.hits = new(atomic.Uint64)
		}
	}
	if len(m.hot) >= minIndexed {
		m.idx = newBitIndex(m.hot)
	}
	return m
}

// SetLog makes fn see every flow a Log rule matches (Calico's Log action
// writes such flows to the host's log). Set it before the matcher is in
// use. (The flow is passed by value: a pointer given to an unknown
// function would make every caller's Flow escape to the heap.)
func (m *Matcher) SetLog(fn func(rule RuleID, f Flow)) { m.onLog = fn }

// Policed reports whether the chain polices its endpoint.
func (m *Matcher) Policed() bool { return m != nil && m.policed }

// Len returns the number of rules.
func (m *Matcher) Len() int { return len(m.rules) }

// U32 returns an IPv4 address as a big-endian uint32.
func U32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// hotOf makes the compact test of r, and says whether the rest of it
// needs checking.
func hotOf(r *CompiledRule) hotRule {
	h := hotRule{proto: r.Protocol, notProto: r.NotProtocol, dportHi: 65535, sportHi: 65535}
	cold := r.ICMPType >= 0 || r.NotICMPType >= 0
	for _, x := range []struct {
		m      *Match
		lo, hi *uint16
		p      *pfx
	}{{&r.Src, &h.sportLo, &h.sportHi, &h.src}, {&r.Dst, &h.dportLo, &h.dportHi, &h.dst}} {
		m := x.m
		if len(m.Ports) == 1 {
			*x.lo, *x.hi = m.Ports[0].First, m.Ports[0].Last
		} else if len(m.Ports) > 1 {
			cold = true
		}
		if len(m.Nets) == 1 {
			*x.p = pfxOf(m.Nets[0])
		} else if len(m.Nets) > 1 {
			cold = true
		}
		if len(m.NotPorts) > 0 || len(m.NotNets) > 0 || m.Selected || len(m.NotAddrs) > 0 {
			cold = true
		}
	}
	h.cold = cold
	return h
}

func pfxOf(p netip.Prefix) pfx {
	bits := p.Bits()
	var mask uint32
	if bits > 0 {
		mask = ^uint32(0) << (32 - bits)
	}
	return pfx{U32(p.Addr()) & mask, mask}
}

func fastMatchOf(m *Match) fastMatch {
	var f fastMatch
	for _, n := range m.Nets {
		f.nets = append(f.nets, pfxOf(n))
	}
	for _, n := range m.NotNets {
		f.notNets = append(f.notNets, pfxOf(n))
	}
	f.selected = m.Selected
	for _, a := range m.Addrs {
		f.addrs = append(f.addrs, U32(a))
	}
	for _, a := range m.NotAddrs {
		f.notAddrs = append(f.notAddrs, U32(a))
	}
	slices.Sort(f.addrs)
	slices.Sort(f.notAddrs)
	f.ports, f.notPorts = m.Ports, m.NotPorts
	return f
}

func inPorts(rs []PortRange, p uint16) bool {
	for _, r := range rs {
		if p >= r.First && p <= r.Last {
			return true
		}
	}
	return false
}

func inNets(ns []pfx, a uint32) bool {
	for _, n := range ns {
		if a&n.mask == n.addr {
			return true
		}
	}
	return false
}

func inAddrs(as []uint32, a uint32) bool {
	if len(as) < 8 {
		for _, x := range as {
			if x == a {
				return true
			}
		}
		return false
	}
	_, ok := slices.BinarySearch(as, a)
	return ok
}

func (m *fastMatch) matches(a uint32, port uint16, ported bool) bool {
	if len(m.ports) > 0 && (!ported || !inPorts(m.ports, port)) {
		return false
	}
	if len(m.notPorts) > 0 && ported && inPorts(m.notPorts, port) {
		return false
	}
	if len(m.nets) > 0 && !inNets(m.nets, a) {
		return false
	}
	if len(m.notNets) > 0 && inNets(m.notNets, a) {
		return false
	}
	if m.selected && !inAddrs(m.addrs, a) {
		return false
	}
	if len(m.notAddrs) > 0 && inAddrs(m.notAddrs, a) {
		return false
	}
	return true
}

func (r *fastRule) matches(f *Flow) bool {
	if r.proto != 0 && r.proto != f.Proto {
		return false
	}
	if r.notProto != 0 && r.notProto == f.Proto {
		return false
	}
	if f.Proto == ProtoICMP {
		if r.icmpType >= 0 && (int16(f.ICMPType) != r.icmpType || r.icmpCode >= 0 && int16(f.ICMPCode) != r.icmpCode) {
			return false
		}
		if r.notICMPType >= 0 && int16(f.ICMPType) == r.notICMPType && (r.notICMPCode < 0 || int16(f.ICMPCode) == r.notICMPCode) {
			return false
		}
	}
	ported := hasPorts(f.Proto)
	return r.dst.matches(f.Dst, f.DstPort, ported) && r.src.matches(f.Src, f.SrcPort, ported)
}

// Evaluate runs the chain on a new flow and returns the verdict and the
// index of the rule that decided (-1 for NotPoliced and DefaultDenied). It
// counts a hit on the deciding rule and on every Log rule on the way.
func (m *Matcher) Evaluate(f *Flow) (Verdict, int) {
	if m == nil || !m.policed {
		return NotPoliced, -1
	}
	ported := hasPorts(f.Proto)
	var sport, dport uint16
	if ported {
		sport, dport = f.SrcPort, f.DstPort
	}
	if m.idx != nil {
		return m.evaluateIndexed(f, sport, dport)
	}
	hot := m.hot
	for i := range hot {
		if hot[i].hit(f, sport, dport) {
			if v, ok := m.decide(i, f); ok {
				return v, i
			}
		}
	}
	return DefaultDenied, -1
}

// hit is the compact test of a rule.
func (h *hotRule) hit(f *Flow, sport, dport uint16) bool {
	return (h.proto == 0 || h.proto == f.Proto) && (h.notProto == 0 || h.notProto != f.Proto) &&
		dport >= h.dportLo && dport <= h.dportHi && sport >= h.sportLo && sport <= h.sportHi &&
		f.Src&h.src.mask == h.src.addr && f.Dst&h.dst.mask == h.dst.addr
}

// decide finishes checking rule i, whose compact test passed.
func (m *Matcher) decide(i int, f *Flow) (Verdict, bool) {
	r := &m.rules[i]
	if m.hot[i].cold && !r.matches(f) {
		return 0, false
	}
	r.hits.Add(1)
	switch r.action {
	case Allow:
		return Allowed, true
	case Deny:
		return Denied, true
	case Pass:
		return Passed, true
	case Log:
		if m.onLog != nil {
			m.onLog(r.id, *f)
		}
	}
	return 0, false
}

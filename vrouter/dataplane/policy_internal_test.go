package dataplane

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// Ports of the tests: A and B are workloads on this engine, the fabric
// is the underlay.
const (
	portA = firstWorkload
	portB = firstWorkload + 1
	fab   = underlayPortID
)

var (
	addrA = netip.MustParseAddr("10.244.0.1")
	addrB = netip.MustParseAddr("10.244.0.2")
	addrR = netip.MustParseAddr("10.244.1.9") // a remote workload
)

// mkPkt builds an IPv4 packet by hand: 20-byte header, then the transport
// header. For TCP, flags; for ICMP, type, code and the echo ID in sport.
func mkPkt(src, dst netip.Addr, proto uint8, sport, dport uint16, flags uint8, payload ...byte) []byte {
	var l4 []byte
	switch proto {
	case policy.ProtoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		l4[12] = 5 << 4
		l4[13] = flags
	case policy.ProtoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
	case policy.ProtoICMP:
		l4 = make([]byte, 8)
		l4[0], l4[1] = byte(dport>>8), byte(dport)
		binary.BigEndian.PutUint16(l4[4:], sport)
	}
	l4 = append(l4, payload...)
	b := make([]byte, 20, 20+len(l4))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(l4)))
	b[8], b[9] = 64, proto
	s4, d4 := src.As4(), dst.As4()
	copy(b[12:], s4[:])
	copy(b[16:], d4[:])
	return append(b, l4...)
}

func icmp(src, dst netip.Addr, typ, code uint8, id uint16, quote ...byte) []byte {
	return mkPkt(src, dst, policy.ProtoICMP, id, uint16(typ)<<8|uint16(code), 0, quote...)
}

// testEnforcer compiles pols for workloads a (port A), b (port B) and a
// remote r and returns an enforcer and its state.
func testEnforcer(t testing.TB, size int, pols ...policy.Policy) (*enforcer, *policyState) {
	p := newEnforcer(size)
	ps := compileState(p, 1, pols)
	return p, ps
}

func compileState(p *enforcer, gen uint32, pols []policy.Policy) *policyState {
	eps := []policy.Endpoint{
		{Name: "a", Labels: map[string]string{"app": "a"}, Addr: addrA},
		{Name: "b", Labels: map[string]string{"app": "b"}, Addr: addrB},
		{Name: "r", Labels: map[string]string{"app": "r"}, Addr: addrR},
	}
	c := policy.Compile(pols, eps)
	ps := &policyState{gen: gen, ingress: make([]*policy.Matcher, portB+1), egress: make([]*policy.Matcher, portB+1)}
	for name, id := range map[string]PortID{"a": portA, "b": portB} {
		ch := c.Endpoints[name]
		if ch.Ingress.Policed {
			ps.ingress[id] = policy.NewMatcher(&ch.Ingress, policy.Ingress, &p.counters)
		}
		if ch.Egress.Policed {
			ps.egress[id] = policy.NewMatcher(&ch.Egress, policy.Egress, &p.counters)
		}
	}
	return ps
}

// isolateA: a's ingress is default deny; its egress allows TCP 80 and
// UDP 53 and ICMP echo to b and r.
var isolateA = policy.Policy{Kind: policy.KindNetworkPolicy, Name: "isolate-a", Selector: "app == 'a'",
	Types: []policy.Direction{policy.Ingress, policy.Egress},
	Egress: []policy.Rule{
		{Action: policy.Allow, Protocol: policy.ProtoTCP, Destination: policy.EntityRule{Ports: []policy.PortRange{{First: 80, Last: 80}}}},
		{Action: policy.Allow, Protocol: policy.ProtoUDP, Destination: policy.EntityRule{Ports: []policy.PortRange{{First: 53, Last: 53}}}},
		{Action: policy.Allow, Protocol: policy.ProtoICMP, ICMP: &policy.ICMPMatch{Type: ptr(uint8(8))}},
		{Action: policy.Deny, Protocol: policy.ProtoTCP, Destination: policy.EntityRule{Ports: []policy.PortRange{{First: 22, Last: 22}}}},
	}}

func ptr[T any](v T) *T { return &v }

type step struct {
	name    string
	pkt     []byte
	in, out PortID
	want    bool
}

func run(t *testing.T, p *enforcer, ps *policyState, steps []step) {
	t.Helper()
	for _, s := range steps {
		if got := p.allow(ps, s.pkt, s.in, s.out); got != s.want {
			t.Errorf("%s: allowed %v, want %v", s.name, got, s.want)
		}
	}
}

func TestPolicyNotPoliced(t *testing.T) {
	p, ps := testEnforcer(t, 0, policy.Policy{Kind: policy.KindNetworkPolicy, Name: "only-r", Selector: "app == 'r'"})
	run(t, p, ps, []step{
		{"a to b, neither policed", mkPkt(addrA, addrB, policy.ProtoTCP, 1000, 22, tcpSYN), portA, portB, true},
		{"r to a", mkPkt(addrR, addrA, policy.ProtoUDP, 1000, 9, 0), fab, portA, true},
	})
	if n := p.ct.entries.Load(); n != 0 {
		t.Errorf("%d conntrack entries for unpoliced flows, want 0", n)
	}
}

// A flow a policed endpoint starts toward an unpoliced one is allowed
// without a rule, and its replies must get through the sender's ingress
// (and past its egress, for a flow it receives).
func TestPolicyRepliesToUnpolicedFlows(t *testing.T) {
	ingressOnly := policy.Policy{Kind: policy.KindNetworkPolicy, Name: "a-in", Selector: "app == 'a'"}
	egressOnly := policy.Policy{Kind: policy.KindNetworkPolicy, Name: "b-out", Selector: "app == 'b'", Types: []policy.Direction{policy.Egress}}
	p, ps := testEnforcer(t, 0, ingressOnly, egressOnly)
	run(t, p, ps, []step{
		{"a (ingress policed) SYN to remote r", mkPkt(addrA, addrR, policy.ProtoTCP, 40000, 80, tcpSYN), portA, fab, true},
		{"r's SYN-ACK into a", mkPkt(addrR, addrA, policy.ProtoTCP, 80, 40000, tcpSYN|tcpACK), fab, portA, true},
		{"r's new SYN into a", mkPkt(addrR, addrA, policy.ProtoTCP, 40001, 80, tcpSYN), fab, portA, false},
		{"r SYN to b (egress policed)", mkPkt(addrR, addrB, policy.ProtoUDP, 5000, 53, 0), fab, portB, true},
		{"b's reply", mkPkt(addrB, addrR, policy.ProtoUDP, 53, 5000, 0), portB, fab, true},
		{"b's new flow out", mkPkt(addrB, addrR, policy.ProtoUDP, 53, 5001, 0), portB, fab, false},
	})
}

func TestPolicyStateful(t *testing.T) {
	p, ps := testEnforcer(t, 0, isolateA)
	run(t, p, ps, []step{
		{"a SYN to b:80 (egress allowed)", mkPkt(addrA, addrB, policy.ProtoTCP, 40000, 80, tcpSYN), portA, portB, true},
		{"b SYN-ACK to a (reply, a's ingress is default deny)", mkPkt(addrB, addrA, policy.ProtoTCP, 80, 40000, tcpSYN|tcpACK), portB, portA, true},
		{"a ACK", mkPkt(addrA, addrB, policy.ProtoTCP, 40000, 80, tcpACK), portA, portB, true},
		{"b data", mkPkt(addrB, addrA, policy.ProtoTCP, 80, 40000, tcpACK), portB, portA, true},
		{"b SYN to a:80 (new flow, a's ingress)", mkPkt(addrB, addrA, policy.ProtoTCP, 40001, 80, tcpSYN), portB, portA, false},
		{"a to b:81 (egress default deny)", mkPkt(addrA, addrB, policy.ProtoTCP, 40002, 81, tcpSYN), portA, portB, false},
		{"a to b:22 (egress Deny rule)", mkPkt(addrA, addrB, policy.ProtoTCP, 40003, 22, tcpSYN), portA, portB, false},
		{"a UDP to remote r:53", mkPkt(addrA, addrR, policy.ProtoUDP, 5000, 53, 0), portA, fab, true},
		{"r's UDP reply from the fabric", mkPkt(addrR, addrA, policy.ProtoUDP, 53, 5000, 0), fab, portA, true},
		{"r's UDP from another port", mkPkt(addrR, addrA, policy.ProtoUDP, 54, 5000, 0), fab, portA, false},
		{"a pings r", icmp(addrA, addrR, 8, 0, 77), portA, fab, true},
		{"r's echo reply", icmp(addrR, addrA, 0, 0, 77), fab, portA, true},
		{"an echo reply nobody asked for", icmp(addrR, addrA, 0, 0, 78), fab, portA, false},
		{"r pings a", icmp(addrR, addrA, 8, 0, 79), fab, portA, false},
		{"port unreachable quoting a's UDP flow is related", icmp(addrR, addrA, 3, 3, 0, mkPkt(addrA, addrR, policy.ProtoUDP, 5000, 53, 0)[:28]...), fab, portA, true},
		{"port unreachable quoting an unknown flow", icmp(addrR, addrA, 3, 3, 0, mkPkt(addrA, addrR, policy.ProtoUDP, 5001, 53, 0)[:28]...), fab, portA, false},
		{"truncated TCP header of a policed flow", mkPkt(addrA, addrB, policy.ProtoTCP, 1, 80, tcpSYN)[:30], portA, portB, false},
	})
	m := p.counters.Snapshot()
	if got := m[policy.RuleID{Policy: "default/isolate-a", Direction: policy.Egress, Index: 0}]; got != 1 {
		t.Errorf("TCP 80 rule hits %d, want 1 (the first packet only)", got)
	}
	if got := m[policy.RuleID{Policy: "default/isolate-a", Direction: policy.Egress, Index: 3}]; got != 1 {
		t.Errorf("Deny 22 rule hits %d, want 1", got)
	}
	want := map[int]uint64{denyInDefault: 5, denyOutDefault: 1, denyOutRule: 1, denyMalformed: 1, denyInRule: 0}
	for i, n := range want {
		if got := p.denied[i].Load(); got != n {
			t.Errorf("denied %s = %d, want %d", denyNames[i], got, n)
		}
	}
	if got := p.related.Load(); got != 1 {
		t.Errorf("related %d, want 1", got)
	}
}

// TestPolicyChangeEstablished: an established flow survives a policy
// change that still allows it and is cut by one that denies it.
func TestPolicyChangeEstablished(t *testing.T) {
	p, ps := testEnforcer(t, 0, isolateA)
	syn := mkPkt(addrA, addrB, policy.ProtoTCP, 40000, 80, tcpSYN)
	run(t, p, ps, []step{
		{"a SYN to b:80", syn, portA, portB, true},
		{"SYN-ACK", mkPkt(addrB, addrA, policy.ProtoTCP, 80, 40000, tcpSYN|tcpACK), portB, portA, true},
	})
	// The same policy under another generation (an unrelated change).
	ps2 := compileState(p, 2, []policy.Policy{isolateA})
	run(t, p, ps2, []step{{"reply after an unrelated change", mkPkt(addrB, addrA, policy.ProtoTCP, 80, 40000, tcpACK), portB, portA, true}})
	// Now b's ingress denies everything from a.
	denyB := policy.Policy{Kind: policy.KindNetworkPolicy, Name: "deny-b", Selector: "app == 'b'",
		Ingress: []policy.Rule{{Action: policy.Deny, Source: policy.EntityRule{Selector: "app == 'a'"}}}}
	ps3 := compileState(p, 3, []policy.Policy{isolateA, denyB})
	run(t, p, ps3, []step{
		{"reply after b's ingress denies the flow", mkPkt(addrB, addrA, policy.ProtoTCP, 80, 40000, tcpACK), portB, portA, false},
		{"a's next packet (the entry is gone, a new flow)", mkPkt(addrA, addrB, policy.ProtoTCP, 40000, 80, tcpACK), portA, portB, false},
	})
	if got := p.denied[denyRevoked].Load(); got != 1 {
		t.Errorf("revoked %d, want 1", got)
	}
	if got := p.denied[denyInRule].Load(); got != 1 {
		t.Errorf("ingress deny rule %d, want 1", got)
	}
}

func TestConntrackEviction(t *testing.T) {
	p, ps := testEnforcer(t, 4, isolateA) // one bucket of 4
	for i := 0; i < 6; i++ {
		if !p.allow(ps, mkPkt(addrA, addrB, policy.ProtoTCP, uint16(1000+i), 80, tcpSYN), portA, portB) {
			t.Fatalf("flow %d denied", i)
		}
		p.clock.Add(1)
	}
	if got, ev := p.ct.entries.Load(), p.ct.evicted.Load(); got != 4 || ev != 2 {
		t.Errorf("entries %d evicted %d, want 4 and 2", got, ev)
	}
	// The newest flow is still tracked; the oldest was evicted.
	run(t, p, ps, []step{
		{"reply of the newest flow", mkPkt(addrB, addrA, policy.ProtoTCP, 80, 1005, tcpSYN|tcpACK), portB, portA, true},
		{"reply of the oldest flow", mkPkt(addrB, addrA, policy.ProtoTCP, 80, 1000, tcpSYN|tcpACK), portB, portA, false},
	})
	// Expiry: past the SYN timeout, the entry no longer lets replies in.
	p.clock.Add(int64(ctTimeoutSynSent) + 1)
	run(t, p, ps, []step{{"reply after expiry", mkPkt(addrB, addrA, policy.ProtoTCP, 80, 1004, tcpSYN|tcpACK), portB, portA, false}})
}

// BenchmarkPolicyEstablished is the fast path: a packet of an established,
// policed TCP flow (conntrack hit).
func BenchmarkPolicyEstablished(b *testing.B) {
	p, ps := testEnforcer(b, 0, isolateA)
	pkt := mkPkt(addrA, addrB, policy.ProtoTCP, 40000, 80, tcpSYN)
	if !p.allow(ps, pkt, portA, portB) || !p.allow(ps, mkPkt(addrB, addrA, policy.ProtoTCP, 80, 40000, tcpSYN|tcpACK), portB, portA) {
		b.Fatal("handshake denied")
	}
	pkt = mkPkt(addrA, addrB, policy.ProtoTCP, 40000, 80, tcpACK)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !p.allow(ps, pkt, portA, portB) {
			b.Fatal("denied")
		}
	}
}

// BenchmarkPolicyNewFlow1000Rules is a new flow's whole decision against a
// 1,000-rule ingress policy whose last rule allows it: conntrack miss,
// evaluation, conntrack insert.
func BenchmarkPolicyNewFlow1000Rules(b *testing.B) {
	var rules []policy.Rule
	for i := 0; i < 999; i++ {
		rules = append(rules, policy.Rule{Action: policy.Allow, Protocol: policy.ProtoTCP,
			Source:      policy.EntityRule{Nets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 32)}},
			Destination: policy.EntityRule{Ports: []policy.PortRange{{First: uint16(1000 + i), Last: uint16(1000 + i)}}}})
	}
	rules = append(rules, policy.Rule{Action: policy.Allow, Protocol: policy.ProtoTCP, Source: policy.EntityRule{Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, Destination: policy.EntityRule{Ports: []policy.PortRange{{First: 80, Last: 80}}}})
	p, ps := testEnforcer(b, 0, policy.Policy{Kind: policy.KindNetworkPolicy, Name: "big", Selector: "app == 'b'", Ingress: rules})
	pkt := mkPkt(addrA, addrB, policy.ProtoTCP, 0, 80, tcpSYN)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint16(pkt[20:], uint16(i))                     // a new source port,
		binary.BigEndian.PutUint32(pkt[12:], 0x0af40000|uint32(i>>16)<<8|1) // and address every 65536
		if i>>16 != 0 {
			pkt[12+3] = 1 // keep a's address: only the port varies
		}
		if !p.allow(ps, pkt, portA, portB) {
			b.Fatal("denied")
		}
	}
}

// TestConntrackConcurrent runs flows from several goroutines at once, as
// the engine's readers do (for the race detector), and checks every
// reply got in.
func TestConntrackConcurrent(t *testing.T) {
	p, ps := testEnforcer(t, 4096, isolateA)
	var wg sync.WaitGroup
	var denied atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				sport := uint16(10000 + g*1000 + i%8)
				if !p.allow(ps, mkPkt(addrA, addrB, policy.ProtoTCP, sport, 80, tcpSYN), portA, portB) ||
					!p.allow(ps, mkPkt(addrB, addrA, policy.ProtoTCP, 80, sport, tcpSYN|tcpACK), portB, portA) {
					denied.Add(1)
				}
				p.clock.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := denied.Load(); n != 0 {
		t.Errorf("%d handshakes denied", n)
	}
	if n, ev := p.ct.entries.Load(), p.ct.evicted.Load(); n != 32 || ev != 0 {
		t.Errorf("%d entries (%d evicted), want the 32 flows", n, ev)
	}
}

// TestConntrackSpread: flows that differ only in a port spread over the
// buckets (a hash whose bucket bits ignored the ports evicted them).
func TestConntrackSpread(t *testing.T) {
	c := newConntrack(4096)
	for i := 0; i < 256; i++ {
		k, a := canonical(policy.U32(addrA), policy.U32(addrB), uint16(20000+i), 80, policy.ProtoTCP)
		c.insert(k, a, ctNew, 0, 1, 1<<40, 0)
	}
	if n, ev := c.entries.Load(), c.evicted.Load(); n != 256 || ev != 0 {
		t.Errorf("%d entries, %d evicted; want 256 and 0", n, ev)
	}
}

// Log rules write the flows they match to the engine's log, rate-limited.
func TestPolicyLogRule(t *testing.T) {
	var buf bytes.Buffer
	e := &Engine{pol: newEnforcer(0), log: slog.New(slog.NewTextHandler(&buf, nil))}
	logAll := policy.Policy{Kind: policy.KindGlobalNetworkPolicy, Name: "log-all", Selector: "app == 'b'",
		Ingress: []policy.Rule{{Action: policy.Log}, {Action: policy.Allow}}}
	c := policy.Compile([]policy.Policy{logAll}, []policy.Endpoint{{Name: "b", Labels: map[string]string{"app": "b"}, Addr: addrB}})
	m := policy.NewMatcher(&c.Endpoints["b"].Ingress, policy.Ingress, &e.pol.counters)
	m.SetLog(e.policyLog)
	ps := &policyState{gen: 1, ingress: make([]*policy.Matcher, portB+1), egress: make([]*policy.Matcher, portB+1)}
	ps.ingress[portB] = m
	for i := 0; i < 2*maxLogsPerSecond; i++ {
		if !e.pol.allow(ps, mkPkt(addrA, addrB, policy.ProtoUDP, uint16(1000+i), 53, 0), portA, portB) {
			t.Fatal("denied")
		}
	}
	lines := strings.Count(buf.String(), "policy log")
	if lines != maxLogsPerSecond || !strings.Contains(buf.String(), "policy=log-all direction=Ingress rule=0 proto=UDP src=10.244.0.1 sport=1000 dst=10.244.0.2 dport=53") {
		t.Errorf("%d lines, want %d:\n%s", lines, maxLogsPerSecond, buf.String())
	}
	if got := e.pol.counters.Snapshot()[policy.RuleID{Policy: "log-all", Direction: policy.Ingress, Index: 0}]; got != 2*maxLogsPerSecond {
		t.Errorf("log rule hits %d, want %d", got, 2*maxLogsPerSecond)
	}
}

// TestPolicyNoAllocs: neither an established packet nor a new flow's
// evaluation (with a Log rule and its logger on the way) allocates.
func TestPolicyNoAllocs(t *testing.T) {
	e := &Engine{pol: newEnforcer(0)}
	logged := policy.Policy{Kind: policy.KindGlobalNetworkPolicy, Name: "log", Selector: "app == 'b'",
		Ingress: []policy.Rule{{Action: policy.Log}, {Action: policy.Allow}}}
	c := policy.Compile([]policy.Policy{isolateA, logged}, []policy.Endpoint{
		{Name: "a", Labels: map[string]string{"app": "a"}, Addr: addrA}, {Name: "b", Labels: map[string]string{"app": "b"}, Addr: addrB}})
	ps := &policyState{gen: 1, ingress: make([]*policy.Matcher, portB+1), egress: make([]*policy.Matcher, portB+1)}
	for name, id := range map[string]PortID{"a": portA, "b": portB} {
		for _, d := range []struct {
			ch   *policy.Chain
			dir  policy.Direction
			list []*policy.Matcher
		}{{&c.Endpoints[name].Ingress, policy.Ingress, ps.ingress}, {&c.Endpoints[name].Egress, policy.Egress, ps.egress}} {
			if d.ch.Policed {
				m := policy.NewMatcher(d.ch, d.dir, &e.pol.counters)
				m.SetLog(e.policyLog) // e.log is nil: counted, not written
				d.list[id] = m
			}
		}
	}
	est := mkPkt(addrA, addrB, policy.ProtoTCP, 40000, 80, tcpACK)
	if !e.pol.allow(ps, mkPkt(addrA, addrB, policy.ProtoTCP, 40000, 80, tcpSYN), portA, portB) {
		t.Fatal("SYN denied")
	}
	if n := testing.AllocsPerRun(100, func() { e.pol.allow(ps, est, portA, portB) }); n != 0 {
		t.Errorf("established packet: %v allocs", n)
	}
	syn := mkPkt(addrA, addrB, policy.ProtoTCP, 0, 80, tcpSYN)
	port := uint16(1)
	if n := testing.AllocsPerRun(100, func() {
		port++
		binary.BigEndian.PutUint16(syn[20:], port)
		if !e.pol.allow(ps, syn, portA, portB) {
			t.Fatal("new flow denied")
		}
	}); n != 0 {
		t.Errorf("new flow: %v allocs", n)
	}
}

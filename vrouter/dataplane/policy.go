package dataplane

import (
	"context"
	"encoding/binary"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// Policy enforcement. A workload port's egress chain sees what the
// workload sends, its ingress chain what the engine delivers to it; both
// are checked where a packet's route is decided (sender.handleAt), so a
// packet denied on egress never leaves the node and one denied on ingress
// crosses the fabric and dies at the destination's engine, as with Felix.
// A flow is evaluated once, on its first packet; conntrack lets its
// later packets and its replies through (TCP by state, UDP and ICMP echo
// by timeout; ICMP errors quoting a tracked flow are related and pass).
//
// A policy change bumps a generation. An established flow's next packet
// re-evaluates the flow as first seen against the new policies: it keeps
// flowing if they allow it and is cut (its entry removed, the packet
// counted as "revoked") if they deny it. Flows between ports no policy
// polices in either direction are not tracked at all; a flow from an
// unpoliced sender to an unpoliced receiver is tracked when either end is
// policed the other way, so that its replies get in.

// Denial reasons, the keys of PolicyMetrics.Denied.
const (
	DeniedIngressRule    = "ingress_deny_rule"    // a Deny rule of an ingress policy
	DeniedIngressDefault = "ingress_default_deny" // policed for ingress, no rule allowed
	DeniedEgressRule     = "egress_deny_rule"
	DeniedEgressDefault  = "egress_default_deny"
	DeniedRevoked        = "revoked"   // an established flow a new policy denies
	DeniedMalformed      = "malformed" // too short to find the ports of a policed flow
)

const (
	denyInRule = iota
	denyInDefault
	denyOutRule
	denyOutDefault
	denyRevoked
	denyMalformed
	numDeny
)

var denyNames = [numDeny]string{DeniedIngressRule, DeniedIngressDefault, DeniedEgressRule, DeniedEgressDefault, DeniedRevoked, DeniedMalformed}

// policyState is the compiled policy by port, swapped whole on a change.
type policyState struct {
	gen     uint32
	ingress []*policy.Matcher // by PortID; nil: not policed
	egress  []*policy.Matcher
}

func (ps *policyState) matcher(list []*policy.Matcher, id PortID) *policy.Matcher {
	if int(id) < len(list) {
		return list[id]
	}
	return nil
}

// enforcer is the engine's policy state, conntrack and counters.
type enforcer struct {
	state    atomic.Pointer[policyState]
	ct       *conntrack
	counters policy.Counters
	base     time.Time
	clock    atomic.Int64 // ns since base, coarse (see tick)
	chains   map[string]*policy.EndpointRules
	gen      uint32

	allowedNew atomic.Uint64 // flows a policy allowed
	passed     atomic.Uint64 // of which by a Pass rule (the profile allows)
	related    atomic.Uint64 // ICMP errors let through as related
	denied     [numDeny]atomic.Uint64
	fragments  atomic.Uint64 // non-first fragments let through (no ports to check)

	logSecond, logCount atomic.Int64 // the rate limit of Log rules' lines
}

func newEnforcer(size int) *enforcer {
	if size <= 0 {
		size = DefaultConntrackSize
	}
	return &enforcer{ct: newConntrack(size), base: time.Now()}
}

// maxLogsPerSecond bounds the log lines of Log rules.
const maxLogsPerSecond = 20

// policyLog writes a flow a Log rule matched to the engine's log, at most
// maxLogsPerSecond a second (the others are only counted, in the rule's
// hits).
func (e *Engine) policyLog(r policy.RuleID, f policy.Flow) {
	sec := e.pol.now() / int64(time.Second)
	if last := e.pol.logSecond.Load(); last != sec {
		if e.pol.logSecond.CompareAndSwap(last, sec) {
			e.pol.logCount.Store(0)
		}
	}
	if e.pol.logCount.Add(1) > maxLogsPerSecond || e.log == nil {
		return
	}
	e.log.Info("policy log", "policy", r.Policy, "direction", string(r.Direction), "rule", r.Index,
		"proto", policy.ProtocolName(f.Proto), "src", addrFrom4(f.Src), "sport", f.SrcPort, "dst", addrFrom4(f.Dst), "dport", f.DstPort)
}

// policyClock advances the policy's coarse clock until ctx ends.
func (e *Engine) policyClock(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.pol.tick()
		}
	}
}

// clockTick is the resolution of conntrack's clock.
const clockTick = 100 * time.Millisecond

// tick advances the coarse clock.
func (p *enforcer) tick() { p.clock.Store(int64(time.Since(p.base))) }

func (p *enforcer) now() int64 { return p.clock.Load() }

// SetPolicy installs compiled policy chains keyed by workload port name
// (the cali name); ports not in the map are not policed. It applies at
// once to new flows, and to established ones at their next packet.
func (e *Engine) SetPolicy(chains map[string]*policy.EndpointRules) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pol.chains = chains
	e.pol.gen++
	e.rebuildPolicy()
}

// rebuildPolicy compiles the chains of the current ports. e.mu is held.
func (e *Engine) rebuildPolicy() {
	ps := &policyState{gen: e.pol.gen}
	// Endpoints selected by the same policies share one matcher (its
	// rules are the same): a long chain's index is built once.
	shared := map[string]*policy.Matcher{}
	matcher := func(ch *policy.Chain, dir policy.Direction) *policy.Matcher {
		k := string(dir) + "\x00" + strings.Join(ch.Policies, "\x00")
		m, ok := shared[k]
		if !ok {
			m = policy.NewMatcher(ch, dir, &e.pol.counters)
			m.SetLog(e.policyLog)
			shared[k] = m
		}
		return m
	}
	for name, p := range e.ports {
		ch, ok := e.pol.chains[name]
		if !ok {
			continue
		}
		id := int(p.id())
		for len(ps.ingress) <= id {
			ps.ingress = append(ps.ingress, nil)
			ps.egress = append(ps.egress, nil)
		}
		if ch.Ingress.Policed {
			ps.ingress[id] = matcher(&ch.Ingress, policy.Ingress)
		}
		if ch.Egress.Policed {
			ps.egress[id] = matcher(&ch.Egress, policy.Egress)
		}
	}
	if len(ps.ingress) == 0 {
		ps = nil
	}
	e.pol.state.Store(ps)
}

// flowOf reads the flow of an IPv4 packet the forwarder accepted. frag
// is set for a non-first fragment (no transport header); ok is false
// when the transport header is cut short.
func flowOf(pkt []byte) (f policy.Flow, tcpFlags uint8, echoID uint16, frag, ok bool) {
	ihl := int(pkt[0]&0x0f) * 4
	f.Src, f.Dst, f.Proto = binary.BigEndian.Uint32(pkt[12:16]), binary.BigEndian.Uint32(pkt[16:20]), pkt[9]
	if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
		return f, 0, 0, true, true
	}
	l4 := pkt[ihl:]
	switch f.Proto {
	case policy.ProtoTCP:
		if len(l4) < 14 {
			return f, 0, 0, false, false
		}
		tcpFlags = l4[13]
		fallthrough
	case policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoUDPLite:
		if len(l4) < 4 {
			return f, 0, 0, false, false
		}
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
	case policy.ProtoICMP:
		if len(l4) < 8 {
			return f, 0, 0, false, false
		}
		f.ICMPType, f.ICMPCode = l4[0], l4[1]
		echoID = binary.BigEndian.Uint16(l4[4:6])
	}
	return f, tcpFlags, echoID, false, true
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func isICMPError(t uint8) bool { return t == 3 || t == 4 || t == 5 || t == 11 || t == 12 }

// ctKeyOf returns the conntrack key of a flow, and whether the flow is
// tracked at all (TCP, UDP, SCTP, UDPLite, ICMP echo).
func ctKeyOf(f *policy.Flow, echoID uint16) (ctKey, bool, bool) {
	switch f.Proto {
	case policy.ProtoICMP:
		if f.ICMPType != 8 && f.ICMPType != 0 {
			return ctKey{}, false, false
		}
		k, a := canonical(f.Src, f.Dst, echoID, echoID, f.Proto)
		return k, a, true
	case policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoUDPLite:
		k, a := canonical(f.Src, f.Dst, f.SrcPort, f.DstPort, f.Proto)
		return k, a, true
	}
	return ctKey{}, false, false
}

// allow decides whether the packet pkt, received on port in and routed to
// port out, passes policy. It does not allocate.
func (p *enforcer) allow(ps *policyState, pkt []byte, in, out PortID) bool {
	eg, ig := ps.matcher(ps.egress, in), ps.matcher(ps.ingress, out)
	if eg == nil && ig == nil && ps.matcher(ps.ingress, in) == nil && ps.matcher(ps.egress, out) == nil {
		// Neither end is policed, either way: nothing to check, and
		// no replies to let through later.
		return true
	}
	f, flags, echoID, frag, ok := flowOf(pkt)
	if frag {
		p.fragments.Add(1)
		return true
	}
	if !ok {
		p.denied[denyMalformed].Add(1)
		return false
	}
	now := p.now()
	key, fromA, tracked := ctKeyOf(&f, echoID)
	if tracked {
		verdict := 0 // 0: no entry, 1: pass, 2: revoked
		p.ct.lookup(key, now, func(en *ctEntry) bool {
			reply := en.origA != fromA
			if en.gen != ps.gen {
				// Re-evaluate the flow as first seen against the
				// new policy: its original ports are this packet's,
				// swapped for a reply.
				of := f
				oeg, oig := eg, ig
				if reply {
					of.Src, of.Dst, of.SrcPort, of.DstPort = f.Dst, f.Src, f.DstPort, f.SrcPort
					oeg, oig = ps.matcher(ps.egress, out), ps.matcher(ps.ingress, in)
				}
				if f.Proto == policy.ProtoICMP {
					of.ICMPType, of.ICMPCode = en.icmp, 0
				}
				if v, _ := oeg.Evaluate(&of); !v.Allows() {
					verdict = 2
					return false
				}
				if v, _ := oig.Evaluate(&of); !v.Allows() {
					verdict = 2
					return false
				}
				en.gen = ps.gen
			}
			verdict = 1
			en.expires = now + int64(p.advance(en, &f, flags, reply))
			return true
		})
		switch verdict {
		case 1:
			return true
		case 2:
			p.ct.revoked.Add(1)
			p.denied[denyRevoked].Add(1)
			return false
		}
	} else if f.Proto == policy.ProtoICMP && isICMPError(f.ICMPType) && p.relatedError(pkt, now) {
		p.related.Add(1)
		return true
	}
	// A new flow: the sender's egress, then the receiver's ingress.
	passed := false
	if v, _ := eg.Evaluate(&f); !v.Allows() {
		if v == policy.Denied {
			p.denied[denyOutRule].Add(1)
		} else {
			p.denied[denyOutDefault].Add(1)
		}
		return false
	} else if v == policy.Passed {
		passed = true
	}
	if v, _ := ig.Evaluate(&f); !v.Allows() {
		if v == policy.Denied {
			p.denied[denyInRule].Add(1)
		} else {
			p.denied[denyInDefault].Add(1)
		}
		return false
	} else if v == policy.Passed {
		passed = true
	}
	p.allowedNew.Add(1)
	if passed {
		p.passed.Add(1)
	}
	if tracked && !(f.Proto == policy.ProtoTCP && flags&tcpRST != 0) {
		state, timeout := ctNew, ctTimeoutUDP
		switch f.Proto {
		case policy.ProtoTCP:
			timeout = ctTimeoutSynSent
			if flags&tcpSYN == 0 {
				// Picked up mid-stream (Linux's tcp_loose).
				state, timeout = ctEstablished, ctTimeoutEstablished
			}
		case policy.ProtoICMP:
			timeout = ctTimeoutICMP
		}
		p.ct.insert(key, fromA, state, f.ICMPType, ps.gen, now+int64(timeout), now)
	}
	return true
}

// advance updates a tracked entry for one more packet and returns its
// new timeout.
func (p *enforcer) advance(en *ctEntry, f *policy.Flow, flags uint8, reply bool) time.Duration {
	switch f.Proto {
	case policy.ProtoTCP:
		switch {
		case flags&tcpRST != 0:
			en.state = ctClosed
		case flags&tcpFIN != 0 || en.state == ctClosing:
			en.state = ctClosing
		case en.state == ctNew && reply && flags&tcpSYN != 0:
			en.state = ctReplied
		case en.state == ctReplied && !reply && flags&tcpACK != 0:
			en.state = ctEstablished
		}
		switch en.state {
		case ctNew, ctReplied:
			return ctTimeoutSynSent
		case ctEstablished:
			return ctTimeoutEstablished
		case ctClosing:
			return ctTimeoutClosing
		}
		return ctTimeoutClosed
	case policy.ProtoICMP:
		return ctTimeoutICMP
	}
	if reply && en.state == ctNew {
		en.state = ctReplied
	}
	if en.state == ctReplied {
		return ctTimeoutUDPReplied
	}
	return ctTimeoutUDP
}

// relatedError reports whether an ICMP error quotes a tracked flow: the
// quoted packet went the other way, from the error's destination.
func (p *enforcer) relatedError(pkt []byte, now int64) bool {
	ihl := int(pkt[0]&0x0f) * 4
	if len(pkt) < ihl+8+20 {
		return false
	}
	inner := pkt[ihl+8:]
	iihl := int(inner[0]&0x0f) * 4
	if iihl < 20 || len(inner) < iihl+8 {
		return false
	}
	f := policy.Flow{Src: binary.BigEndian.Uint32(inner[12:16]), Dst: binary.BigEndian.Uint32(inner[16:20]), Proto: inner[9]}
	l4 := inner[iihl:]
	var echoID uint16
	switch f.Proto {
	case policy.ProtoICMP:
		f.ICMPType = l4[0]
		echoID = binary.BigEndian.Uint16(l4[4:6])
	default:
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
	}
	key, _, tracked := ctKeyOf(&f, echoID)
	return tracked && p.ct.lookup(key, now, func(*ctEntry) bool { return true })
}

// PolicyMetrics are the engine's policy and conntrack counters.
type PolicyMetrics struct {
	// Rules are the hit counters: flows (first packets, and Log rules on
	// the way) each rule decided, by policy, direction and rule index.
	Rules map[policy.RuleID]uint64
	// Denied counts denied packets by reason (Denied* constants).
	Denied map[string]uint64
	// AllowedFlows counts new flows policy allowed (Passed of them by a
	// Pass rule); Related the ICMP errors let through for a tracked flow;
	// Fragments the non-first fragments let through unchecked.
	AllowedFlows, Passed, Related, Fragments uint64
	// Conntrack: live entries, capacity, made, evicted to make room,
	// expired and reused, revoked by a policy change.
	Entries, Capacity, Created, Evicted, Expired, Revoked uint64
}

// PolicyMetrics returns a snapshot of the policy counters.
func (e *Engine) PolicyMetrics() PolicyMetrics {
	p := e.pol
	m := PolicyMetrics{Rules: p.counters.Snapshot(), Denied: map[string]uint64{},
		AllowedFlows: p.allowedNew.Load(), Passed: p.passed.Load(), Related: p.related.Load(), Fragments: p.fragments.Load(),
		Entries: uint64(max(0, p.ct.entries.Load())), Capacity: uint64(p.ct.capacity), Created: p.ct.created.Load(),
		Evicted: p.ct.evicted.Load(), Expired: p.ct.expired.Load(), Revoked: p.ct.revoked.Load()}
	for i, n := range denyNames {
		m.Denied[n] = p.denied[i].Load()
	}
	return m
}

// DeniedReasons lists the denial reasons in a fixed order.
func DeniedReasons() []string {
	out := append([]string(nil), denyNames[:]...)
	sort.Strings(out)
	return out
}

package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/fib"

	"github.com/vrouter-lab/vrouter/header"
)

// Action is what to do with a packet.
type Action uint8

// Actions.
const (
	// Drop: discard the packet; Decision.Reason says why.
	Drop Action = iota
	// Deliver: send Decision.Packet out of Decision.Port toward
	// Decision.NextHop.
	Deliver
	// Encap: Decision.Port is a tunnel (PortTunnel); wrap Decision.Packet
	// in an outer IPv4 header (IPIP) to Decision.NextHop and send it.
	Encap
	// ICMPError: the packet was not forwarded (Decision.Reason) and
	// Decision.Packet is an ICMP error to its source, built in the
	// caller's buffer; send it out of Decision.Port toward
	// Decision.NextHop as a Deliver or, when Port is a tunnel, an Encap
	// decision.
	ICMPError
	// Local: the packet is addressed to the router itself; hand
	// Decision.Packet to the router's own stack, Decision.Port when the
	// forwarder has a PortHost port (nil otherwise).
	Local
)

var actionNames = [...]string{"drop", "deliver", "encap", "icmp-error", "local"}

// String returns the action's name: "drop", "deliver", "encap",
// "icmp-error" or "local".
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// Decision is Forward's verdict on one packet.
type Decision struct {
	Action Action
	// Reason says why the packet was not forwarded: set for Drop and
	// ICMPError, ReasonNone otherwise.
	Reason Reason
	// Fragment is set on Deliver and Encap when Packet (or, for ForwardGSO,
	// a segment) is larger than Port.MTU and has DF clear: send the
	// fragments Fragment makes of it (of each segment, for a GSO packet).
	Fragment bool
	// Port is the port to send on (Deliver, Encap, ICMPError) or the host
	// port (Local). It points into the forwarder's port table: read only.
	Port *Port
	// NextHop is the neighbour to send to: the route's gateway, or the
	// destination itself for a directly connected route (Deliver, Encap,
	// ICMPError); the destination for Local. Invalid for an ICMPError
	// sent back to the sender of the offending packet
	// (Config.ErrorsToIngress).
	NextHop netip.Addr
	// Packet is what to send: the packet itself, in the input's memory
	// and trimmed to its total length (Deliver, Encap, Local), its TTL
	// decremented and options updated when forwarded from a port that is
	// not the host's; or the ICMP error in the caller's buffer
	// (ICMPError). Nil for Drop.
	Packet []byte
}

// Config configures a Forwarder.
type Config struct {
	// Ports are the router's ports. Names and IDs must be unique.
	Ports []Port
	// Local are addresses of the router besides its ports' addresses:
	// packets to them are Local.
	Local []netip.Addr
	// DefaultSource is the source of ICMP errors that leave by a port
	// without an address, over a route without a preferred source: as
	// Linux would pick another of the host's addresses, typically the
	// node address. If invalid too, errors come from 192.0.0.8
	// (INADDR_DUMMY), as on Linux.
	DefaultSource netip.Addr
	// Now returns the current time; nil means time.Now. The rate limiters
	// use it, as do timestamp options.
	Now func() time.Time
	// ICMPRateLimit is net.ipv4.icmp_ratelimit: per destination, one
	// rate-limited ICMP error per this interval on average, bursts of up
	// to 6. Zero means Linux's default, 1 s; negative disables the limit.
	ICMPRateLimit time.Duration
	// RouteErrorCost and RouteErrorBurst are net.ipv4.route.error_cost and
	// error_burst: per source, the cost and the maximum credit of the
	// errors caused by routes (no route, unreachable, prohibit), charged
	// by ip_error before icmp_send's ICMPRateLimit. Zero means Linux's
	// defaults, 1 s and 5 s; a negative cost disables it. As on Linux
	// both limits draw on one credit per address: with the defaults a
	// source gets two route errors back to back, then none while it keeps
	// sending such packets once a second or faster (ip_error spends each
	// second's credit before icmp_send sees it).
	RouteErrorCost  time.Duration
	RouteErrorBurst time.Duration
	// ErrorsToIngress sends an ICMP error the router has no route for
	// back out of the underlay port the offending packet came in by, to
	// the neighbour that sent it (Decision.NextHop is then invalid),
	// instead of dropping it as Linux would. Lab routers between racks
	// use it: they know no workload addresses, yet a workload should see
	// why its packet went nowhere.
	ErrorsToIngress bool
}

// Forwarder makes forwarding decisions for IPv4 packets by a fib.Table. It
// is safe for concurrent use: Forward reads the table and the ports
// without locks, and ports may change while packets are forwarded.
type Forwarder struct {
	table      *fib.Table
	now        func() time.Time
	epoch      time.Time
	defaultSrc uint32
	extraLocal []netip.Addr
	// errorsToIngress: Config.ErrorsToIngress
	errorsToIngress bool

	mu    sync.Mutex // serialises port changes
	ports atomic.Pointer[portSet]

	lim  limiter
	ipID atomic.Uint32
	c    counters
}

// New returns a forwarder that routes by table.
func New(table *fib.Table, cfg Config) (*Forwarder, error) {
	if table == nil {
		return nil, errors.New("dataplane: nil table")
	}
	if cfg.DefaultSource.IsValid() && !cfg.DefaultSource.Is4() {
		return nil, fmt.Errorf("dataplane: default source %s is not IPv4", cfg.DefaultSource)
	}
	for _, a := range cfg.Local {
		if !a.Is4() {
			return nil, fmt.Errorf("dataplane: local address %s is not IPv4", a)
		}
	}
	f := &Forwarder{
		table:      table,
		now:        cfg.Now,
		defaultSrc: addr4(cfg.DefaultSource),
		extraLocal: slices.Clone(cfg.Local),

		errorsToIngress: cfg.ErrorsToIngress,
	}
	if f.now == nil {
		f.now = time.Now
	}
	f.epoch = f.now()
	f.lim.icmpCost = durationOr(cfg.ICMPRateLimit, defaultICMPRateLimit)
	f.lim.routeCost = durationOr(cfg.RouteErrorCost, defaultRouteErrorCost)
	f.lim.routeBurst = durationOr(cfg.RouteErrorBurst, defaultRouteErrorBurst)
	if err := f.SetPorts(cfg.Ports); err != nil {
		return nil, err
	}
	return f, nil
}

func durationOr(d, def time.Duration) int64 {
	if d == 0 {
		return int64(def)
	}
	return int64(d)
}

// SetPorts replaces every port.
func (f *Forwarder) SetPorts(ports []Port) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := newPortSet(ports, f.extraLocal)
	if err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	f.ports.Store(s)
	return nil
}

// AddPort adds a port, such as a new workload's.
func (f *Forwarder) AddPort(p Port) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.ports.Load()
	s, err := newPortSet(append(slices.Clone(cur.all), p), f.extraLocal)
	if err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	f.ports.Store(s)
	return nil
}

// RemovePort removes the port with the given ID and reports whether it
// existed.
func (f *Forwarder) RemovePort(id PortID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.ports.Load()
	if cur.port(id) == nil {
		return false
	}
	rest := slices.DeleteFunc(slices.Clone(cur.all), func(p Port) bool { return p.ID == id })
	s, err := newPortSet(rest, f.extraLocal)
	if err != nil { // cannot happen: a subset of valid ports is valid
		panic(err)
	}
	f.ports.Store(s)
	return true
}

// Port returns a copy of the port with the given ID.
func (f *Forwarder) Port(id PortID) (Port, bool) {
	if p := f.ports.Load().port(id); p != nil {
		return *p, true
	}
	return Port{}, false
}

// Ports returns the ports, by ID.
func (f *Forwarder) Ports() []Port { return slices.Clone(f.ports.Load().all) }

// Stats returns a snapshot of the counters.
func (f *Forwarder) Stats() Stats { return f.c.snapshot() }

// Forward decides what to do with pkt, an IPv4 packet received on port in,
// as a Linux router would (ip_rcv, ip_route_input, ip_forward, ip_error,
// icmp_send):
//
//   - a malformed packet, a martian address or a multicast destination is
//     dropped without an ICMP error;
//   - a packet to one of the router's addresses (its ports' and
//     Config.Local), to 255.255.255.255, or matching a route of type local
//     or broadcast, is Local; it is not otherwise checked or changed;
//   - IP options are checked as Linux does: malformed ones draw ICMP
//     parameter problem, source routes are refused (accept_source_route
//     0), record route and timestamp are filled in on forwarded packets;
//   - otherwise the table's longest-prefix match decides: no route (or a
//     throw route) sends ICMP network unreachable, an unreachable route
//     host unreachable, a prohibit route communication administratively
//     prohibited, a blackhole drops silently, other types are dropped; a
//     unicast route sends by the port its Dev names (a route without Dev
//     by its gateway's connected route);
//   - a packet that would leave with TTL 0 gets ICMP time exceeded, one
//     larger than the egress MTU with DF set ICMP fragmentation needed
//     with the MTU, one without DF is marked for fragmentation;
//   - a forwarded packet has its TTL decremented (with an incremental
//     checksum update, RFC 1624) in place and goes out by the route's
//     port toward its gateway, or toward the destination for a directly
//     connected route: Encap for a tunnel port, Deliver otherwise. Packets
//     from a PortHost port were originated by the router: no TTL check or
//     decrement.
//
// ICMP errors are built in icmpBuf (MaxICMPErrorLen bytes always suffice),
// quote the packet as it was received, are rate limited like Linux's, and
// are never sent about ICMP errors, non-first fragments or non-unicast
// addresses; when an error cannot or may not be sent, the decision is
// Drop. Forward never allocates, never panics on any input, and never
// writes outside pkt[:len(pkt)] and icmpBuf.
func (f *Forwarder) Forward(pkt []byte, in PortID, icmpBuf []byte) Decision {
	return f.forward(pkt, in, 0, icmpBuf)
}

// ForwardGSO is Forward for a GSO super-packet, which the sender will
// split into segments of at most segLen bytes each (IP header, transport
// header and gso_size bytes of payload): the MTU check uses segLen, as
// Linux's ip_exceeds_mtu does with skb_gso_validate_network_len. A segLen
// of zero, or not below the packet's length, makes it Forward.
func (f *Forwarder) ForwardGSO(pkt []byte, in PortID, segLen int, icmpBuf []byte) Decision {
	return f.forward(pkt, in, segLen, icmpBuf)
}

func (f *Forwarder) drop(r Reason) Decision {
	f.c.drops[r].Add(1)
	return Decision{Action: Drop, Reason: r}
}

func (f *Forwarder) forward(pkt []byte, in PortID, segLen int, icmpBuf []byte) Decision {
	ps := f.ports.Load()
	inPort := ps.port(in)
	if inPort == nil {
		return f.drop(ReasonUnknownIngress)
	}

	// ip_rcv_core: validate the header, trim to the total length.
	ip := header.IPv4(pkt)
	if len(pkt) < ipHeaderLen {
		return f.drop(ReasonTruncated)
	}
	if ip.Version() != header.IPv4Version {
		return f.drop(ReasonBadVersion)
	}
	ihl := ip.HeaderLength()
	if ihl < ipHeaderLen {
		return f.drop(ReasonBadIHL)
	}
	if len(pkt) < ihl {
		return f.drop(ReasonTruncated)
	}
	if !ip.IsChecksumValid() {
		return f.drop(ReasonBadChecksum)
	}
	tot := int(ip.TotalLength())
	if tot > len(pkt) || tot < ihl {
		return f.drop(ReasonBadLength)
	}
	pkt = pkt[:tot]
	hdr := header.IPv4(pkt[:ihl])

	// ip_route_input_slow: addresses that are never routed.
	src, dst := hdr.SourceUint32(), hdr.DestinationUint32()
	switch {
	case isMulticast(dst):
		return f.drop(ReasonMulticast)
	case isMulticast(src) || src == limitedBroadcast:
		return f.drop(ReasonMartianSource)
	case dst == limitedBroadcast || src == 0 && dst == 0:
		return f.local(ps, pkt, dst)
	case isZeroNet(src):
		return f.drop(ReasonMartianSource)
	case isZeroNet(dst) || isLoopback(dst):
		return f.drop(ReasonMartianDestination)
	case isLoopback(src):
		return f.drop(ReasonMartianSource)
	}
	host := inPort.Kind == PortHost
	if !host && ps.isLocal(src) { // fib_validate_source: our own address from outside
		return f.drop(ReasonMartianSource)
	}
	if ps.isLocal(dst) {
		return f.local(ps, pkt, dst)
	}

	// ip_rcv_options: malformed options draw a parameter problem; source
	// routing is refused (accept_source_route=0).
	var opts ipOptions
	if ihl > ipHeaderLen {
		var pp int
		opts, pp = compileOptions(hdr)
		if pp != 0 {
			return f.icmpError(ps, in, pkt, ihl, icmpParamProblem, codeParamPointer, uint32(pp)<<24, ReasonBadOptions, false, icmpBuf)
		}
		if opts.srr != 0 {
			return f.drop(ReasonSourceRoute)
		}
	}

	r := f.table.LookupRef(addrFrom4(dst))
	if r == nil {
		return f.icmpError(ps, in, pkt, ihl, icmpDestUnreach, codeNetUnreach, 0, ReasonNoRoute, true, icmpBuf)
	}
	switch r.Type {
	case fib.Unicast:
	case rtnLocal, rtnBroadcast: // ip_route_input_slow: local_input, brd_input
		return f.local(ps, pkt, dst)
	case rtnThrow: // -EAGAIN: no further table, so -ENETUNREACH
		return f.icmpError(ps, in, pkt, ihl, icmpDestUnreach, codeNetUnreach, 0, ReasonNoRoute, true, icmpBuf)
	case fib.Blackhole:
		return f.drop(ReasonBlackhole)
	case fib.Unreachable: // fib_props: -EHOSTUNREACH; ip_error: ICMP_HOST_UNREACH
		return f.icmpError(ps, in, pkt, ihl, icmpDestUnreach, codeHostUnreach, 0, ReasonUnreachable, true, icmpBuf)
	case fib.Prohibit: // fib_props: -EACCES; ip_error: ICMP_PKT_FILTERED
		return f.icmpError(ps, in, pkt, ihl, icmpDestUnreach, codePktFiltered, 0, ReasonProhibit, true, icmpBuf)
	default:
		return f.drop(ReasonRouteType)
	}
	out := f.egress(ps, r)
	if out == nil {
		return f.drop(ReasonUnknownEgress)
	}

	// ip_forward.
	if !host && hdr.TTL() <= 1 {
		return f.icmpError(ps, in, pkt, ihl, icmpTimeExceeded, codeTTLExceeded, 0, ReasonTTLExceeded, false, icmpBuf)
	}
	size := tot
	if segLen > 0 && segLen < tot {
		size = segLen
	}
	frag := false
	if size > out.MTU {
		if hdr.DontFragment() {
			return f.icmpError(ps, in, pkt, ihl, icmpDestUnreach, codeFragNeeded, uint32(out.MTU), ReasonFragNeeded, false, icmpBuf)
		}
		if hdr.FragmentOffset()+tot-ihl > header.IPv4MaximumSize {
			return f.drop(ReasonFragOverflow)
		}
		frag = true
	}
	if !host {
		hdr.DecrementTTL()
	}
	if ihl > ipHeaderLen && (opts.end != 0 || opts.rr != 0 || opts.ts != 0) {
		f.updateOptions(ps, hdr, opts, r, out, host)
	}

	d := Decision{Action: Deliver, Fragment: frag, Port: out, NextHop: r.Gateway, Packet: pkt}
	if !d.NextHop.IsValid() {
		d.NextHop = addrFrom4(dst)
	}
	if out.Kind == PortTunnel {
		d.Action = Encap
		f.c.encap.Add(1)
	} else {
		f.c.forwarded.Add(1)
	}
	if frag {
		f.c.needFrag.Add(1)
	}
	return d
}

// Route types without a constant in package fib (rtnetlink's RTN_*).
const (
	rtnLocal     fib.Type = 2
	rtnBroadcast fib.Type = 3
	rtnThrow     fib.Type = 9
)

func (f *Forwarder) local(ps *portSet, pkt []byte, dst uint32) Decision {
	f.c.local.Add(1)
	return Decision{Action: Local, Port: ps.host, NextHop: addrFrom4(dst), Packet: pkt}
}

// egress returns the port a unicast route sends by. A route without a
// device resolves its gateway once through the table to a directly
// connected route, as `ip route add ... via G` picks the device.
func (f *Forwarder) egress(ps *portSet, r *fib.Route) *Port {
	if r.Dev != "" {
		return ps.byName[r.Dev]
	}
	if !r.Gateway.Is4() {
		return nil
	}
	g, ok := f.table.Lookup(r.Gateway)
	if !ok || g.Type != fib.Unicast || g.Gateway.IsValid() || g.Dev == "" {
		return nil
	}
	return ps.byName[g.Dev]
}

// sourceFor returns the address the router sends from by route r out of
// port out: the route's preferred source, else the port's address, else
// the default source (fib_result_prefsrc, inet_select_addr); 0 if none.
func (f *Forwarder) sourceFor(r *fib.Route, out *Port) uint32 {
	switch {
	case r != nil && r.PrefSrc.Is4():
		return addr4(r.PrefSrc)
	case out != nil && out.Addr.Is4():
		return addr4(out.Addr)
	}
	return f.defaultSrc
}

// updateOptions fills the options of a forwarded packet and recomputes
// the header checksum if they changed.
func (f *Forwarder) updateOptions(ps *portSet, hdr header.IPv4, o ipOptions, r *fib.Route, out *Port, host bool) {
	src := hdr.SourceUint32()
	env := optionEnv{ps: ps}
	if host { // ip_rt_get_source for an output route: the packet's source
		env.out = src
	} else {
		env.out = f.sourceFor(r, out)
	}
	if o.ts != 0 {
		now := f.now().UTC()
		y, m, d := now.Date()
		env.msUTC = uint32(now.Sub(time.Date(y, m, d, 0, 0, 0, 0, time.UTC)).Milliseconds())
		// fib_compute_spec_dst: the source toward the packet's sender.
		if host {
			env.spec = src
		} else if back, ok := f.table.Lookup(addrFrom4(src)); ok && back.Type == fib.Unicast {
			env.spec = f.sourceFor(&back, f.egress(ps, &back))
		} else {
			env.spec = f.defaultSrc
		}
	}
	if forwardOptions(hdr, o, &env) {
		hdr.UpdateChecksum()
	}
}

// icmpError answers pkt (trimmed, header length ihl), which is dropped for
// reason, with an ICMP error of the given type, code and info, if the
// rules and the rate limits allow; routeErr marks errors caused by a route
// (ip_error's extra limit).
func (f *Forwarder) icmpError(ps *portSet, in PortID, pkt []byte, ihl int, typ, code uint8, info uint32, reason Reason, routeErr bool, buf []byte) Decision {
	f.c.drops[reason].Add(1)
	drop := Decision{Action: Drop, Reason: reason}
	src := header.IPv4(pkt).SourceUint32()

	// An error to one of our own addresses goes to the host port, not rate
	// limited (Linux: loopback).
	toLocal := ps.isLocal(src)
	var now int64
	if !toLocal {
		now = int64(f.now().Sub(f.epoch))
	}
	if routeErr && !toLocal && !f.lim.routeErrorAllow(src, now) {
		f.c.icmpRateLimited.Add(1)
		return drop
	}
	if !errorAllowed(pkt, ihl) {
		f.c.icmpSuppressed.Add(1)
		return drop
	}

	// Route the error back to the source (icmp_route_lookup).
	var out *Port
	var nextHop, from uint32
	if toLocal {
		out, nextHop, from = ps.host, src, src
	} else {
		back, ok := f.table.Lookup(addrFrom4(src))
		if ok && back.Type == fib.Unicast {
			out = f.egress(ps, &back)
			nextHop = addr4(back.Gateway)
			if nextHop == 0 {
				nextHop = src
			}
			from = f.sourceFor(&back, out)
		}
	}
	toIngress := false
	if out == nil && f.errorsToIngress && !toLocal {
		if p := ps.port(in); p != nil && p.Kind == PortUnderlay {
			out, nextHop, from, toIngress = p, 0, addr4(p.Addr), true
		}
	}
	if from == 0 {
		from = inaddrDummy
	}
	if out == nil {
		f.c.icmpUnroutable.Add(1)
		return drop
	}
	if !toLocal && !f.lim.icmpAllow(src, typ, code, now) {
		f.c.icmpRateLimited.Add(1)
		return drop
	}

	// Quote as much as fits in 576 bytes or the port's MTU.
	room := min(out.MTU, MaxICMPErrorLen) - ipHeaderLen - icmpHeaderLen
	room = min(room, len(buf)-ipHeaderLen-icmpHeaderLen)
	quote := pkt[:min(len(pkt), max(room, 0))]
	if room <= ipHeaderLen || len(quote) < min(len(pkt), ihl+8) {
		f.c.icmpUnroutable.Add(1)
		return drop
	}
	tos := header.IPv4(pkt).TOS()&iptosTOSMask | iptosPrecInternetControl
	id := uint16(f.ipID.Add(1))
	n := buildError(buf, from, src, tos, id, typ, code, info, quote)
	f.c.icmpErrors.Add(1)
	if toIngress {
		return Decision{Action: ICMPError, Reason: reason, Port: out, Packet: buf[:n]}
	}
	return Decision{Action: ICMPError, Reason: reason, Port: out, NextHop: addrFrom4(nextHop), Packet: buf[:n]}
}

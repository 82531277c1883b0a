package dataplane

import (
	"strconv"
	"sync/atomic"
)

// Reason says why a packet was not forwarded. Every Drop and ICMPError
// decision carries one, and Stats counts packets by it.
type Reason uint8

// Reasons. The comment after each is its name in Stats.Map.
const (
	ReasonNone Reason = iota // "none": not dropped

	// Malformed packets, dropped without an ICMP error.
	ReasonTruncated   // "truncated": shorter than 20 bytes or than its header length
	ReasonBadVersion  // "bad_version": IP version is not 4
	ReasonBadIHL      // "bad_ihl": header length below 5 words
	ReasonBadChecksum // "bad_checksum": header checksum does not verify
	ReasonBadLength   // "bad_length": total length beyond the buffer or below the header length

	// Addresses Linux will not route (ip_route_input_slow), no ICMP error.
	ReasonMartianSource      // "martian_source": source 0/8, 127/8, multicast, 255.255.255.255 or one of ours
	ReasonMartianDestination // "martian_destination": destination 0/8 or 127/8
	ReasonMulticast          // "multicast": multicast destination (no multicast routing)

	// Options.
	ReasonBadOptions  // "bad_options": malformed IP options (ICMP parameter problem)
	ReasonSourceRoute // "source_route": loose or strict source route option (accept_source_route=0)

	// Routing.
	ReasonUnknownIngress // "unknown_ingress": packet from a port the forwarder does not have
	ReasonNoRoute        // "no_route": no route (ICMP network unreachable)
	ReasonBlackhole      // "blackhole": blackhole route, silent
	ReasonUnreachable    // "unreachable": unreachable route (ICMP host unreachable)
	ReasonProhibit       // "prohibit": prohibit route (ICMP communication administratively prohibited)
	ReasonRouteType      // "route_type": a route type the forwarder does not forward
	ReasonUnknownEgress  // "unknown_egress": the route's device is not a port

	// Forwarding.
	ReasonTTLExceeded  // "ttl_exceeded": TTL 1 or 0 (ICMP time exceeded)
	ReasonFragNeeded   // "frag_needed": larger than the egress MTU with DF set (ICMP fragmentation needed)
	ReasonFragOverflow // "frag_overflow": fragments would need offsets beyond 65535

	numReasons
)

// NumReasons is the number of Reason values, ReasonNone included.
const NumReasons = int(numReasons)

var reasonNames = [numReasons]string{
	ReasonNone:               "none",
	ReasonTruncated:          "truncated",
	ReasonBadVersion:         "bad_version",
	ReasonBadIHL:             "bad_ihl",
	ReasonBadChecksum:        "bad_checksum",
	ReasonBadLength:          "bad_length",
	ReasonMartianSource:      "martian_source",
	ReasonMartianDestination: "martian_destination",
	ReasonMulticast:          "multicast",
	ReasonBadOptions:         "bad_options",
	ReasonSourceRoute:        "source_route",
	ReasonUnknownIngress:     "unknown_ingress",
	ReasonNoRoute:            "no_route",
	ReasonBlackhole:          "blackhole",
	ReasonUnreachable:        "unreachable",
	ReasonProhibit:           "prohibit",
	ReasonRouteType:          "route_type",
	ReasonUnknownEgress:      "unknown_egress",
	ReasonTTLExceeded:        "ttl_exceeded",
	ReasonFragNeeded:         "frag_needed",
	ReasonFragOverflow:       "frag_overflow",
}

// String returns the reason's name, e.g. "no_route".
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Stats is a snapshot of a Forwarder's counters.
type Stats struct {
	Forwarded    uint64 // Deliver decisions
	Encapsulated uint64 // Encap decisions
	Local        uint64 // Local decisions
	NeedFragment uint64 // Deliver and Encap decisions with Fragment set

	ICMPErrors      uint64 // ICMPError decisions: errors built
	ICMPRateLimited uint64 // errors suppressed by the rate limiters
	ICMPSuppressed  uint64 // errors not sent by rule: about an ICMP error, a non-first fragment, a bad source
	ICMPUnroutable  uint64 // errors not sent: no unicast route or port back to the source, MTU or buffer too small

	// Drops counts, by Reason, every packet not forwarded, including those
	// answered with an ICMP error. Drops[ReasonNone] is always zero.
	Drops [NumReasons]uint64
}

// Dropped returns the number of packets not forwarded, for every reason.
func (s Stats) Dropped() uint64 {
	var n uint64
	for _, v := range s.Drops {
		n += v
	}
	return n
}

// Map returns every nonzero counter by name: "forwarded", "encapsulated",
// "local", "need_fragment", "icmp_errors", "icmp_rate_limited",
// "icmp_suppressed", "icmp_unroutable", and "drop_" + a Reason's name.
func (s Stats) Map() map[string]uint64 {
	m := make(map[string]uint64)
	put := func(k string, v uint64) {
		if v != 0 {
			m[k] = v
		}
	}
	put("forwarded", s.Forwarded)
	put("encapsulated", s.Encapsulated)
	put("local", s.Local)
	put("need_fragment", s.NeedFragment)
	put("icmp_errors", s.ICMPErrors)
	put("icmp_rate_limited", s.ICMPRateLimited)
	put("icmp_suppressed", s.ICMPSuppressed)
	put("icmp_unroutable", s.ICMPUnroutable)
	for r, v := range s.Drops {
		put("drop_"+Reason(r).String(), v)
	}
	return m
}

// counters are a Forwarder's live counters.
type counters struct {
	forwarded, encap, local, needFrag                           atomic.Uint64
	icmpErrors, icmpRateLimited, icmpSuppressed, icmpUnroutable atomic.Uint64
	drops                                                       [numReasons]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Forwarded:       c.forwarded.Load(),
		Encapsulated:    c.encap.Load(),
		Local:           c.local.Load(),
		NeedFragment:    c.needFrag.Load(),
		ICMPErrors:      c.icmpErrors.Load(),
		ICMPRateLimited: c.icmpRateLimited.Load(),
		ICMPSuppressed:  c.icmpSuppressed.Load(),
		ICMPUnroutable:  c.icmpUnroutable.Load(),
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}

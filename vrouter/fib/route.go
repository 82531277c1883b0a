// Package fib holds vrouter's forwarding information base: the one Route type
// that BGP produces, the userspace engine looks up, kernel mode writes through
// netlink and `vrouter route` prints, and a Table with longest-prefix match
// whose lookups never block on updates.
//
// Routes print and parse in exactly the text `ip route` (iproute2) uses:
// see Route.String, Format, Parse and ParseAll.
package fib

import "net/netip"

// Type is a route's type, as in rtnetlink's RTN_* values.
type Type uint8

// Route types. The numeric values are the kernel's RTN_* constants.
const (
	Unicast     Type = 1 // RTN_UNICAST
	Blackhole   Type = 6 // RTN_BLACKHOLE
	Unreachable Type = 7 // RTN_UNREACHABLE
	Prohibit    Type = 8 // RTN_PROHIBIT
)

// Protocol says who installed a route, as in rtnetlink's RTPROT_* values.
type Protocol uint8

// Route protocols. The numeric values are the kernel's RTPROT_* constants
// (see /etc/iproute2/rt_protos).
const (
	ProtoUnspec   Protocol = 0
	ProtoRedirect Protocol = 1
	ProtoKernel   Protocol = 2
	ProtoBoot     Protocol = 3
	ProtoStatic   Protocol = 4
	ProtoBird     Protocol = 12
)

// Scope is a route's scope, as in rtnetlink's RT_SCOPE_* values.
type Scope uint8

// Route scopes. The numeric values are the kernel's RT_SCOPE_* constants.
const (
	ScopeUniverse Scope = 0   // "global"
	ScopeLink     Scope = 253 // "link"
	ScopeHost     Scope = 254 // "host"
)

// Route is one entry of a forwarding table.
//
// The zero Type and Protocol are not the defaults of `ip route add`: a route
// as that command would create it has Type Unicast and Protocol ProtoBoot
// (which `ip route` does not print), while a zero Protocol prints as
// "proto unspec".
type Route struct {
	Dst      netip.Prefix // destination, masked
	Type     Type
	Gateway  netip.Addr // next hop; invalid for directly connected routes
	Dev      string     // egress device (port) name
	Protocol Protocol
	Scope    Scope
	OnLink   bool       // next hop is reachable on Dev without a connected route
	PrefSrc  netip.Addr // preferred source address; invalid when unset
	Metric   uint32     // priority; lower wins
}

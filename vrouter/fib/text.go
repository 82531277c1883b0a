package fib

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The names iproute2 prints for route types (ip/rtm_map.c), protocols (its
// built-in table and the stock /etc/iproute2/rt_protos) and scopes (the stock
// /etc/iproute2/rt_scopes). Numbers without a name print as decimal numbers.
var (
	typeNames = [...]string{
		0:  "none", // RTN_UNSPEC
		1:  "unicast",
		2:  "local",
		3:  "broadcast",
		4:  "anycast",
		5:  "multicast",
		6:  "blackhole",
		7:  "unreachable",
		8:  "prohibit",
		9:  "throw",
		10: "nat",
		11: "xresolve",
	}
	protoNames = [256]string{
		0:   "unspec",
		1:   "redirect",
		2:   "kernel",
		3:   "boot",
		4:   "static",
		8:   "gated",
		9:   "ra",
		10:  "mrt",
		11:  "zebra",
		12:  "bird",
		13:  "dnrouted",
		14:  "xorp",
		15:  "ntk",
		16:  "dhcp",
		18:  "keepalived",
		42:  "babel",
		99:  "openr",
		186: "bgp",
		187: "isis",
		188: "ospf",
		189: "rip",
		192: "eigrp",
	}
	scopeNames = [256]string{
		0:   "global",
		200: "site",
		253: "link",
		254: "host",
		255: "nowhere",
	}
)

// String returns the name iproute2 prints for t ("blackhole"), or its number
// when it has none.
func (t Type) String() string { return name(typeNames[:], uint8(t)) }

// String returns the name iproute2 prints for p ("bird"), or its number when
// it has none.
func (p Protocol) String() string { return name(protoNames[:], uint8(p)) }

// String returns the name iproute2 prints for s ("link"), or its number when
// it has none.
func (s Scope) String() string { return name(scopeNames[:], uint8(s)) }

func name(names []string, n uint8) string {
	if int(n) < len(names) && names[n] != "" {
		return names[n]
	}
	return strconv.Itoa(int(n))
}

func appendName(b []byte, names []string, n uint8) []byte {
	if int(n) < len(names) && names[n] != "" {
		return append(b, names[n]...)
	}
	return strconv.AppendUint(b, uint64(n), 10)
}

// String returns r as `ip route` prints it, without a trailing newline, for
// example "10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink".
//
// Fields come in iproute2's order: type, destination, via, dev, proto, scope,
// src, metric, onlink. Like iproute2, String omits what is implied: the type
// when it is Unicast, the protocol when it is ProtoBoot (the default of
// `ip route add`), the scope when it is ScopeUniverse, and the metric when
// it is 0. Types, protocols and scopes print by name, or as numbers when
// they have none. A /32 (or /128) destination prints without its length,
// 0.0.0.0/0 as "default", and so does ::/0 when the route's gateway or
// source is IPv6 (so that Parse can tell the family).
//
// Parse(r.String()) returns r for every route Parse returns, and for every
// route with a masked destination, a named type and a device name without
// white space.
func (r Route) String() string {
	return string(r.AppendTo(make([]byte, 0, 96)))
}

// AppendTo appends r as String formats it to b and returns the extended
// buffer. It does not allocate when b has room.
func (r Route) AppendTo(b []byte) []byte {
	if r.Type != Unicast {
		b = appendName(b, typeNames[:], uint8(r.Type))
		b = append(b, ' ')
	}
	b = r.appendDst(b)
	if r.Gateway.IsValid() {
		b = append(b, " via "...)
		b = r.Gateway.AppendTo(b)
	}
	if r.Dev != "" {
		b = append(b, " dev "...)
		b = append(b, r.Dev...)
	}
	if r.Protocol != ProtoBoot {
		b = append(b, " proto "...)
		b = appendName(b, protoNames[:], uint8(r.Protocol))
	}
	if r.Scope != ScopeUniverse {
		b = append(b, " scope "...)
		b = appendName(b, scopeNames[:], uint8(r.Scope))
	}
	if r.PrefSrc.IsValid() {
		b = append(b, " src "...)
		b = r.PrefSrc.AppendTo(b)
	}
	if r.Metric != 0 {
		b = append(b, " metric "...)
		b = strconv.AppendUint(b, uint64(r.Metric), 10)
	}
	if r.OnLink {
		b = append(b, " onlink"...)
	}
	return b
}

func (r Route) appendDst(b []byte) []byte {
	switch {
	case !r.Dst.IsValid():
		return append(b, "invalid"...)
	case r.Dst == r.defaultDst():
		return append(b, "default"...)
	case r.Dst.IsSingleIP():
		return r.Dst.Addr().AppendTo(b)
	}
	return r.Dst.AppendTo(b)
}

// defaultDst returns the prefix the word "default" stands for in r: ::/0
// when r's gateway or source address is IPv6 (as in `ip -6 route`), else
// 0.0.0.0/0.
func (r Route) defaultDst() netip.Prefix {
	if r.Gateway.Is6() || r.PrefSrc.Is6() {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
}

// Format returns routes as `ip route` prints them: one line per route, each
// ending in a newline. It does not sort; Table.Routes returns them in the
// kernel's order.
func Format(routes []Route) string {
	b := make([]byte, 0, 80*len(routes))
	for _, r := range routes {
		b = r.AppendTo(b)
		b = append(b, '\n')
	}
	return string(b)
}

// Route keywords Parse knows, as bits for spotting duplicates.
const (
	kwVia = 1 << iota
	kwDev
	kwProto
	kwScope
	kwSrc
	kwMetric
	kwOnlink
	kwLinkdown
	kwPref
)

var keywords = map[string]int{
	"via":      kwVia,
	"dev":      kwDev,
	"proto":    kwProto,
	"scope":    kwScope,
	"src":      kwSrc,
	"metric":   kwMetric,
	"onlink":   kwOnlink,
	"linkdown": kwLinkdown,
	"pref":     kwPref,
}

// Parse parses one line of `ip route` output, such as
// "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird".
//
// It accepts what iproute2 prints, also with -d (an explicit "unicast",
// "proto boot", "scope global") and with numeric names (-N, "proto 12",
// "scope 253"). Fields after the destination may come in any order, each at
// most once. A line without "proto" has protocol ProtoBoot, as iproute2
// omits it. The word "default" stands for 0.0.0.0/0, or ::/0 when the line's
// via or src address is IPv6. The state words "linkdown" and "pref
// low|medium|high" (IPv6) are accepted and dropped. Anything else is an
// error that names the offending token.
func Parse(line string) (Route, error) {
	r, err := parse(strings.Fields(line))
	if err != nil {
		return Route{}, fmt.Errorf("parse route %q: %w", line, err)
	}
	return r, nil
}

func parse(f []string) (Route, error) {
	r := Route{Type: Unicast, Protocol: ProtoBoot}
	if len(f) == 0 {
		return r, errors.New("empty")
	}
	if t, ok := parseType(f[0]); ok {
		r.Type = t
		f = f[1:]
	}
	if len(f) == 0 {
		return r, errors.New("missing destination")
	}
	dst, isDefault, err := parseDst(f[0])
	if err != nil {
		return r, err
	}
	r.Dst = dst
	seen := 0
	for f = f[1:]; len(f) > 0; {
		key := f[0]
		kw, ok := keywords[key]
		if !ok {
			return r, fmt.Errorf("unexpected %q", key)
		}
		if seen&kw != 0 {
			return r, fmt.Errorf("duplicate %q", key)
		}
		seen |= kw
		f = f[1:]
		switch kw {
		case kwOnlink:
			r.OnLink = true
			continue
		case kwLinkdown:
			continue
		}
		if len(f) == 0 {
			return r, fmt.Errorf("missing value after %q", key)
		}
		val := f[0]
		f = f[1:]
		switch kw {
		case kwVia:
			r.Gateway, err = netip.ParseAddr(val)
			if err != nil {
				return r, fmt.Errorf("bad gateway %q", val)
			}
		case kwDev:
			r.Dev = val
		case kwProto:
			n, ok := parseName(val, protoNames[:])
			if !ok {
				return r, fmt.Errorf("bad protocol %q", val)
			}
			r.Protocol = Protocol(n)
		case kwScope:
			n, ok := parseName(val, scopeNames[:])
			if !ok {
				return r, fmt.Errorf("bad scope %q", val)
			}
			r.Scope = Scope(n)
		case kwSrc:
			r.PrefSrc, err = netip.ParseAddr(val)
			if err != nil {
				return r, fmt.Errorf("bad source %q", val)
			}
		case kwMetric:
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return r, fmt.Errorf("bad metric %q", val)
			}
			r.Metric = uint32(n)
		case kwPref:
			if val != "low" && val != "medium" && val != "high" {
				return r, fmt.Errorf("bad pref %q", val)
			}
		}
	}
	if isDefault {
		r.Dst = r.defaultDst()
	}
	return r, nil
}

// parseType recognises a route type word. Numbers are not type words: a
// token starting with a digit is a destination, as in iproute2.
func parseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if s == n {
			return Type(i), true
		}
	}
	return 0, false
}

func parseDst(s string) (dst netip.Prefix, isDefault bool, err error) {
	if s == "default" {
		return netip.Prefix{}, true, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, false, fmt.Errorf("bad destination %q", s)
		}
		if p != p.Masked() {
			return p, false, fmt.Errorf("bad destination %q: host bits set", s)
		}
		return p, false, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false, fmt.Errorf("bad destination %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), false, nil
}

// parseName returns the number of the name s in names, or s as a decimal
// number from 0 to 255.
func parseName(s string, names []string) (uint8, bool) {
	for i, n := range names {
		if n != "" && s == n {
			return uint8(i), true
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	return uint8(n), err == nil
}

// ParseAll parses `ip route` output, one route per line. Blank lines and
// lines starting with '#' are skipped. Errors carry the 1-based line number.
func ParseAll(text string) ([]Route, error) {
	var routes []Route
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		r, err := parse(f)
		if err != nil {
			return nil, fmt.Errorf("line %d: parse route %q: %w", i+1, strings.TrimSpace(line), err)
		}
		routes = append(routes, r)
	}
	return routes, nil
}

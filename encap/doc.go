// Package encap implements IPv4-in-IPv4 tunnelling (RFC 2003, "IPIP") the
// way Linux's fallback tunnel device tunl0 does it, which is the device
// Calico uses in ipipMode Always and CrossSubnet.
//
// # Encapsulation
//
// [Encapsulate] and [EncapsulateInPlace] prepend a 20-byte outer IPv4
// header (no options) to an inner IPv4 packet. The outer fields follow
// Linux's defaults for tunl0, confirmed in the kernel sources
// (net/ipv4/ip_tunnel.c, ip_tunnel_xmit; net/ipv4/ip_tunnel_core.c,
// iptunnel_xmit; include/net/inet_ecn.h):
//
//   - tunl0 is the per-namespace fallback device that ip_tunnel_init_net
//     creates from zeroed parameters, so its ttl, tos and frag_off are all 0
//     ("ip -d link show tunl0" prints "ttl inherit nopmtudisc").
//   - TTL: tnl_params->ttl == 0 means inherit, so the outer TTL is the inner
//     TTL (ip_tunnel_xmit: "if (ttl == 0) ttl = inner_iph->ttl").
//   - DSCP: tnl_params->tos == 0 and its low bit ("inherit") is clear, so the
//     outer DSCP is 0; the inner DSCP is not copied.
//   - ECN: ip_tunnel_ecn_encap calls INET_ECN_encapsulate(0, inner tos): the
//     outer ECN field copies the inner one, except that an inner CE becomes
//     ECT(0) in the outer header (RFC 3168's full-functionality rule).
//     RFC 6040's normal mode would copy CE too; after decapsulation both
//     give the same inner packet, because the inner header already says CE.
//   - DF: df = tnl_params->frag_off (0 for tunl0), then, as ignore_df is
//     false, "df |= inner_iph->frag_off & htons(IP_DF)": the outer DF is the
//     inner DF. Tunnels created over netlink (ip link add ... type ipip)
//     default to pmtudisc (ipip_netlink_parms sets frag_off = IP_DF unless
//     IFLA_IPTUN_PMTUDISC is 0) and set DF on every outer header; tunl0,
//     never configured that way, does not.
//   - ID: iptunnel_xmit always calls __ip_select_ident (also when DF is set),
//     a counter per hash bucket of (destination, source, protocol) that
//     advances by the number of GSO segments. This package does the same
//     with 256 randomly seeded atomic counters selected by a keyed hash of
//     (source, destination), so consecutive packets of one tunnel carry
//     consecutive IDs (RFC 6864 uniqueness for fragments) without a shared
//     global counter.
//   - Protocol 4, IHL 5, the outer checksum is computed (RFC 1071).
//
// # Decapsulation
//
// A [Decapsulator] validates the outer header (version, header length, total
// length, checksum, protocol 4, not a fragment), accepts only outer sources
// in its allowlist of node addresses (the role Calico's felix gives the
// iptables rule that admits IPIP only from known hosts: tunl0 itself
// accepts any source), validates the inner header (version, header length,
// total length equal to the outer payload, checksum), and applies RFC 6040
// ECN decapsulation as Linux's INET_ECN_decapsulate does. It returns the
// inner packet as a subslice of its input, or a [Reason] for the drop; every
// outcome is counted. Outer fragments are dropped (counted as
// [ReasonOuterFragment]): the engine does not reassemble.
//
// Nothing in this package allocates per packet, and nothing panics on
// malformed input.
package encap

package dataplane

import "github.com/vrouter-lab/vrouter/header"

// ICMP (RFC 792) types and codes the forwarder sends.
const (
	icmpDestUnreach  = header.ICMPv4DstUnreachable
	icmpSourceQuench = header.ICMPv4SrcQuench
	icmpTimeExceeded = header.ICMPv4TimeExceeded
	icmpParamProblem = header.ICMPv4ParamProblem

	codeNetUnreach   = 0
	codeHostUnreach  = 1
	codeFragNeeded   = 4
	codePktFiltered  = 13 // communication administratively prohibited
	codeTTLExceeded  = 0
	codeParamPointer = 0

	icmpHeaderLen = header.ICMPv4MinimumSize
	nrICMPTypes   = 18 // NR_ICMP_TYPES: the highest type Linux knows

	// icmpErrorTTL is the TTL of the errors: Linux's ICMP socket uses
	// net.ipv4.ip_default_ttl, 64.
	icmpErrorTTL = 64

	iptosTOSMask             = 0x1e       // IPTOS_TOS_MASK
	iptosPrecInternetControl = 0xc0       // IPTOS_PREC_INTERNETCONTROL
	inaddrDummy              = 0xc0000008 // 192.0.0.8, INADDR_DUMMY (RFC 7600)
)

// MaxICMPErrorLen is the largest ICMP error Forward builds: as Linux (RFC
// 1812 4.3.2.3), an error quotes as much of the offending packet as fits
// in 576 bytes, or in the MTU of the port it leaves by if that is smaller.
// An ICMP buffer of this size never truncates a quote.
const MaxICMPErrorLen = 576

// icmpIsError says which ICMP types Linux classes as error messages
// (icmp_pointers[].error): no ICMP error is sent about one. Types above
// nrICMPTypes count as errors too.
var icmpIsError = [nrICMPTypes + 1]bool{
	1: true, 2: true, icmpDestUnreach: true, icmpSourceQuench: true, 5: true,
	6: true, 7: true, 9: true, 10: true, icmpTimeExceeded: true, icmpParamProblem: true,
}

// errorAllowed applies icmp_send's rules to a packet that caused an error:
// no error about a non-first fragment, about an ICMP error (or a packet
// too short to tell), or to a source or about a destination that is not a
// unicast address (RFC 1122 3.2.2, RFC 1812 4.3.2.7). pkt is trimmed to
// its total length and its header length is ihl.
func errorAllowed(pkt []byte, ihl int) bool {
	ip := header.IPv4(pkt)
	if ip.FragmentOffset() != 0 {
		return false
	}
	src, dst := ip.SourceUint32(), ip.DestinationUint32()
	if isZeroNet(src) || isLoopback(src) || isMulticast(src) || src == limitedBroadcast ||
		isMulticast(dst) || dst == limitedBroadcast {
		return false
	}
	if ip.Protocol() == header.ICMPv4ProtocolNumber {
		if len(pkt) <= ihl {
			return false
		}
		if t := pkt[ihl]; t > nrICMPTypes || icmpIsError[t] {
			return false
		}
	}
	return true
}

// buildError writes into buf an IPv4 packet from src to dst holding an
// ICMP error of the given type, code and 32-bit rest-of-header info that
// quotes quote, and returns its length. buf must hold 28+len(quote) bytes.
func buildError(buf []byte, src, dst uint32, tos uint8, id uint16, typ, code uint8, info uint32, quote []byte) int {
	n := ipHeaderLen + icmpHeaderLen + len(quote)
	b := buf[:n]
	f := header.IPv4Fields{
		TOS:                 tos,
		TotalLength:         uint16(n),
		ID:                  id,
		FlagsFragmentOffset: 0, // no DF: Linux's ICMP socket uses IP_PMTUDISC_DONT
		TTL:                 icmpErrorTTL,
		Protocol:            header.ICMPv4ProtocolNumber,
	}
	put32(f.Src[:], src)
	put32(f.Dst[:], dst)
	header.IPv4(b).Encode(&f)

	m := header.ICMPv4(b[ipHeaderLen:])
	m.SetType(typ)
	m.SetCode(code)
	m.SetChecksum(0)
	m.SetRest(info)
	copy(m.Payload(), quote)
	m.SetChecksum(header.Checksum(m))
	return n
}

package dataplane

// ICMP (RFC 792) types and codes the forwarder sends.
const (
	icmpDestUnreach  = 3
	icmpSourceQuench = 4
	icmpTimeExceeded = 11
	icmpParamProblem = 12

	codeNetUnreach   = 0
	codeHostUnreach  = 1
	codeFragNeeded   = 4
	codePktFiltered  = 13 // communication administratively prohibited
	codeTTLExceeded  = 0
	codeParamPointer = 0

	icmpHeaderLen = 8
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
	if be16(pkt[offFrag:])&ipOffMask != 0 {
		return false
	}
	src, dst := be32(pkt[offSrc:]), be32(pkt[offDst:])
	if isZeroNet(src) || isLoopback(src) || isMulticast(src) || src == limitedBroadcast ||
		isMulticast(dst) || dst == limitedBroadcast {
		return false
	}
	if pkt[offProto] == protoICMP {
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
	b[0] = 0x45
	b[offTOS] = tos
	put16(b[offTotalLen:], uint16(n))
	put16(b[offID:], id)
	put16(b[offFrag:], 0) // no DF: Linux's ICMP socket uses IP_PMTUDISC_DONT
	b[offTTL] = icmpErrorTTL
	b[offProto] = protoICMP
	put32(b[offSrc:], src)
	put32(b[offDst:], dst)
	setHeaderChecksum(b[:ipHeaderLen])

	m := b[ipHeaderLen:]
	m[0], m[1] = typ, code
	m[2], m[3] = 0, 0
	put32(m[4:], info)
	copy(m[icmpHeaderLen:], quote)
	put16(m[2:], checksum(m))
	return n
}

package dataplane

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header layout (RFC 791).
const (
	ipHeaderLen = 20     // without options
	ipMaxHeader = 60     // IHL 15
	ipFlagDF    = 0x4000 // don't fragment, in the flags/offset word
	ipFlagMF    = 0x2000 // more fragments
	ipOffMask   = 0x1fff // fragment offset, in 8-byte units

	offTOS      = 1
	offTotalLen = 2
	offID       = 4
	offFrag     = 6
	offTTL      = 8
	offProto    = 9
	offCsum     = 10
	offSrc      = 12
	offDst      = 16

	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
)

func be16(b []byte) uint16     { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32     { return binary.BigEndian.Uint32(b) }
func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }
func put32(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }

// addr4 returns an IPv4 address as a big-endian integer; 0 if a is not
// IPv4.
func addr4(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return be32(b[:])
}

// addrFrom4 is the inverse of addr4.
func addrFrom4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// sum adds b to a one's complement sum of 16-bit big-endian words (RFC
// 1071), carrying in 64 bits; an odd final byte is padded with zero.
func sum(b []byte, acc uint64) uint64 {
	for len(b) >= 8 {
		acc += uint64(be32(b)) + uint64(be32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		acc += uint64(be32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(be16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// fold folds a sum to 16 bits with end-around carry.
func fold(acc uint64) uint16 {
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// checksum returns the Internet checksum of b: the one's complement of the
// one's complement sum of its words.
func checksum(b []byte) uint16 { return ^fold(sum(b, 0)) }

// headerOK reports whether an IPv4 header's checksum verifies.
func headerOK(hdr []byte) bool { return fold(sum(hdr, 0)) == 0xffff }

// setHeaderChecksum computes and stores the header checksum of hdr.
func setHeaderChecksum(hdr []byte) {
	hdr[offCsum], hdr[offCsum+1] = 0, 0
	put16(hdr[offCsum:], checksum(hdr))
}

// decTTL decrements the TTL of a header and updates its checksum
// incrementally by RFC 1624 equation 3, HC' = ~(~HC + ~m + m'), where m is
// the 16-bit word holding TTL and protocol.
func decTTL(hdr []byte) {
	old := be16(hdr[offTTL:])
	hdr[offTTL]--
	m := be16(hdr[offTTL:])
	hc := be16(hdr[offCsum:])
	acc := uint64(^hc) + uint64(^old) + uint64(m)
	put16(hdr[offCsum:], ^fold(acc))
}

// isZeroNet reports whether a is in 0.0.0.0/8, isLoopback whether it is in
// 127.0.0.0/8, isMulticast whether it is in 224.0.0.0/4.
func isZeroNet(a uint32) bool   { return a>>24 == 0 }
func isLoopback(a uint32) bool  { return a>>24 == 127 }
func isMulticast(a uint32) bool { return a>>28 == 0xe }

const limitedBroadcast = 0xffffffff

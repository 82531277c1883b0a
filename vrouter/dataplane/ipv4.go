package dataplane

import (
	"encoding/binary"
	"net/netip"

	"github.com/vrouter-lab/vrouter/header"
)

// ipHeaderLen is the length of an IPv4 header without options.
const ipHeaderLen = header.IPv4MinimumSize

func be32(b []byte) uint32     { return binary.BigEndian.Uint32(b) }
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

// isZeroNet reports whether a is in 0.0.0.0/8, isLoopback whether it is in
// 127.0.0.0/8, isMulticast whether it is in 224.0.0.0/4.
func isZeroNet(a uint32) bool   { return a>>24 == 0 }
func isLoopback(a uint32) bool  { return a>>24 == 127 }
func isMulticast(a uint32) bool { return a>>28 == 0xe }

const limitedBroadcast = 0xffffffff

package encap

import (
	"errors"
	"net/netip"

	"github.com/vrouter-lab/vrouter/header"
)

// HeaderLen is the length of the outer IPv4 header this package writes: 20
// bytes, no options. Packet buffers that are encapsulated in place reserve
// at least this much headroom.
const HeaderLen = header.IPv4MinimumSize

// ProtocolIPIP is the IP protocol number of IPv4-in-IPv4 (RFC 2003).
const ProtocolIPIP = header.IPIPProtocolNumber

// MaxInnerLen is the longest inner packet that can be encapsulated: the
// outer total length is a 16-bit field.
const MaxInnerLen = 0xffff - HeaderLen

// ECN field values (RFC 3168), the low two bits of the TOS byte.
const (
	ecnMask   = header.IPv4ECNMask
	ecnNotECT = header.IPv4ECNNotECT
	ecnECT1   = header.IPv4ECNECT1
	ecnECT0   = header.IPv4ECNECT0
	ecnCE     = header.IPv4ECNCE
)

// Errors returned by the encapsulation functions. They are fixed values, so
// returning one does not allocate; compare with errors.Is or ==.
var (
	// ErrShortBuffer: the destination buffer, or the headroom, cannot hold
	// the outer header plus the inner packet.
	ErrShortBuffer = errors.New("encap: buffer too short for outer header")
	// ErrNotIPv4Address: the source or destination is not an IPv4 address.
	ErrNotIPv4Address = errors.New("encap: tunnel endpoint is not an IPv4 address")
	// ErrInvalidInner: the inner packet does not start with a well-formed
	// IPv4 header (version 4, header length at least 20 bytes and within
	// the packet, total length equal to the packet's length).
	ErrInvalidInner = errors.New("encap: inner packet is not a well-formed IPv4 packet")
	// ErrTooBig: the encapsulated packet would exceed 65535 bytes.
	ErrTooBig = errors.New("encap: encapsulated packet would exceed 65535 bytes")
)

// Encapsulate writes the outer IPv4 header for the tunnel src→remote
// followed by a copy of inner into dst, and returns the number of bytes
// written (HeaderLen + len(inner)). dst and inner may overlap (for example
// dst = buf[h-20:] and inner = buf[h:]). The outer fields follow Linux's
// tunl0 (see the package documentation): TTL and DF from the inner header,
// DSCP 0, ECN per INET_ECN_encapsulate, a per-tunnel incrementing ID, and
// the header checksum.
func Encapsulate(dst, inner []byte, src, remote netip.Addr) (int, error) {
	n := HeaderLen + len(inner)
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	s, d, err := endpoints(src, remote)
	if err != nil {
		return 0, err
	}
	if err := checkInner(inner); err != nil {
		return 0, err
	}
	// Read everything needed from inner before the copy: the buffers may
	// overlap.
	in := header.IPv4(inner)
	tos, ttl, frag := in.TOS(), in.TTL(), in.FlagsFragmentOffset()
	copy(dst[HeaderLen:n], inner)
	writeHeader(dst[:HeaderLen], n, tos, ttl, frag, s, d, 1)
	return n, nil
}

// EncapsulateInPlace encapsulates the inner packet buf[headroom:] by
// writing the outer header into the HeaderLen bytes just before it, and
// returns the whole outer packet buf[headroom-HeaderLen:]. Nothing is
// copied; headroom must be at least HeaderLen. Outer fields are as for
// [Encapsulate].
func EncapsulateInPlace(buf []byte, headroom int, src, remote netip.Addr) ([]byte, error) {
	return EncapsulateSegments(buf, headroom, src, remote, 1)
}

// EncapsulateSegments is [EncapsulateInPlace] for a GSO super-packet that
// will later be cut into segs segments: it reserves segs consecutive outer
// IDs (the outer header carries the first; a segmenter numbers the
// following segments ID+1, ID+2, ...), as Linux reserves gso_segs IDs in
// iptunnel_xmit. segs below 1 counts as 1.
func EncapsulateSegments(buf []byte, headroom int, src, remote netip.Addr, segs int) ([]byte, error) {
	if headroom < HeaderLen || headroom > len(buf) {
		return nil, ErrShortBuffer
	}
	s, d, err := endpoints(src, remote)
	if err != nil {
		return nil, err
	}
	inner := buf[headroom:]
	if err := checkInner(inner); err != nil {
		return nil, err
	}
	if segs < 1 {
		segs = 1
	} else if segs > 0xffff {
		segs = 0xffff
	}
	out := buf[headroom-HeaderLen:]
	in := header.IPv4(inner)
	writeHeader(out[:HeaderLen], len(out), in.TOS(), in.TTL(), in.FlagsFragmentOffset(), s, d, uint32(segs))
	return out, nil
}

// endpoints returns the tunnel's source and destination as 4-byte arrays;
// IPv4-mapped IPv6 addresses are unmapped.
func endpoints(src, remote netip.Addr) (s, d [4]byte, err error) {
	src, remote = src.Unmap(), remote.Unmap()
	if !src.Is4() || !remote.Is4() {
		return s, d, ErrNotIPv4Address
	}
	return src.As4(), remote.As4(), nil
}

// checkInner reports whether inner starts with a well-formed IPv4 header
// whose total length is len(inner), and that the outer packet fits in the
// 16-bit total length.
func checkInner(inner []byte) error {
	if len(inner) > MaxInnerLen {
		return ErrTooBig
	}
	in := header.IPv4(inner)
	if !in.IsHeaderValid() || int(in.TotalLength()) != len(inner) {
		return ErrInvalidInner
	}
	return nil
}

// writeHeader writes a 20-byte outer IPv4 header into hdr for an outer
// packet of total bytes whose inner header has the given TOS, TTL and
// flags/fragment-offset word.
func writeHeader(hdr []byte, total int, innerTOS, innerTTL byte, innerFrag uint16, src, dst [4]byte, segs uint32) {
	h := header.IPv4(hdr[:HeaderLen])
	h[0] = header.IPv4Version<<4 | HeaderLen/4 // no options
	// DSCP 0 (tunl0's tos is 0, not "inherit"); ECN per
	// INET_ECN_encapsulate: copy the inner ECN field, CE becomes ECT(0).
	ecn := innerTOS & ecnMask
	if ecn == ecnCE {
		ecn = ecnECT0
	}
	h.SetTOS(ecn)
	h.SetTotalLength(uint16(total))
	h.SetID(nextID(be32(src), be32(dst), segs))
	// tunl0's frag_off is 0; the inner DF is copied (ignore_df is false).
	h.SetFlagsFragmentOffset(innerFrag & header.IPv4FlagDontFragment)
	h.SetTTL(innerTTL) // ttl 0 = inherit
	h.SetProtocol(ProtocolIPIP)
	copy(h[header.IPv4SourceOffset:header.IPv4SourceOffset+4], src[:])
	copy(h[header.IPv4DestinationOffset:header.IPv4DestinationOffset+4], dst[:])
	h.UpdateChecksum()
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

package header

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header layout (RFC 791): lengths, field offsets and flag bits.
const (
	// IPv4MinimumSize is the length of a header without options (IHL 5).
	IPv4MinimumSize = 20
	// IPv4MaximumHeaderSize is the length of a header with 40 bytes of
	// options (IHL 15).
	IPv4MaximumHeaderSize = 60
	// IPv4MaximumSize is the largest total length.
	IPv4MaximumSize = 0xffff
	// IPv4Version is the version field of every IPv4 header.
	IPv4Version = 4

	// Byte offsets of the fields.
	IPv4VersionIHLOffset   = 0
	IPv4TOSOffset          = 1
	IPv4TotalLengthOffset  = 2
	IPv4IDOffset           = 4
	IPv4FlagsFragOffset    = 6
	IPv4TTLOffset          = 8
	IPv4ProtocolOffset     = 9
	IPv4ChecksumOffset     = 10
	IPv4SourceOffset       = 12
	IPv4DestinationOffset  = 16
	IPv4OptionsOffset      = 20
	ipv4AddressSize        = 4
	ipv4PseudoAddressBytes = 2 * ipv4AddressSize

	// Bits of the flags/fragment-offset word.
	IPv4FlagDontFragment  = 0x4000
	IPv4FlagMoreFragments = 0x2000
	IPv4FragmentOffset    = 0x1fff // in 8-byte units

	// ECN field: the low two bits of the TOS byte (RFC 3168).
	IPv4ECNMask   = 0x03
	IPv4ECNNotECT = 0x00
	IPv4ECNECT1   = 0x01
	IPv4ECNECT0   = 0x02
	IPv4ECNCE     = 0x03
)

// IP protocol numbers the dataplane knows.
const (
	ICMPv4ProtocolNumber = 1
	IPIPProtocolNumber   = 4 // IPv4 in IPv4, RFC 2003
	TCPProtocolNumber    = 6
	UDPProtocolNumber    = 17
)

// IPv4 is a view of an IPv4 header and what follows it. Accessors need
// the view to be at least IPv4MinimumSize bytes (Payload and Options the
// whole header); check with IsValid or IsHeaderValid first.
type IPv4 []byte

// Version returns the version field (4 for IPv4); 0 for an empty view.
func (b IPv4) Version() int {
	if len(b) == 0 {
		return 0
	}
	return int(b[0] >> 4)
}

// HeaderLength returns the header length in bytes (IHL × 4).
func (b IPv4) HeaderLength() int { return int(b[0]&0x0f) * 4 }

// TOS returns the type-of-service byte (DSCP and ECN).
func (b IPv4) TOS() uint8 { return b[IPv4TOSOffset] }

// SetTOS sets the type-of-service byte; the checksum is not updated.
func (b IPv4) SetTOS(v uint8) { b[IPv4TOSOffset] = v }

// TotalLength returns the total length field.
func (b IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(b[IPv4TotalLengthOffset:]) }

// SetTotalLength sets the total length field; the checksum is not updated.
func (b IPv4) SetTotalLength(v uint16) { binary.BigEndian.PutUint16(b[IPv4TotalLengthOffset:], v) }

// ID returns the identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[IPv4IDOffset:]) }

// SetID sets the identification field; the checksum is not updated.
func (b IPv4) SetID(v uint16) { binary.BigEndian.PutUint16(b[IPv4IDOffset:], v) }

// FlagsFragmentOffset returns the word holding the flags (DF, MF) and
// the fragment offset.
func (b IPv4) FlagsFragmentOffset() uint16 {
	return binary.BigEndian.Uint16(b[IPv4FlagsFragOffset:])
}

// SetFlagsFragmentOffset sets the flags/fragment-offset word; the checksum
// is not updated.
func (b IPv4) SetFlagsFragmentOffset(v uint16) {
	binary.BigEndian.PutUint16(b[IPv4FlagsFragOffset:], v)
}

// DontFragment reports whether DF is set.
func (b IPv4) DontFragment() bool { return b.FlagsFragmentOffset()&IPv4FlagDontFragment != 0 }

// MoreFragments reports whether MF is set.
func (b IPv4) MoreFragments() bool { return b.FlagsFragmentOffset()&IPv4FlagMoreFragments != 0 }

// FragmentOffset returns the fragment offset in bytes.
func (b IPv4) FragmentOffset() int { return int(b.FlagsFragmentOffset()&IPv4FragmentOffset) * 8 }

// IsFragment reports whether the packet is a fragment: MF set or a
// non-zero offset.
func (b IPv4) IsFragment() bool {
	return b.FlagsFragmentOffset()&(IPv4FlagMoreFragments|IPv4FragmentOffset) != 0
}

// TTL returns the time-to-live field.
func (b IPv4) TTL() uint8 { return b[IPv4TTLOffset] }

// SetTTL sets the time-to-live field; the checksum is not updated (see
// DecrementTTL).
func (b IPv4) SetTTL(v uint8) { b[IPv4TTLOffset] = v }

// DecrementTTL decrements the TTL and updates the header checksum
// incrementally (RFC 1624), as a router forwarding the packet does.
func (b IPv4) DecrementTTL() {
	old := binary.BigEndian.Uint16(b[IPv4TTLOffset:])
	b[IPv4TTLOffset]--
	b.SetChecksum(ChecksumUpdate16(b.Checksum(), old, binary.BigEndian.Uint16(b[IPv4TTLOffset:])))
}

// Protocol returns the protocol field.
func (b IPv4) Protocol() uint8 { return b[IPv4ProtocolOffset] }

// SetProtocol sets the protocol field; the checksum is not updated.
func (b IPv4) SetProtocol(v uint8) { b[IPv4ProtocolOffset] = v }

// Checksum returns the header checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[IPv4ChecksumOffset:]) }

// SetChecksum sets the header checksum field.
func (b IPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[IPv4ChecksumOffset:], v) }

// CalculateChecksum returns the checksum the header (options included)
// should carry, computed as if the checksum field were zero.
func (b IPv4) CalculateChecksum() uint16 {
	return ^Fold(headerSum(b[:b.HeaderLength()], 0xffff0000))
}

// headerSum returns the unfolded sum of the IPv4 header h (at least 20
// bytes, options included), its fixed part in five 32-bit loads; mask is
// ANDed into the word holding TTL, protocol and checksum (0xffff0000
// leaves the checksum out).
func headerSum(h []byte, mask uint32) uint64 {
	_ = h[IPv4MinimumSize-1]
	acc := uint64(binary.BigEndian.Uint32(h[0:])) + uint64(binary.BigEndian.Uint32(h[4:])) +
		uint64(binary.BigEndian.Uint32(h[8:])&mask) +
		uint64(binary.BigEndian.Uint32(h[12:])) + uint64(binary.BigEndian.Uint32(h[16:]))
	if len(h) > IPv4MinimumSize {
		acc = Sum(h[IPv4MinimumSize:], acc)
	}
	return acc
}

// UpdateChecksum stores the checksum CalculateChecksum returns.
func (b IPv4) UpdateChecksum() { b.SetChecksum(b.CalculateChecksum()) }

// IsChecksumValid reports whether the header's checksum verifies. The view
// must hold the whole header.
func (b IPv4) IsChecksumValid() bool {
	return Fold(headerSum(b[:b.HeaderLength()], 0xffffffff)) == 0xffff
}

// SourceAddress returns the source address.
func (b IPv4) SourceAddress() netip.Addr {
	return netip.AddrFrom4([4]byte(b[IPv4SourceOffset : IPv4SourceOffset+ipv4AddressSize]))
}

// DestinationAddress returns the destination address.
func (b IPv4) DestinationAddress() netip.Addr {
	return netip.AddrFrom4([4]byte(b[IPv4DestinationOffset : IPv4DestinationOffset+ipv4AddressSize]))
}

// SourceUint32 returns the source address as a big-endian integer, the
// form route and martian checks compare cheaply.
func (b IPv4) SourceUint32() uint32 { return binary.BigEndian.Uint32(b[IPv4SourceOffset:]) }

// DestinationUint32 returns the destination address as a big-endian
// integer.
func (b IPv4) DestinationUint32() uint32 { return binary.BigEndian.Uint32(b[IPv4DestinationOffset:]) }

// SetSourceAddress sets the source address (a must be IPv4 or IPv4-mapped);
// the checksum is not updated.
func (b IPv4) SetSourceAddress(a netip.Addr) {
	v := a.Unmap().As4()
	copy(b[IPv4SourceOffset:], v[:])
}

// SetDestinationAddress sets the destination address (a must be IPv4 or
// IPv4-mapped); the checksum is not updated.
func (b IPv4) SetDestinationAddress(a netip.Addr) {
	v := a.Unmap().As4()
	copy(b[IPv4DestinationOffset:], v[:])
}

// Options returns the options, the bytes between the fixed header and the
// header length.
func (b IPv4) Options() []byte { return b[IPv4OptionsOffset:b.HeaderLength()] }

// Payload returns what follows the header up to the total length.
func (b IPv4) Payload() []byte { return b[b.HeaderLength():b.TotalLength()] }

// PseudoHeaderSum returns the unfolded one's complement sum of the
// TCP/UDP pseudo-header (source, destination, protocol, length) for a
// transport segment of length bytes, to continue with [Sum] over the
// segment.
func (b IPv4) PseudoHeaderSum(protocol uint8, length int) uint64 {
	return Sum(b[IPv4SourceOffset:IPv4SourceOffset+ipv4PseudoAddressBytes], uint64(protocol)+uint64(length))
}

// IsHeaderValid reports whether the view starts with a well-formed header:
// version 4, a header length of at least 20 bytes that the view holds.
// It does not look at the total length or the checksum.
func (b IPv4) IsHeaderValid() bool {
	if len(b) < IPv4MinimumSize || b[0]>>4 != IPv4Version {
		return false
	}
	ihl := b.HeaderLength()
	return ihl >= IPv4MinimumSize && ihl <= len(b)
}

// IsValid reports whether the view holds a well-formed IPv4 packet of
// pktSize bytes or fewer: IsHeaderValid, and a total length between the
// header length and both pktSize and the view's length. It does not
// verify the checksum (IsChecksumValid).
func (b IPv4) IsValid(pktSize int) bool {
	if !b.IsHeaderValid() {
		return false
	}
	tot := int(b.TotalLength())
	return tot >= b.HeaderLength() && tot <= pktSize && tot <= len(b)
}

// IPv4Fields are the fields Encode writes into a 20-byte header.
type IPv4Fields struct {
	TOS                 uint8
	TotalLength         uint16
	ID                  uint16
	FlagsFragmentOffset uint16
	TTL                 uint8
	Protocol            uint8
	Src, Dst            [4]byte
}

// Encode writes a 20-byte header (version 4, IHL 5, no options) with the
// fields f and its checksum into b.
func (b IPv4) Encode(f *IPv4Fields) {
	_ = b[IPv4MinimumSize-1]
	b[0] = IPv4Version<<4 | IPv4MinimumSize/4
	b[IPv4TOSOffset] = f.TOS
	binary.BigEndian.PutUint16(b[IPv4TotalLengthOffset:], f.TotalLength)
	binary.BigEndian.PutUint16(b[IPv4IDOffset:], f.ID)
	binary.BigEndian.PutUint16(b[IPv4FlagsFragOffset:], f.FlagsFragmentOffset)
	b[IPv4TTLOffset] = f.TTL
	b[IPv4ProtocolOffset] = f.Protocol
	b[IPv4ChecksumOffset], b[IPv4ChecksumOffset+1] = 0, 0
	copy(b[IPv4SourceOffset:IPv4SourceOffset+ipv4AddressSize], f.Src[:])
	copy(b[IPv4DestinationOffset:IPv4DestinationOffset+ipv4AddressSize], f.Dst[:])
	binary.BigEndian.PutUint16(b[IPv4ChecksumOffset:], ^Fold(headerSum(b[:IPv4MinimumSize], 0xffff0000)))
}

// IsIPIP reports whether the view starts with the header of an IPv4 packet
// carrying IPv4 (protocol 4). It checks only the version and protocol.
func (b IPv4) IsIPIP() bool {
	return len(b) >= IPv4MinimumSize && b[0]>>4 == IPv4Version && b[IPv4ProtocolOffset] == IPIPProtocolNumber
}

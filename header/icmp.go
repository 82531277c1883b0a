package header

import "encoding/binary"

// ICMPv4 layout (RFC 792).
const (
	// ICMPv4MinimumSize is the length of the ICMP header: type, code,
	// checksum and 4 bytes of rest-of-header.
	ICMPv4MinimumSize = 8

	ICMPv4TypeOffset     = 0
	ICMPv4CodeOffset     = 1
	ICMPv4ChecksumOffset = 2
	ICMPv4RestOffset     = 4 // the 32-bit rest-of-header (ID and sequence, pointer, MTU)
)

// ICMPv4 types.
const (
	ICMPv4EchoReply      = 0
	ICMPv4DstUnreachable = 3
	ICMPv4SrcQuench      = 4
	ICMPv4Redirect       = 5
	ICMPv4Echo           = 8
	ICMPv4TimeExceeded   = 11
	ICMPv4ParamProblem   = 12
)

// ICMPv4 is a view of an ICMP message: its 8-byte header and the data that
// follows. Accessors need at least ICMPv4MinimumSize bytes.
type ICMPv4 []byte

// Type returns the message type.
func (b ICMPv4) Type() uint8 { return b[ICMPv4TypeOffset] }

// SetType sets the message type.
func (b ICMPv4) SetType(t uint8) { b[ICMPv4TypeOffset] = t }

// Code returns the message code.
func (b ICMPv4) Code() uint8 { return b[ICMPv4CodeOffset] }

// SetCode sets the message code.
func (b ICMPv4) SetCode(c uint8) { b[ICMPv4CodeOffset] = c }

// Checksum returns the checksum field.
func (b ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ICMPv4ChecksumOffset:]) }

// SetChecksum sets the checksum field.
func (b ICMPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[ICMPv4ChecksumOffset:], v) }

// Rest returns the 32-bit rest-of-header: identifier and sequence of an
// echo, the pointer of a parameter problem (top byte), the next-hop MTU of
// "fragmentation needed" (low 16 bits).
func (b ICMPv4) Rest() uint32 { return binary.BigEndian.Uint32(b[ICMPv4RestOffset:]) }

// SetRest sets the 32-bit rest-of-header.
func (b ICMPv4) SetRest(v uint32) { binary.BigEndian.PutUint32(b[ICMPv4RestOffset:], v) }

// Ident returns an echo's identifier.
func (b ICMPv4) Ident() uint16 { return binary.BigEndian.Uint16(b[ICMPv4RestOffset:]) }

// Sequence returns an echo's sequence number.
func (b ICMPv4) Sequence() uint16 { return binary.BigEndian.Uint16(b[ICMPv4RestOffset+2:]) }

// MTU returns the next-hop MTU of a "fragmentation needed" message.
func (b ICMPv4) MTU() uint16 { return binary.BigEndian.Uint16(b[ICMPv4RestOffset+2:]) }

// Payload returns the data after the header (for an error, the quoted
// packet).
func (b ICMPv4) Payload() []byte { return b[ICMPv4MinimumSize:] }

// CalculateChecksum returns the checksum the whole message should carry,
// computed as if the checksum field were zero.
func (b ICMPv4) CalculateChecksum() uint16 {
	acc := Sum(b[:ICMPv4ChecksumOffset], 0)
	return ^Fold(Sum(b[ICMPv4ChecksumOffset+2:], acc))
}

// IsChecksumValid reports whether the message's checksum verifies.
func (b ICMPv4) IsChecksumValid() bool { return Fold(Sum(b, 0)) == 0xffff }

// IsValid reports whether the view is long enough for the header.
func (b ICMPv4) IsValid() bool { return len(b) >= ICMPv4MinimumSize }

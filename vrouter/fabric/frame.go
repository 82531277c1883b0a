package fabric

import (
	"encoding/binary"
	"errors"
	"io"

	"golang.org/x/sys/unix"
)

// GSO is the segmentation-offload metadata of a frame: the fields of the
// kernel's struct virtio_net_hdr (include/uapi/linux/virtio_net.h), which a
// TUN device opened with IFF_VNET_HDR puts before every packet it hands over
// and expects before every packet written to it. A zero GSO describes an
// ordinary packet with a complete checksum.
//
// With GSOType other than GSONone the packet is a super-packet (up to 64 KB)
// that the receiving TUN device, or whoever needs it, cuts into segments of
// GSOSize payload bytes.
type GSO struct {
	// Flags is virtio_net_hdr.flags: FlagNeedsCsum, FlagDataValid.
	Flags uint8
	// GSOType is virtio_net_hdr.gso_type: GSONone, GSOTCPv4, GSOUDP,
	// GSOTCPv6 or GSOUDPL4, possibly ORed with GSOECN.
	GSOType uint8
	// HdrLen is virtio_net_hdr.hdr_len: the length of the headers (IP plus
	// transport) copied into every segment.
	HdrLen uint16
	// GSOSize is virtio_net_hdr.gso_size: the payload bytes per segment
	// (the MSS for TCP).
	GSOSize uint16
	// CsumStart is virtio_net_hdr.csum_start: where checksumming starts,
	// from the start of the packet, when Flags has FlagNeedsCsum.
	CsumStart uint16
	// CsumOffset is virtio_net_hdr.csum_offset: where, after CsumStart,
	// the checksum is stored.
	CsumOffset uint16
}

// Values of GSO.Flags and GSO.GSOType (VIRTIO_NET_HDR_F_* and
// VIRTIO_NET_HDR_GSO_* in the kernel).
const (
	FlagNeedsCsum = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM // checksum from CsumStart still to be computed
	FlagDataValid = unix.VIRTIO_NET_HDR_F_DATA_VALID // checksum already verified

	GSONone  = unix.VIRTIO_NET_HDR_GSO_NONE   // not a super-packet
	GSOTCPv4 = unix.VIRTIO_NET_HDR_GSO_TCPV4  // IPv4 TCP (TSO)
	GSOUDP   = unix.VIRTIO_NET_HDR_GSO_UDP    // UDP fragmentation offload (UFO)
	GSOTCPv6 = unix.VIRTIO_NET_HDR_GSO_TCPV6  // IPv6 TCP
	GSOUDPL4 = unix.VIRTIO_NET_HDR_GSO_UDP_L4 // UDP segmentation (USO)
	GSOECN   = unix.VIRTIO_NET_HDR_GSO_ECN    // ORed in: the TCP super-packet has CWR set
)

// VirtioNetHdrLen is the size of struct virtio_net_hdr, the prefix of every
// packet on a TUN device opened with IFF_VNET_HDR.
const VirtioNetHdrLen = 10

// IsGSO reports whether the metadata describes a super-packet to be
// segmented.
func (g GSO) IsGSO() bool { return g.GSOType&^GSOECN != GSONone }

// DecodeVirtioNetHdr reads a struct virtio_net_hdr as a TUN device with
// IFF_VNET_HDR writes it (in the host's byte order) from the first
// VirtioNetHdrLen bytes of b.
func DecodeVirtioNetHdr(b []byte) (GSO, error) {
	if len(b) < VirtioNetHdrLen {
		return GSO{}, io.ErrShortBuffer
	}
	return GSO{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.NativeEndian.Uint16(b[2:]),
		GSOSize:    binary.NativeEndian.Uint16(b[4:]),
		CsumStart:  binary.NativeEndian.Uint16(b[6:]),
		CsumOffset: binary.NativeEndian.Uint16(b[8:]),
	}, nil
}

// PutVirtioNetHdr writes g as a struct virtio_net_hdr, in the host's byte
// order as a TUN device with IFF_VNET_HDR reads it, into the first
// VirtioNetHdrLen bytes of b.
func (g GSO) PutVirtioNetHdr(b []byte) error {
	if len(b) < VirtioNetHdrLen {
		return io.ErrShortBuffer
	}
	b[0] = g.Flags
	b[1] = g.GSOType
	binary.NativeEndian.PutUint16(b[2:], g.HdrLen)
	binary.NativeEndian.PutUint16(b[4:], g.GSOSize)
	binary.NativeEndian.PutUint16(b[6:], g.CsumStart)
	binary.NativeEndian.PutUint16(b[8:], g.CsumOffset)
	return nil
}

// Frame is what crosses the fabric: one IPv4 packet (a whole GSO
// super-packet when GSO says so) and its offload metadata.
type Frame struct {
	GSO    GSO
	Packet []byte
}

// Version is the version of the frame header this package writes and the
// only one it accepts.
const Version = 1

// HeaderLen is the length of the header before the packet in every fabric
// datagram:
//
//	offset size field
//	     0    1 version (Version)
//	     1    1 flags (none are defined; must be 0)
//	     2    1 GSO.Flags
//	     3    1 GSO.GSOType
//	     4    2 GSO.HdrLen
//	     6    2 GSO.GSOSize
//	     8    2 GSO.CsumStart
//	    10    2 GSO.CsumOffset
//	    12    4 packet length, which must be the rest of the datagram
//
// Multi-byte fields are big-endian.
const HeaderLen = 16

// ErrBadFrame is returned (possibly wrapped; test with errors.Is) for a
// datagram that is not a well-formed frame: too short, an unknown version
// or flags, a length field that disagrees with the datagram, or GSO
// metadata that points outside the packet.
var ErrBadFrame = errors.New("fabric: malformed frame")

// frameError is a specific ErrBadFrame; the values are preallocated so
// that rejecting a frame on the receive path does not allocate.
type frameError struct{ msg string }

func (e *frameError) Error() string        { return "fabric: malformed frame: " + e.msg }
func (e *frameError) Is(target error) bool { return target == ErrBadFrame }

var (
	errShortHeader = &frameError{"shorter than the header"}
	errVersion     = &frameError{"unknown version"}
	errFlags       = &frameError{"unknown header flags"}
	errLength      = &frameError{"length field disagrees with the datagram"}
	errEmpty       = &frameError{"empty packet"}
	errGSOFlags    = &frameError{"unknown GSO flags"}
	errGSOType     = &frameError{"unknown GSO type"}
	errGSOSize     = &frameError{"GSO super-packet without a segment size"}
	errGSOHdrLen   = &frameError{"GSO header length beyond the packet"}
	errGSOCsum     = &frameError{"checksum offset beyond the packet"}
)

// putHeader writes the frame header for a packet of n bytes with metadata
// g into h.
func putHeader(h *[HeaderLen]byte, g *GSO, n int) {
	h[0] = Version
	h[1] = 0
	h[2] = g.Flags
	h[3] = g.GSOType
	binary.BigEndian.PutUint16(h[4:], g.HdrLen)
	binary.BigEndian.PutUint16(h[6:], g.GSOSize)
	binary.BigEndian.PutUint16(h[8:], g.CsumStart)
	binary.BigEndian.PutUint16(h[10:], g.CsumOffset)
	binary.BigEndian.PutUint32(h[12:], uint32(n))
}

// parseHeader decodes and checks the header of a datagram whose packet
// part is n bytes long.
func parseHeader(h *[HeaderLen]byte, n int) (GSO, error) {
	if h[0] != Version {
		return GSO{}, errVersion
	}
	if h[1] != 0 {
		return GSO{}, errFlags
	}
	if uint64(binary.BigEndian.Uint32(h[12:])) != uint64(n) {
		return GSO{}, errLength
	}
	g := GSO{
		Flags:      h[2],
		GSOType:    h[3],
		HdrLen:     binary.BigEndian.Uint16(h[4:]),
		GSOSize:    binary.BigEndian.Uint16(h[6:]),
		CsumStart:  binary.BigEndian.Uint16(h[8:]),
		CsumOffset: binary.BigEndian.Uint16(h[10:]),
	}
	return g, checkFrame(&g, n)
}

// checkFrame checks that a packet of n bytes is not empty and that its
// metadata is something a TUN device would accept and stays inside it.
func checkFrame(g *GSO, n int) error {
	if n == 0 {
		return errEmpty
	}
	if g.Flags&^(FlagNeedsCsum|FlagDataValid) != 0 {
		return errGSOFlags
	}
	switch g.GSOType &^ GSOECN {
	case GSONone:
		if g.GSOType != GSONone {
			return errGSOType // ECN alone
		}
	case GSOTCPv4, GSOUDP, GSOTCPv6, GSOUDPL4:
		if g.GSOSize == 0 {
			return errGSOSize
		}
		if int(g.HdrLen) > n {
			return errGSOHdrLen
		}
	default:
		return errGSOType
	}
	if g.Flags&FlagNeedsCsum != 0 && int(g.CsumStart)+int(g.CsumOffset)+2 > n {
		return errGSOCsum
	}
	return nil
}

// DecodeFrame decodes one fabric datagram. The returned frame's Packet
// aliases b. Any malformation yields an error matching ErrBadFrame.
func DecodeFrame(b []byte) (Frame, error) {
	if len(b) < HeaderLen {
		return Frame{}, errShortHeader
	}
	g, err := parseHeader((*[HeaderLen]byte)(b), len(b)-HeaderLen)
	if err != nil {
		return Frame{}, err
	}
	return Frame{GSO: g, Packet: b[HeaderLen:]}, nil
}

// AppendFrame appends f encoded as a fabric datagram (header and packet) to
// dst. It checks f as DecodeFrame would, so what it returns decodes back to
// f.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if err := checkFrame(&f.GSO, len(f.Packet)); err != nil {
		return dst, err
	}
	if uint64(len(f.Packet)) > maxPacket {
		return dst, ErrTooLarge
	}
	var h [HeaderLen]byte
	putHeader(&h, &f.GSO, len(f.Packet))
	dst = append(dst, h[:]...)
	return append(dst, f.Packet...), nil
}

// maxPacket bounds the packet length the header can describe.
const maxPacket = 1<<32 - 1

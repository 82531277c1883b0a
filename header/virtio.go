package header

import (
	"encoding/binary"
	"io"

	"golang.org/x/sys/unix"
)

// GSO is the segmentation-offload metadata of a packet: the fields of the
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
// packet on a TUN device opened with IFF_VNET_HDR, and of the GSO fields
// Put and DecodeGSO handle.
const VirtioNetHdrLen = 10

// IsGSO reports whether the metadata describes a super-packet to be
// segmented.
func (g GSO) IsGSO() bool { return g.GSOType&^GSOECN != GSONone }

// Segments returns how many segments a super-packet of n bytes (headers
// included) is cut into; 1 for anything else.
func (g GSO) Segments(n int) int {
	if !g.IsGSO() || g.GSOSize == 0 || n <= int(g.HdrLen) {
		return 1
	}
	return (n - int(g.HdrLen) + int(g.GSOSize) - 1) / int(g.GSOSize)
}

// DecodeVirtioNetHdr reads a struct virtio_net_hdr as a TUN device with
// IFF_VNET_HDR writes it (in the host's byte order) from the first
// VirtioNetHdrLen bytes of b.
func DecodeVirtioNetHdr(b []byte) (GSO, error) {
	if len(b) < VirtioNetHdrLen {
		return GSO{}, io.ErrShortBuffer
	}
	_ = b[VirtioNetHdrLen-1]
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
	_ = b[VirtioNetHdrLen-1]
	b[0] = g.Flags
	b[1] = g.GSOType
	binary.NativeEndian.PutUint16(b[2:], g.HdrLen)
	binary.NativeEndian.PutUint16(b[4:], g.GSOSize)
	binary.NativeEndian.PutUint16(b[6:], g.CsumStart)
	binary.NativeEndian.PutUint16(b[8:], g.CsumOffset)
	return nil
}

// DecodeGSO reads the fields of g in virtio_net_hdr's order but in network
// byte order (as the fabric's frame and tap headers carry them) from the
// first VirtioNetHdrLen bytes of b, which must hold them.
func DecodeGSO(b []byte) GSO {
	_ = b[VirtioNetHdrLen-1]
	return GSO{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.BigEndian.Uint16(b[2:]),
		GSOSize:    binary.BigEndian.Uint16(b[4:]),
		CsumStart:  binary.BigEndian.Uint16(b[6:]),
		CsumOffset: binary.BigEndian.Uint16(b[8:]),
	}
}

// Put writes g in virtio_net_hdr's order but in network byte order into
// the first VirtioNetHdrLen bytes of b, which must hold them.
func (g *GSO) Put(b []byte) {
	_ = b[VirtioNetHdrLen-1]
	b[0] = g.Flags
	b[1] = g.GSOType
	binary.BigEndian.PutUint16(b[2:], g.HdrLen)
	binary.BigEndian.PutUint16(b[4:], g.GSOSize)
	binary.BigEndian.PutUint16(b[6:], g.CsumStart)
	binary.BigEndian.PutUint16(b[8:], g.CsumOffset)
}

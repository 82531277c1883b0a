package fabric

import (
	"encoding/binary"
	"errors"

	"github.com/vrouter-lab/vrouter/header"
)

// Frame is what crosses the fabric: one IPv4 packet (a whole GSO
// super-packet when GSO says so) and its offload metadata, the kernel's
// virtio_net_hdr (header.GSO).
type Frame struct {
	GSO    header.GSO
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
func putHeader(h *[HeaderLen]byte, g *header.GSO, n int) {
	h[0] = Version
	h[1] = 0
	g.Put(h[2:12])
	binary.BigEndian.PutUint32(h[12:], uint32(n))
}

// parseHeader decodes and checks the header of a datagram whose packet
// part is n bytes long.
func parseHeader(h *[HeaderLen]byte, n int) (header.GSO, error) {
	if h[0] != Version {
		return header.GSO{}, errVersion
	}
	if h[1] != 0 {
		return header.GSO{}, errFlags
	}
	if uint64(binary.BigEndian.Uint32(h[12:])) != uint64(n) {
		return header.GSO{}, errLength
	}
	g := header.DecodeGSO(h[2:12])
	return g, checkFrame(&g, n)
}

// checkFrame checks that a packet of n bytes is not empty and that its
// metadata is something a TUN device would accept and stays inside it.
func checkFrame(g *header.GSO, n int) error {
	if n == 0 {
		return errEmpty
	}
	if g.Flags&^(header.FlagNeedsCsum|header.FlagDataValid) != 0 {
		return errGSOFlags
	}
	switch g.GSOType &^ header.GSOECN {
	case header.GSONone:
		if g.GSOType != header.GSONone {
			return errGSOType // ECN alone
		}
	case header.GSOTCPv4, header.GSOUDP, header.GSOTCPv6, header.GSOUDPL4:
		if g.GSOSize == 0 {
			return errGSOSize
		}
		if int(g.HdrLen) > n {
			return errGSOHdrLen
		}
	default:
		return errGSOType
	}
	if g.Flags&header.FlagNeedsCsum != 0 && int(g.CsumStart)+int(g.CsumOffset)+2 > n {
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

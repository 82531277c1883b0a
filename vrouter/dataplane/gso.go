package dataplane

import (
	"encoding/binary"
	"errors"

	"github.com/vrouter-lab/vrouter/header"
)

// gsoHeadersLen returns the length of the headers before the payload a
// super-packet's segments share: IPv4 and TCP or UDP, or for an IPIP
// super-packet (one crossing a router between two nodes' tunl0) the outer
// header and the inner packet's. 0 when it is none of these or malformed.
func gsoHeadersLen(pkt []byte) int {
	if ip := header.IPv4(pkt); ip.IsIPIP() {
		if !ip.IsHeaderValid() {
			return 0
		}
		ihl := ip.HeaderLength()
		if inner := headersLen(pkt[ihl:]); inner != 0 {
			return ihl + inner
		}
		return 0
	}
	return headersLen(pkt)
}

// headersLen returns the length of the IPv4 and TCP or UDP headers of a
// super-packet, or 0 when it is neither or malformed.
func headersLen(pkt []byte) int {
	ip := header.IPv4(pkt)
	if !ip.IsHeaderValid() {
		return 0
	}
	ihl := ip.HeaderLength()
	switch ip.Protocol() {
	case header.TCPProtocolNumber:
		if len(pkt) < ihl+20 {
			return 0
		}
		thl := int(pkt[ihl+12]>>4) * 4
		if thl < 20 || len(pkt) < ihl+thl {
			return 0
		}
		return ihl + thl
	case header.UDPProtocolNumber:
		if len(pkt) < ihl+8 {
			return 0
		}
		return ihl + 8
	}
	return 0
}

// errSegment is returned by segment for a super-packet it cannot cut.
var errSegment = errors.New("engine: cannot segment super-packet")

// segment cuts an IPv4 TCP or UDP super-packet into the packets its
// GSO metadata describes, as the kernel's GSO would: each gets a copy of
// the headers, GSOSize bytes of payload (the last the rest), its own total
// length, IP ID, sequence number (TCP) or length (UDP) and complete
// checksums. Each is written into buf and passed to emit, which must be
// done with it before returning.
func segment(pkt []byte, g header.GSO, buf []byte, emit func(seg []byte)) error {
	hl := headersLen(pkt)
	if hl == 0 || g.GSOSize == 0 {
		return errSegment
	}
	ip := header.IPv4(pkt)
	tot := int(ip.TotalLength())
	if tot < hl || tot > len(pkt) {
		return errSegment
	}
	pkt = pkt[:tot]
	ihl := ip.HeaderLength()
	proto := ip.Protocol()
	tcp := proto == header.TCPProtocolNumber
	mss := int(g.GSOSize)
	payload := pkt[hl:]
	id := ip.ID()
	var seq uint32
	var flags byte
	if tcp {
		seq = binary.BigEndian.Uint32(pkt[ihl+4:])
		flags = pkt[ihl+13]
	}
	if len(buf) < hl+min(mss, len(payload)) {
		return errSegment
	}
	for pos, k := 0, 0; pos < len(payload) || k == 0; pos, k = pos+mss, k+1 {
		n := min(mss, len(payload)-pos)
		copy(buf, pkt[:hl])
		copy(buf[hl:], payload[pos:pos+n])
		s := header.IPv4(buf[:hl+n])
		s.SetTotalLength(uint16(hl + n))
		s.SetID(id + uint16(k))
		s.UpdateChecksum()
		l4 := s[ihl:]
		var off int
		if tcp {
			binary.BigEndian.PutUint32(l4[4:], seq+uint32(pos))
			f := flags
			if pos+n < len(payload) {
				f &^= 0x01 | 0x08 // FIN, PSH only on the last
			}
			if k > 0 {
				f &^= 0x80 // CWR only on the first
			}
			l4[13] = f
			off = 16
		} else {
			binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
			off = 6
		}
		l4[off], l4[off+1] = 0, 0
		c := ^header.Fold(header.Sum(l4, s.PseudoHeaderSum(proto, len(l4))))
		if !tcp && c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[off:], c)
		emit(s)
		if n <= 0 {
			break
		}
	}
	return nil
}

// completeChecksum computes the checksum a NEEDS_CSUM packet leaves to
// its sender: the one's complement sum from CsumStart to the end, stored
// at CsumStart+CsumOffset (which holds the pseudo-header's sum).
func completeChecksum(pkt []byte, g header.GSO) {
	start, at := int(g.CsumStart), int(g.CsumStart)+int(g.CsumOffset)
	if start >= len(pkt) || at+2 > len(pkt) {
		return
	}
	binary.BigEndian.PutUint16(pkt[at:], header.Checksum(pkt[start:]))
}

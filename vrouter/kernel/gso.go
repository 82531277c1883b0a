package kernel

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/header"
)

// The userspace tunl0 is a TUN device with IFF_VNET_HDR and TCP
// segmentation offload: the kernel hands over a TCP stream's data as GSO
// super-packets of up to 64 KB (one read instead of ~45) with a
// virtio_net_hdr saying how to cut them. A raw socket cannot send more
// than the underlay's MTU, and the kernel has no GSO for IPIP built by
// hand (SKB_GSO_IPXIP4 is set only by its own tunnels), so the tunnel cuts
// a super-packet here, as the kernel's GSO would, into segments of GSOSize
// payload bytes, each encapsulated: an outgoing packet is its outer and
// inner headers, written into a slot of the batch, followed by its payload,
// left where it is in the super-packet (sendmmsg gathers the two).

// maxSegHeaders is the most header bytes a segment has: the outer header,
// an inner IPv4 header with options and a TCP header with options.
const maxSegHeaders = encap.HeaderLen + 60 + 60

// errGSO is returned by encapGSO for a packet it cannot send: malformed,
// or a kind of super-packet tunl0 does not ask for.
var errGSO = errors.New("userspace tunl0: cannot segment packet")

// ipipSink receives encapGSO's packets: slot returns a buffer for one
// packet's headers (maxSegHeaders bytes), push queues a packet made of
// hdr (from slot, or nil) and payload toward remote. What push is given
// must stay untouched until the sink is flushed; payload is the caller's.
type ipipSink interface {
	slot() []byte
	push(hdr, payload []byte, remote netip.Addr)
}

// encapGSO encapsulates pkt, an IPv4 packet read from tunl0 whose
// virtio_net_hdr is g, from src to remote (RFC 2003, package encap: TTL
// and DF from the inner header, protocol 4) into sink. pkt must have
// encap.HeaderLen bytes of headroom before it in its array (buf[at:] with
// at >= encap.HeaderLen): an ordinary packet is encapsulated in place. A
// TCP super-packet (GSOTCPv4) is cut into the segments g describes, each
// with its own inner total length, IP ID, sequence number, flags (FIN and
// PSH only on the last, CWR only on the first) and complete checksums,
// and its own outer header (total length, consecutive IDs from those
// encap reserves for the super-packet). A checksum the kernel left to the
// device (FlagNeedsCsum) is completed. It returns the number of packets
// pushed.
func encapGSO(buf []byte, at int, g header.GSO, src, remote netip.Addr, sink ipipSink) (int, error) {
	if at < encap.HeaderLen || at > len(buf) {
		return 0, errGSO
	}
	pkt := header.IPv4(buf[at:])
	if !pkt.IsValid(len(pkt)) || pkt.IsFragment() && g.IsGSO() {
		return 0, errGSO
	}
	pkt = pkt[:pkt.TotalLength()]
	if !g.IsGSO() {
		if g.Flags&header.FlagNeedsCsum != 0 {
			start, at := int(g.CsumStart), int(g.CsumStart)+int(g.CsumOffset)
			if start < pkt.HeaderLength() || at+2 > len(pkt) {
				return 0, errGSO
			}
			c := header.Checksum(pkt[start:])
			if c == 0 && pkt.Protocol() == header.UDPProtocolNumber {
				c = 0xffff // UDP's "no checksum" is 0
			}
			binary.BigEndian.PutUint16(pkt[at:], c)
		}
		out, err := encap.EncapsulateInPlace(buf[:at+len(pkt)], at, src, remote)
		if err != nil {
			return 0, err
		}
		sink.push(out, nil, remote)
		return 1, nil
	}
	if g.GSOType&^header.GSOECN != header.GSOTCPv4 || pkt.Protocol() != header.TCPProtocolNumber || g.GSOSize == 0 {
		return 0, errGSO
	}
	ihl := pkt.HeaderLength()
	if len(pkt) < ihl+20 {
		return 0, errGSO
	}
	thl := int(pkt[ihl+12]>>4) * 4
	hl := ihl + thl
	if thl < 20 || len(pkt) < hl {
		return 0, errGSO
	}
	payload := pkt[hl:]
	mss := int(g.GSOSize)
	segs := max(1, (len(payload)+mss-1)/mss)
	id := pkt.ID()
	seq := binary.BigEndian.Uint32(pkt[ihl+4:])
	flags := pkt[ihl+13]
	var outer [encap.HeaderLen]byte
	for k := range segs {
		pos := k * mss
		n := min(mss, len(payload)-pos)
		slot := sink.slot()[:encap.HeaderLen+hl]
		s := header.IPv4(slot[encap.HeaderLen:])
		copy(s, pkt[:hl])
		s.SetID(id + uint16(k))
		tcp := s[ihl:]
		binary.BigEndian.PutUint32(tcp[4:], seq+uint32(pos))
		f := flags
		if pos+n < len(payload) {
			f &^= 0x01 | 0x08 // FIN, PSH only on the last
		}
		if k > 0 {
			f &^= 0x80 // CWR only on the first
		}
		tcp[13] = f
		if k == 0 {
			// The outer header as encap writes it (TTL, DF, ECN from
			// the inner header; segs IDs reserved), for an inner
			// packet that is the headers alone; lengths fixed below.
			s.SetTotalLength(uint16(hl))
			if _, err := encap.EncapsulateSegments(slot, encap.HeaderLen, src, remote, segs); err != nil {
				return 0, err
			}
			copy(outer[:], slot)
		} else {
			copy(slot, outer[:])
			o := header.IPv4(slot)
			o.SetID(header.IPv4(outer[:]).ID() + uint16(k))
		}
		s.SetTotalLength(uint16(hl + n))
		s.UpdateChecksum()
		o := header.IPv4(slot)
		o.SetTotalLength(uint16(encap.HeaderLen + hl + n))
		o.UpdateChecksum()
		tcp[16], tcp[17] = 0, 0
		seg := payload[pos : pos+n]
		sum := header.Sum(seg, header.Sum(tcp, s.PseudoHeaderSum(header.TCPProtocolNumber, thl+n)))
		binary.BigEndian.PutUint16(tcp[16:], ^header.Fold(sum))
		sink.push(slot, seg, remote)
	}
	return segs, nil
}

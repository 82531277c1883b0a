package kernel

import (
	"bytes"
	"encoding/binary"

	"github.com/vrouter-lab/vrouter/header"
)

// TCP flags the coalescer looks at.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpACK = 0x10
)

// coalescer is the decapsulating side's GRO: consecutive TCP segments of
// one flow decapsulated in one batch are joined into a super-packet
// written to tunl0 with a virtio_net_hdr (GSOTCPv4, FlagNeedsCsum), so the
// kernel routes and its TCP receives one packet instead of up to 45, as
// its own GRO does on a NIC. A segment joins the held run when it is the
// next in sequence (same addresses, ports, ACK, window, options, TOS, TTL
// and DF; flags ACK, or ACK|PSH, which ends the run), its payload is at
// most the first one's (a shorter one ends the run), its TCP checksum is
// right (the kernel trusts a NEEDS_CSUM packet's data), and the whole
// stays within 64 KB. Anything else is written as it is.
//
// Usage: for each packet, if held and add succeeds it has joined;
// otherwise write finish's packet (if held), then start with it, and if
// start declines, write the packet alone. At the end of the batch write
// finish's packet. A run's first packet is not copied until a second one
// joins, so it must stay where it is until finish.
type coalescer struct {
	buf []byte // a virtio_net_hdr, then the super-packet being built

	first     []byte // the run's first packet (buf[at:] of the caller's buffer)
	firstBuf  []byte // the caller's buffer holding first, with headroom
	firstAt   int
	n         int // bytes of packet in buf after the header; 0: still only first
	hl        int // IPv4 and TCP header length
	mss       int // the first segment's payload
	segs      int
	nextSeq   uint32
	closed    bool // nothing more may join
	pushFlags byte // PSH of the last segment
}

func newCoalescer() *coalescer {
	return &coalescer{buf: make([]byte, header.VirtioNetHdrLen+0xffff)}
}

// held reports whether a run is being built.
func (c *coalescer) held() bool { return c.first != nil }

// tcpSegment returns the header length of pkt if it is a TCP segment the
// coalescer may join (IPv4 without options, not a fragment, total length
// = len(pkt), flags ACK or ACK|PSH, some payload, a correct TCP
// checksum), else 0.
func tcpSegment(pkt []byte) int {
	ip := header.IPv4(pkt)
	if len(pkt) < 40 || pkt[0] != 0x45 || ip.Protocol() != header.TCPProtocolNumber || ip.IsFragment() ||
		int(ip.TotalLength()) != len(pkt) {
		return 0
	}
	thl := int(pkt[32]>>4) * 4
	hl := 20 + thl
	if thl < 20 || len(pkt) <= hl {
		return 0
	}
	if f := pkt[33]; f != tcpACK && f != tcpACK|tcpPSH {
		return 0
	}
	if header.Fold(header.Sum(pkt[20:], ip.PseudoHeaderSum(header.TCPProtocolNumber, len(pkt)-20))) != 0xffff {
		return 0
	}
	return hl
}

// start begins a run with the packet buf[at:] (at >= VirtioNetHdrLen),
// and reports whether it did; if not, the caller writes the packet alone.
func (c *coalescer) start(buf []byte, at int) bool {
	pkt := buf[at:]
	hl := tcpSegment(pkt)
	if hl == 0 || at < header.VirtioNetHdrLen {
		return false
	}
	c.first, c.firstBuf, c.firstAt = pkt, buf, at
	c.n, c.hl, c.mss, c.segs = 0, hl, len(pkt)-hl, 1
	c.nextSeq = binary.BigEndian.Uint32(pkt[24:]) + uint32(c.mss)
	c.pushFlags = pkt[33] & tcpPSH
	c.closed = c.pushFlags != 0
	return true
}

// add joins pkt to the held run if it may, and reports whether it did.
func (c *coalescer) add(pkt []byte) bool {
	if c.closed || len(pkt) <= c.hl || len(pkt)-c.hl > c.mss {
		return false
	}
	f := c.first
	cur := c.n
	if cur == 0 {
		cur = len(f)
	}
	if cur+len(pkt)-c.hl > 0xffff { // the IPv4 total length
		return false
	}
	if binary.BigEndian.Uint32(pkt[24:]) != c.nextSeq ||
		pkt[1] != f[1] || pkt[6] != f[6] || pkt[8] != f[8] || // TOS, DF (and the reserved flag), TTL
		!bytes.Equal(pkt[12:24], f[12:24]) || // addresses, ports
		!bytes.Equal(pkt[28:33], f[28:33]) || // ACK, data offset
		!bytes.Equal(pkt[34:36], f[34:36]) || // window
		!bytes.Equal(pkt[38:c.hl], f[38:c.hl]) || // urgent pointer, options
		tcpSegment(pkt) != c.hl {
		return false
	}
	if c.n == 0 {
		c.n = copy(c.buf[header.VirtioNetHdrLen:], f)
	}
	payload := pkt[c.hl:]
	c.n += copy(c.buf[header.VirtioNetHdrLen+c.n:], payload)
	c.segs++
	c.nextSeq += uint32(len(payload))
	c.pushFlags = pkt[33] & tcpPSH
	c.closed = c.pushFlags != 0 || len(payload) < c.mss
	return true
}

// finish ends the run and returns what to write to tunl0: a
// virtio_net_hdr and the packet (the first alone, as it came, with a zero
// header; or the super-packet with its GSO metadata and the TCP checksum
// left to the kernel).
func (c *coalescer) finish() []byte {
	defer func() { c.first, c.firstBuf = nil, nil }()
	if c.n == 0 {
		out := c.firstBuf[c.firstAt-header.VirtioNetHdrLen : c.firstAt+len(c.first)]
		clear(out[:header.VirtioNetHdrLen])
		return out
	}
	pkt := header.IPv4(c.buf[header.VirtioNetHdrLen : header.VirtioNetHdrLen+c.n])
	pkt.SetTotalLength(uint16(c.n))
	pkt.UpdateChecksum()
	pkt[33] |= c.pushFlags
	// NEEDS_CSUM: the checksum field holds the pseudo-header's sum.
	binary.BigEndian.PutUint16(pkt[36:], header.Fold(pkt.PseudoHeaderSum(header.TCPProtocolNumber, c.n-20)))
	g := header.GSO{
		Flags:      header.FlagNeedsCsum,
		GSOType:    header.GSOTCPv4,
		HdrLen:     uint16(c.hl),
		GSOSize:    uint16(c.mss),
		CsumStart:  20,
		CsumOffset: 16,
	}
	_ = g.PutVirtioNetHdr(c.buf)
	return c.buf[:header.VirtioNetHdrLen+c.n]
}

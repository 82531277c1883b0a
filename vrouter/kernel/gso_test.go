package kernel

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/header"
	"golang.org/x/sys/unix"
)

var (
	testSrc    = netip.MustParseAddr("192.168.50.10")
	testRemote = netip.MustParseAddr("192.168.50.11")
)

// tcpPacket builds an IPv4 TCP packet (DF, TTL 64, ID id, a 12-byte
// timestamp option) with complete checksums, after headroom bytes.
func tcpPacket(headroom int, id uint16, seq uint32, flags byte, tos byte, payload []byte) []byte {
	const hl = 20 + 32
	b := make([]byte, headroom+hl+len(payload))
	p := b[headroom:]
	p[0], p[1] = 0x45, tos
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], id)
	binary.BigEndian.PutUint16(p[6:], header.IPv4FlagDontFragment)
	p[8], p[9] = 64, header.TCPProtocolNumber
	copy(p[12:], []byte{10, 244, 166, 129, 10, 244, 104, 1})
	header.IPv4(p).UpdateChecksum()
	t := p[20:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 5201)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], 777)
	t[12], t[13] = 8<<4, flags
	binary.BigEndian.PutUint16(t[14:], 501)
	copy(t[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	copy(t[32:], payload)
	binary.BigEndian.PutUint16(t[16:], ^header.Fold(header.Sum(t, header.IPv4(p).PseudoHeaderSum(header.TCPProtocolNumber, len(t)))))
	return b
}

// collect is an ipipSink keeping copies of the packets.
type collect struct{ pkts [][]byte }

func (c *collect) slot() []byte { return make([]byte, maxSegHeaders) }
func (c *collect) push(hdr, payload []byte, remote netip.Addr) {
	if remote != testRemote {
		panic("wrong remote " + remote.String())
	}
	c.pkts = append(c.pkts, append(append([]byte{}, hdr...), payload...))
}

func testPayload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

// checkSegments checks that pkts are IPIP packets from testSrc to
// testRemote a Decapsulator accepts, with consecutive outer IDs, the
// inner TTL and DF copied, inner IDs from id on, valid TCP checksums and
// consecutive sequence numbers from seq, none longer than mtu, and
// returns the inner payloads joined and the TCP flags of each.
func checkSegments(t *testing.T, pkts [][]byte, mtu int, id uint16, seq uint32) ([]byte, []byte) {
	t.Helper()
	d, err := encap.NewDecapsulator(testSrc)
	if err != nil {
		t.Fatal(err)
	}
	var data, flags []byte
	var outerID uint16
	for k, p := range pkts {
		if len(p) > mtu {
			t.Errorf("segment %d: %d bytes, over the MTU %d", k, len(p), mtu)
		}
		o := header.IPv4(p)
		if o.Protocol() != encap.ProtocolIPIP || o.SourceAddress() != testSrc || o.DestinationAddress() != testRemote {
			t.Fatalf("segment %d: outer header % x", k, p[:20])
		}
		if k == 0 {
			outerID = o.ID()
		} else if o.ID() != outerID+uint16(k) {
			t.Errorf("segment %d: outer ID %d, want %d", k, o.ID(), outerID+uint16(k))
		}
		inner, _, r := d.Decapsulate(p)
		if r != encap.Accepted {
			t.Fatalf("segment %d: decapsulation: %v", k, r)
		}
		in := header.IPv4(inner)
		if o.TTL() != in.TTL() || o.DontFragment() != in.DontFragment() {
			t.Errorf("segment %d: outer TTL %d DF %v, inner %d %v", k, o.TTL(), o.DontFragment(), in.TTL(), in.DontFragment())
		}
		if in.ID() != id+uint16(k) {
			t.Errorf("segment %d: inner ID %d, want %d", k, in.ID(), id+uint16(k))
		}
		tcp := inner[20:]
		if c := header.Fold(header.Sum(tcp, in.PseudoHeaderSum(header.TCPProtocolNumber, len(tcp)))); c != 0xffff {
			t.Errorf("segment %d: TCP checksum wrong (sum %#x)", k, c)
		}
		if s := binary.BigEndian.Uint32(tcp[4:]); s != seq+uint32(len(data)) {
			t.Errorf("segment %d: seq %d, want %d", k, s, seq+uint32(len(data)))
		}
		thl := int(tcp[12]>>4) * 4
		data = append(data, tcp[thl:]...)
		flags = append(flags, tcp[13])
	}
	return data, flags
}

// A TCP super-packet from tunl0 is cut into MSS segments, each
// encapsulated (RFC 2003 fields, consecutive IDs, valid checksums), whose
// payloads are the super-packet's; FIN and PSH only on the last, CWR only
// on the first.
func TestEncapGSOSegments(t *testing.T) {
	const mss = 1428
	payload := testPayload(45*mss + 100)
	buf := tcpPacket(encap.HeaderLen, 1000, 5000, tcpACK|tcpPSH|tcpFIN|0x80, 0, payload)
	// As the kernel hands it over: checksum left to the device.
	binary.BigEndian.PutUint16(buf[encap.HeaderLen+36:], 0x1234)
	g := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4 | header.GSOECN, HdrLen: 52, GSOSize: mss, CsumStart: 20, CsumOffset: 16}
	var c collect
	n, err := encapGSO(buf, encap.HeaderLen, g, testSrc, testRemote, &c)
	if err != nil || n != 46 || len(c.pkts) != 46 {
		t.Fatalf("encapGSO: %d packets (%d pushed), %v; want 46", n, len(c.pkts), err)
	}
	data, flags := checkSegments(t, c.pkts, 1500, 1000, 5000)
	if !bytes.Equal(data, payload) {
		t.Error("segments' payloads differ from the super-packet's")
	}
	for k, f := range flags {
		want := byte(tcpACK)
		if k == 0 {
			want |= 0x80
		}
		if k == len(flags)-1 {
			want |= tcpPSH | tcpFIN
		}
		if f != want {
			t.Errorf("segment %d: flags %#x, want %#x", k, f, want)
		}
	}
}

// An ordinary packet is encapsulated in place; a checksum left to the
// device is completed.
func TestEncapGSOSingle(t *testing.T) {
	buf := tcpPacket(encap.HeaderLen, 7, 1, tcpACK, 0, testPayload(100))
	want := append([]byte{}, buf[encap.HeaderLen:]...)
	binary.BigEndian.PutUint16(buf[encap.HeaderLen+36:], 0)
	sum := header.IPv4(buf[encap.HeaderLen:]).PseudoHeaderSum(header.TCPProtocolNumber, len(want)-20)
	binary.BigEndian.PutUint16(buf[encap.HeaderLen+36:], header.Fold(sum))
	g := header.GSO{Flags: header.FlagNeedsCsum, CsumStart: 20, CsumOffset: 16}
	var c collect
	if n, err := encapGSO(buf, encap.HeaderLen, g, testSrc, testRemote, &c); err != nil || n != 1 {
		t.Fatalf("encapGSO: %d, %v", n, err)
	}
	if got := c.pkts[0][encap.HeaderLen:]; !bytes.Equal(got, want) {
		t.Errorf("inner packet\n% x\nwant\n% x", got, want)
	}
	checkSegments(t, c.pkts, 1500, 7, 1)
	// Refused: no headroom, a UDP super-packet (tunl0 asks for TSO only),
	// a truncated packet.
	if _, err := encapGSO(buf[encap.HeaderLen-1:], 19, header.GSO{}, testSrc, testRemote, &c); err == nil {
		t.Error("encapGSO without headroom accepted")
	}
	buf = tcpPacket(encap.HeaderLen, 7, 1, tcpACK, 0, testPayload(3000))
	if _, err := encapGSO(buf, encap.HeaderLen, header.GSO{GSOType: header.GSOUDP, GSOSize: 1000}, testSrc, testRemote, &c); err == nil {
		t.Error("UFO super-packet accepted")
	}
	if _, err := encapGSO(buf[:100], encap.HeaderLen, header.GSO{GSOType: header.GSOTCPv4, GSOSize: 1000}, testSrc, testRemote, &c); err == nil {
		t.Error("truncated super-packet accepted")
	}
}

// The batch gathers packets as sendmmsg's messages (headers from a slot,
// payload where it is, the outer destination), flushing when full.
func TestTxBatch(t *testing.T) {
	var got [][]byte
	var sends []int
	b := newTxBatch(4, func(msgs []mmsghdr) {
		sends = append(sends, len(msgs))
		for _, m := range msgs {
			a := (*[unix.SizeofSockaddrInet4]byte)(unsafe.Pointer(m.hdr.Name))
			if m.hdr.Namelen != unix.SizeofSockaddrInet4 || !bytes.Equal(a[4:8], testRemote.AsSlice()) {
				t.Errorf("message address % x", a[:])
			}
			var p []byte
			for _, iov := range unsafe.Slice(m.hdr.Iov, m.hdr.Iovlen) {
				p = append(p, unsafe.Slice(iov.Base, iov.Len)...)
			}
			got = append(got, p)
		}
	})
	const mss = 1000
	payload := testPayload(9*mss + 1)
	buf := tcpPacket(encap.HeaderLen, 1, 1, tcpACK, 0, payload)
	g := header.GSO{GSOType: header.GSOTCPv4, GSOSize: mss}
	if _, err := encapGSO(buf, encap.HeaderLen, g, testSrc, testRemote, b); err != nil {
		t.Fatal(err)
	}
	single := tcpPacket(encap.HeaderLen, 11, 9*mss+2, tcpACK, 0, []byte("x"))
	if _, err := encapGSO(single, encap.HeaderLen, header.GSO{}, testSrc, testRemote, b); err != nil {
		t.Fatal(err)
	}
	b.flush()
	if len(got) != 11 || !slicesEqual(sends, []int{4, 4, 3}) {
		t.Fatalf("%d packets in sends %v, want 11 in [4 4 3]", len(got), sends)
	}
	data, _ := checkSegments(t, got[:10], 1500, 1, 1)
	if !bytes.Equal(data, payload) {
		t.Error("payloads differ")
	}
	if !bytes.Equal(got[10][encap.HeaderLen:], single[encap.HeaderLen:]) {
		t.Error("the ordinary packet differs")
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// innerOf returns the inner packets of IPIP packets, each after
// encap.HeaderLen bytes of headroom (as the decapsulating loop has them).
func innerOf(pkts [][]byte) [][]byte {
	var out [][]byte
	for _, p := range pkts {
		out = append(out, append([]byte{}, p...)) // headroom = the outer header
	}
	return out
}

// coalesceAll runs the decapsulating loop's use of a coalescer over
// packets (each with encap.HeaderLen bytes of headroom) and returns what it
// writes to tunl0.
func coalesceAll(c *coalescer, pkts [][]byte) [][]byte {
	var out [][]byte
	emit := func(b []byte) { out = append(out, append([]byte{}, b...)) }
	for _, buf := range pkts {
		inner := buf[encap.HeaderLen:]
		if c.held() && c.add(inner) {
			continue
		}
		if c.held() {
			emit(c.finish())
		}
		if c.start(buf, encap.HeaderLen) {
			continue
		}
		emit(buf[encap.HeaderLen-header.VirtioNetHdrLen:])
	}
	if c.held() {
		emit(c.finish())
	}
	return out
}

// Segments cut by encapGSO are joined again by the coalescer into the
// super-packet they came from, with GSO metadata to cut it the same way.
func TestCoalesceRoundTrip(t *testing.T) {
	const mss = 1428
	payload := testPayload(45*mss + 16)
	buf := tcpPacket(encap.HeaderLen, 300, 9000, tcpACK|tcpPSH, 0, payload)
	orig := append([]byte{}, buf[encap.HeaderLen:]...)
	g := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 52, GSOSize: mss, CsumStart: 20, CsumOffset: 16}
	var c collect
	if _, err := encapGSO(buf, encap.HeaderLen, g, testSrc, testRemote, &c); err != nil {
		t.Fatal(err)
	}
	out := coalesceAll(newCoalescer(), innerOf(c.pkts))
	if len(out) != 1 {
		t.Fatalf("%d packets written, want 1 super-packet", len(out))
	}
	vh, err := header.DecodeVirtioNetHdr(out[0])
	if err != nil {
		t.Fatal(err)
	}
	if vh != g {
		t.Errorf("virtio_net_hdr %+v, want %+v", vh, g)
	}
	sp := out[0][header.VirtioNetHdrLen:]
	if !header.IPv4(sp).IsChecksumValid() {
		t.Error("super-packet's IPv4 checksum wrong")
	}
	// Equal to the original but for the TCP checksum field, which holds
	// the pseudo-header's sum (NEEDS_CSUM).
	if len(sp) != len(orig) || !bytes.Equal(sp[:36], orig[:36]) || !bytes.Equal(sp[38:], orig[38:]) {
		t.Fatalf("super-packet (%d bytes) differs from the original (%d)", len(sp), len(orig))
	}
	if got, want := binary.BigEndian.Uint16(sp[36:]), header.Fold(header.IPv4(sp).PseudoHeaderSum(header.TCPProtocolNumber, len(sp)-20)); got != want {
		t.Errorf("TCP checksum field %#x, want the pseudo-header sum %#x", got, want)
	}
	// Cut again, it gives the same segments.
	again := make([]byte, encap.HeaderLen+len(sp))
	copy(again[encap.HeaderLen:], sp)
	var c2 collect
	if _, err := encapGSO(again, encap.HeaderLen, vh, testSrc, testRemote, &c2); err != nil {
		t.Fatal(err)
	}
	if len(c2.pkts) != len(c.pkts) {
		t.Fatalf("%d segments again, want %d", len(c2.pkts), len(c.pkts))
	}
	for k := range c.pkts {
		if !bytes.Equal(c2.pkts[k][encap.HeaderLen:], c.pkts[k][encap.HeaderLen:]) {
			t.Errorf("segment %d differs when cut again", k)
		}
	}
}

// What may not be joined is not: a sequence gap, another flow, other
// flags, a wrong checksum, anything after PSH or a short segment, a
// different TOS (ECN); a lone segment is written as it came.
func TestCoalesceBoundaries(t *testing.T) {
	p := func(seq uint32, flags, tos byte, n int) []byte {
		return tcpPacket(encap.HeaderLen, 1, seq, flags, tos, testPayload(n))
	}
	other := p(3000, tcpACK, 0, 1000)
	other[encap.HeaderLen+21] ^= 1 // another source port
	header.IPv4(other[encap.HeaderLen:]).UpdateChecksum()
	badSum := p(5000, tcpACK, 0, 1000)
	badSum[len(badSum)-1] ^= 0xff
	for _, tc := range []struct {
		name string
		pkts [][]byte
		want []int // segments in each packet written (1: as it came)
	}{
		{"joined", [][]byte{p(0, tcpACK, 0, 1000), p(1000, tcpACK, 0, 1000), p(2000, tcpACK|tcpPSH, 0, 1000)}, []int{3}},
		{"gap", [][]byte{p(0, tcpACK, 0, 1000), p(1500, tcpACK, 0, 1000)}, []int{1, 1}},
		{"other flow", [][]byte{p(2000, tcpACK, 0, 1000), other}, []int{1, 1}},
		{"FIN", [][]byte{p(0, tcpACK, 0, 1000), p(1000, tcpACK|tcpFIN, 0, 1000)}, []int{1, 1}},
		{"bad checksum", [][]byte{p(4000, tcpACK, 0, 1000), badSum, p(6000, tcpACK, 0, 1000)}, []int{1, 1, 1}},
		{"after PSH", [][]byte{p(0, tcpACK|tcpPSH, 0, 1000), p(1000, tcpACK, 0, 1000), p(2000, tcpACK, 0, 1000)}, []int{1, 2}},
		{"after short", [][]byte{p(0, tcpACK, 0, 1000), p(1000, tcpACK, 0, 500), p(1500, tcpACK, 0, 500)}, []int{2, 1}},
		{"longer", [][]byte{p(0, tcpACK, 0, 500), p(500, tcpACK, 0, 1000)}, []int{1, 1}},
		{"CE", [][]byte{p(0, tcpACK, 2, 1000), p(1000, tcpACK, 3, 1000)}, []int{1, 1}},
		{"pure ACK", [][]byte{p(0, tcpACK, 0, 0), p(0, tcpACK, 0, 0)}, []int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var inners [][]byte
			for _, b := range tc.pkts {
				inners = append(inners, append([]byte{}, b[encap.HeaderLen:]...))
			}
			out := coalesceAll(newCoalescer(), tc.pkts)
			if len(out) != len(tc.want) {
				t.Fatalf("%d packets written, want %d", len(out), len(tc.want))
			}
			i := 0
			for k, w := range out {
				g, _ := header.DecodeVirtioNetHdr(w)
				pkt := w[header.VirtioNetHdrLen:]
				if tc.want[k] == 1 {
					if g != (header.GSO{}) || !bytes.Equal(pkt, inners[i]) {
						t.Errorf("packet %d: not written as it came (%+v)", k, g)
					}
				} else if n := g.Segments(len(pkt)); !g.IsGSO() || n != tc.want[k] {
					t.Errorf("packet %d: %+v, %d segments, want %d", k, g, n, tc.want[k])
				}
				i += tc.want[k]
			}
		})
	}
}

package kernel

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/header"
)

// FuzzEncapGSO feeds arbitrary packets and virtio_net_hdr fields to
// encapGSO. It must never panic. When it cuts a super-packet, every
// segment is an IPIP packet to the remote with valid IPv4 and TCP
// checksums, at most the headers and GSOSize bytes of payload, and the
// segments' payloads are the super-packet's; an ordinary packet is sent
// as one packet with the input behind the outer header.
//
// Seeds are added in code (a super-packet, an ordinary packet).
func FuzzEncapGSO(f *testing.F) {
	f.Add(tcpPacket(0, 1, 1, tcpACK|tcpPSH, 0, testPayload(5000)), uint8(header.GSOTCPv4), uint8(header.FlagNeedsCsum), uint16(1428), uint16(20), uint16(16))
	f.Add(tcpPacket(0, 1, 1, tcpACK, 0, testPayload(100)), uint8(header.GSONone), uint8(header.FlagNeedsCsum), uint16(0), uint16(20), uint16(16))
	f.Add([]byte{0x45, 0, 0, 20}, uint8(header.GSOTCPv4), uint8(0), uint16(1), uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, gsoType, flags uint8, gsoSize, csumStart, csumOffset uint16) {
		g := header.GSO{Flags: flags, GSOType: gsoType, GSOSize: gsoSize, CsumStart: csumStart, CsumOffset: csumOffset}
		buf := make([]byte, encap.HeaderLen+len(data))
		copy(buf[encap.HeaderLen:], data)
		var c collect
		n, err := encapGSO(buf, encap.HeaderLen, g, testSrc, testRemote, &c)
		if err != nil {
			if n != 0 || len(c.pkts) != 0 {
				t.Fatalf("error %v after %d packets", err, len(c.pkts))
			}
			return
		}
		if n != len(c.pkts) || n == 0 {
			t.Fatalf("%d packets reported, %d pushed", n, len(c.pkts))
		}
		for _, p := range c.pkts {
			o := header.IPv4(p)
			if len(p) < 40 || o.Protocol() != encap.ProtocolIPIP || o.DestinationAddress() != testRemote ||
				int(o.TotalLength()) != len(p) || !o.IsChecksumValid() {
				t.Fatalf("not an IPIP packet to the remote: % x", p[:min(len(p), 40)])
			}
		}
		if !g.IsGSO() {
			in := c.pkts[0][encap.HeaderLen:]
			tot := int(binary.BigEndian.Uint16(data[2:]))
			if n != 1 || len(in) != tot {
				t.Fatalf("ordinary packet: %d packets, inner %d bytes of %d", n, len(in), tot)
			}
			if g.Flags&header.FlagNeedsCsum == 0 && !bytes.Equal(in, data[:tot]) {
				t.Fatal("ordinary packet changed")
			}
			return
		}
		ihl := int(data[0]&0x0f) * 4
		hl := ihl + int(data[ihl+12]>>4)*4
		tot := int(binary.BigEndian.Uint16(data[2:]))
		var payload []byte
		for k, p := range c.pkts {
			in := header.IPv4(p[encap.HeaderLen:])
			if !in.IsChecksumValid() || int(in.TotalLength()) != len(in) {
				t.Fatalf("segment %d: inner header wrong", k)
			}
			tcp := in[ihl:]
			if header.Fold(header.Sum(tcp, in.PseudoHeaderSum(header.TCPProtocolNumber, len(tcp)))) != 0xffff {
				t.Fatalf("segment %d: TCP checksum wrong", k)
			}
			if len(in)-hl > int(gsoSize) {
				t.Fatalf("segment %d: %d bytes of payload, over %d", k, len(in)-hl, gsoSize)
			}
			payload = append(payload, in[hl:]...)
		}
		if !bytes.Equal(payload, data[hl:tot]) {
			t.Fatal("segments' payloads differ from the super-packet's")
		}
	})
}

// FuzzCoalesce feeds a sequence of arbitrary packets (each preceded by
// its 2-byte length) to the coalescer as the decapsulating loop does. It
// must never panic; every packet written is either an input packet as it
// came (a zero virtio_net_hdr) or a TCP super-packet which, cut again by
// encapGSO with its GSO metadata, gives back the packets it was joined
// from (but for their IP IDs, which become consecutive).
//
// Seeds are added in code (segments of a super-packet; with a gap).
func FuzzCoalesce(f *testing.F) {
	seed := func(pkts ...[]byte) []byte {
		var b []byte
		for _, p := range pkts {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
		return b
	}
	var c collect
	buf := tcpPacket(encap.HeaderLen, 1, 1, tcpACK|tcpPSH, 0, testPayload(4000))
	if _, err := encapGSO(buf, encap.HeaderLen, header.GSO{GSOType: header.GSOTCPv4, GSOSize: 1000}, testSrc, testRemote, &c); err != nil {
		f.Fatal(err)
	}
	var segs [][]byte
	for _, p := range c.pkts {
		segs = append(segs, p[encap.HeaderLen:])
	}
	f.Add(seed(segs...))
	f.Add(seed(segs[0], segs[2], segs[3]))
	f.Add(seed(segs[0][:40], segs[1]))
	f.Fuzz(func(t *testing.T, data []byte) {
		var in [][]byte // the packets, each after encap.HeaderLen of headroom
		for len(data) >= 2 {
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			p := make([]byte, encap.HeaderLen+n)
			copy(p[encap.HeaderLen:], data[2:2+n])
			in, data = append(in, p), data[2+n:]
		}
		orig := make([][]byte, len(in))
		for i, p := range in {
			orig[i] = bytes.Clone(p[encap.HeaderLen:])
		}
		out := coalesceAll(newCoalescer(), in)
		i := 0
		for k, w := range out {
			g, err := header.DecodeVirtioNetHdr(w)
			if err != nil || i >= len(orig) {
				t.Fatalf("packet %d: %v (%d inputs used)", k, err, i)
			}
			pkt := w[header.VirtioNetHdrLen:]
			if !g.IsGSO() {
				if g != (header.GSO{}) || !bytes.Equal(pkt, orig[i]) {
					t.Fatalf("packet %d: not input %d as it came", k, i)
				}
				i++
				continue
			}
			buf := make([]byte, encap.HeaderLen+len(pkt))
			copy(buf[encap.HeaderLen:], pkt)
			var c collect
			if _, err := encapGSO(buf, encap.HeaderLen, g, testSrc, testRemote, &c); err != nil {
				t.Fatalf("packet %d: super-packet cannot be cut: %v", k, err)
			}
			if len(c.pkts) < 2 {
				t.Fatalf("packet %d: a super-packet of %d segments", k, len(c.pkts))
			}
			for _, s := range c.pkts {
				s = s[encap.HeaderLen:]
				if i >= len(orig) {
					t.Fatalf("packet %d: more segments than inputs", k)
				}
				o := orig[i]
				// All but the IP ID and the IP checksum.
				if len(s) != len(o) || !bytes.Equal(s[:4], o[:4]) || !bytes.Equal(s[6:10], o[6:10]) || !bytes.Equal(s[12:], o[12:]) {
					t.Fatalf("packet %d: segment differs from input %d\n% x\n% x", k, i, s[:min(len(s), 60)], o[:min(len(o), 60)])
				}
				i++
			}
		}
		if i != len(orig) {
			t.Fatalf("%d inputs written of %d", i, len(orig))
		}
	})
}

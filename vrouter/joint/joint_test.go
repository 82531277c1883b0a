package joint

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
)

var (
	kernelMAC = [6]byte{0x0a, 1, 2, 3, 4, 5}
	userAddr  = netip.MustParseAddr("192.168.50.11")
	members   = map[netip.Addr]string{userAddr: "node2"}
	byMAC     = map[[6]byte]string{[6]byte(MemberMAC(userAddr)): "node2"}
	kernel    = map[[6]byte]string{kernelMAC: "node1"}
)

// arpRequest is node1's request for target, as fab0 hands it over.
func arpRequest(target netip.Addr) []byte {
	b := make([]byte, header.VirtioNetHdrLen, 64)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, kernelMAC[:]...)
	b = append(b, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	b = append(b, kernelMAC[:]...)
	b = append(b, 192, 168, 50, 10)
	b = append(b, 0, 0, 0, 0, 0, 0)
	t := target.As4()
	return append(b, t[:]...)
}

// ipFrame is an IPv4 frame of 60 bytes from src to dst with GSO g.
func ipFrame(dst, src []byte, g header.GSO) []byte {
	b := make([]byte, header.VirtioNetHdrLen)
	_ = g.PutVirtioNetHdr(b)
	b = append(b, dst...)
	b = append(b, src...)
	b = append(b, 0x08, 0x00)
	pkt := make([]byte, 60)
	pkt[0] = 0x45
	return append(b, pkt...)
}

func TestClassifyARP(t *testing.T) {
	req := arpRequest(userAddr)
	a := Classify(req, members, byMAC, kernel)
	if a.Kind != ARPReply || a.MemberAddr != userAddr {
		t.Fatalf("Classify(ARP request for a member) = %+v", a)
	}
	out := make([]byte, 64)
	n := PutARPReply(out, req, userAddr)
	r := out[header.VirtioNetHdrLen:n]
	mac := MemberMAC(userAddr)
	want := append(append(append(append([]byte{}, kernelMAC[:]...), mac...), 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2), mac...)
	want = append(append(want, 192, 168, 50, 11), kernelMAC[:]...)
	want = append(want, 192, 168, 50, 10)
	if !bytes.Equal(r, want) {
		t.Errorf("ARP reply\n% x\nwant\n% x", r, want)
	}
	if a := Classify(arpRequest(netip.MustParseAddr("192.168.50.12")), members, byMAC, kernel); a.Kind != Ignore {
		t.Errorf("ARP request for a non-member: %+v, want Ignore", a)
	}
}

func TestClassifyIPv4(t *testing.T) {
	g := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 14 + 40, GSOSize: 1448, CsumStart: 14 + 20, CsumOffset: 16}
	a := Classify(ipFrame(MemberMAC(userAddr), kernelMAC[:], g), members, byMAC, kernel)
	wantG := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	if a.Kind != ToMember || a.Sender != "node1" || a.Member != "node2" || a.GSO != wantG || len(a.Packet) != 60 || a.Packet[0] != 0x45 {
		t.Fatalf("Classify(IPv4 to a member) = %+v", a)
	}
	if a := Classify(ipFrame(MemberMAC(userAddr), []byte{0x0a, 9, 9, 9, 9, 9}, header.GSO{}), members, byMAC, kernel); a.Kind != UnknownSender {
		t.Errorf("from an unknown MAC: %+v", a)
	}
	if a := Classify(ipFrame(kernelMAC[:], kernelMAC[:], header.GSO{}), members, byMAC, kernel); a.Kind != Ignore {
		t.Errorf("between kernel nodes: %+v", a)
	}
	if a := Classify(ipFrame(MemberMAC(userAddr), kernelMAC[:], header.GSO{Flags: header.FlagNeedsCsum, CsumStart: 4}), members, byMAC, kernel); a.Kind != Bad {
		t.Errorf("checksum start inside the Ethernet header: %+v", a)
	}
	if a := Classify(make([]byte, 12), members, byMAC, kernel); a.Kind != Bad {
		t.Errorf("short frame: %+v", a)
	}
}

// toBridge and Classify are inverse on the GSO metadata.
func TestToBridge(t *testing.T) {
	g := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	pkt := make([]byte, 3000)
	pkt[0] = 0x45
	out := make([]byte, bufLen)
	n := toBridge(out, fabric.Frame{GSO: g, Packet: pkt}, MemberMAC(userAddr))
	if n != header.VirtioNetHdrLen+ethLen+len(pkt) {
		t.Fatalf("toBridge wrote %d bytes", n)
	}
	e := out[header.VirtioNetHdrLen:n]
	if !bytes.Equal(e[0:6], MemberMAC(userAddr)) || !bytes.Equal(e[6:12], MAC) || e[12] != 0x08 || e[13] != 0 {
		t.Errorf("Ethernet header % x", e[:14])
	}
	// Seen from the member's side (as if the joint's MAC were a kernel node's).
	a := Classify(out[:n], members, byMAC, map[[6]byte]string{[6]byte(MAC): "joint"})
	if a.Kind != ToMember || a.GSO != g || !bytes.Equal(a.Packet, pkt) {
		t.Errorf("round trip: %+v", a.GSO)
	}
	if n := toBridge(make([]byte, 100), fabric.Frame{Packet: pkt}, MAC); n != 0 {
		t.Errorf("toBridge into a short buffer wrote %d", n)
	}
}

// Classify never panics, and what it hands on lies in the frame.
func FuzzClassify(f *testing.F) {
	f.Add(arpRequest(userAddr))
	f.Add(ipFrame(MemberMAC(userAddr), kernelMAC[:], header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		a := Classify(b, members, byMAC, kernel)
		switch a.Kind {
		case ARPReply:
			out := make([]byte, 64)
			if n := PutARPReply(out, b, a.MemberAddr); n != 52 {
				t.Fatalf("reply of %d bytes", n)
			}
		case ToMember:
			if len(a.Packet) < 20 || len(a.Packet) > len(b) {
				t.Fatalf("packet of %d bytes from a frame of %d", len(a.Packet), len(b))
			}
			if a.GSO.Flags&header.FlagNeedsCsum != 0 && int(a.GSO.CsumStart)+int(a.GSO.CsumOffset)+2 > len(a.Packet) {
				t.Fatalf("checksum outside the packet: %+v", a.GSO)
			}
		}
	})
}

package encap_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/vrouter-lab/vrouter/encap"
)

// handInner is a 28-byte ICMP echo request 10.244.166.129 → 10.244.104.1,
// TTL 63, DF, ID 0x1234, written out by hand (checksums are irrelevant to
// encapsulation and left 0).
var handInner = []byte{
	0x45, 0x00, 0x00, 0x1c, // version 4, IHL 5, TOS 0, total length 28
	0x12, 0x34, 0x40, 0x00, // ID 0x1234, DF
	0x3f, 0x01, 0x00, 0x00, // TTL 63, ICMP, checksum
	0x0a, 0xf4, 0xa6, 0x81, // 10.244.166.129
	0x0a, 0xf4, 0x68, 0x01, // 10.244.104.1
	0x08, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x01, // echo request id 7 seq 1
}

func TestEncapsulateHandBuiltBytes(t *testing.T) {
	dst := make([]byte, 100)
	n, err := encap.Encapsulate(dst, handInner, node1, node2)
	if err != nil {
		t.Fatal(err)
	}
	if n != 48 {
		t.Fatalf("n = %d, want 48", n)
	}
	out := dst[:n]
	id := binary.BigEndian.Uint16(out[4:])
	// The checksum over the expected header with ID 0, summed by hand:
	// 4500+0030+0000+4000+3f04+0000+c0a8+320a+c0a8+320b = 0x2a999.
	sum := uint32(0x2a999) + uint32(id)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	cs := ^uint16(sum)
	want := []byte{
		0x45, 0x00, 0x00, 0x30, // version 4, IHL 5, DSCP 0 ECN 0, total 48
		byte(id >> 8), byte(id), 0x40, 0x00, // ID, DF copied from inner
		0x3f, 0x04, byte(cs >> 8), byte(cs), // TTL 63 inherited, protocol 4
		0xc0, 0xa8, 0x32, 0x0a, // 192.168.50.10
		0xc0, 0xa8, 0x32, 0x0b, // 192.168.50.11
	}
	want = append(want, handInner...)
	if !bytes.Equal(out, want) {
		t.Fatalf("outer packet\n got % x\nwant % x", out, want)
	}
	if c := rfc1071(out[:20]); c != 0 {
		t.Fatalf("RFC 1071 sum over the outer header = %#04x, want 0", c)
	}
}

func TestEncapsulateOuterFields(t *testing.T) {
	tests := []struct {
		name     string
		in       innerSpec
		wantTOS  uint8
		wantDF   bool
		wantTTLs uint8
	}{
		{"plain", innerSpec{ttl: 63}, 0x00, false, 63},
		{"DF copied", innerSpec{ttl: 63, flags: layers.IPv4DontFragment}, 0x00, true, 63},
		{"TTL 1 inherited", innerSpec{ttl: 1}, 0x00, false, 1},
		{"TTL 255 inherited", innerSpec{ttl: 255}, 0x00, false, 255},
		{"DSCP not copied", innerSpec{tos: 0xb8}, 0x00, false, 64},
		{"ECT(0) copied", innerSpec{tos: 0xb8 | 0x02}, 0x02, false, 64},
		{"ECT(1) copied", innerSpec{tos: 0x01}, 0x01, false, 64},
		{"CE becomes ECT(0)", innerSpec{tos: 0x28 | 0x03}, 0x02, false, 64},
		{"MF not copied", innerSpec{flags: layers.IPv4MoreFragments, payload: 16}, 0x00, false, 64},
		{"offset not copied, DF copied", innerSpec{flags: layers.IPv4DontFragment, fragOff: 100}, 0x00, true, 64},
		{"inner options", innerSpec{options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}}, 0x00, false, 64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := tc.in.build(t)
			dst := make([]byte, encap.HeaderLen+len(inner))
			n, err := encap.Encapsulate(dst, inner, node1, node2)
			if err != nil {
				t.Fatal(err)
			}
			out, in := decode(t, dst[:n])
			if out.Version != 4 || out.IHL != 5 || len(out.Options) != 0 {
				t.Errorf("version %d IHL %d options %v", out.Version, out.IHL, out.Options)
			}
			if out.Protocol != layers.IPProtocolIPv4 {
				t.Errorf("protocol = %v, want 4", out.Protocol)
			}
			if out.Length != uint16(len(inner)+20) {
				t.Errorf("total length = %d, want %d", out.Length, len(inner)+20)
			}
			if !out.SrcIP.Equal(node1.AsSlice()) || !out.DstIP.Equal(node2.AsSlice()) {
				t.Errorf("outer %v → %v", out.SrcIP, out.DstIP)
			}
			if out.TOS != tc.wantTOS {
				t.Errorf("outer TOS = %#02x, want %#02x", out.TOS, tc.wantTOS)
			}
			if out.TTL != tc.wantTTLs {
				t.Errorf("outer TTL = %d, want %d", out.TTL, tc.wantTTLs)
			}
			if df := out.Flags&layers.IPv4DontFragment != 0; df != tc.wantDF {
				t.Errorf("outer DF = %v, want %v", df, tc.wantDF)
			}
			if out.Flags&layers.IPv4MoreFragments != 0 || out.FragOffset != 0 {
				t.Errorf("outer is a fragment: flags %v offset %d", out.Flags, out.FragOffset)
			}
			if rfc1071(dst[:20]) != 0 {
				t.Errorf("outer checksum %#04x does not verify", out.Checksum)
			}
			if !in.SrcIP.Equal(pod1.AsSlice()) || !in.DstIP.Equal(pod2.AsSlice()) {
				t.Errorf("inner %v → %v", in.SrcIP, in.DstIP)
			}
			if !bytes.Equal(dst[20:n], inner) {
				t.Errorf("inner packet changed")
			}
		})
	}
}

func TestEncapsulateInPlace(t *testing.T) {
	inner := innerSpec{ttl: 63, flags: layers.IPv4DontFragment, payload: 56}.build(t)
	const headroom = 32
	buf := make([]byte, headroom+len(inner))
	copy(buf[headroom:], inner)
	out, err := encap.EncapsulateInPlace(buf, headroom, node1, node2)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 20+len(inner) || &out[0] != &buf[headroom-20] {
		t.Fatalf("EncapsulateInPlace did not return buf[headroom-20:]")
	}
	o, _ := decode(t, out)
	if o.TTL != 63 || o.Flags != layers.IPv4DontFragment || o.Protocol != 4 || rfc1071(out[:20]) != 0 {
		t.Fatalf("outer header %+v", o)
	}
	if !bytes.Equal(out[20:], inner) {
		t.Fatal("inner packet changed")
	}
}

func TestEncapsulateOverlapping(t *testing.T) {
	inner := innerSpec{payload: 100}.build(t)
	// inner sits at the start of buf; the outer packet is written over it.
	buf := make([]byte, len(inner)+20)
	copy(buf, inner)
	n, err := encap.Encapsulate(buf, buf[:len(inner)], node1, node2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[20:n], inner) || rfc1071(buf[:20]) != 0 {
		t.Fatal("overlapping encapsulation corrupted the packet")
	}
}

func TestEncapsulateIDs(t *testing.T) {
	inner := innerSpec{}.build(t)
	id := func(src, dst netip.Addr) uint16 {
		t.Helper()
		b := make([]byte, 20+len(inner))
		if _, err := encap.Encapsulate(b, inner, src, dst); err != nil {
			t.Fatal(err)
		}
		return binary.BigEndian.Uint16(b[4:])
	}
	first := id(node1, node2)
	for i := 1; i < 5; i++ {
		if got := id(node1, node2); got != first+uint16(i) {
			t.Fatalf("packet %d of one tunnel has ID %d, want %d", i, got, first+uint16(i))
		}
	}
	// A GSO super-packet of 10 segments reserves 10 IDs.
	buf := make([]byte, 20+len(inner))
	copy(buf[20:], inner)
	out, err := encap.EncapsulateSegments(buf, 20, node1, node2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint16(out[4:]); got != first+5 {
		t.Fatalf("super-packet ID %d, want %d", got, first+5)
	}
	if got := id(node1, node2); got != first+15 {
		t.Fatalf("ID after a 10-segment super-packet = %d, want %d", got, first+15)
	}
}

func TestEncapsulateErrors(t *testing.T) {
	good := innerSpec{}.build(t)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	v6 := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name     string
		dstLen   int
		inner    []byte
		src, dst netip.Addr
		want     error
	}{
		{"short dst", len(good) + 19, good, node1, node2, encap.ErrShortBuffer},
		{"IPv6 source", 100, good, v6, node2, encap.ErrNotIPv4Address},
		{"IPv6 destination", 100, good, node1, v6, encap.ErrNotIPv4Address},
		{"invalid source", 100, good, netip.Addr{}, node2, encap.ErrNotIPv4Address},
		{"empty inner", 100, nil, node1, node2, encap.ErrInvalidInner},
		{"19-byte inner", 100, good[:19], node1, node2, encap.ErrInvalidInner},
		{"inner version 6", 100, mod(func(b []byte) []byte { b[0] = 0x65; return b }), node1, node2, encap.ErrInvalidInner},
		{"inner IHL 4", 100, mod(func(b []byte) []byte { b[0] = 0x44; return b }), node1, node2, encap.ErrInvalidInner},
		{"inner IHL beyond packet", 100, mod(func(b []byte) []byte { b[0] = 0x4f; return b }), node1, node2, encap.ErrInvalidInner},
		{"inner total length too long", 100, mod(func(b []byte) []byte { return b[:len(b)-1] }), node1, node2, encap.ErrInvalidInner},
		{"inner total length too short", 100, mod(func(b []byte) []byte { return append(b, 0) }), node1, node2, encap.ErrInvalidInner},
		{"too big", 70000, make([]byte, encap.MaxInnerLen+1), node1, node2, encap.ErrTooBig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := encap.Encapsulate(make([]byte, tc.dstLen), tc.inner, tc.src, tc.dst)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := encap.EncapsulateInPlace(make([]byte, 19+len(good)), 19, node1, node2); !errors.Is(err, encap.ErrShortBuffer) {
		t.Fatalf("19 bytes of headroom: err = %v", err)
	}
	if _, err := encap.EncapsulateInPlace(make([]byte, 10), 20, node1, node2); !errors.Is(err, encap.ErrShortBuffer) {
		t.Fatalf("headroom beyond buffer: err = %v", err)
	}
	// The largest inner packet fits exactly.
	big := make([]byte, encap.MaxInnerLen)
	copy(big, good[:20])
	binary.BigEndian.PutUint16(big[2:], uint16(len(big)))
	if n, err := encap.Encapsulate(make([]byte, 65535), big, node1, node2); err != nil || n != 65535 {
		t.Fatalf("largest packet: n %d err %v", n, err)
	}
}

func TestEncapsulateMappedAddresses(t *testing.T) {
	inner := innerSpec{}.build(t)
	dst := make([]byte, 20+len(inner))
	m1 := netip.AddrFrom16(node1.As16())
	m2 := netip.AddrFrom16(node2.As16())
	if _, err := encap.Encapsulate(dst, inner, m1, m2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst[12:20], []byte{192, 168, 50, 10, 192, 168, 50, 11}) {
		t.Fatalf("addresses % x", dst[12:20])
	}
}

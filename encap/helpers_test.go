package encap_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vrouter-lab/vrouter/encap"
)

// Addresses of the Calico IPIP example: node1 and node2 on the underlay, a
// workload on node1 pinging one on node2.
var (
	node1 = netip.MustParseAddr("192.168.50.10")
	node2 = netip.MustParseAddr("192.168.50.11")
	node3 = netip.MustParseAddr("192.168.50.12")
	pod1  = netip.MustParseAddr("10.244.166.129")
	pod2  = netip.MustParseAddr("10.244.104.1")
)

// innerSpec describes an inner IPv4 ICMP echo request built with gopacket,
// independently of the code under test.
type innerSpec struct {
	tos     uint8
	ttl     uint8
	flags   layers.IPv4Flag
	fragOff uint16
	options []layers.IPv4Option
	payload int
}

func (s innerSpec) build(t testing.TB) []byte {
	t.Helper()
	ttl := s.ttl
	if ttl == 0 {
		ttl = 64
	}
	ip := &layers.IPv4{
		Version: 4, IHL: 5, TOS: s.tos, TTL: ttl, Id: 0x1234,
		Flags: s.flags, FragOffset: s.fragOff,
		Protocol: layers.IPProtocolICMPv4,
		SrcIP:    net.IP(pod1.AsSlice()), DstIP: net.IP(pod2.AsSlice()),
		Options: s.options,
	}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}
	payload := make([]byte, s.payload)
	for i := range payload {
		payload[i] = byte(i)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, icmp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// outerSpec describes an outer IPIP header built with gopacket around an
// inner packet, independently of the code under test.
type outerSpec struct {
	src, dst netip.Addr
	tos      uint8
	ttl      uint8
	flags    layers.IPv4Flag
	fragOff  uint16
	proto    layers.IPProtocol
	options  []layers.IPv4Option
}

func (s outerSpec) build(t testing.TB, inner []byte) []byte {
	t.Helper()
	if !s.src.IsValid() {
		s.src = node1
	}
	if !s.dst.IsValid() {
		s.dst = node2
	}
	if s.ttl == 0 {
		s.ttl = 63
	}
	if s.proto == 0 {
		s.proto = layers.IPProtocolIPv4
	}
	ip := &layers.IPv4{
		Version: 4, IHL: 5, TOS: s.tos, TTL: s.ttl, Id: 0x4242,
		Flags: s.flags, FragOffset: s.fragOff, Protocol: s.proto,
		SrcIP: net.IP(s.src.AsSlice()), DstIP: net.IP(s.dst.AsSlice()),
		Options: s.options,
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, gopacket.Payload(inner)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// rfc1071 computes the Internet checksum of b from scratch, byte pair by
// byte pair, with a 64-bit accumulator folded at the end (RFC 1071 section
// 4.1), so that the tests do not rely on the package's own implementation.
func rfc1071(b []byte) uint16 {
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// headerValid reports whether b starts with an IPv4 header whose version,
// IHL, total length (equal to len(b)) and checksum are right.
func headerValid(b []byte) bool {
	if len(b) < 20 || b[0]>>4 != 4 {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || ihl > len(b) {
		return false
	}
	return int(binary.BigEndian.Uint16(b[2:])) == len(b) && rfc1071(b[:ihl]) == 0
}

// decode parses an IPIP packet with gopacket and returns the outer and
// inner IPv4 layers.
func decode(t testing.TB, pkt []byte) (outer, inner *layers.IPv4) {
	t.Helper()
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode the packet: %v", el.Error())
	}
	var ips []*layers.IPv4
	for _, l := range p.Layers() {
		if ip, ok := l.(*layers.IPv4); ok {
			ips = append(ips, ip)
		}
	}
	if len(ips) != 2 {
		t.Fatalf("gopacket finds %d IPv4 layers, want 2 (layers: %v)", len(ips), p.Layers())
	}
	return ips[0], ips[1]
}

func mustDecapsulator(t testing.TB, nodes ...netip.Addr) *encap.Decapsulator {
	t.Helper()
	d, err := encap.NewDecapsulator(nodes...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

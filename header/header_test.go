package header_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vrouter-lab/vrouter/header"
)

// refChecksum is RFC 1071's checksum written the plain way, word by word
// with a 32-bit accumulator, to check the package's against.
func refChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// sample returns a valid IPv4 packet with a 20-byte header, the given
// options and payload.
func sample(opts, payload []byte) []byte {
	ihl := header.IPv4MinimumSize + len(opts)
	b := make([]byte, ihl+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TOS: 0x2e, TotalLength: uint16(len(b)), ID: 0x1234,
		FlagsFragmentOffset: header.IPv4FlagDontFragment, TTL: 64,
		Protocol: header.UDPProtocolNumber,
		Src:      [4]byte{10, 0, 0, 1}, Dst: [4]byte{192, 168, 1, 2},
	})
	b[0] = 0x40 | byte(ihl/4)
	copy(b[header.IPv4MinimumSize:], opts)
	copy(b[ihl:], payload)
	ip.UpdateChecksum()
	return b
}

func TestChecksumKnownValue(t *testing.T) {
	// RFC 1071 section 3's example: the sum of these words is 0xddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := header.Fold(header.Sum(b, 0)); got != 0xddf2 {
		t.Fatalf("sum = %#04x, want 0xddf2", got)
	}
	if got := header.Checksum(b); got != ^uint16(0xddf2) {
		t.Fatalf("checksum = %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	// a well-known IPv4 header (Wikipedia's example): checksum 0xb861
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
		0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := header.IPv4(h).CalculateChecksum(); got != 0xb861 {
		t.Fatalf("IPv4 checksum = %#04x, want 0xb861", got)
	}
}

func TestChecksumMatchesReference(t *testing.T) {
	b := make([]byte, 301)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	for n := 0; n <= len(b); n++ {
		if got, want := header.Checksum(b[:n]), refChecksum(b[:n]); got != want {
			t.Fatalf("len %d: checksum %#04x, want %#04x", n, got, want)
		}
	}
	// pieces add up when all but the last are even
	acc := header.Sum(b[:100], 0)
	acc = header.Sum(b[100:], acc)
	if got, want := ^header.Fold(acc), refChecksum(b); got != want {
		t.Fatalf("piecewise %#04x, want %#04x", got, want)
	}
}

func TestChecksumUpdate16(t *testing.T) {
	b := sample(nil, []byte("payload"))
	ip := header.IPv4(b)
	for ttl := 64; ttl > 0; ttl-- {
		ip.DecrementTTL()
		if !ip.IsChecksumValid() {
			t.Fatalf("TTL %d: checksum %#04x invalid after DecrementTTL", ip.TTL(), ip.Checksum())
		}
		if ip.Checksum() != ip.CalculateChecksum() {
			t.Fatalf("TTL %d: incremental %#04x, full %#04x", ip.TTL(), ip.Checksum(), ip.CalculateChecksum())
		}
	}
	if ip.TTL() != 0 {
		t.Fatalf("TTL %d, want 0", ip.TTL())
	}
}

func TestIPv4Accessors(t *testing.T) {
	opts := []byte{1, 1, 1, 0} // NOP NOP NOP EOL
	b := sample(opts, []byte{9, 8, 7, 6, 5})
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) || !ip.IsHeaderValid() {
		t.Fatal("sample is not valid")
	}
	if !ip.IsChecksumValid() {
		t.Fatal("sample checksum does not verify")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Version", ip.Version(), 4},
		{"HeaderLength", ip.HeaderLength(), 24},
		{"TOS", ip.TOS(), uint8(0x2e)},
		{"TotalLength", ip.TotalLength(), uint16(29)},
		{"ID", ip.ID(), uint16(0x1234)},
		{"DontFragment", ip.DontFragment(), true},
		{"MoreFragments", ip.MoreFragments(), false},
		{"IsFragment", ip.IsFragment(), false},
		{"TTL", ip.TTL(), uint8(64)},
		{"Protocol", ip.Protocol(), uint8(header.UDPProtocolNumber)},
		{"SourceAddress", ip.SourceAddress(), netip.MustParseAddr("10.0.0.1")},
		{"DestinationAddress", ip.DestinationAddress(), netip.MustParseAddr("192.168.1.2")},
		{"SourceUint32", ip.SourceUint32(), uint32(0x0a000001)},
		{"DestinationUint32", ip.DestinationUint32(), uint32(0xc0a80102)},
		{"Options", string(ip.Options()), string(opts)},
		{"Payload", string(ip.Payload()), string([]byte{9, 8, 7, 6, 5})},
		{"IsIPIP", ip.IsIPIP(), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	ip.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments | 3)
	if !ip.MoreFragments() || ip.FragmentOffset() != 24 || !ip.IsFragment() || ip.DontFragment() {
		t.Errorf("fragment fields: MF %v offset %d", ip.MoreFragments(), ip.FragmentOffset())
	}
	ip.SetSourceAddress(netip.MustParseAddr("::ffff:172.16.0.9"))
	ip.SetDestinationAddress(netip.MustParseAddr("172.16.0.10"))
	ip.SetTTL(3)
	ip.SetTOS(1)
	ip.SetID(7)
	ip.SetProtocol(header.IPIPProtocolNumber)
	ip.SetTotalLength(24)
	if ip.IsChecksumValid() {
		t.Error("checksum still verifies after the fields changed")
	}
	ip.UpdateChecksum()
	if !ip.IsChecksumValid() {
		t.Error("checksum does not verify after UpdateChecksum")
	}
	if ip.SourceAddress() != netip.MustParseAddr("172.16.0.9") || ip.DestinationAddress() != netip.MustParseAddr("172.16.0.10") {
		t.Errorf("addresses %v → %v", ip.SourceAddress(), ip.DestinationAddress())
	}
	if !ip.IsIPIP() || len(ip.Payload()) != 0 || ip.TTL() != 3 || ip.TOS() != 1 || ip.ID() != 7 {
		t.Error("setters did not take")
	}
}

func TestIPv4Validity(t *testing.T) {
	good := sample(nil, make([]byte, 10))
	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	cases := []struct {
		name   string
		b      []byte
		size   int
		header bool // IsHeaderValid
		valid  bool // IsValid(size)
	}{
		{"good", good, len(good), true, true},
		{"padding after total length", append(append([]byte(nil), good...), 0, 0), len(good) + 2, true, true},
		{"empty", nil, 0, false, false},
		{"short", good[:19], 19, false, false},
		{"version 6", mod(func(b []byte) { b[0] = 0x65 }), len(good), false, false},
		{"IHL 4", mod(func(b []byte) { b[0] = 0x44 }), len(good), false, false},
		{"IHL beyond view", mod(func(b []byte) { b[0] = 0x4f }), len(good), false, false},
		{"total length below header", mod(func(b []byte) { binary.BigEndian.PutUint16(b[2:], 19) }), len(good), true, false},
		{"total length beyond view", mod(func(b []byte) { binary.BigEndian.PutUint16(b[2:], 31) }), len(good), true, false},
		{"total length beyond pktSize", good, len(good) - 1, true, false},
	}
	for _, c := range cases {
		ip := header.IPv4(c.b)
		if got := ip.IsHeaderValid(); got != c.header {
			t.Errorf("%s: IsHeaderValid = %v, want %v", c.name, got, c.header)
		}
		if got := ip.IsValid(c.size); got != c.valid {
			t.Errorf("%s: IsValid = %v, want %v", c.name, got, c.valid)
		}
	}
	if header.IPv4(nil).Version() != 0 {
		t.Error("empty view has a version")
	}
}

func TestIPv4PseudoHeaderSum(t *testing.T) {
	b := sample(nil, []byte{0, 53, 0, 53, 0, 12, 0, 0, 'a', 'b', 'c', 'd'})
	ip := header.IPv4(b)
	udp := ip.Payload()
	// the pseudo-header written out: src, dst, zero, protocol, length
	ph := append(append([]byte(nil), b[12:20]...), 0, header.UDPProtocolNumber, 0, byte(len(udp)))
	want := refChecksum(append(ph, udp...))
	if got := ^header.Fold(header.Sum(udp, ip.PseudoHeaderSum(header.UDPProtocolNumber, len(udp)))); got != want {
		t.Fatalf("UDP checksum %#04x, want %#04x", got, want)
	}
}

func TestICMPv4(t *testing.T) {
	m := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize+4))
	if !m.IsValid() || header.ICMPv4(m[:7]).IsValid() {
		t.Fatal("IsValid wrong about the length")
	}
	m.SetType(header.ICMPv4DstUnreachable)
	m.SetCode(4)
	m.SetRest(1400)
	copy(m.Payload(), "abcd")
	m.SetChecksum(m.CalculateChecksum())
	if m.Type() != header.ICMPv4DstUnreachable || m.Code() != 4 || m.MTU() != 1400 || m.Rest() != 1400 {
		t.Fatalf("fields: type %d code %d mtu %d", m.Type(), m.Code(), m.MTU())
	}
	if !m.IsChecksumValid() || m.Checksum() != refChecksum(append([]byte{3, 4, 0, 0, 0, 0, 5, 120}, "abcd"...)) {
		t.Fatalf("checksum %#04x does not verify", m.Checksum())
	}
	m.SetType(header.ICMPv4Echo)
	m.SetRest(0x00070009)
	if m.Ident() != 7 || m.Sequence() != 9 || m.IsChecksumValid() {
		t.Fatalf("echo: ident %d seq %d", m.Ident(), m.Sequence())
	}
}

func TestGSOCodecs(t *testing.T) {
	g := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4 | header.GSOECN, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	var vh [header.VirtioNetHdrLen]byte
	if err := g.PutVirtioNetHdr(vh[:]); err != nil {
		t.Fatal(err)
	}
	if binary.NativeEndian.Uint16(vh[4:]) != 1448 || vh[0] != header.FlagNeedsCsum {
		t.Fatalf("virtio_net_hdr bytes % x", vh)
	}
	if back, err := header.DecodeVirtioNetHdr(vh[:]); err != nil || back != g {
		t.Fatalf("virtio round trip: %+v, %v", back, err)
	}
	if _, err := header.DecodeVirtioNetHdr(vh[:9]); err == nil {
		t.Error("DecodeVirtioNetHdr accepted 9 bytes")
	}
	if err := g.PutVirtioNetHdr(vh[:9]); err == nil {
		t.Error("PutVirtioNetHdr accepted 9 bytes")
	}
	var w [header.VirtioNetHdrLen]byte
	g.Put(w[:])
	if binary.BigEndian.Uint16(w[2:]) != 52 || binary.BigEndian.Uint16(w[8:]) != 16 {
		t.Fatalf("network-order bytes % x", w)
	}
	if back := header.DecodeGSO(w[:]); back != g {
		t.Fatalf("network-order round trip: %+v", back)
	}
	if !g.IsGSO() || (header.GSO{GSOType: header.GSONone}).IsGSO() || (header.GSO{GSOType: header.GSOECN}).IsGSO() {
		t.Error("IsGSO wrong")
	}
	// 40 header bytes and 3000 payload bytes in 1448-byte segments: 3
	if n := (header.GSO{GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448}).Segments(3040); n != 3 {
		t.Errorf("Segments = %d, want 3", n)
	}
	if n := (header.GSO{}).Segments(3040); n != 1 {
		t.Errorf("Segments of a plain packet = %d, want 1", n)
	}
}

func TestViewsDoNotAllocate(t *testing.T) {
	b := sample([]byte{1, 1, 1, 0}, make([]byte, 100))
	ip := header.IPv4(b)
	var vh [header.VirtioNetHdrLen]byte
	n := testing.AllocsPerRun(100, func() {
		if !ip.IsValid(len(b)) || !ip.IsChecksumValid() {
			panic("invalid")
		}
		_ = ip.SourceAddress()
		_ = ip.DestinationAddress()
		ip.SetTTL(64)
		ip.DecrementTTL()
		ip.UpdateChecksum()
		g, _ := header.DecodeVirtioNetHdr(vh[:])
		_ = g.PutVirtioNetHdr(vh[:])
	})
	if n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		_ = header.Checksum(buf)
	}
}

func BenchmarkIPv4HeaderChecksum(b *testing.B) {
	buf := sample(nil, nil)
	ip := header.IPv4(buf)
	for b.Loop() {
		ip.UpdateChecksum()
	}
}

package dataplane

import (
	"testing"

	"github.com/vrouter-lab/vrouter/header"
)

// The headers a super-packet's segments share: IPv4 + TCP or UDP, and for
// IPIP (a tunnel's super-packet crossing a router) the outer header too;
// anything else, or truncated, is 0, and segment never cuts IPIP.
func TestGSOHeadersLen(t *testing.T) {
	ip := func(proto byte, ihl int, rest []byte) []byte {
		h := make([]byte, ihl)
		h[0] = 0x40 | byte(ihl/4)
		h[header.IPv4ProtocolOffset] = proto
		return append(h, rest...)
	}
	tcp := make([]byte, 32)
	tcp[12] = 8 << 4 // data offset 32 bytes
	udp := make([]byte, 8)
	for _, tc := range []struct {
		name string
		pkt  []byte
		want int
	}{
		{"tcp", ip(6, 20, tcp), 52},
		{"tcp, options in ip", ip(6, 24, tcp), 56},
		{"udp", ip(17, 20, udp), 28},
		{"icmp", ip(1, 20, udp), 0},
		{"ipip tcp", ip(4, 20, ip(6, 20, tcp)), 72},
		{"ipip udp", ip(4, 20, ip(17, 20, udp)), 48},
		{"ipip in ipip", ip(4, 20, ip(4, 20, ip(6, 20, tcp))), 0},
		{"ipip truncated", ip(4, 20, ip(6, 20, tcp[:10])), 0},
		{"ipip empty", ip(4, 20, nil), 0},
		{"short", []byte{0x45, 0}, 0},
	} {
		if got := gsoHeadersLen(tc.pkt); got != tc.want {
			t.Errorf("%s: gsoHeadersLen = %d, want %d", tc.name, got, tc.want)
		}
	}
	if err := segment(ip(4, 20, ip(6, 20, tcp)), header.GSO{GSOType: header.GSOTCPv4, GSOSize: 1400}, make([]byte, 2048), func([]byte) {}); err == nil {
		t.Error("segment cut an IPIP super-packet")
	}
}

// gsoHeadersLen never panics and never claims more headers than the
// packet has; what it accepts, headersLen agrees with for the inner part.
func FuzzGSOHeadersLen(f *testing.F) {
	tcp := make([]byte, 20)
	tcp[12] = 5 << 4
	for _, seed := range [][]byte{
		append([]byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}, tcp...),
		append(append([]byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 4, 0, 0, 192, 168, 50, 10, 192, 168, 60, 10},
			0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2), make([]byte, 8)...),
		{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 4},
		{0x4f},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		n := gsoHeadersLen(pkt)
		if n < 0 || n > len(pkt) {
			t.Fatalf("gsoHeadersLen = %d for %d bytes", n, len(pkt))
		}
		if n != 0 && pkt[header.IPv4ProtocolOffset] == 4 {
			ihl := int(pkt[0]&0xf) * 4
			if inner := headersLen(pkt[ihl:]); ihl+inner != n {
				t.Fatalf("outer %d + inner %d != %d", ihl, inner, n)
			}
		}
	})
}

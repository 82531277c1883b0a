package dataplane_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// rfc1071 is the Internet checksum written from scratch for the tests,
// independent of the package's: the one's complement of the one's
// complement sum of the big-endian 16-bit words, an odd last byte padded
// with zero. Over data that includes a correct checksum it returns 0.
func rfc1071(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// ipSpec describes an IPv4 packet for pkt to build by hand.
type ipSpec struct {
	tos      byte
	id       uint16
	df, mf   bool
	evil     bool   // the reserved flag bit
	off      int    // fragment offset in bytes, a multiple of 8
	ttl      byte   // 0 means 64; use ttl0 for a real 0
	ttl0     bool   // TTL 0
	proto    byte   // 0 means UDP
	src, dst string // dotted quads
	opts     []byte // options, padded by the caller to a multiple of 4
	payload  []byte
	badSum   bool // corrupt the header checksum
}

// pkt builds the packet of s, with a correct header checksum unless
// s.badSum.
func (s ipSpec) pkt() []byte {
	hl := 20 + len(s.opts)
	if hl%4 != 0 {
		panic("options not padded")
	}
	b := make([]byte, hl+len(s.payload))
	b[0] = 0x40 | byte(hl/4)
	b[1] = s.tos
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], s.id)
	fo := uint16(s.off / 8)
	if s.evil {
		fo |= 0x8000
	}
	if s.df {
		fo |= 0x4000
	}
	if s.mf {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], fo)
	b[8] = s.ttl
	if b[8] == 0 && !s.ttl0 {
		b[8] = 64
	}
	b[9] = s.proto
	if b[9] == 0 {
		b[9] = 17
	}
	a := netip.MustParseAddr(s.src).As4()
	copy(b[12:], a[:])
	a = netip.MustParseAddr(s.dst).As4()
	copy(b[16:], a[:])
	copy(b[20:], s.opts)
	copy(b[hl:], s.payload)
	binary.BigEndian.PutUint16(b[10:], rfc1071(b[:hl]))
	if s.badSum {
		b[10] ^= 0x5a
	}
	return b
}

// payload returns n deterministic bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// udp returns a UDP datagram (header and data) of n bytes in all; its
// checksum is zero (none), which the forwarder does not look at.
func udp(n int) []byte {
	b := payload(n)
	binary.BigEndian.PutUint16(b[0:], 40000)
	binary.BigEndian.PutUint16(b[2:], 53)
	binary.BigEndian.PutUint16(b[4:], uint16(n))
	b[6], b[7] = 0, 0
	return b
}

// icmpMsg returns an ICMP message of the given type and code with n bytes
// of data after its 8-byte header and a correct checksum.
func icmpMsg(typ, code byte, n int) []byte {
	b := append([]byte{typ, code, 0, 0, 0x12, 0x34, 0, 1}, payload(n)...)
	binary.BigEndian.PutUint16(b[2:], rfc1071(b))
	return b
}

// fakeClock is an injectable clock for the rate limiters.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// The lab: node1 of the seed's Calico example, with a workload, a remote
// block over the underlay, one over tunl0, and routes of every type.
const (
	idEns33 dataplane.PortID = 1
	idCali  dataplane.PortID = 2
	idTunl  dataplane.PortID = 3
	idHost  dataplane.PortID = 4
	idSmall dataplane.PortID = 5

	nodeAddr   = "192.168.50.10"  // node1 on ens33
	node2      = "192.168.50.11"  // gateway to 10.244.104.0/26
	node3      = "192.168.50.12"  // tunnel endpoint for 10.244.135.0/26
	tunlAddr   = "10.244.166.130" // node1's tunl0 address
	defaultSrc = "172.16.0.1"     // Config.DefaultSource (and a local address)
	prefSrc    = "172.16.0.2"     // preferred source of 10.96.0.0/16 (a local address)
	web1       = "10.244.166.128" // workload on cali717821d73f3
	small      = "10.244.166.141" // workload on calismall, MTU 300
	remote     = "10.244.104.5"   // workload on node2, via ens33
	remoteTun  = "10.244.135.7"   // workload on node3, via tunl0
)

func labPorts() []dataplane.Port {
	return []dataplane.Port{
		{ID: idEns33, Name: "ens33", Kind: dataplane.PortUnderlay, MTU: 1500, Addr: netip.MustParseAddr(nodeAddr)},
		{ID: idCali, Name: "cali717821d73f3", Kind: dataplane.PortWorkload, MTU: 1500},
		{ID: idTunl, Name: "tunl0", Kind: dataplane.PortTunnel, MTU: 1480, Addr: netip.MustParseAddr(tunlAddr)},
		{ID: idHost, Name: "host", Kind: dataplane.PortHost, MTU: 1500},
		{ID: idSmall, Name: "calismall", Kind: dataplane.PortWorkload, MTU: 300},
	}
}

func labRoutes() []fib.Route {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	return []fib.Route{
		{Dst: p("10.244.104.0/26"), Type: fib.Unicast, Gateway: a(node2), Dev: "ens33", Protocol: fib.ProtoBird},
		{Dst: p("10.244.135.0/26"), Type: fib.Unicast, Gateway: a(node3), Dev: "tunl0", Protocol: fib.ProtoBird, OnLink: true},
		{Dst: p(web1 + "/32"), Type: fib.Unicast, Dev: "cali717821d73f3", Scope: fib.ScopeLink},
		{Dst: p(small + "/32"), Type: fib.Unicast, Dev: "calismall", Scope: fib.ScopeLink},
		{Dst: p("10.244.166.128/26"), Type: fib.Blackhole, Protocol: fib.ProtoBird},
		{Dst: p("192.168.50.0/24"), Type: fib.Unicast, Dev: "ens33", Protocol: fib.ProtoKernel, Scope: fib.ScopeLink, PrefSrc: a(nodeAddr)},
		{Dst: p("10.99.0.0/16"), Type: fib.Unreachable},
		{Dst: p("10.98.0.0/16"), Type: fib.Prohibit},
		{Dst: p("10.96.0.0/16"), Type: fib.Unicast, Gateway: a("192.168.50.1"), Dev: "ens33", PrefSrc: a(prefSrc)},
		{Dst: p("10.95.0.0/16"), Type: fib.Unicast, Gateway: a("192.168.50.1")}, // no device: resolved by the gateway
		{Dst: p("10.94.0.0/16"), Type: fib.Unicast, Dev: "nosuchport"},
		{Dst: p("10.93.0.0/16"), Dev: "ens33"},                                        // type 0 (none)
		{Dst: p("10.92.0.0/16"), Type: fib.Type(2), Dev: "host"},                      // local
		{Dst: p("10.91.0.0/16"), Type: fib.Type(9)},                                   // throw
		{Dst: p("10.90.0.0/16"), Type: fib.Unicast, Dev: "tunl0"},                     // tunnel without gateway
		{Dst: p("10.89.0.0/16"), Type: fib.Unicast, Gateway: a("10.89.0.1")},          // unresolvable gateway
		{Dst: p("10.87.0.0/16"), Type: fib.Blackhole, Dev: "ens33"},                   // blackhole naming a device
		{Dst: p("100.64.0.0/10"), Type: fib.Unicast, Gateway: a(node2), Dev: "ens33"}, // many hosts
	}
}

func labTable(t testing.TB) *fib.Table {
	t.Helper()
	tab := fib.NewTable()
	for _, r := range labRoutes() {
		if err := tab.Insert(r); err != nil {
			t.Fatalf("insert %v: %v", r, err)
		}
	}
	return tab
}

// newLab returns the lab's forwarder and its clock; mod may change the
// configuration first.
func newLab(t testing.TB, mod func(*dataplane.Config)) (*dataplane.Forwarder, *fakeClock) {
	t.Helper()
	clk := newClock()
	cfg := dataplane.Config{
		Ports:         labPorts(),
		Local:         []netip.Addr{netip.MustParseAddr(defaultSrc), netip.MustParseAddr(prefSrc)},
		DefaultSource: netip.MustParseAddr(defaultSrc),
		Now:           clk.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	f, err := dataplane.New(labTable(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f, clk
}

func noRateLimit(c *dataplane.Config) {
	c.ICMPRateLimit = -1
	c.RouteErrorCost = -1
}

// decoded is an ICMP error decoded by gopacket.
type decoded struct {
	ip   *layers.IPv4
	icmp *layers.ICMPv4
	raw  []byte
}

// info is the ICMP header's rest-of-header word.
func (d decoded) info() uint32 { return binary.BigEndian.Uint32(d.raw[24:28]) }

// decodeICMP decodes an IPv4 packet holding an ICMP message with gopacket
// and checks both checksums with rfc1071.
func decodeICMP(t *testing.T, b []byte) decoded {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.DecodeOptions{})
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	ic, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip == nil || ic == nil {
		t.Fatalf("not IPv4+ICMPv4: %v", p)
	}
	if int(ip.IHL)*4 != 20 || len(b) < 28 {
		t.Fatalf("ICMP error with IHL %d, %d bytes", ip.IHL, len(b))
	}
	if s := rfc1071(b[:20]); s != 0 {
		t.Errorf("ICMP error: IP header checksum %#04x does not verify", ip.Checksum)
	}
	if s := rfc1071(b[20:]); s != 0 {
		t.Errorf("ICMP error: ICMP checksum %#04x does not verify", ic.Checksum)
	}
	if int(ip.Length) != len(b) {
		t.Errorf("ICMP error: total length %d, packet %d bytes", ip.Length, len(b))
	}
	return decoded{ip: ip, icmp: ic, raw: b}
}

// wantError describes an expected ICMP error.
type wantError struct {
	typ, code byte
	src, dst  string
	tos       byte
	info      uint32
	quote     []byte // the offending packet as received, cut to the quote
	port      dataplane.PortID
	nextHop   string
	reason    dataplane.Reason
}

// checkError checks that d is the ICMP error w describes.
func checkError(t *testing.T, d dataplane.Decision, w wantError) decoded {
	t.Helper()
	if d.Action != dataplane.ICMPError {
		t.Fatalf("action %v (reason %v), want icmp-error", d.Action, d.Reason)
	}
	if d.Reason != w.reason {
		t.Errorf("reason %v, want %v", d.Reason, w.reason)
	}
	if d.Port == nil || d.Port.ID != w.port {
		t.Errorf("port %v, want id %d", d.Port, w.port)
	}
	if d.NextHop != netip.MustParseAddr(w.nextHop) {
		t.Errorf("next hop %v, want %s", d.NextHop, w.nextHop)
	}
	e := decodeICMP(t, d.Packet)
	if e.ip.Version != 4 || e.ip.TTL != 64 || e.ip.Protocol != layers.IPProtocolICMPv4 {
		t.Errorf("error header: version %d ttl %d proto %v", e.ip.Version, e.ip.TTL, e.ip.Protocol)
	}
	if e.ip.Flags != 0 || e.ip.FragOffset != 0 {
		t.Errorf("error header: flags %v offset %d, want none", e.ip.Flags, e.ip.FragOffset)
	}
	if e.ip.TOS != w.tos {
		t.Errorf("error TOS %#02x, want %#02x", e.ip.TOS, w.tos)
	}
	if e.ip.SrcIP.String() != w.src || e.ip.DstIP.String() != w.dst {
		t.Errorf("error %s -> %s, want %s -> %s", e.ip.SrcIP, e.ip.DstIP, w.src, w.dst)
	}
	if want := layers.CreateICMPv4TypeCode(w.typ, w.code); e.icmp.TypeCode != want {
		t.Errorf("ICMP %v, want %v", e.icmp.TypeCode, want)
	}
	if got := e.info(); got != w.info {
		t.Errorf("ICMP rest of header %#08x, want %#08x", got, w.info)
	}
	if !bytes.Equal(e.icmp.Payload, w.quote) {
		t.Errorf("quote (%d bytes) differs from the packet as received (%d bytes):\n got %x\nwant %x",
			len(e.icmp.Payload), len(w.quote), head(e.icmp.Payload), head(w.quote))
	}
	return e
}

func head(b []byte) []byte { return b[:min(len(b), 48)] }

// icmpTOS is what Linux puts in an error's TOS for an offending TOS.
func icmpTOS(tos byte) byte { return tos&0x1e | 0xc0 }

package dataplane_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// benchNode is a node of a large Calico cluster: 4096 remote /26 blocks
// (half over the underlay, half over tunl0), 17 own blocks as blackholes
// with 1000 workloads (/32 routes, one cali port each), the node subnet
// and a default route.
type benchNode struct {
	f      *dataplane.Forwarder
	pkts   [][]byte // packets to forward, len a power of two
	tmpl   [][]byte // their pristine headers
	remote []netip.Addr
	local  []netip.Addr
}

const benchBlocks, benchWorkloads = 4096, 1000

func newBenchNode(b *testing.B, cfg dataplane.Config) *benchNode {
	b.Helper()
	a := netip.MustParseAddr
	tab := fib.NewTable()
	add := func(r fib.Route) {
		if err := tab.Insert(r); err != nil {
			b.Fatal(err)
		}
	}
	add(fib.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Type: fib.Unicast, Gateway: a("192.168.50.1"), Dev: "ens33", Protocol: fib.ProtoStatic})
	add(fib.Route{Dst: netip.MustParsePrefix("10.250.0.0/16"), Type: fib.Unreachable})
	add(fib.Route{Dst: netip.MustParsePrefix("192.168.50.0/24"), Type: fib.Unicast, Dev: "ens33", Protocol: fib.ProtoKernel, Scope: fib.ScopeLink, PrefSrc: a(nodeAddr)})
	ports := []dataplane.Port{
		{ID: 0, Name: "ens33", Kind: dataplane.PortUnderlay, MTU: 1500, Addr: a(nodeAddr)},
		{ID: 1, Name: "tunl0", Kind: dataplane.PortTunnel, MTU: 1480, Addr: a("10.200.0.1")},
		{ID: 2, Name: "host", Kind: dataplane.PortHost, MTU: 1500},
	}
	n := &benchNode{}
	for i := range benchBlocks {
		// 10.64.0.0/12 in /26 blocks, owned by nodes 192.168.50.11-.210.
		base := netip.AddrFrom4([4]byte{10, byte(64 + i>>10), byte(i >> 2), byte(i&3) << 6})
		gw := netip.AddrFrom4([4]byte{192, 168, 50, byte(11 + i%200)})
		r := fib.Route{Dst: netip.PrefixFrom(base, 26), Type: fib.Unicast, Gateway: gw, Dev: "ens33", Protocol: fib.ProtoBird}
		if i%2 == 1 {
			r.Dev, r.OnLink = "tunl0", true
		}
		add(r)
		n.remote = append(n.remote, netip.AddrFrom4([4]byte{10, byte(64 + i>>10), byte(i >> 2), byte(i&3)<<6 | byte(1+i%62)}))
	}
	for i := range (benchWorkloads + 61) / 62 {
		add(fib.Route{Dst: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 2), byte(i&3) << 6}), 26), Type: fib.Blackhole, Protocol: fib.ProtoBird})
	}
	for i := range benchWorkloads {
		blk := i / 62
		w := netip.AddrFrom4([4]byte{10, 200, byte(blk >> 2), byte(blk&3)<<6 | byte(2+i%62)})
		name := fmt.Sprintf("cali%011x", i)
		add(fib.Route{Dst: netip.PrefixFrom(w, 32), Type: fib.Unicast, Dev: name, Scope: fib.ScopeLink})
		ports = append(ports, dataplane.Port{ID: dataplane.PortID(10 + i), Name: name, Kind: dataplane.PortWorkload, MTU: 1500})
		n.local = append(n.local, w)
	}
	cfg.Ports = ports
	cfg.DefaultSource = a(nodeAddr)
	f, err := dataplane.New(tab, cfg)
	if err != nil {
		b.Fatal(err)
	}
	n.f = f
	return n
}

// mix fills pkts with 1<<12 packets made by mk from a random remote or
// local destination (7 in 10 remote).
func (n *benchNode) mix(mk func(rng *rand.Rand, dst netip.Addr) []byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	n.pkts, n.tmpl = nil, nil
	for range 1 << 12 {
		dst := n.remote[rng.IntN(len(n.remote))]
		if rng.IntN(10) >= 7 {
			dst = n.local[rng.IntN(len(n.local))]
		}
		p := mk(rng, dst)
		n.pkts = append(n.pkts, p)
		n.tmpl = append(n.tmpl, append([]byte(nil), p[:20]...))
	}
}

func benchPacket(src, dst netip.Addr, ttl byte, size int, df bool) []byte {
	spec := ipSpec{ttl: ttl, df: df, src: src.String(), dst: dst.String(), payload: udp(size - 20)}
	return spec.pkt()
}

// anyAction makes run accept every decision.
const anyAction = dataplane.Action(255)

// run forwards the packets round robin, restoring each header first (a
// 20-byte copy) since forwarding decrements the TTL in place.
func (n *benchNode) run(b *testing.B, in dataplane.PortID, want dataplane.Action) {
	icmp := make([]byte, dataplane.MaxICMPErrorLen)
	mask := len(n.pkts) - 1
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := n.pkts[i&mask]
		copy(p, n.tmpl[i&mask])
		if d := n.f.Forward(p, in, icmp); d.Action != want && want != anyAction {
			b.Fatalf("%v %v", d.Action, d.Reason)
		}
	}
}

func BenchmarkForward(b *testing.B) {
	n := newBenchNode(b, dataplane.Config{})
	src := netip.MustParseAddr("10.64.0.5")
	n.mix(func(_ *rand.Rand, dst netip.Addr) []byte { return benchPacket(src, dst, 64, 64, true) })
	b.Run("mix", func(b *testing.B) { n.run(b, 0, anyAction) })
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			pkts := make([][]byte, len(n.pkts))
			for i := range pkts {
				pkts[i] = append([]byte(nil), n.pkts[i]...)
			}
			icmp := make([]byte, dataplane.MaxICMPErrorLen)
			i := 0
			for pb.Next() {
				p := pkts[i&(len(pkts)-1)]
				copy(p, n.tmpl[i&(len(pkts)-1)])
				n.f.Forward(p, 0, icmp)
				i++
			}
		})
	})
	n.mix(func(_ *rand.Rand, _ netip.Addr) []byte { return benchPacket(src, n.local[7], 64, 64, true) })
	b.Run("one-destination", func(b *testing.B) { n.run(b, 0, dataplane.Deliver) })
	n.mix(func(_ *rand.Rand, _ netip.Addr) []byte {
		return benchPacket(src, netip.MustParseAddr(nodeAddr), 64, 64, true)
	})
	b.Run("local", func(b *testing.B) { n.run(b, 0, dataplane.Local) })
	n.mix(func(_ *rand.Rand, dst netip.Addr) []byte {
		p := benchPacket(src, dst, 64, 64, true)
		p[10] ^= 1
		return p
	})
	b.Run("bad-checksum", func(b *testing.B) { n.run(b, 0, dataplane.Drop) })
}

func BenchmarkICMPError(b *testing.B) {
	src := netip.MustParseAddr("10.64.0.5")
	unlimited := dataplane.Config{ICMPRateLimit: -1, RouteErrorCost: -1}
	b.Run("time-exceeded", func(b *testing.B) {
		n := newBenchNode(b, unlimited)
		n.mix(func(_ *rand.Rand, dst netip.Addr) []byte { return benchPacket(src, dst, 1, 1400, false) })
		n.run(b, 0, dataplane.ICMPError)
	})
	b.Run("frag-needed", func(b *testing.B) {
		n := newBenchNode(b, dataplane.Config{})
		n.mix(func(_ *rand.Rand, dst netip.Addr) []byte { return benchPacket(src, dst, 64, 1501, true) })
		n.run(b, 0, dataplane.ICMPError)
	})
	b.Run("host-unreachable", func(b *testing.B) {
		n := newBenchNode(b, unlimited)
		n.mix(func(rng *rand.Rand, _ netip.Addr) []byte {
			dst := netip.AddrFrom4([4]byte{10, 250, byte(rng.IntN(256)), byte(rng.IntN(256))})
			return benchPacket(src, dst, 64, 100, false)
		})
		n.run(b, 0, dataplane.ICMPError)
	})
	b.Run("blackhole", func(b *testing.B) {
		n := newBenchNode(b, unlimited)
		n.mix(func(_ *rand.Rand, _ netip.Addr) []byte {
			return benchPacket(src, netip.MustParseAddr("10.200.4.60"), 64, 100, false)
		})
		n.run(b, 0, dataplane.Drop)
	})
	b.Run("rate-limited", func(b *testing.B) {
		n := newBenchNode(b, dataplane.Config{})
		n.mix(func(_ *rand.Rand, dst netip.Addr) []byte { return benchPacket(src, dst, 1, 100, false) })
		n.run(b, 0, anyAction) // the first 6 are sent, the rest suppressed
	})
}

func BenchmarkFragment(b *testing.B) {
	for _, c := range []struct {
		size, mtu int
	}{{1500, 576}, {1500, 1480}, {9000, 1500}, {65000, 1500}} {
		b.Run(fmt.Sprintf("%d-into-%d", c.size, c.mtu), func(b *testing.B) {
			pkt := ipSpec{src: web1, dst: remote, payload: udp(c.size - 20)}.pkt()
			buf := make([]byte, c.mtu)
			frags := 0
			emit := func([]byte) error { frags++; return nil }
			b.SetBytes(int64(c.size))
			b.ReportAllocs()
			for b.Loop() {
				if err := dataplane.Fragment(pkt, c.mtu, buf, emit); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(frags)/float64(b.N), "frags/op")
		})
	}
}

package fib

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gaissmai/bart"
)

// Benchmarks compare Table.Lookup with a raw bart.Table[int] holding the
// same prefixes, on two kinds of table:
//
//   - random: distinct random IPv4 prefixes of length 8 to 32;
//   - calico: what a node of a large Calico cluster holds: a default route,
//     the node's subnet, /26 blocks from IP pools (one /16 like Calico's
//     default pool for the 1k table, consecutive /12 pools for the larger
//     ones) that other nodes announce over BGP, its own blocks as
//     blackholes, and /32 routes to local workloads (1/16 of the routes).
//
// Tables are built once per kind and size and kept for the life of the test
// binary; the 1M tables take a few seconds to build.

var benchSizes = []struct {
	name string
	n    int
}{
	{"1k", 1_000},
	{"100k", 100_000},
	{"1M", 1_000_000},
}

// benchSet is one table in both representations, and addresses to look up.
type benchSet struct {
	routes []Route
	fib    *Table
	bart   *bart.Table[int]
	addrs  []netip.Addr // len is a power of two
}

const benchAddrs = 1 << 16

var benchSets sync.Map // "kind/size" → func() *benchSet (sync.OnceValue)

func getBenchSet(kind string, n int) *benchSet {
	key := fmt.Sprintf("%s/%d", kind, n)
	build := func() *benchSet {
		rng := rand.New(rand.NewPCG(uint64(n), 42))
		var routes []Route
		var addrs []netip.Addr
		switch kind {
		case "random":
			routes, addrs = randomRoutes(rng, n)
		case "calico":
			routes, addrs = calicoRoutes(rng, n)
		default:
			panic(kind)
		}
		s := &benchSet{routes: routes, fib: NewTable(), bart: new(bart.Table[int]), addrs: addrs}
		for i, r := range routes {
			if err := s.fib.Insert(r); err != nil {
				panic(err)
			}
			s.bart.Insert(r.Dst, i)
		}
		return s
	}
	f, _ := benchSets.LoadOrStore(key, sync.OnceValue(build))
	return f.(func() *benchSet)()
}

// randomRoutes returns n distinct random prefixes and lookup addresses, half
// of them inside the prefixes and half anywhere.
func randomRoutes(rng *rand.Rand, n int) ([]Route, []netip.Addr) {
	seen := make(map[netip.Prefix]bool, n)
	routes := make([]Route, 0, n)
	for len(routes) < n {
		p := netip.PrefixFrom(randAddr4(rng), 8+rng.IntN(25)).Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		routes = append(routes, Route{
			Dst:      p,
			Type:     Unicast,
			Gateway:  netip.AddrFrom4([4]byte{192, 168, 50, byte(1 + len(routes)%250)}),
			Dev:      "ens33",
			Protocol: ProtoBird,
		})
	}
	addrs := make([]netip.Addr, benchAddrs)
	for i := range addrs {
		if i%2 == 0 {
			addrs[i] = randAddr4(rng)
		} else {
			addrs[i] = randAddrIn(rng, routes[rng.IntN(n)].Dst)
		}
	}
	return routes, addrs
}

// calicoRoutes returns n routes of a Calico node and lookup addresses: 80%
// in blocks, 10% to local workloads, 10% elsewhere (the default route).
func calicoRoutes(rng *rand.Rand, n int) ([]Route, []netip.Addr) {
	nworkloads := n / 16
	nblocks := n - nworkloads - 2
	nlocal := (nworkloads + 47) / 48 // local blocks, 48 workloads each

	// Pools: a /16 holds 1024 /26 blocks, a /12 16384. Fill them to about
	// 80%, picking blocks at random.
	var pools []netip.Prefix
	if nblocks <= 1024*8/10 {
		pools = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	} else {
		for i := range (nblocks*10/8 + 16383) / 16384 {
			pools = append(pools, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(10 + i/16), byte(i % 16 << 4), 0, 0}), 12))
		}
	}
	perPool := 1 << (26 - pools[0].Bits())
	block := func(k int) netip.Prefix {
		base := pools[k/perPool].Addr().As4()
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
		v += uint32(k%perPool) << 6
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 26)
	}

	routes := make([]Route, 0, n)
	routes = append(routes,
		Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Type: Unicast, Gateway: netip.MustParseAddr("192.168.50.1"), Dev: "ens33", Protocol: ProtoStatic, Metric: 100},
		Route{Dst: netip.MustParsePrefix("192.168.50.0/24"), Type: Unicast, Dev: "ens33", Protocol: ProtoKernel, Scope: ScopeLink, PrefSrc: netip.MustParseAddr("192.168.50.10"), Metric: 100})
	var blocks, workloads []netip.Prefix
	for i, k := range rng.Perm(len(pools) * perPool)[:nblocks] {
		b := block(k)
		blocks = append(blocks, b)
		if i < nlocal {
			routes = append(routes, Route{Dst: b, Type: Blackhole, Protocol: ProtoBird})
			continue
		}
		routes = append(routes, Route{
			Dst:      b,
			Type:     Unicast,
			Gateway:  netip.AddrFrom4([4]byte{192, 168, 50, byte(11 + i%240)}),
			Dev:      "tunl0",
			Protocol: ProtoBird,
			OnLink:   true,
		})
	}
	for i := range nworkloads {
		a := blocks[i/48].Addr().As4()
		a[3] += byte(1 + i%48)
		w := netip.PrefixFrom(netip.AddrFrom4(a), 32)
		workloads = append(workloads, w)
		routes = append(routes, Route{Dst: w, Type: Unicast, Dev: fmt.Sprintf("cali%011x", i), Protocol: ProtoBoot, Scope: ScopeLink})
	}

	addrs := make([]netip.Addr, benchAddrs)
	for i := range addrs {
		switch {
		case i%10 == 0:
			addrs[i] = randAddr4(rng)
		case i%10 == 1 && len(workloads) > 0:
			addrs[i] = workloads[rng.IntN(len(workloads))].Addr()
		default:
			addrs[i] = randAddrIn(rng, blocks[rng.IntN(len(blocks))])
		}
	}
	return routes, addrs
}

func randAddr4(rng *rand.Rand) netip.Addr {
	v := rng.Uint32()
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func randAddrIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	if p.Bits() < 32 {
		v |= rng.Uint32() >> p.Bits()
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// BenchmarkLookup: Table.Lookup (fib) next to bart.Table[int].Lookup (bart)
// on the same prefixes and addresses.
func BenchmarkLookup(b *testing.B) {
	for _, kind := range []string{"random", "calico"} {
		b.Run(kind, func(b *testing.B) {
			for _, size := range benchSizes {
				b.Run(size.name, func(b *testing.B) {
					b.Run("fib", func(b *testing.B) {
						s := getBenchSet(kind, size.n)
						mask := len(s.addrs) - 1
						found := 0
						b.ReportAllocs()
						i := 0
						for b.Loop() {
							if r, ok := s.fib.Lookup(s.addrs[i&mask]); ok && r.Type == Unicast {
								found++
							}
							i++
						}
						b.ReportMetric(float64(found)/float64(i), "unicast/op")
					})
					b.Run("fibref", func(b *testing.B) {
						s := getBenchSet(kind, size.n)
						mask := len(s.addrs) - 1
						found := 0
						b.ReportAllocs()
						i := 0
						for b.Loop() {
							if r := s.fib.LookupRef(s.addrs[i&mask]); r != nil && r.Type == Unicast {
								found++
							}
							i++
						}
						b.ReportMetric(float64(found)/float64(i), "unicast/op")
					})
					b.Run("bart", func(b *testing.B) {
						s := getBenchSet(kind, size.n)
						mask := len(s.addrs) - 1
						found := 0
						b.ReportAllocs()
						i := 0
						for b.Loop() {
							if v, ok := s.bart.Lookup(s.addrs[i&mask]); ok && s.routes[v].Type == Unicast {
								found++
							}
							i++
						}
						b.ReportMetric(float64(found)/float64(i), "unicast/op")
					})
				})
			}
		})
	}
}

// BenchmarkUpdate measures route churn on a Calico table while a reader
// goroutine loops over Lookup: each op is one Delete, Insert or Replace
// (a workload /32 going away and coming back, a remote block moving to
// another node and back). It reports updates/s and the reader's lookups/s.
// BenchmarkLookupRatio times Lookup, LookupRef and raw bart interleaved,
// 4096 lookups of each in turn (each on its own addresses, in rotating
// order, so that none runs on caches another warmed), and reports each
// one's time per lookup and the ratios to bart: on a shared, noisy
// machine the separate benchmarks above run seconds apart and their ratio
// swings by 2x, while interleaved runs see the same load.
func BenchmarkLookupRatio(b *testing.B) {
	for _, kind := range []string{"random", "calico"} {
		for _, size := range benchSizes {
			b.Run(kind+"/"+size.name, func(b *testing.B) {
				s := getBenchSet(kind, size.n)
				mask := len(s.addrs) - 1
				const chunk = 4096
				var took [3]time.Duration // fib, ref, bart
				found := 0
				run := func(which, at int) {
					t0 := time.Now()
					switch which {
					case 0:
						for k := range chunk {
							if r, ok := s.fib.Lookup(s.addrs[(at+k)&mask]); ok && r.Type == Unicast {
								found++
							}
						}
					case 1:
						for k := range chunk {
							if r := s.fib.LookupRef(s.addrs[(at+k)&mask]); r != nil && r.Type == Unicast {
								found++
							}
						}
					case 2:
						for k := range chunk {
							if v, ok := s.bart.Lookup(s.addrs[(at+k)&mask]); ok && s.routes[v].Type == Unicast {
								found++
							}
						}
					}
					took[which] += time.Since(t0)
				}
				i, n := 0, 0
				for b.Loop() {
					for k := range 3 {
						run((n+k)%3, i)
						i += chunk
					}
					n++
				}
				lookups := float64(n * chunk)
				b.ReportMetric(float64(took[0])/lookups, "fib-ns/lookup")
				b.ReportMetric(float64(took[1])/lookups, "ref-ns/lookup")
				b.ReportMetric(float64(took[2])/lookups, "bart-ns/lookup")
				b.ReportMetric(float64(took[0])/float64(took[2]), "fib/bart")
				b.ReportMetric(float64(took[1])/float64(took[2]), "ref/bart")
				if found == 0 {
					b.Fatal("no lookup found a unicast route")
				}
			})
		}
	}
}

func BenchmarkUpdate(b *testing.B) {
	for _, size := range benchSizes {
		b.Run("calico/"+size.name, func(b *testing.B) {
			s := getBenchSet("calico", size.n)
			var wl, blk []Route
			for _, r := range s.routes {
				switch {
				case r.Dst.Bits() == 32:
					wl = append(wl, r)
				case r.Type == Unicast && r.Dst.Bits() == 26:
					blk = append(blk, r)
				}
			}
			var stop atomic.Bool
			var lookups atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				mask := len(s.addrs) - 1
				for i := 0; !stop.Load(); {
					for range 1024 {
						s.fib.Lookup(s.addrs[i&mask])
						i++
					}
					lookups.Add(1024)
				}
			}()

			i := 0
			var l0 int64
			for b.Loop() {
				if i == 0 {
					l0 = lookups.Load()
				}
				w, r := wl[i/4%len(wl)], blk[i/4%len(blk)]
				var err error
				switch i % 4 {
				case 0:
					if !s.fib.Delete(w.Dst, w.Metric) {
						err = fmt.Errorf("delete %v: not found", w)
					}
				case 1:
					err = s.fib.Insert(w)
				case 2:
					moved := r
					moved.Gateway = netip.AddrFrom4([4]byte{192, 168, 51, 1})
					err = s.fib.Replace(moved)
				case 3:
					err = s.fib.Replace(r)
				}
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
			l1 := lookups.Load()
			stop.Store(true)
			wg.Wait()
			// Leave the shared table as it was.
			if i%4 == 1 {
				s.fib.Insert(wl[i/4%len(wl)])
			}
			if i%4 == 3 {
				s.fib.Replace(blk[i/4%len(blk)])
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(i)/sec, "updates/s")
			b.ReportMetric(float64(l1-l0)/sec, "lookups/s")
		})
	}
}

func BenchmarkString(b *testing.B) {
	r := Route{Dst: pfx("192.168.50.0/24"), Type: Unicast, Dev: "ens33", Protocol: ProtoKernel, Scope: ScopeLink, PrefSrc: addr("192.168.50.10"), Metric: 100}
	buf := make([]byte, 0, 128)
	b.Run("AppendTo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = r.AppendTo(buf[:0])
		}
	})
	b.Run("String", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = r.String()
		}
	})
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10 metric 100"); err != nil {
			b.Fatal(err)
		}
	}
}

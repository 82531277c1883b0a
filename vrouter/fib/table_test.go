package fib

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// node1Routes are node1's routes from the seed's Calico BGP example, in no
// particular order.
func node1Routes() []Route {
	return []Route{
		{Dst: pfx("192.168.50.0/24"), Type: Unicast, Dev: "ens33", Protocol: ProtoKernel, Scope: ScopeLink, PrefSrc: addr("192.168.50.10"), Metric: 100},
		{Dst: pfx("10.244.166.128/26"), Type: Blackhole, Protocol: ProtoBird},
		{Dst: pfx("10.244.135.0/26"), Type: Unicast, Gateway: addr("192.168.50.12"), Dev: "ens33", Protocol: ProtoBird},
		{Dst: pfx("172.17.0.0/16"), Type: Unicast, Dev: "docker0", Protocol: ProtoKernel, Scope: ScopeLink, PrefSrc: addr("172.17.0.1")},
		{Dst: pfx("10.244.166.128/32"), Type: Unicast, Dev: "cali717821d73f3", Protocol: ProtoBoot, Scope: ScopeLink},
		{Dst: pfx("0.0.0.0/0"), Type: Unicast, Gateway: addr("192.168.50.1"), Dev: "ens33", Protocol: ProtoStatic, Metric: 100},
		{Dst: pfx("10.244.104.0/26"), Type: Unicast, Gateway: addr("192.168.50.11"), Dev: "ens33", Protocol: ProtoBird},
	}
}

// seedNode1 is `ip route` on node1 in the seed document (000_*.txt), typed
// by hand.
const seedNode1 = `default via 192.168.50.1 dev ens33 proto static metric 100
10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird
10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird
10.244.166.128 dev cali717821d73f3 scope link
blackhole 10.244.166.128/26 proto bird
172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1
192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10 metric 100
`

func TestTableSeedOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		routes := node1Routes()
		rng.Shuffle(len(routes), func(i, j int) { routes[i], routes[j] = routes[j], routes[i] })
		tab := NewTable()
		for _, r := range routes {
			if err := tab.Insert(r); err != nil {
				t.Fatal(err)
			}
		}
		if got := Format(tab.Routes()); got != seedNode1 {
			t.Fatalf("inserted in order %v, Format(Routes()) =\n%s\nwant\n%s", routes, got, seedNode1)
		}
		var walked []Route
		tab.Walk(func(r Route) bool { walked = append(walked, r); return true })
		if got := Format(walked); got != seedNode1 {
			t.Fatalf("Walk order =\n%s\nwant\n%s", got, seedNode1)
		}
	}
}

func TestTableWalkStops(t *testing.T) {
	tab := NewTable()
	for _, r := range node1Routes() {
		if err := tab.Insert(r); err != nil {
			t.Fatal(err)
		}
	}
	var got []Route
	tab.Walk(func(r Route) bool {
		got = append(got, r)
		return len(got) < 2
	})
	want := "default via 192.168.50.1 dev ens33 proto static metric 100\n" +
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird\n"
	if Format(got) != want {
		t.Errorf("Walk stopped after\n%s\nwant\n%s", Format(got), want)
	}
}

func TestTableWalkOrderMetricsAndFamilies(t *testing.T) {
	tab := NewTable()
	for _, s := range []string{
		"2001:db8::/32 dev e metric 1",
		"10.0.0.0/8 dev b metric 20",
		"10.0.0.0/8 dev a metric 10",
		"10.0.0.0/16 dev c",
		"9.255.255.255 dev d",
		"10.0.0.0/8 dev z",
		"::/0 via fe80::1",
	} {
		r, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := tab.Insert(r); err != nil {
			t.Fatal(err)
		}
	}
	want := "9.255.255.255 dev d\n" +
		"10.0.0.0/16 dev c\n" +
		"10.0.0.0/8 dev z\n" +
		"10.0.0.0/8 dev a metric 10\n" +
		"10.0.0.0/8 dev b metric 20\n" +
		"default via fe80::1\n" +
		"2001:db8::/32 dev e metric 1\n"
	if got := Format(tab.Routes()); got != want {
		t.Errorf("Routes() =\n%s\nwant\n%s", got, want)
	}
}

func TestTableInsertReplaceDelete(t *testing.T) {
	tab := NewTable()
	if tab.Len() != 0 || tab.Routes() != nil {
		t.Fatalf("new table: Len %d, Routes %v", tab.Len(), tab.Routes())
	}
	if _, ok := tab.Lookup(addr("10.244.104.5")); ok {
		t.Fatal("Lookup in an empty table found a route")
	}

	viaNode2 := Route{Dst: pfx("10.244.104.0/26"), Type: Unicast, Gateway: addr("192.168.50.11"), Dev: "ens33", Protocol: ProtoBird}
	viaTunl := Route{Dst: pfx("10.244.104.0/26"), Type: Unicast, Gateway: addr("192.168.50.11"), Dev: "tunl0", Protocol: ProtoBird, OnLink: true}

	if err := tab.Insert(viaNode2); err != nil {
		t.Fatal(err)
	}
	err := tab.Insert(viaTunl)
	if err == nil {
		t.Fatal("second Insert with the same prefix and metric succeeded")
	}
	if want := "route 10.244.104.0/26 metric 0: already exists"; err.Error() != want {
		t.Errorf("duplicate Insert error = %q, want %q", err, want)
	}
	if got, _ := tab.Lookup(addr("10.244.104.5")); got != viaNode2 {
		t.Errorf("after failed Insert, Lookup = %v, want %v", got, viaNode2)
	}
	if tab.Len() != 1 {
		t.Errorf("Len = %d, want 1", tab.Len())
	}

	if err := tab.Replace(viaTunl); err != nil {
		t.Fatal(err)
	}
	if got, _ := tab.Lookup(addr("10.244.104.5")); got != viaTunl {
		t.Errorf("after Replace, Lookup = %v, want %v", got, viaTunl)
	}
	if got := tab.Get(pfx("10.244.104.0/26")); len(got) != 1 || got[0] != viaTunl {
		t.Errorf("after Replace, Get = %v, want [%v]", got, viaTunl)
	}
	if tab.Len() != 1 {
		t.Errorf("after Replace, Len = %d, want 1", tab.Len())
	}

	// Replace of a route that does not exist adds it.
	other := Route{Dst: pfx("10.244.135.0/26"), Type: Unicast, Gateway: addr("192.168.50.12"), Dev: "ens33", Protocol: ProtoBird}
	if err := tab.Replace(other); err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 2 {
		t.Errorf("Len = %d, want 2", tab.Len())
	}

	// Get returns a copy.
	got := tab.Get(pfx("10.244.135.0/26"))
	got[0].Dev = "changed"
	if again := tab.Get(pfx("10.244.135.0/26")); again[0] != other {
		t.Errorf("changing Get's result changed the table: %v", again[0])
	}

	if tab.Delete(pfx("10.244.104.0/26"), 100) {
		t.Error("Delete with the wrong metric reported success")
	}
	if tab.Delete(pfx("10.244.0.0/16"), 0) {
		t.Error("Delete of an absent prefix reported success")
	}
	if !tab.Delete(pfx("10.244.104.0/26"), 0) {
		t.Error("Delete of an existing route reported failure")
	}
	if tab.Delete(pfx("10.244.104.0/26"), 0) {
		t.Error("second Delete reported success")
	}
	if r, ok := tab.Lookup(addr("10.244.104.5")); ok {
		t.Errorf("after Delete, Lookup found %v", r)
	}
	if got := tab.Get(pfx("10.244.104.0/26")); got != nil {
		t.Errorf("after Delete, Get = %v", got)
	}
	if tab.Len() != 1 {
		t.Errorf("Len = %d, want 1", tab.Len())
	}
	if got := Format(tab.Routes()); got != "10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird\n" {
		t.Errorf("Routes = %q", got)
	}
}

func TestTableMetrics(t *testing.T) {
	tab := NewTable()
	def := Route{Dst: pfx("0.0.0.0/0"), Type: Unicast, Gateway: addr("192.168.50.1"), Dev: "ens33", Protocol: ProtoStatic}
	m100 := Route{Dst: pfx("10.244.104.0/26"), Type: Unicast, Gateway: addr("192.168.50.11"), Dev: "ens33", Protocol: ProtoBird, Metric: 100}
	m50 := Route{Dst: pfx("10.244.104.0/26"), Type: Unicast, Gateway: addr("192.168.50.11"), Dev: "tunl0", Protocol: ProtoBird, Metric: 50, OnLink: true}
	m200 := Route{Dst: pfx("10.244.104.0/26"), Type: Blackhole, Protocol: ProtoBird, Metric: 200}
	for _, r := range []Route{def, m100, m200, m50} {
		if err := tab.Insert(r); err != nil {
			t.Fatal(err)
		}
	}
	a := addr("10.244.104.63")
	check := func(want Route) {
		t.Helper()
		if got, ok := tab.Lookup(a); !ok || got != want {
			t.Errorf("Lookup(%v) = %v, %v; want %v", a, got, ok, want)
		}
	}
	check(m50)
	if got := tab.Get(pfx("10.244.104.0/26")); len(got) != 3 || got[0] != m50 || got[1] != m100 || got[2] != m200 {
		t.Errorf("Get = %v, want metrics 50, 100, 200", got)
	}
	if tab.Len() != 4 {
		t.Errorf("Len = %d, want 4", tab.Len())
	}
	tab.Delete(m50.Dst, 50)
	check(m100)
	tab.Delete(m100.Dst, 100)
	check(m200)
	tab.Delete(m200.Dst, 200)
	check(def)
	if tab.Len() != 1 {
		t.Errorf("Len = %d, want 1", tab.Len())
	}
	// Outside the /26 the default always applied.
	if got, _ := tab.Lookup(addr("10.244.104.64")); got != def {
		t.Errorf("Lookup(10.244.104.64) = %v, want %v", got, def)
	}
}

func TestTableRejectsBadDestinations(t *testing.T) {
	tab := NewTable()
	for _, dst := range []netip.Prefix{
		netip.PrefixFrom(addr("10.244.104.1"), 26),
		netip.PrefixFrom(addr("10.0.0.1"), 0),
		netip.PrefixFrom(addr("2001:db8::1"), 64),
		{},
		netip.PrefixFrom(addr("10.0.0.0"), 33),
	} {
		r := Route{Dst: dst, Type: Unicast, Dev: "x"}
		if err := tab.Insert(r); err == nil {
			t.Errorf("Insert(%v) succeeded", dst)
		}
		if err := tab.Replace(r); err == nil {
			t.Errorf("Replace(%v) succeeded", dst)
		}
	}
	if tab.Len() != 0 || tab.Routes() != nil {
		t.Errorf("table not empty after rejected inserts: %v", tab.Routes())
	}
	err := tab.Insert(Route{Dst: netip.PrefixFrom(addr("10.244.104.1"), 26)})
	if want := "destination 10.244.104.1/26 has host bits set"; err == nil || err.Error() != want {
		t.Errorf("Insert error = %v, want %q", err, want)
	}

	// A prefix with host bits set does not name the masked route either.
	r := Route{Dst: pfx("10.244.104.0/26"), Type: Unicast, Dev: "x"}
	if err := tab.Insert(r); err != nil {
		t.Fatal(err)
	}
	if got := tab.Get(netip.PrefixFrom(addr("10.244.104.1"), 26)); got != nil {
		t.Errorf("Get with host bits set = %v", got)
	}
	if tab.Delete(netip.PrefixFrom(addr("10.244.104.1"), 26), 0) {
		t.Error("Delete with host bits set reported success")
	}
	if tab.Delete(netip.Prefix{}, 0) {
		t.Error("Delete of the zero Prefix reported success")
	}
	if tab.Len() != 1 {
		t.Errorf("Len = %d, want 1", tab.Len())
	}
	if _, ok := tab.Lookup(netip.Addr{}); ok {
		t.Error("Lookup of the zero Addr found a route")
	}
}

// TestTableLookupMatchesLinearScan applies random inserts, replaces and
// deletes to a Table and to a plain list, and checks Lookup against a linear
// scan of the list for longest prefix, then lowest metric.
func TestTableLookupMatchesLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	type key struct {
		dst    netip.Prefix
		metric uint32
	}
	// Prefixes are drawn from a small space so that they nest and collide.
	randPrefix := func() netip.Prefix {
		if rng.IntN(5) == 0 {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(rng.UintN(4)), byte(rng.UintN(256))})
			return netip.PrefixFrom(a, []int{0, 16, 32, 36, 40, 44, 48, 128}[rng.IntN(8)]).Masked()
		}
		a := netip.AddrFrom4([4]byte{10, byte(rng.UintN(4)), byte(rng.UintN(8)), byte(rng.UintN(256))})
		return netip.PrefixFrom(a, []int{0, 8, 12, 14, 16, 20, 22, 24, 26, 30, 31, 32, rng.IntN(33)}[rng.IntN(13)]).Masked()
	}
	randAddr := func() netip.Addr {
		if rng.IntN(5) == 0 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, byte(0xb7 + rng.UintN(2)), byte(rng.UintN(5)), byte(rng.UintN(256)), 15: byte(rng.UintN(256))})
		}
		return netip.AddrFrom4([4]byte{byte(9 + rng.UintN(2)), byte(rng.UintN(5)), byte(rng.UintN(9)), byte(rng.UintN(256))})
	}

	lookups := 0
	for trial := range 40 {
		tab := NewTable()
		model := map[key]Route{}
		var stored []key // every key ever stored, so that choices are reproducible
		for op := range 400 {
			r := Route{
				Dst:      randPrefix(),
				Type:     Unicast,
				Gateway:  netip.AddrFrom4([4]byte{192, 168, byte(trial), byte(op)}),
				Dev:      "eth" + strconv.Itoa(op),
				Protocol: ProtoBird,
				Metric:   []uint32{0, 0, 10, 100}[rng.IntN(4)],
			}
			k := key{r.Dst, r.Metric}
			_, exists := model[k]
			switch rng.IntN(4) {
			case 0, 1:
				err := tab.Insert(r)
				if exists != (err != nil) {
					t.Fatalf("Insert(%v) with existing=%v returned %v", r, exists, err)
				}
				if !exists {
					model[k] = r
					stored = append(stored, k)
				}
			case 2:
				if err := tab.Replace(r); err != nil {
					t.Fatal(err)
				}
				model[k] = r
				stored = append(stored, k)
			case 3:
				// Delete something that was stored most of the time.
				if len(stored) > 0 && rng.IntN(4) != 0 {
					k = stored[rng.IntN(len(stored))]
				}
				_, exists = model[k]
				if got := tab.Delete(k.dst, k.metric); got != exists {
					t.Fatalf("Delete(%v, %d) = %v, want %v", k.dst, k.metric, got, exists)
				}
				delete(model, k)
			}
		}
		if tab.Len() != len(model) {
			t.Fatalf("Len = %d, model has %d", tab.Len(), len(model))
		}
		routes := tab.Routes()
		if len(routes) != len(model) {
			t.Fatalf("Routes returned %d, model has %d", len(routes), len(model))
		}
		for _, r := range routes {
			if model[key{r.Dst, r.Metric}] != r {
				t.Fatalf("Routes has %v, model has %v", r, model[key{r.Dst, r.Metric}])
			}
		}
		for range 2000 {
			a := randAddr()
			var want Route
			found := false
			for _, r := range model {
				if !r.Dst.Contains(a) {
					continue
				}
				if !found || r.Dst.Bits() > want.Dst.Bits() ||
					r.Dst.Bits() == want.Dst.Bits() && r.Metric < want.Metric {
					want, found = r, true
				}
			}
			got, ok := tab.Lookup(a)
			if ok != found || got != want {
				t.Fatalf("trial %d: Lookup(%v) = %v, %v; linear scan finds %v, %v", trial, a, got, ok, want, found)
			}
			lookups++
		}
	}
	t.Logf("%d lookups checked", lookups)
}

// TestTableConcurrent runs readers that loop over Lookup and Walk while a
// writer inserts, replaces and deletes routes. Every route the writer stores
// is self-consistent (its device names its gateway and metric), so a reader
// that saw a half-written route, a route for the wrong prefix, or a route
// disappearing from under a permanent covering route would notice.
func TestTableConcurrent(t *testing.T) {
	tab := NewTable()
	base := Route{Dst: pfx("10.0.0.0/8"), Type: Unicast, Gateway: addr("192.0.2.1"), Dev: "base", Protocol: ProtoStatic}
	if err := tab.Insert(base); err != nil {
		t.Fatal(err)
	}
	const nblocks = 16
	var prefixes []netip.Prefix
	for k := range nblocks {
		prefixes = append(prefixes,
			netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(k), 0, 0}), 16),
			netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(k), 1, 0}), 24),
			netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(k), 1, 7}), 32))
	}
	devs := make([]string, 256)
	for v := range devs {
		devs[v] = "v" + strconv.Itoa(v)
	}
	// mk returns version v of the route to dst with the given metric.
	mk := func(dst netip.Prefix, v int, metric uint32) Route {
		return Route{
			Dst:      dst,
			Type:     Unicast,
			Gateway:  netip.AddrFrom4([4]byte{192, 0, byte(metric), byte(v)}),
			Dev:      devs[v],
			Protocol: ProtoBird,
			Scope:    ScopeLink,
			PrefSrc:  netip.AddrFrom4([4]byte{172, 16, byte(metric), byte(v)}),
			Metric:   metric,
			OnLink:   v%2 == 1,
		}
	}
	consistent := func(a netip.Addr, r Route) error {
		if r == base {
			return nil
		}
		gw, src := r.Gateway.As4(), r.PrefSrc.As4()
		v := int(gw[3])
		switch {
		case !r.Dst.Contains(a):
			return fmt.Errorf("route %v does not contain %v", r, a)
		case r.Dst.Bits() != 16 && r.Dst.Bits() != 24 && r.Dst.Bits() != 32:
			return fmt.Errorf("route %v was never stored", r)
		case r.Metric != 0 && r.Metric != 10:
			return fmt.Errorf("route %v has a metric never stored", r)
		case r != mk(r.Dst, v, r.Metric) || src[3] != gw[3]:
			return fmt.Errorf("route %v is inconsistent", r)
		}
		return nil
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var nlookups, nwalks atomic.Int64
	var nerr atomic.Int32
	fail := func(format string, args ...any) {
		if nerr.Add(1) <= 5 {
			t.Errorf(format, args...)
		}
	}
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			n := int64(0)
			for !stop.Load() {
				a := netip.AddrFrom4([4]byte{10, byte(rng.UintN(nblocks + 2)), byte(rng.UintN(3)), byte(rng.UintN(16))})
				r, ok := tab.Lookup(a)
				switch {
				case !ok:
					fail("Lookup(%v) found nothing; 10.0.0.0/8 is always there", a)
				default:
					if err := consistent(a, r); err != nil {
						fail("Lookup(%v): %v", a, err)
					}
				}
				n++
			}
			nlookups.Add(n)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			var prev Route
			i := 0
			tab.Walk(func(r Route) bool {
				if i > 0 && compareRoutes(prev, r) >= 0 {
					fail("Walk: %v listed after %v", r, prev)
				}
				if err := consistent(r.Dst.Addr(), r); err != nil {
					fail("Walk: %v", err)
				}
				prev = r
				i++
				return true
			})
			nwalks.Add(1)
		}
	}()

	// The writer keeps a model of what it stored and checks it at the end.
	rng := rand.New(rand.NewPCG(8, 9))
	type key struct {
		dst    netip.Prefix
		metric uint32
	}
	model := map[key]Route{{base.Dst, 0}: base}
	deadline := time.Now().Add(300 * time.Millisecond)
	nupdates := 0
	for nupdates < 2000 || time.Now().Before(deadline) {
		r := mk(prefixes[rng.IntN(len(prefixes))], rng.IntN(256), []uint32{0, 10}[rng.IntN(2)])
		k := key{r.Dst, r.Metric}
		switch rng.IntN(3) {
		case 0:
			if err := tab.Insert(r); err == nil {
				model[k] = r
			}
		case 1:
			if err := tab.Replace(r); err != nil {
				t.Fatal(err)
			}
			model[k] = r
		case 2:
			tab.Delete(r.Dst, r.Metric)
			delete(model, k)
		}
		nupdates++
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d updates, %d lookups, %d walks", nupdates, nlookups.Load(), nwalks.Load())
	if nlookups.Load() == 0 || nwalks.Load() == 0 {
		t.Error("readers did not run")
	}

	if tab.Len() != len(model) {
		t.Errorf("Len = %d, writer stored %d", tab.Len(), len(model))
	}
	for _, r := range tab.Routes() {
		if model[key{r.Dst, r.Metric}] != r {
			t.Errorf("table has %v, writer stored %v", r, model[key{r.Dst, r.Metric}])
		}
	}
}

// TestTableLookupDoesNotBlock checks that Lookup and Walk proceed while a
// writer holds the table.
func TestTableLookupDoesNotBlock(t *testing.T) {
	tab := NewTable()
	r := Route{Dst: pfx("10.0.0.0/8"), Type: Unicast, Dev: "x"}
	if err := tab.Insert(r); err != nil {
		t.Fatal(err)
	}
	tab.mu.Lock()
	defer tab.mu.Unlock()
	done := make(chan Route)
	go func() {
		got, _ := tab.Lookup(addr("10.1.2.3"))
		tab.Walk(func(Route) bool { return true })
		done <- got
	}()
	select {
	case got := <-done:
		if got != r {
			t.Errorf("Lookup = %v, want %v", got, r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Lookup blocked while the writer lock was held")
	}
}

func TestTableLookupAllocs(t *testing.T) {
	tab := NewTable()
	for _, r := range node1Routes() {
		if err := tab.Insert(r); err != nil {
			t.Fatal(err)
		}
	}
	a := addr("10.244.104.9")
	var got Route
	if n := testing.AllocsPerRun(1000, func() { got, _ = tab.Lookup(a) }); n != 0 {
		t.Errorf("Lookup allocates %v times per call, want 0", n)
	}
	if got.Dev != "ens33" {
		t.Errorf("Lookup(%v) = %v", a, got)
	}
}

// LookupRef finds what Lookup finds, and a route it returned stays as it
// was when the table changes afterwards (snapshots are never written to).
func TestTableLookupRef(t *testing.T) {
	tab := NewTable()
	if r := tab.LookupRef(addr("10.244.77.5")); r != nil {
		t.Fatalf("LookupRef in an empty table = %v", r)
	}
	viaNode2 := Route{Dst: pfx("10.244.77.0/26"), Type: Unicast, Gateway: addr("192.168.50.11"), Dev: "ens33", Protocol: ProtoBird}
	viaTunl := Route{Dst: pfx("10.244.77.0/26"), Type: Unicast, Gateway: addr("192.168.50.11"), Dev: "tunl0", Protocol: ProtoBird, OnLink: true}
	for _, r := range node1Routes() {
		if err := tab.Insert(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := tab.Insert(viaNode2); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.244.77.5", "192.168.50.99", "10.244.135.1", "10.244.166.130", "8.8.8.8", "10.244.200.1"} {
		want, ok := tab.Lookup(addr(a))
		got := tab.LookupRef(addr(a))
		if ok != (got != nil) || ok && *got != want {
			t.Errorf("LookupRef(%s) = %v, Lookup = %v, %v", a, got, want, ok)
		}
	}
	r := tab.LookupRef(addr("10.244.77.5"))
	if err := tab.Replace(viaTunl); err != nil {
		t.Fatal(err)
	}
	if *r != viaNode2 {
		t.Errorf("route returned before Replace changed to %v", *r)
	}
	if got := tab.LookupRef(addr("10.244.77.5")); got == nil || *got != viaTunl {
		t.Errorf("after Replace, LookupRef = %v, want %v", got, viaTunl)
	}
	if !tab.Delete(pfx("10.244.77.0/26"), 0) {
		t.Fatal("Delete found no route")
	}
	if *r != viaNode2 {
		t.Errorf("route returned before Delete changed to %v", *r)
	}
}

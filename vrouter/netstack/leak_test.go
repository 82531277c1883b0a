package netstack_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netstack"
)

var allServices = []string{"tcp:80:http", "tcp:7:echo", "udp:53:echo", "tcp:5201:sink"}

// goMem returns the Go heap and goroutine stacks in use after a GC.
func goMem() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// settle waits until the goroutines number at most want, and returns
// how many there are.
func settle(want int) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Deleting a netstack workload frees its stack, its services and its
// port's reader: 200 add/del cycles (each workload pinged, its HTTP
// server used, on the other engine's netstack workload) leave no
// goroutines and no heap behind.
func TestAddDelFreesStack(t *testing.T) {
	const cycles = 200
	p := newPair(t)
	client := p.b.addStack(t, "caliB", "client", addrB)
	t.Cleanup(client.Close)
	cycle := func(i int) {
		st := p.a.addStack(t, "caliA", "api-1", addrA, allServices...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if i%10 == 0 {
			if _, err := client.Ping(ctx, addrA, uint16(i), 8); err != nil {
				t.Fatalf("cycle %d: ping: %v", i, err)
			}
			c, err := client.DialTCP(ctx, netip.AddrPortFrom(addrA, 80))
			if err != nil {
				t.Fatalf("cycle %d: connect: %v", i, err)
			}
			fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
			buf := make([]byte, 512)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := c.Read(buf); n == 0 {
				t.Fatalf("cycle %d: HTTP: %v", i, err)
			}
			c.Close()
		}
		p.a.delStack("caliA", st)
	}
	for i := range 5 { // warm up: pools, timers, the client's connections closing
		cycle(i)
	}
	g0 := settle(0)
	m0 := goMem()
	for i := range cycles {
		cycle(i)
	}
	g1 := settle(g0)
	m1 := goMem()
	t.Logf("%d add/del cycles: goroutines %d -> %d, Go heap and stacks %d kB -> %d kB", cycles, g0, g1, m0>>10, m1>>10)
	if g1 > g0 {
		t.Errorf("goroutines grew from %d to %d over %d add/del cycles", g0, g1, cycles)
	}
	if m1 > m0+4<<20 {
		t.Errorf("Go memory grew by %d kB over %d add/del cycles, want under 4 MB", (m1-m0)>>10, cycles)
	}
}

// maxIdleBytes is the most Go memory one idle netstack workload (its
// stack, its port, HTTP, echo and sink services) may take.
const maxIdleBytes = 400 << 10

// The memory of an idle netstack workload: heap and stacks of 200 of
// them, on a running engine, divided by 200.
func TestIdleMemory(t *testing.T) {
	const n = 200
	p := newPair(t)
	m0 := goMem()
	g0 := runtime.NumGoroutine()
	stacks := make([]*netstack.Stack, n)
	for i := range stacks {
		a := netip.AddrFrom4([4]byte{10, 244, 1, byte(i + 1)})
		stacks[i] = p.a.addStack(t, fmt.Sprintf("cali%d", i), fmt.Sprintf("w%d", i), a, allServices...)
	}
	m1 := goMem()
	g1 := runtime.NumGoroutine()
	per := (int64(m1) - int64(m0)) / n
	t.Logf("%d idle netstack workloads (4 services each): %d bytes and %.1f goroutines per workload", n, per, float64(g1-g0)/n)
	if per > maxIdleBytes {
		t.Errorf("%d bytes per idle netstack workload, want at most %d", per, maxIdleBytes)
	}
	for i, st := range stacks {
		p.a.delStack(fmt.Sprintf("cali%d", i), st)
	}
	// bare stacks, no services
	m0 = goMem()
	for i := range stacks {
		a := netip.AddrFrom4([4]byte{10, 244, 1, byte(i + 1)})
		stacks[i] = p.a.addStack(t, fmt.Sprintf("cali%d", i), fmt.Sprintf("w%d", i), a)
	}
	m1 = goMem()
	t.Logf("%d idle netstack workloads without services: %d bytes per workload", n, (int64(m1)-int64(m0))/n)
	for i, st := range stacks {
		p.a.delStack(fmt.Sprintf("cali%d", i), st)
	}
}

package netstack_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strings"
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

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
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

// quiet waits until the number of goroutines stays the same for 100 ms
// (at most five seconds) and returns it.
func quiet() int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			break
		}
		n = m
	}
	return n
}

// Deleting a netstack workload frees its stack, its services and its
// port's reader: 200 add/del cycles leave no goroutines and no heap
// behind. Every tenth cycle a client workload on the other engine pings
// the workload and fetches its HTTP page, and both are deleted with
// their connections still closing.
func TestAddDelFreesStack(t *testing.T) {
	const cycles = 200
	p := newPair(t)
	cycle := func(i int) {
		st := p.a.addStack(t, "caliA", "api-1", addrA, allServices...)
		defer p.a.delStack("caliA", st)
		if i%10 != 0 {
			return
		}
		client := p.b.addStack(t, "caliB", "client", addrB)
		defer p.b.delStack("caliB", client)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.Ping(ctx, addrA, uint16(i), 8); err != nil {
			t.Fatalf("cycle %d: ping: %v", i, err)
		}
		c, err := client.DialTCP(ctx, netip.AddrPortFrom(addrA, 80))
		if err != nil {
			t.Fatalf("cycle %d: connect: %v", i, err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(c); err != nil || !strings.HasSuffix(string(b), "api-1 "+addrA.String()+"\n") {
			t.Fatalf("cycle %d: HTTP: %q, %v", i, b, err)
		}
	}
	for i := range 100 { // warm up: the engines' batch pools, gVisor's pools
		cycle(i)
	}
	// Two rounds of cycles: a leak grows the live heap in both; the
	// engines' batch pools (4.4 MB a batch, made when readers first run
	// at once, never freed) may grow in one.
	g0 := quiet()
	var growth [2]int64
	for round := range growth {
		m0, a0 := goMem(), liveHeap()
		for i := range cycles {
			cycle(i)
		}
		g1 := settle(g0)
		m1, a1 := goMem(), liveHeap()
		growth[round] = int64(a1) - int64(a0)
		t.Logf("%d add/del cycles: goroutines %d -> %d, live heap %d kB -> %d kB, heap spans and stacks in use %d kB -> %d kB",
			cycles, g0, g1, a0>>10, a1>>10, m0>>10, m1>>10)
		if g1 > g0 {
			t.Errorf("goroutines grew from %d to %d over %d add/del cycles", g0, g1, cycles)
		}
	}
	// Measured: 0-120 kB per 200 cycles; one leaked stack with its
	// services is about 115 kB.
	const maxGrowth = 256 << 10
	if min(growth[0], growth[1]) > maxGrowth {
		t.Errorf("live heap grew by %d and %d kB over two rounds of %d add/del cycles, want under %d kB in one", growth[0]>>10, growth[1]>>10, cycles, maxGrowth>>10)
	}
}

// maxIdleBytes is the most Go memory one idle netstack workload (its
// stack, its port, HTTP, echo and sink services) may take: the issue's
// goal. Measured: about 81 kB (145 kB when each service held a goroutine
// and the UDP echo its buffer; sharing one random source and one iptables
// among the stacks saved 13 kB more, and was taken back: under a loaded
// CI run a 4 MB echo through a netstack workload then wedged twice).
const maxIdleBytes = 100 << 10

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
	limit := int64(maxIdleBytes)
	if raceBuild {
		// Measured under -race: 95-129 kB for the same 81 kB (the
		// instrumented goroutines' stacks grow, and a loaded CI run
		// caught them at 129 kB).
		limit = limit * 3 / 2
	}
	if per > limit {
		t.Errorf("%d bytes per idle netstack workload, want at most %d (race build: %v)", per, limit, raceBuild)
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

// A stack closed while its UDP echo service is busy echoing closes: the
// draining goroutine stops although a closed endpoint stays readable
// (it once spun for ever, and Close waited on it).
func TestCloseWhileEchoing(t *testing.T) {
	p := newPair(t)
	for round := range 20 {
		st := p.a.addStack(t, "caliA", "api-1", addrA, "udp:53:echo")
		client := p.b.addStack(t, "caliB", "client", addrB)
		c, err := client.DialUDP(netip.AddrPortFrom(addrA, 53))
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = c.Write([]byte("ping"))
				if i%64 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
		time.Sleep(20 * time.Millisecond) // the service is echoing
		closed := make(chan struct{})
		go func() {
			p.a.delStack("caliA", st)
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the stack did not close within 10 s while its UDP echo was busy", round)
		}
		close(stop)
		<-sent
		c.Close()
		p.b.delStack("caliB", client)
	}
}

package agent

import (
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
	"github.com/vrouter-lab/vrouter/vrouter/probe"
)

// liveHeapAndGoroutines returns the live heap after a GC and the number
// of goroutines once it has stayed the same for 100 ms (at most 5 s).
func liveHeapAndGoroutines() (uint64, int) {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			break
		}
		n = m
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, n
}

// 1,000 add/del cycles of a netstack workload with services through the
// agent's control API: each add gets the address the previous del freed
// (IPAM's lowest free one), a probe through the API from the workload
// answers (every 100th cycle), and neither goroutines nor the live heap
// grow.
func TestNetstackAddDelCycles(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	dir := t.TempDir()
	a1, a2 := netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("192.168.50.11")
	n := startNetstackNode(t, dir, "node1", kernelNS(t, "cyc-node1"), a1, a2, "node2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// a peer on the same node to probe
	peer, err := n.ctl.AddWorkload(ctx, config.Workload{Name: "peer", Stack: config.StackNetstack, Serve: []string{"tcp:80:http", "udp:53:echo"}})
	if err != nil {
		t.Fatal(err)
	}
	serve := []string{"tcp:80:http", "tcp:7:echo", "udp:53:echo", "tcp:5201:sink"}
	var first netip.Addr
	cycle := func(i int) {
		t.Helper()
		info, err := n.ctl.AddWorkload(ctx, config.Workload{Name: "api-1", Stack: config.StackNetstack, Serve: serve})
		if err != nil {
			t.Fatalf("cycle %d: add: %v", i, err)
		}
		if !first.IsValid() {
			first = info.Address
		} else if info.Address != first {
			t.Fatalf("cycle %d: address %v, the freed one was %v", i, info.Address, first)
		}
		if i%100 == 0 {
			res, err := n.ctl.Probe(ctx, "api-1", probe.Request{Kind: probe.KindHTTP, To: peer.Address, URL: "http://" + peer.Address.String() + "/"})
			if err != nil || !res.OK || res.Body != "peer "+peer.Address.String()+"\n" {
				t.Fatalf("cycle %d: probe api-1 -> peer: %+v %v", i, res, err)
			}
		}
		if err := n.ctl.DeleteWorkload(ctx, "api-1"); err != nil {
			t.Fatalf("cycle %d: del: %v", i, err)
		}
	}
	for i := range 50 { // warm up: pools of the engine, gVisor, IPAM
		cycle(i)
	}
	// Two rounds of 500 cycles: a leak grows the live heap in both; the
	// engine's batch pools (4.4 MB a batch, made when readers first run
	// at once, never freed) may grow in one.
	const cycles = 500
	var growth [2]int64
	for round := range growth {
		h0, g0 := liveHeapAndGoroutines()
		start := time.Now()
		for i := range cycles {
			cycle(i)
		}
		took := time.Since(start)
		h1, g1 := liveHeapAndGoroutines()
		growth[round] = int64(h1) - int64(h0)
		t.Logf("%d add/del cycles in %v (%v each): goroutines %d -> %d, live heap %d kB -> %d kB", cycles, took.Round(time.Millisecond), (took / cycles).Round(time.Microsecond), g0, g1, h0>>10, h1>>10)
		if g1 > g0 {
			t.Errorf("goroutines grew from %d to %d over %d add/del cycles", g0, g1, cycles)
		}
	}
	// One leaked stack with its services is about 100 kB: 500 would be
	// 50 MB. Allow 1 MB of pools and caches.
	if min(growth[0], growth[1]) > 1<<20 {
		t.Errorf("live heap grew by %d and %d kB over two rounds of %d add/del cycles, want under 1 MB in one", growth[0]>>10, growth[1]>>10, cycles)
	}
	st, err := n.ctl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Workloads) != 1 || st.Workloads[0].Name != "peer" {
		t.Errorf("workloads left: %+v", st.Workloads)
	}
	if _, ok := n.dp.Stack(config.InterfaceName("t", "api-1")); ok {
		t.Error("api-1's stack is still held")
	}
}

// The probe API runs from netstack workloads only, and refuses bad
// requests before they run.
func TestProbeAPI(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	dir := t.TempDir()
	a1, a2 := netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("192.168.50.11")
	n := startNetstackNode(t, dir, "node1", kernelNS(t, "prb-node1"), a1, a2, "node2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	api, err := n.ctl.AddWorkload(ctx, config.Workload{Name: "api-1", Stack: config.StackNetstack, Serve: []string{"udp:53:echo", "tcp:5201:sink"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.ctl.AddWorkload(ctx, config.Workload{Name: "client", Stack: config.StackNetstack}); err != nil {
		t.Fatal(err)
	}
	web, err := n.ctl.AddWorkload(ctx, config.Workload{Name: "web-1", Namespace: kernelNS(t, "prb-web")})
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.ctl.Probe(ctx, "client", probe.Request{Kind: probe.KindPing, To: api.Address, Count: 2, Interval: 10 * time.Millisecond})
	if err != nil || !res.OK || res.Received != 2 || res.From != "client" {
		t.Errorf("ping: %+v %v", res, err)
	}
	// the netstack client pings the namespace workload's kernel
	res, err = n.ctl.Probe(ctx, "client", probe.Request{Kind: probe.KindPing, To: web.Address, Count: 1})
	if err != nil || !res.OK {
		t.Errorf("ping web-1: %+v %v", res, err)
	}
	res, err = n.ctl.Probe(ctx, "client", probe.Request{Kind: probe.KindBulk, To: api.Address, Duration: 200 * time.Millisecond})
	if err != nil || !res.OK || res.Bytes == 0 {
		t.Errorf("bulk: %+v %v", res, err)
	}
	t.Logf("bulk between two netstack workloads of one engine: %.0f Mbit/s", res.Mbps)
	res, err = n.ctl.Probe(ctx, "client", probe.Request{Kind: probe.KindUDP, To: api.Address, Port: 54, Timeout: 300 * time.Millisecond})
	if err != nil || res.OK || res.Error == "" {
		t.Errorf("udp to a port without a service: %+v %v", res, err)
	}
	for _, c := range []struct {
		name string
		req  probe.Request
		want string
	}{
		{"web-1", probe.Request{Kind: probe.KindPing, To: api.Address}, "namespace workload"},
		{"nobody", probe.Request{Kind: probe.KindPing, To: api.Address}, "no workload nobody"},
		{"client", probe.Request{Kind: "trace", To: api.Address}, "unknown kind"},
	} {
		if res, err := n.ctl.Probe(ctx, c.name, c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("probe from %s %+v: %+v %v, want an error with %q", c.name, c.req, res, err, c.want)
		}
	}
}

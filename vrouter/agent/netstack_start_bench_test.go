package agent

import (
	"fmt"
	"net/netip"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// BenchmarkNetstackStart starts one agent whose config lists 1,000
// netstack workloads with services, as a node of the ns10x1000 scale lab
// does, and reports the start's time and the live heap it added per
// workload. Profile it with
//
//	sudo go test -run '^$' -bench NetstackStart -benchtime 1x -cpuprofile cpu.out ./vrouter/agent/
//
// and VROUTER_HEAPPROFILE=FILE writes a heap profile of the started agent.
func BenchmarkNetstackStart(b *testing.B) {
	netnstest.RequireRoot(b)
	netnstest.GuardRoot(b)
	const n = 1000
	ws := make([]config.Workload, n)
	for i := range ws {
		ws[i] = config.Workload{Name: fmt.Sprintf("w%d", i), Stack: config.StackNetstack,
			Serve: []string{"tcp:80:http", "tcp:5201:sink", "udp:53:echo"}}
	}
	a1, a2 := netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("192.168.50.11")
	for i := range b.N {
		dir := b.TempDir()
		h0, _ := liveHeapAndGoroutines()
		start := time.Now()
		node := startNetstackNode(b, dir, "node1", kernelNS(b, fmt.Sprint("st", i)), a1, a2, "node2", ws...)
		b.ReportMetric(time.Since(start).Seconds(), "s/start")
		if got := len(node.workloads); got != n {
			b.Fatalf("agent serves %d workloads, want %d", got, n)
		}
		h1, _ := liveHeapAndGoroutines()
		b.ReportMetric(float64(int64(h1)-int64(h0))/n/1024, "heap-kB/workload")
		if path := os.Getenv("VROUTER_HEAPPROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	}
}

package agent

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// BenchmarkNetstackStart starts one agent whose config lists 1,000
// netstack workloads with four services, as a node of the ns10x1000 scale lab
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
			Serve: []string{"tcp:80:http", "tcp:7:echo", "udp:53:echo", "tcp:5201:sink"}}
	}
	a1, a2 := netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("192.168.50.11")
	for i := range b.N {
		dir := b.TempDir()
		h0, _ := liveHeapAndGoroutines()
		debug.FreeOSMemory()
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		rss0 := selfRSS(b)
		start := time.Now()
		node := startNetstackNode(b, dir, "node1", kernelNS(b, fmt.Sprint("st", i)), a1, a2, "node2", ws...)
		b.ReportMetric(time.Since(start).Seconds(), "s/start")
		if got := len(node.workloads); got != n {
			b.Fatalf("agent serves %d workloads, want %d", got, n)
		}
		h1, _ := liveHeapAndGoroutines()
		b.ReportMetric(float64(int64(h1)-int64(h0))/n/1024, "heap-kB/workload")
		var m1 runtime.MemStats
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(int64(m1.StackInuse)-int64(m0.StackInuse))/n/1024, "stack-kB/workload")
		b.ReportMetric(float64(selfRSS(b)-rss0)/n, "RSS-kB/workload")
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

// selfRSS returns the test process's resident memory in kB.
func selfRSS(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

package agent

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// BenchmarkNetstackStart starts one agent whose config lists 1,000
// netstack workloads with services, as a node of the ns10x1000 scale lab
// does, and reports the start's time. Profile it with
//
//	sudo go test -run '^$' -bench NetstackStart -benchtime 1x -cpuprofile cpu.out ./vrouter/agent/
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
		start := time.Now()
		node := startNetstackNode(b, dir, "node1", kernelNS(b, fmt.Sprint("st", i)), a1, a2, "node2", ws...)
		b.ReportMetric(time.Since(start).Seconds(), "s/start")
		if got := len(node.workloads); got != n {
			b.Fatalf("agent serves %d workloads, want %d", got, n)
		}
	}
}

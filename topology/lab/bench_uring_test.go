package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// BenchmarkTUNIO compares the engines' two TUN I/O modes (plain read and
// write system calls; io_uring) on a shared machine, where one run after
// another differs by ±30%: two copies of the example lab are deployed
// side by side, one with each mode (VROUTER_TUN_IO in the agents'
// environment), and measured in alternation, rounds times (order A B, B
// A, ...): per lab and round 64-byte UDP web-1 -> web-3 (iperf3 -b 0,
// 5 s: delivered packets/s and the agents' CPU per forwarded packet per
// hop), one TCP stream (5 s) and the median of 20 pings.
//
//	sudo VROUTER_TUNIO_ROUNDS=4 go test -run '^$' -bench TUNIO -benchtime 1x ./topology/lab/
func BenchmarkTUNIO(b *testing.B) {
	netnstest.RequireRoot(b)
	netnstest.RequireCommand(b, "iperf3", "iperf3")
	netnstest.RequireCommand(b, "ping", "iputils-ping")
	netnstest.GuardRoot(b)
	rounds := 4
	if n, err := strconv.Atoi(os.Getenv("VROUTER_TUNIO_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	data, err := os.ReadFile("../../examples/calico-bgp.yaml")
	if err != nil {
		b.Fatal(err)
	}
	type side struct {
		mode    string
		name    string
		file    string
		pids    []int
		clients []*control.Client
		pps     []float64
		cpu     []float64
		gbps    []float64
		rtt     []float64
	}
	var labs []*side
	for _, mode := range []string{dataplane.TUNIORead, dataplane.TUNIOUring} {
		l := &side{mode: mode, name: fmt.Sprintf("tunio%s-%d", mode[:1], os.Getpid()%100000)}
		d := regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(data, []byte("name: "+l.name))
		// the second lab's workloads in other namespaces: lab names
		// differ, so do the namespaces; addresses may repeat
		l.file = filepath.Join(b.TempDir(), "lab.yaml")
		if err := os.WriteFile(l.file, d, 0o644); err != nil {
			b.Fatal(err)
		}
		if out, err := benchRunEnv(90*time.Second, []string{dataplane.TUNIOEnv + "=" + mode}, vrouterBin, "deploy", "-t", l.file); err != nil {
			benchRun(vrouterBin, "destroy", "-t", l.file)
			b.Fatalf("deploy %s: %v\n%s", l.name, err, out)
		}
		b.Cleanup(func() {
			if out, err := benchRun(vrouterBin, "destroy", "-t", l.file); err != nil {
				b.Errorf("destroy: %v\n%s", err, out)
			}
		})
		dir := filepath.Join(topology.StateRoot, l.name)
		for _, n := range []string{"node1", "node2", "node3"} {
			l.pids = append(l.pids, pidOf(b, filepath.Join(dir, "nodes", n+".pid")))
			l.clients = append(l.clients, control.NewClient(lab.ControlSocket(dir, n)))
		}
		labs = append(labs, l)
	}
	forwarded := func(l *side) uint64 { return forwardedSum(b, l.clients) }
	for r := range rounds {
		order := []*side{labs[0], labs[1]}
		if r%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, l := range order {
			in := func(ws string) []string { return []string{vrouterBin, "exec", "--lab", l.name, ws, "--"} }
			f0, c0 := forwarded(l), procTicks(l.pids...)
			pps, _ := benchUDP(b, in("web-3"), in("web-1"), "10.244.135.1")
			f1, c1 := forwarded(l), procTicks(l.pids...)
			cpu := 0.0
			if f1 > f0 {
				cpu = ticksToSeconds(c1-c0) * 1e6 / float64(f1-f0)
			}
			gbps, _ := benchIperf(b, in("web-3"), in("web-1"), "10.244.135.1")
			rtt := benchPing(b, in("web-1"), "10.244.135.1")
			l.pps, l.cpu, l.gbps, l.rtt = append(l.pps, pps), append(l.cpu, cpu), append(l.gbps, gbps), append(l.rtt, rtt)
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\n%-6s %-44s %-28s %-36s %-28s\n", "mode", "UDP64 delivered pps by round", "µs CPU/pkt/hop", "TCP Gbit/s", "RTT p50 µs")
	for _, l := range labs {
		row := func(v []float64, f string) string {
			var parts []string
			for _, x := range v {
				parts = append(parts, fmt.Sprintf(f, x))
			}
			return strings.Join(parts, " ") + " | " + fmt.Sprintf(f, median(v))
		}
		fmt.Fprintf(&t, "%-6s %-44s %-28s %-36s %-28s\n", l.mode, row(l.pps, "%.0f"), row(l.cpu, "%.1f"), row(l.gbps, "%.2f"), row(l.rtt, "%.0f"))
		b.ReportMetric(median(l.pps), l.mode+"-udp64-pps")
		b.ReportMetric(median(l.cpu), l.mode+"-µs/pkt/hop")
		b.ReportMetric(median(l.gbps), l.mode+"-Gbit/s")
		b.ReportMetric(median(l.rtt), l.mode+"-rtt-µs")
	}
	fmt.Fprintf(&t, "medians, uring / read: UDP64 pps %.2f, CPU per packet %.2f, TCP %.2f, RTT %.2f\n",
		median(labs[1].pps)/median(labs[0].pps), median(labs[1].cpu)/median(labs[0].cpu),
		median(labs[1].gbps)/median(labs[0].gbps), median(labs[1].rtt)/median(labs[0].rtt))
	b.Log(t.String())
}

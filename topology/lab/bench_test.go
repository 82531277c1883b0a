package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// Rows of BenchmarkEndToEnd that others refer to.
const (
	engineRow   = "engines (web-1 -> web-3)"
	netstackRow = "netstack api-1 -> api-3 (no TUN)"
)

// altTUNIO is the engines' TUN I/O mode that is not the default, and
// altRow the row measuring it.
var (
	altTUNIO = map[string]string{dataplane.TUNIORead: dataplane.TUNIOUring, dataplane.TUNIOUring: dataplane.TUNIORead}[dataplane.DefaultTUNIO]
	altRow   = map[string]string{dataplane.TUNIORead: "engines, read/write TUN I/O", dataplane.TUNIOUring: "engines, io_uring TUN I/O"}[altTUNIO]
)

// BenchmarkEndToEnd measures, between workloads on two nodes of a deployed
// lab (through both nodes' userspace engines and the fabric): one TCP
// stream (iperf3, 5 s), 64-byte UDP (iperf3 -u -l 64 -b 0, 5 s: packets
// delivered per second, and the engines' CPU per forwarded packet per hop,
// the agents' utime+stime over the run ÷ the packets their engines
// forwarded) and the median ping RTT (20 pings); the same TCP and small
// packets between netstack workloads on the same nodes (vrouter probe
// --bulk / --flood, gVisor stacks in the agents: the engines' rate without
// TUN system calls); TCP and RTT with pinned engines, IPIP, a router node,
// kernel-mode nodes (a kernel lab, and a mixed one). In the same run the
// same is measured for two references: the kernel forwarding the same
// shape (namespace - veth - router namespace - veth - namespace), and the
// raw TUN pass-through, one process moving packets between a TUN device in
// one namespace and one in another with a read and a write per packet
// (passThroughMain), the naive ceiling of one engine hop. It runs only
// under -bench (it deploys labs and takes a few minutes) and once,
// whatever b.N is: `make bench` or
//
//	sudo go test -run '^$' -bench EndToEnd -benchtime 1x ./topology/lab/
//
// VROUTER_E2E=short runs the first lab, the same with the other TUN I/O
// mode, the same with the fabric's rings off (VROUTER_FABRIC_RING=0 for
// its agents) and the references only; VROUTER_E2E_ALT=first runs the lab
// with the engines' other TUN I/O mode before the one with the default.
func BenchmarkEndToEnd(b *testing.B) {
	netnstest.RequireRoot(b)
	netnstest.RequireCommand(b, "iperf3", "iperf3")
	netnstest.RequireCommand(b, "ping", "iputils-ping")
	netnstest.GuardRoot(b)
	short := os.Getenv("VROUTER_E2E") == "short"

	type result struct {
		name      string
		gbps      float64
		retrans   int
		rttUs     float64 // median
		pps, loss float64 // 64-byte UDP delivered per second, loss %
		cpuUs     float64 // µs of CPU per packet per hop; 0: not measured
	}
	var rows []result

	// The lab: web-1 (node1) -> web-3 (node3), as the README's example;
	// once as it is and once with every node's engine pinned to CPU 0.
	data, err := os.ReadFile("../../examples/calico-bgp.yaml")
	if err != nil {
		b.Fatal(err)
	}
	name := fmt.Sprintf("bench-%d", os.Getpid()%100000)
	data = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(data, []byte("name: "+name))
	// Netstack workloads beside web-1 and web-3 (the engine run measures
	// them): a TCP and a UDP sink on node3, a source on node1.
	netstackWorkloads := "  - {name: api-1, node: node1, stack: netstack}\n  - {name: api-3, node: node3, stack: netstack, serve: [tcp:5201:sink, udp:9:sink]}\n"
	// env is added to the environment of the lab's agents (deploy
	// starts them): VROUTER_TUN_IO, VROUTER_FABRIC_RING.
	runLab := func(row string, data []byte, udp bool, env ...string) {
		r := result{name: row}
		file := filepath.Join(b.TempDir(), "lab.yaml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			b.Fatal(err)
		}
		if out, err := benchRunEnv(60*time.Second, env, vrouterBin, "deploy", "-t", file); err != nil {
			benchRun(vrouterBin, "destroy", "-t", file)
			b.Fatalf("deploy: %v\n%s", err, out)
		}
		defer func() {
			if out, err := benchRun(vrouterBin, "destroy", "-t", file); err != nil {
				b.Errorf("destroy: %v\n%s", err, out)
			}
		}()
		in := func(ws string) []string { return []string{vrouterBin, "exec", "--lab", name, ws, "--"} }
		// TCP first: the fabric makes its rings for busy links, and the
		// pings then measure them (an idle link has none).
		r.gbps, r.retrans = benchIperf(b, in("web-3"), in("web-1"), "10.244.135.1")
		r.rttUs = benchPing(b, in("web-1"), "10.244.135.1")
		if udp {
			dir := filepath.Join(topology.StateRoot, name)
			var pids []int
			var clients []*control.Client
			for _, n := range []string{"node1", "node2", "node3"} {
				pids = append(pids, pidOf(b, filepath.Join(dir, "nodes", n+".pid")))
				clients = append(clients, control.NewClient(lab.ControlSocket(dir, n)))
			}
			forwarded := func() uint64 { return forwardedSum(b, clients) }
			f0, c0 := forwarded(), procTicks(pids...)
			r.pps, r.loss = benchUDP(b, in("web-3"), in("web-1"), "10.244.135.1")
			f1, c1 := forwarded(), procTicks(pids...)
			if f1 > f0 {
				r.cpuUs = ticksToSeconds(c1-c0) * 1e6 / float64(f1-f0)
			}
			if len(env) > 0 { // the netstack probes run with the first lab only
				rows = append(rows, r)
				return
			}
			var bulk, flood struct {
				OK    bool
				Error string
				Mbps  float64
				PPS   float64
			}
			benchProbe(b, &bulk, "probe", "api-1", "api-3", "--lab", name, "--bulk", "5s", "-o", "json")
			benchProbe(b, &flood, "probe", "api-1", "api-3", "--lab", name, "--flood", "5s", "--size", "64", "-o", "json")
			rows = append(rows, r, result{name: netstackRow, gbps: bulk.Mbps / 1000, retrans: -1, pps: flood.PPS})
			return
		}
		rows = append(rows, r)
	}
	// The same engines with the TUN I/O mode that is not the default
	// (dataplane.TUNIORead or TUNIOUring), in short runs too; after the
	// default, or before it with VROUTER_E2E_ALT=first (to see the
	// order's effect on a shared machine).
	altLab := func() {
		runLab(altRow, append(append([]byte{}, data...), netstackWorkloads...), true, dataplane.TUNIOEnv+"="+altTUNIO)
	}
	altFirst := os.Getenv("VROUTER_E2E_ALT") == "first"
	if altFirst {
		altLab()
	}
	runLab(engineRow, append(append([]byte{}, data...), netstackWorkloads...), true)
	if !altFirst {
		altLab()
	}
	// The same with the fabric's shared-memory rings off: every frame
	// between the engines over the unix datagram sockets.
	runLab("engines, socket fabric (no ring)", data, true, fabric.RingEnv+"=0")
	if !short {
		pinnedData := regexp.MustCompile(`(?m)^(  node\d: \{.*)\}$`).ReplaceAll(data, []byte("$1, cpuSet: '0'}"))
		if n := strings.Count(string(pinnedData), "cpuSet"); n != 3 {
			b.Fatalf("pinned the engines of %d nodes, want 3", n)
		}
		runLab("engines, cpuSet 0", pinnedData, false)
		// The same with IPIP (ipipMode Always): every packet encapsulated by
		// node1 and decapsulated by node3, workload MTU 1480.
		ipipData := strings.Replace(string(data), "ipipMode: Never", "ipipMode: Always", 1)
		if ipipData == string(data) {
			b.Fatal("the example's pool has no ipipMode: Never to switch")
		}
		runLab("engines, IPIP Always", []byte(ipipData), false)
		// Across a router node (examples/calico-crosssubnet.yaml): node1 on
		// rack1, node3 on rack2, IPIP (CrossSubnet) through a third engine.
		xs, err := os.ReadFile("../../examples/calico-crosssubnet.yaml")
		if err != nil {
			b.Fatal(err)
		}
		runLab("CrossSubnet IPIP via router node", regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(xs, []byte("name: "+name)), false)
		// Kernel mode (dataplane: kernel): the nodes' kernels forward, on
		// veths and a Linux bridge; with IPIP Always through tunl0 (the
		// agent's userspace tunl0 where the kernel has no ipip module); and a
		// mixed lab, node1 in kernel mode and node3 userspace, through the
		// joint between lan's bridge and the fabric.
		runLab("kernel-mode lab (web-1 -> web-3)", append(append([]byte{}, data...), "\ndataplane: kernel\n"...), false)
		runLab("kernel-mode lab, IPIP Always", []byte(ipipData+"\ndataplane: kernel\n"), false)
		mixedData := regexp.MustCompile(`(?m)^(  node1: \{.*)\}$`).ReplaceAll(data, []byte("$1, dataplane: kernel}"))
		if !strings.Contains(string(mixedData), "dataplane: kernel}") {
			b.Fatal("node1 not made kernel-mode")
		}
		runLab("mixed: kernel node1 -> engine node3", mixedData, false)
	}

	// The references, in namespaces of their own.
	prefix := fmt.Sprintf("vrbench-%d-", os.Getpid())
	netnstest.GuardNamespaces(b, prefix)
	a, r, z, pa, pz := prefix+"a", prefix+"r", prefix+"z", prefix+"pa", prefix+"pz"
	defer func() {
		for _, ns := range []string{a, r, z, pa, pz} {
			if netns.Exists(ns) {
				if err := netns.Delete(ns); err != nil {
					b.Errorf("delete namespace %s: %v", ns, err)
				}
			}
		}
	}()
	for _, ns := range []string{a, r, z, pa, pz} {
		if err := netns.Create(ns); err != nil {
			b.Fatal(err)
		}
	}
	nsx := func(ns string) []string { return []string{"ip", "-n", ns} }
	for _, c := range [][]string{
		append(nsx(a), "link", "add", "eth0", "type", "veth", "peer", "name", "ra", "netns", r),
		append(nsx(z), "link", "add", "eth0", "type", "veth", "peer", "name", "rz", "netns", r),
		append(nsx(a), "addr", "add", "10.99.1.2/24", "dev", "eth0"),
		append(nsx(z), "addr", "add", "10.99.2.2/24", "dev", "eth0"),
		append(nsx(r), "addr", "add", "10.99.1.1/24", "dev", "ra"),
		append(nsx(r), "addr", "add", "10.99.2.1/24", "dev", "rz"),
		append(nsx(a), "link", "set", "eth0", "up"),
		append(nsx(z), "link", "set", "eth0", "up"),
		append(nsx(r), "link", "set", "ra", "up"),
		append(nsx(r), "link", "set", "rz", "up"),
		append(nsx(a), "route", "add", "default", "via", "10.99.1.1"),
		append(nsx(z), "route", "add", "default", "via", "10.99.2.1"),
	} {
		if out, err := benchRun(c[0], c[1:]...); err != nil {
			b.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	if err := netns.SetSysctl(r, "net/ipv4/ip_forward", "1"); err != nil {
		b.Fatal(err)
	}
	ex := func(ns string) []string { return []string{"ip", "netns", "exec", ns} }
	kernel := result{name: "kernel (ns-veth-ns-veth-ns)"}
	kernel.rttUs = benchPing(b, ex(a), "10.99.2.2")
	kernel.gbps, kernel.retrans = benchIperf(b, ex(z), ex(a), "10.99.2.2")
	kernel.pps, kernel.loss = benchUDP(b, ex(z), ex(a), "10.99.2.2")

	pt := result{name: "raw TUN pass-through (1 hop)"}
	p := startPassThrough(b, pa, pz)
	pt.rttUs = benchPing(b, ex(pa), "10.99.2.2")
	pt.gbps, pt.retrans = benchIperf(b, ex(pz), ex(pa), "10.99.2.2")
	n0, c0 := p.packets(b), procTicks(p.cmd.Process.Pid)
	pt.pps, pt.loss = benchUDP(b, ex(pz), ex(pa), "10.99.2.2")
	n1, c1 := p.packets(b), procTicks(p.cmd.Process.Pid)
	if n1 > n0 {
		pt.cpuUs = ticksToSeconds(c1-c0) * 1e6 / float64(n1-n0)
	}
	p.stop()
	rows = append(rows, pt, kernel)

	var engine, ns result
	for _, r := range rows {
		switch r.name {
		case engineRow:
			engine = r
		case netstackRow:
			ns = r
		case altRow:
			b.ReportMetric(r.gbps, altTUNIO+"-Gbit/s")
			b.ReportMetric(r.pps, altTUNIO+"-udp64-pps")
			b.ReportMetric(r.cpuUs, altTUNIO+"-µs/pkt/hop")
			b.ReportMetric(r.rttUs, altTUNIO+"-rtt-µs")
		case "engines, socket fabric (no ring)":
			b.ReportMetric(r.gbps, "socket-fabric-Gbit/s")
			b.ReportMetric(r.pps, "socket-fabric-udp64-pps")
			b.ReportMetric(r.cpuUs, "socket-fabric-µs/pkt/hop")
			b.ReportMetric(r.rttUs, "socket-fabric-rtt-µs")
		case "engines, cpuSet 0":
			b.ReportMetric(r.gbps, "pinned-Gbit/s")
		case "engines, IPIP Always":
			b.ReportMetric(r.gbps, "ipip-Gbit/s")
		case "CrossSubnet IPIP via router node":
			b.ReportMetric(r.gbps, "routed-ipip-Gbit/s")
		case "kernel-mode lab (web-1 -> web-3)":
			b.ReportMetric(r.gbps, "kernel-lab-Gbit/s")
			b.ReportMetric(r.rttUs, "kernel-lab-rtt-µs")
		case "kernel-mode lab, IPIP Always":
			b.ReportMetric(r.gbps, "kernel-lab-ipip-Gbit/s")
		case "mixed: kernel node1 -> engine node3":
			b.ReportMetric(r.gbps, "mixed-lab-Gbit/s")
			b.ReportMetric(r.rttUs, "mixed-lab-rtt-µs")
		}
	}
	b.ReportMetric(ns.gbps, "netstack-Gbit/s")
	b.ReportMetric(ns.pps, "netstack-64B-pps")
	b.ReportMetric(kernel.pps, "kernel-64B-pps")
	b.ReportMetric(engine.gbps, "engine-Gbit/s")
	b.ReportMetric(kernel.gbps, "kernel-Gbit/s")
	b.ReportMetric(pt.gbps, "passthrough-Gbit/s")
	b.ReportMetric(engine.gbps/kernel.gbps, "engine/kernel")
	b.ReportMetric(engine.gbps/pt.gbps, "engine/passthrough")
	b.ReportMetric(engine.pps, "engine-udp64-pps")
	b.ReportMetric(pt.pps, "passthrough-udp64-pps")
	b.ReportMetric(engine.cpuUs, "engine-µs/pkt/hop")
	b.ReportMetric(engine.rttUs, "engine-rtt-µs")
	b.ReportMetric(kernel.rttUs, "kernel-rtt-µs")
	var t strings.Builder
	fmt.Fprintf(&t, "\n%-36s %7s %7s %7s %8s %9s %6s %9s %8s\n", "path (TCP 5 s, UDP64 5 s, ping x20)",
		"Gbit/s", "/kernel", "/ptun", "retrans", "UDP64 pps", "loss%", "µs/pkt/hop", "rtt p50")
	for _, r := range rows {
		cpu := "-"
		if r.cpuUs > 0 {
			cpu = fmt.Sprintf("%.1f", r.cpuUs)
		}
		pps := "-"
		if r.pps > 0 {
			pps = fmt.Sprintf("%.0f", r.pps)
		}
		retrans, loss, rtt := strconv.Itoa(r.retrans), fmt.Sprintf("%.1f", r.loss), fmt.Sprintf("%.0fµs", r.rttUs)
		if r.retrans < 0 { // netstack probes: no retransmits, loss or ping
			retrans, loss, rtt = "-", "-", "-"
		}
		fmt.Fprintf(&t, "%-36s %7.2f %7.2f %7.2f %8s %9s %6s %10s %8s\n", r.name, r.gbps, r.gbps/kernel.gbps, r.gbps/pt.gbps,
			retrans, pps, loss, cpu, rtt)
	}
	fmt.Fprintf(&t, "engine UDP64 pps / pass-through: %.2f\n", engine.pps/pt.pps)
	for _, r := range rows {
		if r.name == altRow {
			fmt.Fprintf(&t, "engines with TUN I/O %s (default %s): UDP64 pps / pass-through %.2f, / default engines %.2f; TCP / default %.2f\n",
				altTUNIO, dataplane.DefaultTUNIO, r.pps/pt.pps, r.pps/engine.pps, r.gbps/engine.gbps)
		}
	}
	b.Log(t.String())
}

// benchProbe runs vrouter with args (a probe, -o json) and decodes its
// result into v; a failed probe fails the benchmark.
func benchProbe(b *testing.B, v any, args ...string) {
	b.Helper()
	out, err := benchRunFor(2*time.Minute, vrouterBin, args...)
	if err != nil {
		b.Fatalf("vrouter %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		b.Fatalf("vrouter %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// benchRun runs a command with a bound on its time and returns its
// combined output.
func benchRun(name string, args ...string) (string, error) {
	return benchRunFor(60*time.Second, name, args...)
}

// benchRunFor is benchRun with a bound of d.
func benchRunFor(d time.Duration, name string, args ...string) (string, error) {
	return benchRunEnv(d, nil, name, args...)
}

// benchRunEnv is benchRunFor with env added to the command's environment.
func benchRunEnv(d time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// benchIperf runs an iperf3 server by the command prefix srv and a 5 s
// TCP client by cli toward addr, and returns the received Gbit/s and the
// sender's retransmits.
func benchIperf(b *testing.B, srv, cli []string, addr string) (float64, int) {
	b.Helper()
	out := benchIperfRun(b, srv, cli, addr)
	var r struct {
		End struct {
			SumSent     struct{ Retransmits int } `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		b.Fatalf("iperf3 output: %v\n%.500s", err, out)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, r.End.SumSent.Retransmits
}

// benchIperfRun runs an iperf3 server (one test, daemonized with a pid
// file) by the command prefix srv and a 5 s client with the extra
// arguments by cli toward addr, and returns the client's JSON report. The
// server is killed if it is still running.
func benchIperfRun(b *testing.B, srv, cli []string, addr string, extra ...string) string {
	b.Helper()
	pidFile := filepath.Join(b.TempDir(), "iperf3.pid")
	defer func() {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}()
	args := append(append([]string{}, srv...), "iperf3", "-s", "-D", "-1", "-I", pidFile)
	if out, err := benchRun(args[0], args[1:]...); err != nil {
		b.Fatalf("iperf3 server: %v\n%s", err, out)
	}
	var out string
	var err error
	for range 20 { // the daemon may not be listening yet
		args = append(append(append([]string{}, cli...), "iperf3", "-c", addr, "-t", "5", "-J"), extra...)
		if out, err = benchRun(args[0], args[1:]...); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		b.Fatalf("iperf3 client: %v\n%.500s", err, out)
	}
	return out
}

var rttRE = regexp.MustCompile(`time=([0-9.]+) ms`)

// benchPing returns the median RTT in µs of 20 pings toward addr, 50 ms
// apart (after one to resolve neighbours, not counted).
func benchPing(b *testing.B, in []string, addr string) float64 {
	b.Helper()
	args := append(append([]string{}, in...), "ping", "-c", "1", "-W", "2", addr)
	if out, err := benchRun(args[0], args[1:]...); err != nil {
		b.Fatalf("ping: %v\n%s", err, out)
	}
	args = append(append([]string{}, in...), "ping", "-c", "20", "-i", "0.05", addr)
	out, err := benchRun(args[0], args[1:]...)
	if err != nil {
		b.Fatalf("ping: %v\n%s", err, out)
	}
	var rtts []float64
	for _, m := range rttRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		rtts = append(rtts, v*1000)
	}
	if len(rtts) == 0 {
		b.Fatalf("ping output:\n%s", out)
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

// benchUDP runs an iperf3 server by srv and a 5 s client by cli sending
// 64-byte UDP datagrams as fast as it can toward addr, and returns the
// datagrams delivered per second and the loss in percent.
func benchUDP(b *testing.B, srv, cli []string, addr string) (pps, loss float64) {
	b.Helper()
	out := benchIperfRun(b, srv, cli, addr, "-u", "-l", "64", "-b", "0")
	var r struct {
		End struct {
			SumReceived struct {
				Seconds     float64 `json:"seconds"`
				Bytes       float64 `json:"bytes"`
				LostPercent float64 `json:"lost_percent"`
			} `json:"sum_received"`
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.End.SumReceived.Seconds == 0 {
		b.Fatalf("iperf3 output: %v\n%.500s", err, out)
	}
	return r.End.SumReceived.Bytes / 64 / r.End.SumReceived.Seconds, r.End.SumReceived.LostPercent
}

// forwardedSum is the sum of the engines' "forwarded" counters, read over
// the agents' control sockets.
func forwardedSum(b *testing.B, clients []*control.Client) uint64 {
	var sum uint64
	for _, c := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		m, err := c.Stats(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		sum += m["forwarded"]
	}
	return sum
}

package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// BenchmarkEndToEnd measures one TCP stream (iperf3, 5 s) and the ping RTT
// between workloads on two nodes of a deployed lab, through both nodes'
// userspace engines and the fabric, through kernel-mode nodes (a kernel
// lab, and a mixed one), and then the same between namespaces
// forwarded by the kernel (namespace - veth - router namespace - veth -
// namespace), the reference the engine is measured against. Small packets
// too: 64-byte UDP datagrams (iperf3 -u -l 64 -b 0, packets received per
// second). And the engines' own rate, without TUN system calls: the same
// TCP stream and 64-byte UDP between netstack workloads on the same two
// nodes (vrouter probe --bulk / --flood, gVisor stacks in the agents as
// sources and sinks). It runs only
// under -bench (it deploys a lab and takes about half a minute) and once,
// whatever b.N is: `make bench` or
//
//	sudo go test -run '^$' -bench EndToEnd -benchtime 1x ./topology/lab/
func BenchmarkEndToEnd(b *testing.B) {
	netnstest.RequireRoot(b)
	netnstest.RequireCommand(b, "iperf3", "iperf3")
	netnstest.RequireCommand(b, "ping", "iputils-ping")
	netnstest.GuardRoot(b)

	type result struct {
		gbps, rttMs float64
		retrans     int
		pps         float64 // 64-byte UDP datagrams received per second
		// between netstack workloads (engine run only)
		nsGbps, nsPps float64
	}
	var engine, pinned, ipip, routed, klab, kipip, mixed, kernel result

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
	runLab := func(data []byte, all bool) (r result) {
		file := filepath.Join(b.TempDir(), "lab.yaml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			b.Fatal(err)
		}
		if out, err := benchRun(vrouterBin, "deploy", "-t", file); err != nil {
			benchRun(vrouterBin, "destroy", "-t", file)
			b.Fatalf("deploy: %v\n%s", err, out)
		}
		defer func() {
			if out, err := benchRun(vrouterBin, "destroy", "-t", file); err != nil {
				b.Errorf("destroy: %v\n%s", err, out)
			}
		}()
		in := func(ws string) []string { return []string{vrouterBin, "exec", "--lab", name, ws, "--"} }
		r.gbps, r.retrans = benchIperf(b, in("web-3"), in("web-1"), "10.244.135.1")
		r.rttMs = benchPing(b, in("web-1"), "10.244.135.1")
		if !all {
			return r
		}
		r.pps = benchIperfUDP(b, in("web-3"), in("web-1"), "10.244.135.1")
		var bulk, flood struct {
			OK    bool
			Error string
			Mbps  float64
			PPS   float64
		}
		benchProbe(b, &bulk, "probe", "api-1", "api-3", "--lab", name, "--bulk", "5s", "-o", "json")
		benchProbe(b, &flood, "probe", "api-1", "api-3", "--lab", name, "--flood", "5s", "--size", "64", "-o", "json")
		r.nsGbps, r.nsPps = bulk.Mbps/1000, flood.PPS
		return r
	}
	engine = runLab(append(append([]byte{}, data...), netstackWorkloads...), true)
	pinnedData := regexp.MustCompile(`(?m)^(  node\d: \{.*)\}$`).ReplaceAll(data, []byte("$1, cpuSet: '0'}"))
	if n := strings.Count(string(pinnedData), "cpuSet"); n != 3 {
		b.Fatalf("pinned the engines of %d nodes, want 3", n)
	}
	pinned = runLab(pinnedData, false)
	// The same with IPIP (ipipMode Always): every packet encapsulated by
	// node1 and decapsulated by node3, workload MTU 1480.
	ipipData := strings.Replace(string(data), "ipipMode: Never", "ipipMode: Always", 1)
	if ipipData == string(data) {
		b.Fatal("the example's pool has no ipipMode: Never to switch")
	}
	ipip = runLab([]byte(ipipData), false)
	// Across a router node (examples/calico-crosssubnet.yaml): node1 on
	// rack1, node3 on rack2, IPIP (CrossSubnet) through a third engine.
	xs, err := os.ReadFile("../../examples/calico-crosssubnet.yaml")
	if err != nil {
		b.Fatal(err)
	}
	routed = runLab(regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(xs, []byte("name: "+name)), false)
	// Kernel mode (dataplane: kernel): the nodes' kernels forward, on
	// veths and a Linux bridge; with IPIP Always through tunl0 (the
	// agent's userspace tunl0 where the kernel has no ipip module); and a
	// mixed lab, node1 in kernel mode and node3 userspace, through the
	// joint between lan's bridge and the fabric.
	klab = runLab(append(append([]byte{}, data...), "\ndataplane: kernel\n"...), false)
	kipip = runLab([]byte(ipipData+"\ndataplane: kernel\n"), false)
	mixedData := regexp.MustCompile(`(?m)^(  node1: \{.*)\}$`).ReplaceAll(data, []byte("$1, dataplane: kernel}"))
	if !strings.Contains(string(mixedData), "dataplane: kernel}") {
		b.Fatal("node1 not made kernel-mode")
	}
	mixed = runLab(mixedData, false)

	// The kernel reference, in namespaces of its own.
	prefix := fmt.Sprintf("vrbench-%d-", os.Getpid())
	netnstest.GuardNamespaces(b, prefix)
	a, r, z := prefix+"a", prefix+"r", prefix+"z"
	defer func() {
		for _, ns := range []string{a, r, z} {
			if netns.Exists(ns) {
				if err := netns.Delete(ns); err != nil {
					b.Errorf("delete namespace %s: %v", ns, err)
				}
			}
		}
	}()
	for _, ns := range []string{a, r, z} {
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
	kernel.gbps, kernel.retrans = benchIperf(b, ex(z), ex(a), "10.99.2.2")
	kernel.rttMs = benchPing(b, ex(a), "10.99.2.2")
	kernel.pps = benchIperfUDP(b, ex(z), ex(a), "10.99.2.2")

	b.ReportMetric(engine.gbps, "engine-Gbit/s")
	b.ReportMetric(pinned.gbps, "pinned-Gbit/s")
	b.ReportMetric(ipip.gbps, "ipip-Gbit/s")
	b.ReportMetric(routed.gbps, "routed-ipip-Gbit/s")
	b.ReportMetric(klab.gbps, "kernel-lab-Gbit/s")
	b.ReportMetric(kipip.gbps, "kernel-lab-ipip-Gbit/s")
	b.ReportMetric(mixed.gbps, "mixed-lab-Gbit/s")
	b.ReportMetric(kernel.gbps, "kernel-Gbit/s")
	b.ReportMetric(engine.gbps/kernel.gbps, "engine/kernel")
	b.ReportMetric(pinned.gbps/kernel.gbps, "pinned/kernel")
	b.ReportMetric(engine.rttMs*1000, "engine-rtt-µs")
	b.ReportMetric(klab.rttMs*1000, "kernel-lab-rtt-µs")
	b.ReportMetric(mixed.rttMs*1000, "mixed-lab-rtt-µs")
	b.ReportMetric(kernel.rttMs*1000, "kernel-rtt-µs")
	row := "\n%-36s %8.2f %8d %8.3f %8.2f %10s"
	pps := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	b.Logf("\n%-36s %8s %8s %8s %8s %10s"+row+row+row+row+row+row+row+"\n%-36s %8.2f %8s %8s %8.2f %10s"+row,
		"path (TCP 5 s, ping x20, UDP 64 B)", "Gbit/s", "retrans", "rtt ms", "/kernel", "64 B pps",
		"engines (web-1 -> web-3)", engine.gbps, engine.retrans, engine.rttMs, engine.gbps/kernel.gbps, pps(engine.pps),
		"engines, cpuSet 0 (web-1 -> web-3)", pinned.gbps, pinned.retrans, pinned.rttMs, pinned.gbps/kernel.gbps, "-",
		"engines, IPIP Always", ipip.gbps, ipip.retrans, ipip.rttMs, ipip.gbps/kernel.gbps, "-",
		"CrossSubnet IPIP via router node", routed.gbps, routed.retrans, routed.rttMs, routed.gbps/kernel.gbps, "-",
		"kernel-mode lab (web-1 -> web-3)", klab.gbps, klab.retrans, klab.rttMs, klab.gbps/kernel.gbps, "-",
		"kernel-mode lab, IPIP Always", kipip.gbps, kipip.retrans, kipip.rttMs, kipip.gbps/kernel.gbps, "-",
		"mixed: kernel node1 -> engine node3", mixed.gbps, mixed.retrans, mixed.rttMs, mixed.gbps/kernel.gbps, "-",
		"netstack api-1 -> api-3 (no TUN)", engine.nsGbps, "-", "-", engine.nsGbps/kernel.gbps, pps(engine.nsPps),
		"kernel (ns-veth-ns-veth-ns)", kernel.gbps, kernel.retrans, kernel.rttMs, 1.0, pps(kernel.pps))
	b.ReportMetric(engine.nsGbps, "netstack-Gbit/s")
	b.ReportMetric(engine.nsPps, "netstack-64B-pps")
	b.ReportMetric(engine.pps, "engine-64B-pps")
	b.ReportMetric(kernel.pps, "kernel-64B-pps")
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

// benchIperfUDP runs an iperf3 server by srv and a 5 s UDP client of
// 64-byte datagrams at no rate limit by cli toward addr, and returns the
// datagrams received per second.
func benchIperfUDP(b *testing.B, srv, cli []string, addr string) float64 {
	b.Helper()
	pidFile := filepath.Join(b.TempDir(), "iperf3u.pid")
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
	for range 20 {
		args = append(append([]string{}, cli...), "iperf3", "-c", addr, "-u", "-l", "64", "-b", "0", "-t", "5", "-J")
		if out, err = benchRun(args[0], args[1:]...); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		b.Fatalf("iperf3 UDP client: %v\n%.500s", err, out)
	}
	var r struct {
		End struct {
			Sum struct {
				Packets     int64   `json:"packets"`
				LostPackets int64   `json:"lost_packets"`
				Seconds     float64 `json:"seconds"`
			} `json:"sum"`
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.End.Sum.Seconds == 0 {
		b.Fatalf("iperf3 UDP output: %v\n%.500s", err, out)
	}
	return float64(r.End.Sum.Packets-r.End.Sum.LostPackets) / r.End.Sum.Seconds
}

// benchRun runs a command with a bound on its time and returns its
// combined output.
func benchRun(name string, args ...string) (string, error) {
	return benchRunFor(60*time.Second, name, args...)
}

// benchRunFor is benchRun with a bound of d.
func benchRunFor(d time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// benchIperf runs an iperf3 server (one test, daemonized with a pid file)
// by the command prefix srv and a 5 s client by cli toward addr, and
// returns the received Gbit/s and the sender's retransmits. The server is
// killed if it is still running.
func benchIperf(b *testing.B, srv, cli []string, addr string) (float64, int) {
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
		args = append(append([]string{}, cli...), "iperf3", "-c", addr, "-t", "5", "-J")
		if out, err = benchRun(args[0], args[1:]...); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		b.Fatalf("iperf3 client: %v\n%.500s", err, out)
	}
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

var rttRE = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`)

// benchPing returns the average RTT in ms of 20 pings toward addr.
func benchPing(b *testing.B, in []string, addr string) float64 {
	b.Helper()
	args := append(append([]string{}, in...), "ping", "-c", "20", "-i", "0.05", "-q", addr)
	out, err := benchRun(args[0], args[1:]...)
	if err != nil {
		b.Fatalf("ping: %v\n%s", err, out)
	}
	m := rttRE.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("ping output:\n%s", out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

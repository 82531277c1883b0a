package lab_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// maxKBPerWorkload is the most agent memory (RSS) one workload may cost.
const maxKBPerWorkload = 100

// limitsLab returns a lab file with node n0, which has no workloads, and
// node n1 with n workloads w0, w1, ...
func limitsLab(name string, n int) string {
	var s strings.Builder
	fmt.Fprintf(&s, "name: %s\nipPools:\n  - {name: pool, cidr: 10.200.0.0/16}\n", name)
	s.WriteString("networks:\n  - {name: lan, cidr: 192.168.77.0/24}\n")
	s.WriteString("nodes:\n  n0: {network: lan, address: 192.168.77.10}\n  n1: {network: lan, address: 192.168.77.11}\n")
	s.WriteString("workloads:\n")
	for i := range n {
		fmt.Fprintf(&s, "  - {name: w%d, node: n1}\n", i)
	}
	return s.String()
}

// A node with topology.MaxWorkloadsPerNode workloads deploys, forwards to
// every one of them, and its agent costs at most maxKBPerWorkload of RSS
// per workload more than the lab's other agent, which has none (same
// binary, same lab, same BGP session between them). One workload more is
// refused at deploy time and by `vrouter workload add`.
//
// Not parallel: the deploy keeps both CPUs busy (43 s for the race-detector
// build of the agent on a 2-core machine), so running beside other labs
// gains nothing and starves them; its deploy gets 3 minutes, not 1.
func TestMaxWorkloadsPerNode(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := labName(t, "mem")
	const n = topology.MaxWorkloadsPerNode

	// Beyond the limit: validation refuses the file, nothing is made.
	over := filepath.Join(t.TempDir(), "over.yaml")
	if err := os.WriteFile(over, []byte(limitsLab(name, n+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := vr(t, "deploy", "-t", over)
	want := fmt.Sprintf("%s:%d: workloads[%d].node: node n1 has %d workloads, 1 more than a node serves (at most %d; README: Limits)", over, 10+n, n, n+1, n)
	if code == 0 || !strings.Contains(out, want) {
		t.Fatalf("deploy of %d workloads on a node: exit %d, want an error containing %q:\n%s", n+1, code, want, out)
	}
	checkGone(t, name)

	// At the limit.
	file := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(file, []byte(limitsLab(name, n)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(vrouterBin, "destroy", "-t", file).CombinedOutput(); err != nil {
			t.Errorf("destroy: %v\n%s", err, out)
		}
		checkGone(t, name)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	if out, err := exec.CommandContext(ctx, vrouterBin, "deploy", "-t", file, "--timeout", "3m").CombinedOutput(); err != nil {
		t.Fatalf("deploy of %d workloads on a node: %v\n%s", n, err, lastLines(string(out), 20))
	}
	t.Logf("deployed %d workloads on one node in %v", n, time.Since(start).Round(time.Millisecond))

	// Traffic to and from every workload port: from w0, a UDP datagram to
	// each workload, whose kernel answers with ICMP port unreachable.
	addrs := workloadAddrs(t, name)
	if len(addrs) != n {
		t.Fatalf("inspect lists %d workload addresses, want %d", len(addrs), n)
	}
	if missing := sweep(t, topology.LabNamespacePrefix(name)+"w0", addrs); len(missing) > 0 {
		t.Fatalf("%d of %d workloads never answered through the engine, e.g. %v", len(missing), n, missing[:min(5, len(missing))])
	}

	rss0, rss1 := agentRSS(t, name, "n0"), agentRSS(t, name, "n1")
	per := float64(rss1-rss0) / n
	t.Logf("agent RSS: n0 (0 workloads) %d kB, n1 (%d workloads) %d kB: %.1f kB per workload (limit %d)", rss0, n, rss1, per, maxKBPerWorkload)
	if per > maxKBPerWorkload {
		t.Errorf("agent memory per workload %.1f kB, want at most %d kB", per, maxKBPerWorkload)
	}

	// One more on the full node: refused before anything is made.
	out, code = vr(t, "workload", "add", "extra", "--node", "n1", "--lab", name)
	want = fmt.Sprintf("node n1 already has %d workloads, the most a node serves (README: Limits)", n)
	if code == 0 || !strings.Contains(out, want) {
		t.Errorf("workload add on a full node: exit %d, want an error containing %q:\n%s", code, want, out)
	}
	if netns.Exists(topology.LabNamespacePrefix(name) + "extra") {
		t.Errorf("a refused workload add left its namespace")
	}
}

// workloadAddrs returns the workload addresses `vrouter inspect` lists.
func workloadAddrs(t *testing.T, lab string) []netip.Addr {
	t.Helper()
	out := mustVR(t, "inspect", "--lab", lab)
	var addrs []netip.Addr
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "workload" {
			a, err := netip.ParseAddr(f[5])
			if err != nil {
				t.Fatalf("inspect: %q: %v", line, err)
			}
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// sweep sends a UDP datagram from namespace ns to every address in
// several rounds (the TUN queues hold a few hundred packets) and returns
// those that never answered with ICMP port unreachable.
func sweep(t *testing.T, ns string, addrs []netip.Addr) []netip.Addr {
	t.Helper()
	var icmp, udp net.PacketConn
	err := netns.Do(ns, func() error {
		var err error
		if icmp, err = net.ListenPacket("ip4:icmp", "0.0.0.0"); err != nil {
			return err
		}
		udp, err = net.ListenPacket("udp4", "0.0.0.0:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer icmp.Close()
	defer udp.Close()

	answered := make(chan netip.Addr, len(addrs))
	go func() {
		buf := make([]byte, 1500)
		for {
			k, _, err := icmp.ReadFrom(buf)
			if err != nil {
				close(answered)
				return
			}
			// ICMP destination unreachable, port unreachable, quoting our
			// datagram's IPv4 header (the destination at offset 16).
			if k >= 8+20 && buf[0] == 3 && buf[1] == 3 {
				answered <- netip.AddrFrom4([4]byte(buf[8+16 : 8+20]))
			}
		}
	}()
	left := map[netip.Addr]bool{}
	for _, a := range addrs {
		left[a] = true
	}
	for round := 0; round < 5 && len(left) > 0; round++ {
		sent := 0
		for a := range left {
			if _, err := udp.WriteTo([]byte("vrouter"), &net.UDPAddr{IP: a.AsSlice(), Port: 33434}); err != nil {
				t.Logf("send to %s: %v", a, err)
			}
			if sent++; sent%100 == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		deadline := time.After(2 * time.Second)
	collect:
		for len(left) > 0 {
			select {
			case a := <-answered:
				delete(left, a)
			case <-deadline:
				break collect
			}
		}
	}
	var missing []netip.Addr
	for a := range left {
		missing = append(missing, a)
	}
	return missing
}

// agentRSS returns the resident set size, in kB, of node's agent.
func agentRSS(t *testing.T, lab, node string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(topology.StateRoot, lab, "nodes", node+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.Fields(string(data))
	if len(pid) == 0 {
		t.Fatalf("%s's pid file is empty", node)
	}
	data, err = os.ReadFile("/proc/" + pid[0] + "/smaps_rollup")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Rss:\s+(\d+) kB$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no Rss in smaps_rollup of %s's agent:\n%s", node, data)
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return kb
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

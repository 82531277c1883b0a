package lab_test

import (
	"encoding/json"
	"fmt"
	"io"
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
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// kernelLabFile writes the example lab with dataplane: kernel under a name
// of this test's and returns its path and the name.
func kernelLabFile(t *testing.T, prefix string) (string, string) {
	t.Helper()
	file, name := labFile(t, prefix)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, append(data, "\ndataplane: kernel\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, name
}

// ipLines returns iproute2's output as lines, without the trailing space
// iproute2 ends each route with.
func ipLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		lines = append(lines, strings.TrimRight(l, " "))
	}
	return lines
}

// The seed lab with dataplane: kernel: each node is a namespace whose
// kernel forwards, joined to the others by a bridge in a namespace of the
// lab's. `ip route` in node1 is the seed's Never table, line for line;
// `vrouter route node1` prints the same table; pods ping across nodes;
// destroy leaves no namespace (bridges, veths), process or file.
func TestKernelLab(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardRoot(t)
	file, name := kernelLabFile(t, "kern")
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	lab := []string{"--lab", name}
	mustVR(t, "deploy", "-t", file)

	// The bridge of network lan lives in the lab's namespace vr-<lab>.lan.br,
	// with one port per node.
	brNS := topology.LabNamespacePrefix(name) + "lan.br"
	if !netns.Exists(brNS) {
		t.Fatalf("no bridge namespace %s", brNS)
	}
	out, err := exec.Command("ip", "-n", brNS, "-o", "link", "show", "master", "br0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s link show master br0: %v\n%s", brNS, err, out)
	}
	ports := string(out)
	if n := strings.Count(strings.TrimSpace(ports), "\n") + 1; n != 3 {
		t.Errorf("bridge br0 has %d ports, want 3:\n%s", n, ports)
	}

	var inspect struct {
		Nodes []struct{ Name, Kind, Namespace, Interface, Address, State string }
	}
	if err := json.Unmarshal([]byte(mustVR(t, append([]string{"inspect", "-o", "json"}, lab...)...)), &inspect); err != nil {
		t.Fatal(err)
	}
	bridges := 0
	for _, n := range inspect.Nodes {
		if n.Kind == "bridge" {
			bridges++
			if n.Name != "lan" || n.Namespace != brNS || n.Interface != "br0" || n.Address != "192.168.50.0/24" || n.State != "running" {
				t.Errorf("inspect's bridge row: %+v", n)
			}
		}
	}
	if bridges != 1 {
		t.Errorf("inspect lists %d bridges, want 1: %+v", bridges, inspect.Nodes)
	}

	web1, db1 := podAddr(t, name, "web-1"), podAddr(t, name, "db-1")
	table := mustVR(t, append(append([]string{"exec"}, lab...), "node1", "--", "ip", "route")...)
	// The seed's Never table, byte for byte, with db-1's line (the
	// example's second pod on node1, which the seed does not have) in its
	// place.
	lines := ipLines(table)
	want := strings.Join([]string{
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
		"10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird",
		"10.244.166.128 dev " + config.InterfaceName(name, "web-1") + " scope link",
		"blackhole 10.244.166.128/26 proto bird",
		db1 + " dev " + config.InterfaceName(name, "db-1") + " scope link",
		"192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10",
	}, "\n")
	if got := strings.Join(lines, "\n"); got != want {
		t.Errorf("node1's ip route:\n%s\nwant:\n%s", got, want)
	}
	if db1 != "10.244.166.129" {
		t.Errorf("db-1 has %s, want the first free address after web-1's, 10.244.166.129", db1)
	}
	if web1 != "10.244.166.128" {
		t.Errorf("web-1 has %s, want the seed's 10.244.166.128", web1)
	}
	routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
	if strings.Join(ipLines(routes), "\n") != strings.Join(lines, "\n") {
		t.Errorf("vrouter route node1:\n%s\nwant the kernel's table:\n%s", routes, table)
	}
	if out := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...); strings.Count(out, "Established") != 2 {
		t.Errorf("node status node1, want 2 Established peers:\n%s", out)
	}

	for _, pair := range [][2]string{{"web-1", "web-2"}, {"web-2", "web-3"}, {"db-2", "web-1"}, {"web-1", "db-1"}} {
		dst := podAddr(t, name, pair[1])
		out, code := vr(t, append(append([]string{"exec"}, lab...), pair[0], "--", "ping", "-c", "3", "-i", "0.2", "-W", "2", dst)...)
		if code != 0 || !strings.Contains(out, "3 received") {
			t.Errorf("ping %s -> %s (%s): exit %d\n%s", pair[0], pair[1], dst, code, out)
		}
	}

	// vrouter link set takes a kernel node's ens33 down and up: the node is
	// cut off, then reachable again once the agent has put back the
	// routes the kernel dropped with the link.
	web3 := podAddr(t, name, "web-3")
	mustVR(t, "link", "set", "node3", "down", "--lab", name)
	if out := mustVR(t, "exec", "--lab", name, "node3", "--", "ip", "-o", "link", "show", "dev", "ens33"); !strings.Contains(out, "state DOWN") {
		t.Errorf("node3's ens33 after link set down:\n%s", out)
	}
	if out, code := vr(t, "exec", "--lab", name, "web-1", "--", "ping", "-c", "2", "-i", "0.2", "-W", "1", web3); code == 0 {
		t.Errorf("ping web-1 -> web-3 with node3's link down succeeded:\n%s", out)
	}
	mustVR(t, "link", "set", "node3", "up", "--lab", name)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := vr(t, "exec", "--lab", name, "web-1", "--", "ping", "-c", "1", "-W", "1", web3)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("ping web-1 -> web-3 30 s after node3's link came back up: exit %d\n%s\nnode3's table:\n%s", code, out,
				mustVR(t, "exec", "--lab", name, "node3", "--", "ip", "route"))
			break
		}
	}

	// vrouter capture reads the bridge: each ICMP packet once, on its
	// sender's interface, as tshark reads the file.
	if _, err := exec.LookPath("tshark"); err != nil && os.Getenv("CI") != "true" {
		t.Log("tshark is not installed (apt-get install tshark): the capture of a kernel network is not checked")
	} else {
		pcapFile := filepath.Join(t.TempDir(), "lan.pcapng")
		wait := startCapture(t, io.Discard, "lan", "--lab", name, "--duration", "4s", "-w", pcapFile)
		web2 := podAddr(t, name, "web-2")
		if out, code := vr(t, "exec", "--lab", name, "web-1", "--", "ping", "-c", "2", "-i", "0.2", "-W", "2", web2); code != 0 {
			t.Errorf("ping web-1 -> web-2 during the capture: exit %d\n%s", code, out)
		}
		if stderr, err := wait(); err != nil {
			t.Fatalf("capture: %v\n%s", err, stderr)
		}
		got := icmpFields(t, pcapFile, web1, web2)
		want := []string{
			"node1/ens33 " + web1 + " " + web2 + " 8 1", "node2/ens33 " + web2 + " " + web1 + " 0 1",
			"node1/ens33 " + web1 + " " + web2 + " 8 2", "node2/ens33 " + web2 + " " + web1 + " 0 2",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("capture of lan, ICMP between web-1 and web-2:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	// Destroy removes the bridges' namespaces with the rest.
	mustVR(t, "destroy", "-t", file)
	checkGone(t, name)
	if _, err := os.Stat(filepath.Join(netns.Dir, brNS)); !os.IsNotExist(err) {
		t.Errorf("bridge namespace %s left (stat: %v)", brNS, err)
	}
}

// podAddr returns the address of workload w's eth0.
func podAddr(t *testing.T, lab, w string) string {
	t.Helper()
	out := mustVR(t, "exec", "--lab", lab, w, "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
	m := regexp.MustCompile(`inet (\d+\.\d+\.\d+\.\d+)/32`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s's eth0 has no /32:\n%s", w, out)
	}
	return m[1]
}

// seedAlwaysTable is node1's `ip route` in the seed's IPIP post, less the
// lines of what a lab node does not have (the default route of a network
// with a gateway, docker0) and NetworkManager's "metric 100"; CALI stands
// for the workload's interface, whose name hashes the lab's and the
// workload's names.
const seedAlwaysTable = `10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink
10.244.135.0/26 via 192.168.50.12 dev tunl0 proto bird onlink
blackhole 10.244.166.128/26 proto bird
10.244.166.129 dev CALI scope link
192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10`

// examples/calico-ipip.yaml in kernel mode, with web-1 at the seed's
// 10.244.166.129: node1's `ip route` is the seed's Always table byte for
// byte. The workloads' fixed addresses are assigned before tunl0's, so
// tunl0 takes the first free address of web-1's block (10.244.166.128,
// as in the seed, where Calico gave the tunnel the block's first) and no
// node claims a block of its own for tunl0. tunl0 is the kernel's where
// it has the ipip module, else the agent's userspace tunl0; node status
// says which; pods ping across nodes through it.
func TestKernelLabAlways(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-ipip.yaml", "kalw", func(s string) string {
		s = strings.Replace(s, "{name: web-1, node: node1, address: 10.244.166.128}", "{name: web-1, node: node1, address: 10.244.166.129}", 1)
		return s + "dataplane: kernel\n"
	})
	lab := []string{"--lab", name}

	table := mustVR(t, append(append([]string{"exec"}, lab...), "node1", "--", "ip", "route")...)
	want := strings.Replace(seedAlwaysTable, "CALI", config.InterfaceName(name, "web-1"), 1)
	if got := strings.Join(ipLines(table), "\n"); got != want {
		t.Errorf("node1's ip route:\n%s\nwant the seed's Always table:\n%s", got, want)
	}
	status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
	tunnel := regexp.MustCompile(`IPIP tunnel: tunl0 (10\.244\.\d+\.\d+)/32 \((kernel ipip module|userspace: [^)]*)\)`).FindStringSubmatch(status)
	if tunnel == nil {
		t.Fatalf("node status lacks node1's tunl0:\n%s", status)
	}
	t.Logf("tunl0 %s: %s", tunnel[1], tunnel[2])
	if tunnel[1] != "10.244.166.128" {
		t.Errorf("node1's tunl0 address %s, want the seed's 10.244.166.128", tunnel[1])
	}
	for _, pair := range [][2]string{{"web-1", "web-2"}, {"web-3", "web-1"}} {
		dst := podAddr(t, name, pair[1])
		out, code := vr(t, append(append([]string{"exec"}, lab...), pair[0], "--", "ping", "-c", "3", "-i", "0.2", "-W", "2", dst)...)
		if code != 0 || !strings.Contains(out, "3 received") {
			t.Errorf("ping %s -> %s (%s) through tunl0: exit %d\n%s", pair[0], pair[1], dst, code, out)
		}
	}
}

// A kernel-mode node's agent owns only proto-bird routes and routes on
// cali devices: routes of other protocols added by hand to node2 (proto
// static, proto 42, a boot route on ens33) survive every resync: the one a
// stray bird route forces, the one a hand-deleted blackhole forces, and the
// one the restarted agent starts with. Killed with SIGKILL, the agent
// leaves its routes in its kernel: with graceful restart its peers keep its
// block, so a ping between pods through that node loses nothing while the
// agent is down, longer than the hold time. A borrowed /32 withdrawn while
// it is down (its workload deleted on node3) stays in node2's kernel until
// the agent is back: the restarted agent adopts the other routes and, after
// End-of-RIB, sweeps that one; node2's table is then what it was less it.
func TestKernelLabAgentKilled(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardRoot(t)
	file, name := kernelLabFile(t, "kkil")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data = regexp.MustCompile(`(?m)^(\s+gracefulRestart:) false`).ReplaceAll(data, []byte("$1 true"))
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	lab := []string{"--lab", name}
	mustVR(t, "deploy", "-t", file)
	ipNode2 := func(args ...string) string {
		return mustVR(t, append(append(append([]string{"exec"}, lab...), "node2", "--", "ip"), args...)...)
	}
	nodeTable := func() string { return strings.Join(ipLines(ipNode2("route")), "\n") }
	web2 := podAddr(t, name, "web-2")

	// A workload on node3 with an address of node1's block: node3
	// borrows it and announces its /32, which node2 learns.
	const borrowed = "10.244.166.150"
	mustVR(t, append([]string{"workload", "add", "w9", "--node", "node3", "--address", borrowed}, lab...)...)
	learned := borrowed + " via 192.168.50.12 dev ens33 proto bird"
	eventually(t, 30*time.Second, "node2 learns node3's borrowed /32", func() (bool, string) {
		tab := nodeTable()
		return slices.Contains(strings.Split(tab, "\n"), learned), tab
	})

	// Routes of other protocols, and a boot route on a device not cali.
	// The lines as ip prints them (proto 42 has a name in newer iproute2).
	var hand []string
	for _, r := range []string{
		"198.51.100.0/24 via 192.168.50.1 dev ens33 proto static",
		"203.0.113.0/24 dev ens33 proto 42 scope link",
		"192.0.2.0/24 dev ens33 scope link",
	} {
		ipNode2(append([]string{"route", "add"}, strings.Fields(r)...)...)
		line := strings.Join(ipLines(ipNode2(append([]string{"route", "show"}, strings.Fields(r)[0])...)), "\n")
		if !strings.HasPrefix(line, strings.Fields(r)[0]+" ") || strings.Contains(line, "\n") {
			t.Fatalf("ip route add %s: ip route shows %q", r, line)
		}
		hand = append(hand, line)
	}
	// A stray proto-bird route is the agent's to remove, and a blackhole
	// of its own deleted by hand its to restore: each forces a resync.
	ipNode2("route", "add", "10.99.0.0/24", "via", "192.168.50.12", "dev", "ens33", "proto", "bird")
	eventually(t, 30*time.Second, "node2's agent removes a stray bird route", func() (bool, string) {
		tab := nodeTable()
		return !strings.Contains(tab, "10.99.0.0/24"), tab
	})
	ipNode2("route", "del", "blackhole", "10.244.104.0/26", "proto", "bird")
	eventually(t, 30*time.Second, "node2's agent restores its blackhole", func() (bool, string) {
		tab := nodeTable()
		return strings.Contains(tab, "blackhole 10.244.104.0/26 proto bird"), tab
	})
	before := nodeTable()
	checkHand := func(when string) {
		t.Helper()
		lines := strings.Split(nodeTable(), "\n")
		for _, r := range hand {
			if !slices.Contains(lines, r) {
				t.Errorf("%s: node2 lacks the hand-added route %q:\n%s", when, r, strings.Join(lines, "\n"))
			}
		}
	}
	checkHand("after two resyncs")

	// The restarted agent resyncs every second (Felix's
	// routeRefreshInterval, 90 s by default), to watch periodic resyncs.
	cfgFile := filepath.Join(topology.StateRoot, name, "nodes", "node2.json")
	cfgData, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["routeRefreshInterval"] = time.Second
	if cfgData, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, cfgData, 0o600); err != nil {
		t.Fatal(err)
	}

	pidFile := filepath.Join(topology.StateRoot, name, "nodes", "node2.pid")
	pidData, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidData)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill node2's agent %d: %v", pid, err)
	}
	// Withdrawn while node2's agent is down: node1 drops it, node2's
	// kernel keeps it (nothing there to change it).
	mustVR(t, append([]string{"workload", "del", "w9"}, lab...)...)
	eventuallyVR(t, 30*time.Second, func(out string) bool { return !strings.Contains(out, borrowed+" ") },
		append(append([]string{"exec"}, lab...), "node1", "--", "ip", "route")...)
	// 12 s of pings, 100 a second: beyond the 9 s hold time, after which
	// node1 and node3 hold node2's block as stale.
	out, code := vr(t, append(append([]string{"exec"}, lab...), "web-1", "--", "ping", "-q", "-c", "1200", "-i", "0.01", "-W", "1", web2)...)
	if code != 0 || !strings.Contains(out, "1200 received") {
		t.Errorf("ping web-1 -> web-2 while node2's agent is down: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z") {
			t.Fatalf("node2's agent %d still runs", pid)
		}
	}
	if during := nodeTable(); during != before {
		t.Errorf("node2's table while its agent is down:\n%s\nwant as before:\n%s", during, before)
	}
	mustVR(t, append([]string{"node", "restart", "node2"}, lab...)...)
	var want []string
	for _, l := range strings.Split(before, "\n") {
		if l != learned {
			want = append(want, l)
		}
	}
	eventually(t, 60*time.Second, "node2's restarted agent sweeps the /32 withdrawn while it was down, and only it", func() (bool, string) {
		tab := nodeTable()
		return tab == strings.Join(want, "\n"), tab + "\nwant:\n" + strings.Join(want, "\n")
	})
	checkHand("after the agent restarted")
	// Periodic resyncs leave them alone too.
	resyncs := func() int {
		out := mustVR(t, append([]string{"metrics", "node2"}, lab...)...)
		m := regexp.MustCompile(`(?m)^vrouter_kernel_resyncs_total(?:\{[^}]*\})? (\d+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("node2's metrics lack vrouter_kernel_resyncs_total:\n%.2000s", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	r0 := resyncs()
	eventually(t, 20*time.Second, "three periodic resyncs of node2's routes", func() (bool, string) {
		n := resyncs()
		return n >= r0+3, fmt.Sprintf("resyncs %d, at first %d", n, r0)
	})
	checkHand("after periodic resyncs")
	if tab := nodeTable(); tab != strings.Join(want, "\n") {
		t.Errorf("node2's table after periodic resyncs:\n%s\nwant:\n%s", tab, strings.Join(want, "\n"))
	}
	out, code = vr(t, append(append([]string{"exec"}, lab...), "web-3", "--", "ping", "-c", "3", "-i", "0.2", "-W", "2", web2)...)
	if code != 0 || !strings.Contains(out, "3 received") {
		t.Errorf("ping web-3 -> web-2 after the restart: exit %d\n%s", code, out)
	}
}

// icmpFields returns tshark's interface, ip.src, ip.dst, icmp.type and
// icmp.seq (one line each) of the ICMP packets between a and b in file.
func icmpFields(t *testing.T, file, a, b string) []string {
	t.Helper()
	filter := fmt.Sprintf("icmp && ((ip.src==%s && ip.dst==%s) || (ip.src==%s && ip.dst==%s))", a, b, b, a)
	out, err := exec.Command("tshark", "-r", file, "-Y", filter, "-T", "fields", "-e", "frame.interface_name", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type", "-e", "icmp.seq").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", file, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	return lines
}

// A mixed lab: node1 of the seed lab in kernel mode (its own dataplane
// field), node2 and node3 userspace. The joint puts a port on lan's bridge
// beside node1's; the three peer over BGP, route each other's blocks, and
// pods ping both ways. A capture of lan (the fabric merged with the
// bridge) and one of the bridge alone record the same packets between a
// kernel-node pod and a userspace-node pod; destroy leaves nothing.
func TestKernelLabMixed(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.RequireCommand(t, "tshark", "tshark")
	netnstest.GuardRoot(t)
	file, name := labFile(t, "kmix")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data = regexp.MustCompile(`(?m)^(  node1: \{.*)\}$`).ReplaceAll(data, []byte("$1, dataplane: kernel}"))
	if !strings.Contains(string(data), "dataplane: kernel}") {
		t.Fatalf("node1 not made kernel-mode:\n%s", data)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	lab := []string{"--lab", name}
	mustVR(t, "deploy", "-t", file)

	brNS := topology.LabNamespacePrefix(name) + "lan.br"
	out, err := exec.Command("ip", "-n", brNS, "-o", "link", "show", "master", "br0").CombinedOutput()
	if err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 1 || !strings.Contains(string(out), " fab0: ") {
		t.Errorf("bridge br0's ports (want node1's and the joint's fab0): %v\n%s", err, out)
	}
	var inspect struct {
		Nodes []struct{ Name, Kind, Namespace, Interface, State string }
	}
	if err := json.Unmarshal([]byte(mustVR(t, append([]string{"inspect", "-o", "json"}, lab...)...)), &inspect); err != nil {
		t.Fatal(err)
	}
	var joints []string
	for _, n := range inspect.Nodes {
		if n.Kind == "joint" {
			joints = append(joints, n.Name+" "+n.Namespace+" "+n.Interface+" "+n.State)
		}
	}
	if want := "lan " + brNS + " fab0 running"; len(joints) != 1 || joints[0] != want {
		t.Errorf("inspect's joint rows %q, want [%s]", joints, want)
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		if out := mustVR(t, append([]string{"node", "status", n}, lab...)...); strings.Count(out, "Established") != 2 {
			t.Errorf("node status %s, want 2 Established peers:\n%s", n, out)
		}
	}
	// node1's kernel routes the userspace nodes' blocks; they route node1's.
	k := strings.Join(ipLines(mustVR(t, append(append([]string{"exec"}, lab...), "node1", "--", "ip", "route")...)), "\n")
	for _, want := range []string{"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird", "10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird"} {
		if !strings.Contains(k+"\n", want+"\n") {
			t.Errorf("node1's ip route lacks %q:\n%s", want, k)
		}
	}
	if r := mustVR(t, append([]string{"route", "node2"}, lab...)...); !strings.Contains(r, "10.244.166.128/26 via 192.168.50.10 dev ens33 proto bird\n") {
		t.Errorf("node2's routes lack node1's block:\n%s", r)
	}

	web1, web2 := podAddr(t, name, "web-1"), podAddr(t, name, "web-2")
	dir := t.TempDir()
	merged, bridged := filepath.Join(dir, "lan.pcapng"), filepath.Join(dir, "br0.pcapng")
	ping := func(from, to string) {
		t.Helper()
		dst := podAddr(t, name, to)
		out, code := vr(t, append(append([]string{"exec"}, lab...), from, "--", "ping", "-c", "2", "-i", "0.2", "-W", "2", dst)...)
		if code != 0 || !strings.Contains(out, "2 received") {
			t.Errorf("ping %s -> %s (%s): exit %d\n%s", from, to, dst, code, out)
		}
	}
	waitMerged := startCapture(t, io.Discard, "lan", "--lab", name, "--duration", "10s", "-w", merged)
	waitBridged := startCapture(t, io.Discard, "lan", "--bridge", "--lab", name, "--duration", "10s", "-w", bridged)
	start := time.Now()
	ping("web-1", "web-2")
	ping("web-2", "web-1")
	if d := time.Since(start); d > 8*time.Second {
		t.Logf("the pings took %s: the captures (10 s) may have missed some", d)
	}
	for _, w := range []func() (string, error){waitMerged, waitBridged} {
		if stderr, err := w(); err != nil {
			t.Fatalf("capture: %v\n%s", err, stderr)
		}
	}
	ping("web-3", "db-1")
	ping("db-1", "web-3")
	// The same packets, by address, type and sequence number; the bridge
	// names what the joint sends fab0, the merged capture its sender.
	strip := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			out = append(out, l[strings.Index(l, " ")+1:])
		}
		return out
	}
	m, b := icmpFields(t, merged, web1, web2), icmpFields(t, bridged, web1, web2)
	if len(m) != 8 || strings.Join(strip(m), "\n") != strings.Join(strip(b), "\n") {
		t.Errorf("ICMP between web-1 and web-2, merged capture:\n%s\nbridge:\n%s\nwant the same 8 packets", strings.Join(m, "\n"), strings.Join(b, "\n"))
	}
	for _, l := range m {
		if f := strings.Fields(l); (f[1] == web1) != (f[0] == "node1/ens33") || (f[1] == web2) != (f[0] == "node2/ens33") {
			t.Errorf("merged capture: %q is not on its sender's interface", l)
		}
	}

	mustVR(t, "destroy", "-t", file)
	checkGone(t, name)
}

// examples/calico-crosssubnet.yaml in kernel mode: the router node tor
// (userspace) joins both racks' bridges through their joints. node1's
// kernel routes node2's block (same rack) on ens33 and node3's (the other
// rack) through tunl0 to node3's address, over its default route via tor,
// exactly as the userspace lab does; pods ping within and across racks.
func TestKernelLabCrossSubnet(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-crosssubnet.yaml", "kxs", func(s string) string { return s + "dataplane: kernel\n" })
	lab := []string{"--lab", name}
	table := strings.Join(ipLines(mustVR(t, append(append([]string{"exec"}, lab...), "node1", "--", "ip", "route")...)), "\n")
	want := strings.Join([]string{
		"default via 192.168.50.1 dev ens33 proto static",
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
		"10.244.135.0/26 via 192.168.60.10 dev tunl0 proto bird onlink",
		"10.244.166.128 dev " + config.InterfaceName(name, "web-1") + " scope link",
		"blackhole 10.244.166.128/26 proto bird",
		"192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10",
	}, "\n")
	if table != want {
		t.Errorf("node1's ip route:\n%s\nwant:\n%s", table, want)
	}
	for _, pair := range [][2]string{{"web-1", "web-3"}, {"web-3", "web-2"}, {"web-1", "web-2"}} {
		dst := podAddr(t, name, pair[1])
		out, code := vr(t, append(append([]string{"exec"}, lab...), pair[0], "--", "ping", "-c", "2", "-i", "0.2", "-W", "2", dst)...)
		if code != 0 || !strings.Contains(out, "2 received") {
			t.Errorf("ping %s -> %s (%s): exit %d\n%s", pair[0], pair[1], dst, code, out)
		}
	}
}

// examples/external-router.yaml in kernel mode: the BIRD router's
// forwarder (userspace) reaches the kernel nodes through the joint; BIRD
// peers with them and its announced prefix lands in their kernels as
// BIRD's would.
func TestKernelLabExternalRouter(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "bird", "bird")
	netnstest.GuardRoot(t)
	name := deployExample(t, "external-router.yaml", "kext", func(s string) string { return s + "dataplane: kernel\n" })
	lab := []string{"--lab", name}
	for _, n := range []string{"node1", "node2"} {
		eventuallyVR(t, 30*time.Second, func(out string) bool {
			return strings.Contains(out, "10.99.0.0/24 via 192.168.50.100 dev ens33 proto bird \n")
		}, append(append([]string{"exec"}, lab...), n, "--", "ip", "route")...)
	}
	if out, code := vr(t, append(append([]string{"exec"}, lab...), "web-1", "--", "ping", "-c", "2", "-i", "0.2", "-W", "2", "192.168.50.100")...); code != 0 {
		t.Errorf("ping web-1 -> ext1: exit %d\n%s", code, out)
	}
}

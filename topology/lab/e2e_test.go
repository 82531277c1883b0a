package lab_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// vrouterBin is the real binary, built once for these tests.
var vrouterBin string

func TestMain(m *testing.M) {
	if os.Getenv(passThroughEnv) != "" {
		os.Exit(passThroughMain())
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "vrouter-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vrouterBin = filepath.Join(dir, "vrouter")
	// Tests run the binary under the race detector; benchmarks (-bench)
	// measure it as it ships.
	build := []string{"build", "-race", "-o", vrouterBin, "../../cmd/vrouter"}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		build = slices.Delete(build, 1, 2)
	}
	out, err := exec.Command("go", build...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build vrouter: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// vr runs the vrouter binary and returns its combined output and exit code.
// It may fail the test, so it must not be called from another goroutine
// than the test's: use runVR there.
func vr(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, code, err := runVR(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out, code
}

// runVR runs the vrouter binary and returns its combined output and exit
// code, or an error if it could not run or did not end within 90 s.
func runVR(args ...string) (string, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, vrouterBin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ctx.Err() == nil:
		return string(out), ee.ExitCode(), nil
	case err != nil:
		return string(out), -1, fmt.Errorf("vrouter %v: %w\n%s", args, err, out)
	}
	return string(out), 0, nil
}

// labNames holds the lab names tests of this process have claimed with
// labName, and which test claimed each.
var labNames sync.Map

// labName returns the name of a lab for this test: prefix and the process
// id, so that another test process (another package, another checkout)
// does not collide with it. Tests run in parallel, so the name must be
// this test's alone: a prefix another running test claimed fails the
// test. The name is free again when the test ends.
func labName(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, os.Getpid()%100000)
	if other, taken := labNames.LoadOrStore(name, t.Name()); taken {
		t.Fatalf("lab name %s is already used by %s: give this test a prefix of its own", name, other)
	}
	t.Cleanup(func() { labNames.Delete(name) })
	return name
}

// mustVR runs vrouter and fails the test unless it exits 0.
func mustVR(t *testing.T, args ...string) string {
	t.Helper()
	out, code := vr(t, args...)
	if code != 0 {
		t.Fatalf("vrouter %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// labFile writes the example lab under a name of this test's (see
// labName) and returns its path and the name.
func labFile(t *testing.T, prefix string) (string, string) {
	t.Helper()
	data, err := os.ReadFile("../../examples/calico-bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	name := labName(t, prefix)
	data = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(data, []byte("name: "+name))
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, name
}

// checkGone fails the test if anything of the lab called name is left.
func checkGone(t testing.TB, name string) {
	t.Helper()
	if nss, _ := netns.List(topology.LabNamespacePrefix(name)); len(nss) > 0 {
		t.Errorf("namespaces left: %v", nss)
	}
	if _, err := os.Stat(filepath.Join(topology.StateRoot, name)); !os.IsNotExist(err) {
		t.Errorf("state directory %s left (stat: %v)", filepath.Join(topology.StateRoot, name), err)
	}
	if _, err := os.Stat(filepath.Join(topology.StateRoot, name+".lock")); !os.IsNotExist(err) {
		t.Errorf("lock file %s left (stat: %v)", filepath.Join(topology.StateRoot, name+".lock"), err)
	}
	// "[v]router" matches the agents but not another test's pgrep looking
	// for the same lab (pgrep leaves out only itself).
	out, _ := exec.Command("pgrep", "-f", "[v]router node run --config "+filepath.Join(topology.StateRoot, name)+"/").CombinedOutput()
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("agent processes left: %s", s)
	}
	// Router forwarders and daemons (bird, zebra, bgpd) name files in the
	// state directory on their command lines.
	out, _ = exec.Command("pgrep", "-a", "-f", filepath.Join(topology.StateRoot, name)+"/").CombinedOutput()
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("processes of the lab left: %s", s)
	}
}

func TestLabEndToEnd(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	for _, c := range []struct{ cmd, pkg string }{{"ping", "iputils-ping"}, {"iperf3", "iperf3"}, {"traceroute", "traceroute"}} {
		netnstest.RequireCommand(t, c.cmd, c.pkg)
	}
	netnstest.GuardRoot(t)
	file, name := labFile(t, "e2e")
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	lab := []string{"--lab", name}

	out := mustVR(t, "deploy", "-t", file)
	for _, n := range []string{"node1", "node2", "node3", "web-1", "web-2", "web-3", "db-1", "db-2"} {
		// the summary is a bordered table: │ NAME │ ... │ STATE │
		if !regexp.MustCompile(`(?m)^│ ` + n + ` +│ .* │ running +│$`).MatchString(out) {
			t.Errorf("deploy summary lacks %s running:\n%s", n, out)
		}
	}

	t.Run("deploy twice", func(t *testing.T) {
		out, code := vr(t, "deploy", "-t", file)
		if code == 0 || !strings.Contains(out, "already deployed") {
			t.Fatalf("second deploy: exit %d\n%s", code, out)
		}
	})

	var inspect struct {
		Nodes []struct{ Name, Kind, Node, Address, Interface, State string }
	}
	if err := json.Unmarshal([]byte(mustVR(t, append([]string{"inspect", "-o", "json"}, lab...)...)), &inspect); err != nil {
		t.Fatal(err)
	}
	addr := map[string]string{}
	iface := map[string]string{}
	for _, n := range inspect.Nodes {
		addr[n.Name], iface[n.Name] = n.Address, n.Interface
	}
	if len(inspect.Nodes) != 8 || addr["node2"] != "192.168.50.11" {
		t.Fatalf("inspect: %+v", inspect.Nodes)
	}

	t.Run("routes have the seed's shapes", func(t *testing.T) {
		routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
		lines := strings.Split(strings.TrimSpace(routes), "\n")
		var remote, local, blackhole, connected int
		for _, l := range lines {
			switch {
			case regexp.MustCompile(`^10\.244\.\d+\.\d+/26 via 192\.168\.50\.1[12] dev ens33 proto bird$`).MatchString(l):
				remote++
			case regexp.MustCompile(`^10\.244\.\d+\.\d+ dev cali[0-9a-f]{11} scope link$`).MatchString(l):
				local++
			case regexp.MustCompile(`^blackhole 10\.244\.\d+\.\d+/26 proto bird$`).MatchString(l):
				blackhole++
			case l == "192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10":
				connected++
			default:
				t.Errorf("unexpected route line %q", l)
			}
		}
		if remote != 2 || local != 2 || blackhole != 1 || connected != 1 {
			t.Errorf("node1 routes: %d remote, %d local, %d blackhole, %d connected; want 2 2 1 1\n%s", remote, local, blackhole, connected, routes)
		}
		// The example's fixed addresses claim the seed's blocks.
		for _, want := range []string{
			"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
			"10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird",
			"blackhole 10.244.166.128/26 proto bird",
		} {
			if !strings.Contains(routes, want+"\n") {
				t.Errorf("node1 lacks the seed's line %q\n%s", want, routes)
			}
		}
		for _, w := range []string{"web-1", "db-1"} {
			want := addr[w] + " dev " + iface[w] + " scope link"
			if !strings.Contains(routes, want+"\n") {
				t.Errorf("node1 lacks %q\n%s", want, routes)
			}
		}
		kernel := mustVR(t, append(append([]string{"exec"}, lab...), "node1", "--", "ip", "route")...)
		if strings.TrimSpace(kernel) != "192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10" {
			t.Errorf("node1's kernel main table should hold only the connected route:\n%s", kernel)
		}
	})

	t.Run("node status", func(t *testing.T) {
		out := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
		for _, peer := range []string{"192.168.50.11", "192.168.50.12"} {
			if !regexp.MustCompile(`\| ` + regexp.QuoteMeta(peer) + ` +\| node-to-node mesh \| up +\| [0-9:-]+ +\| Established +\|`).MatchString(out) {
				t.Errorf("node status lacks an Established mesh peer %s:\n%s", peer, out)
			}
		}
		if !strings.HasPrefix(out, "vrouter process is running.\n") || !strings.Contains(out, "IPv6 BGP status\nNo IPv6 peers found.") {
			t.Errorf("node status header/footer:\n%s", out)
		}
	})

	t.Run("ping across nodes", func(t *testing.T) {
		out, code := vr(t, append(append([]string{"exec"}, lab...), "web-1", "--", "ping", "-c", "3", "-i", "0.2", "-W", "2", addr["web-2"])...)
		if code != 0 || !strings.Contains(out, "3 received") {
			t.Fatalf("ping web-1 -> web-2: exit %d\n%s", code, out)
		}
		out, code = vr(t, append(append([]string{"exec"}, lab...), "db-2", "--", "ping", "-c", "2", "-i", "0.2", "-W", "2", "192.168.50.10")...)
		if code != 0 {
			t.Fatalf("ping db-2 -> node1's address: exit %d\n%s", code, out)
		}
		out, code = vr(t, append(append([]string{"exec"}, lab...), "web-1", "--", "ping", "-c", "2", "-i", "0.2", "-W", "2", addr["db-1"])...)
		if code != 0 {
			t.Fatalf("ping web-1 -> db-1 (same node): exit %d\n%s", code, out)
		}
	})

	t.Run("calicoctl-style listings", func(t *testing.T) {
		nodes := mustVR(t, append([]string{"get", "nodes"}, lab...)...)
		if nodes != "NAME\nnode1\nnode2\nnode3\n" {
			t.Errorf("get nodes:\n%s", nodes)
		}
		var blocks []struct{ CIDR, Affinity string }
		if err := json.Unmarshal([]byte(mustVR(t, append([]string{"get", "blocks", "-o", "json"}, lab...)...)), &blocks); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, b := range blocks {
			got[b.CIDR] = b.Affinity
		}
		want := map[string]string{"10.244.166.128/26": "host:node1", "10.244.104.0/26": "host:node2", "10.244.135.0/26": "host:node3"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("get blocks: %v, want %v", got, want)
		}
		pools := mustVR(t, append([]string{"get", "ippools", "-o", "wide"}, lab...)...)
		if !regexp.MustCompile(`(?m)^default-ipv4-ippool +10\.244\.0\.0/16 +all\(\) +26 +Never$`).MatchString(pools) {
			t.Errorf("get ippools -o wide:\n%s", pools)
		}
		wl := mustVR(t, append([]string{"get", "workloads", "-o", "yaml"}, lab...)...)
		if !strings.Contains(wl, "ipNetworks: 10.244.166.128/32") {
			t.Errorf("get workloads -o yaml lacks web-1's address:\n%s", wl)
		}
	})

	t.Run("exit code passes through", func(t *testing.T) {
		if _, code := vr(t, append(append([]string{"exec"}, lab...), "web-1", "--", "sh", "-c", "exit 7")...); code != 7 {
			t.Fatalf("exit code %d, want 7", code)
		}
	})

	t.Run("traceroute shows each hop", func(t *testing.T) {
		out := mustVR(t, append(append([]string{"exec"}, lab...), "web-1", "--", "traceroute", "-n", "-q", "1", "-w", "2", addr["web-3"])...)
		hops := regexp.MustCompile(`(?m)^ ?(\d+)  (\S+)`).FindAllStringSubmatch(out, -1)
		var got []string
		for _, h := range hops {
			got = append(got, h[2])
		}
		want := []string{"192.168.50.10", "192.168.50.12", addr["web-3"]}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("traceroute hops %v, want %v\n%s", got, want, out)
		}
	})

	t.Run("iperf3 across nodes", func(t *testing.T) {
		startIperfServer(t, name, "web-3")
		out := mustVR(t, append(append([]string{"exec"}, lab...), "web-1", "--", "iperf3", "-c", addr["web-3"], "-t", "2", "-J")...)
		var r struct {
			End struct {
				SumReceived struct{ Bytes float64 } `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("iperf3 output: %v\n%.500s", err, out)
		}
		if r.End.SumReceived.Bytes == 0 {
			t.Fatalf("iperf3 moved no data:\n%.500s", out)
		}
		t.Logf("iperf3 web-1 -> web-3: %.0f bytes in 2 s", r.End.SumReceived.Bytes)
	})

	t.Run("workload add and del", func(t *testing.T) {
		out := mustVR(t, append([]string{"workload", "add", "web-4", "--node", "node2"}, lab...)...)
		m := regexp.MustCompile(`: (10\.244\.\d+\.\d+) dev (cali[0-9a-f]{11})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("workload add output: %s", out)
		}
		if _, code := vr(t, append(append([]string{"exec"}, lab...), "web-1", "--", "ping", "-c", "1", "-W", "2", m[1])...); code != 0 {
			t.Fatalf("ping the new workload %s failed", m[1])
		}
		mustVR(t, append([]string{"workload", "del", "web-4"}, lab...)...)
		if netns.Exists(topology.LabNamespacePrefix(name) + "web-4") {
			t.Fatal("web-4's namespace is still there")
		}
		routes := mustVR(t, append([]string{"route", "node2"}, lab...)...)
		if strings.Contains(routes, m[1]+" dev") {
			t.Fatalf("node2 still routes %s:\n%s", m[1], routes)
		}
	})

	t.Run("killed node is withdrawn", func(t *testing.T) {
		pidData, err := os.ReadFile(filepath.Join(topology.StateRoot, name, "nodes", "node3.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(pidData)))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Hold time is 9 s: node1 must notice within it (plus slack for a
		// busy machine) and drop node3's block.
		deadline := time.Now().Add(20 * time.Second)
		for {
			status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
			routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
			down := !regexp.MustCompile(`192\.168\.50\.12 +\| node-to-node mesh \| up +\| [0-9:-]+ +\| Established`).MatchString(status)
			if down && !strings.Contains(routes, "via 192.168.50.12") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node1 still sees node3 20 s after it was killed:\n%s\n%s", status, routes)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
}

func TestBadLabFilesCreateNothing(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	cases := []struct{ name, file, want string }{
		{"unknown field", "name: bad-a\nipPools:\n  - {name: p, cidr: 10.244.0.0/16}\nnetworks:\n  - {name: lan, cidr: 192.168.50.0/24}\nnodes:\n  node1: {network: lan, adress: 192.168.50.10}\n", ":7: nodes.node1.adress: unknown field"},
		{"address outside network", "name: bad-b\nipPools:\n  - {name: p, cidr: 10.244.0.0/16}\nnetworks:\n  - {name: lan, cidr: 192.168.50.0/24}\nnodes:\n  node1: {network: lan, address: 192.168.60.10}\n", ":7: nodes.node1.address: "},
		{"bad blockSize", "name: bad-c\nipPools:\n  - {name: p, cidr: 10.244.0.0/16, blockSize: 33}\nnetworks:\n  - {name: lan, cidr: 192.168.50.0/24}\nnodes:\n  node1: {network: lan, address: 192.168.50.10}\n", ":3: ipPools[0].blockSize: "},
		{"bad ipipMode", "name: bad-d\nipPools:\n  - {name: p, cidr: 10.244.0.0/16, ipipMode: Sometimes}\nnetworks:\n  - {name: lan, cidr: 192.168.50.0/24}\nnodes:\n  node1: {network: lan, address: 192.168.50.10}\n", ":3: ipPools[0].ipipMode: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(c.file), 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := vr(t, "deploy", "-t", path)
			if code == 0 {
				t.Fatalf("deploy of a bad file succeeded:\n%s", out)
			}
			if !strings.Contains(out, path+c.want) {
				t.Errorf("error does not name the line and field (%q):\n%s", c.want, out)
			}
			labName := strings.TrimPrefix(strings.SplitN(c.file, "\n", 2)[0], "name: ")
			checkGone(t, labName)
		})
	}
}

// Every broken lab file of the topology package's tests (one per validation
// rule) makes deploy fail with the file's name and a line number, and
// creates nothing.
func TestEveryBadLabFileCreatesNothing(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	files, err := filepath.Glob("../testdata/*.yaml")
	if err != nil || len(files) < 20 {
		t.Fatalf("bad lab files: %v (%d found)", err, len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, code := vr(t, "deploy", "-t", f)
			if code == 0 {
				t.Fatalf("deploy succeeded:\n%s", out)
			}
			where := regexp.QuoteMeta(f) + `:\d+: ` // file:line
			if filepath.Base(f) == "empty.yaml" {
				where = regexp.QuoteMeta(f) + `: ` // an empty file has no line to name
			}
			if !regexp.MustCompile(where).MatchString(out) {
				t.Errorf("error does not name the file and line:\n%s", out)
			}
			data, _ := os.ReadFile(f)
			if m := regexp.MustCompile(`(?m)^name: *([a-z0-9-]+) *$`).FindSubmatch(data); m != nil {
				checkGone(t, string(m[1]))
			}
		})
	}
}

// eventually polls cond every 200 ms until it holds or timeout passes, then
// fails the test with what cond last reported.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %s:\n%s", what, timeout, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

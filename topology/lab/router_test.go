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

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// The addresses of the router interop labs: two nodes, one router, one
// workload per node at fixed addresses (so the blocks are known), and a
// network behind the router.
const (
	rtNode1, rtNode2 = "192.168.50.10", "192.168.50.11"
	rtRouter         = "192.168.50.100"
	rtBlock1         = "10.244.166.128/26" // node1's, around web-1
	rtBlock2         = "10.244.104.0/26"   // node2's, around web-2
	rtBehind         = "10.99.0.0/24"      // announced by the router
	rtBehindAddr     = "10.99.0.1"         // on the router's loopback
)

// daemonUnderTest is one BGP daemon the interop tests run.
type daemonUnderTest struct {
	daemon topology.Daemon
	code   string // short, for lab names
	// require fails (CI) or skips the test when the daemon is missing and
	// returns the binary: line for the lab file ("" for the default).
	require func(t *testing.T) string
}

func requireBIRD(t *testing.T) string {
	netnstest.RequireCommand(t, "bird", "bird")
	netnstest.RequireCommand(t, "birdc", "bird")
	return ""
}

func requireFRR(t *testing.T) string {
	netnstest.RequireCommand(t, "vtysh", "frr")
	for _, d := range []string{"bgpd", "zebra"} {
		if _, err := os.Stat("/usr/lib/frr/" + d); err != nil {
			failOrSkip(t, "/usr/lib/frr/%s not found; install the Debian package frr", d)
		}
	}
	return ""
}

func requireGoBGP(t *testing.T) string {
	netnstest.RequireCommand(t, "gobgpd", "gobgpd")
	netnstest.RequireCommand(t, "gobgp", "gobgpd")
	return ""
}

func requireBIRD2(t *testing.T) string {
	bin := os.Getenv("VROUTER_BIRD2")
	if bin == "" {
		bin = lab.DefaultBIRD2
	}
	for _, f := range []string{bin, filepath.Join(filepath.Dir(bin), "birdc")} {
		if _, err := os.Stat(f); err != nil {
			failOrSkip(t, "%s not found; BIRD 2 conflicts with bird: apt-get download bird2 && dpkg-deb -x bird2_*.deb /opt/vrouter-bird2 (or set VROUTER_BIRD2)", f)
		}
	}
	return bin
}

// failOrSkip fails the test under CI and skips it elsewhere, as
// netnstest.RequireCommand does.
func failOrSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// routerLab writes a router interop lab and returns its path.
func routerLab(t *testing.T, name string, d topology.Daemon, binary string, routerAS int, password string) string {
	t.Helper()
	bin, pw := "", ""
	if binary != "" {
		bin = ", binary: " + binary
	}
	if password != "" {
		pw = ", password: " + password
	}
	data := fmt.Sprintf(`name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16}
bgp: {asNumber: 64512}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: %s}
  node2: {network: lan, address: %s}
routers:
  ext1: {network: lan, address: %s, asNumber: %d, daemon: %s%s, announce: [%s]}
bgpPeers:
  - {name: ext1, peerIP: %s%s}
workloads:
  - {name: web-1, node: node1, address: 10.244.166.130}
  - {name: web-2, node: node2, address: 10.244.104.2}
`, name, rtNode1, rtNode2, rtRouter, routerAS, d, bin, rtBehind, rtRouter, pw)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// inRouter runs a command in the router's namespace.
func inRouter(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", topology.LabNamespacePrefix(name) + "ext1"}, args...)...).CombinedOutput()
	return string(out), err
}

// daemonRoutes asks the router's daemon, through its own CLI, for its BGP
// routes: prefix to next hop of the best route.
func daemonRoutes(t *testing.T, name string, rs lab.RouterState) (map[string]string, string) {
	t.Helper()
	got := map[string]string{}
	switch rs.Daemon {
	case topology.DaemonFRR:
		text, err := inRouter(t, name, rs.CLIArgs("show ip bgp")...)
		if err != nil {
			return got, fmt.Sprintf("vtysh: %v\n%s", err, text)
		}
		out, err := inRouter(t, name, rs.CLIArgs("show ip bgp json")...)
		if err != nil {
			return got, fmt.Sprintf("vtysh: %v\n%s", err, out)
		}
		var j struct {
			Routes map[string][]struct {
				Bestpath bool `json:"bestpath"`
				Nexthops []struct {
					IP string `json:"ip"`
				} `json:"nexthops"`
			} `json:"routes"`
		}
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			return got, fmt.Sprintf("vtysh json: %v\n%s", err, out)
		}
		for p, paths := range j.Routes {
			// The plain listing must show every prefix the JSON has.
			if !strings.Contains(text, p) {
				continue
			}
			for _, path := range paths {
				if path.Bestpath && len(path.Nexthops) > 0 {
					got[p] = path.Nexthops[0].IP
				}
			}
		}
		return got, text
	case topology.DaemonGoBGP:
		text, err := inRouter(t, name, rs.CLIArgs("global", "rib", "-a", "ipv4")...)
		if err != nil {
			return got, fmt.Sprintf("gobgp: %v\n%s", err, text)
		}
		out, err := inRouter(t, name, rs.CLIArgs("-j", "global", "rib", "-a", "ipv4")...)
		if err != nil {
			return got, fmt.Sprintf("gobgp: %v\n%s", err, out)
		}
		var j map[string][]struct {
			Best  bool `json:"best"`
			Attrs []struct {
				Type    int    `json:"type"`
				Nexthop string `json:"nexthop"`
			} `json:"attrs"`
		}
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			return got, fmt.Sprintf("gobgp json: %v\n%s", err, out)
		}
		for p, paths := range j {
			// The plain listing must show every prefix the JSON has.
			if !strings.Contains(text, p) {
				continue
			}
			for _, path := range paths {
				for _, a := range path.Attrs {
					if path.Best && a.Type == 3 { // NEXT_HOP
						got[p] = a.Nexthop
					}
				}
			}
		}
		return got, text
	default:
		text, err := inRouter(t, name, rs.CLIArgs("show", "route", "protocol", "peer_node1")...)
		if err != nil {
			return got, fmt.Sprintf("birdc: %v\n%s", err, text)
		}
		text2, err := inRouter(t, name, rs.CLIArgs("show", "route", "protocol", "peer_node2")...)
		if err != nil {
			return got, fmt.Sprintf("birdc: %v\n%s", err, text2)
		}
		text += text2
		// BIRD 1.6: "10.244.166.128/26 via 192.168.50.10 on ens33 [...]".
		// BIRD 2: "10.244.166.128/26 unicast [...]" then "\tvia 192.168.50.10 on ens33".
		cur := ""
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if strings.Contains(f[0], "/") && line[0] != ' ' && line[0] != '\t' {
				cur = f[0]
				f = f[1:]
			}
			if cur != "" && len(f) >= 2 && f[0] == "via" {
				if _, seen := got[cur]; !seen {
					got[cur] = f[1]
				}
			}
		}
		return got, text
	}
}

// waitFor polls cond until it returns "" or the deadline passes, then
// fails with the last reason.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() string) {
	t.Helper()
	eventually(t, timeout, what, func() (bool, string) {
		why := cond()
		return why == "", why
	})
}

// withdrawAnnounce makes the daemon stop (or, with back, resume)
// announcing the network behind the router, through its own CLI.
func withdrawAnnounce(t *testing.T, name string, rs lab.RouterState, asn int, back bool) {
	t.Helper()
	var args []string
	switch rs.Daemon {
	case topology.DaemonFRR:
		no := "no "
		if back {
			no = ""
		}
		args = rs.CLIArgs("configure terminal", "router bgp "+strconv.Itoa(asn), "address-family ipv4 unicast", no+"network "+rtBehind)
	case topology.DaemonGoBGP:
		cmd := "del"
		if back {
			cmd = "add"
		}
		args = rs.CLIArgs("global", "rib", cmd, "-a", "ipv4", rtBehind)
	default:
		cmd := "disable"
		if back {
			cmd = "enable"
		}
		args = rs.CLIArgs(cmd, "announce")
	}
	if out, err := inRouter(t, name, args...); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// TestRouterDaemons runs each real BGP daemon as an external router, over
// iBGP and eBGP with the lab's nodes: the daemon learns every block with
// the right next hop, its announcement lands in the nodes' FIBs as proto
// bird and workloads reach the address behind it, and withdrawals on
// either side take the routes away.
func TestRouterDaemons(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	daemons := []daemonUnderTest{
		{topology.DaemonBIRD, "b1", requireBIRD},
		{topology.DaemonFRR, "fr", requireFRR},
		{topology.DaemonBIRD2, "b2", requireBIRD2},
		{topology.DaemonGoBGP, "gb", requireGoBGP},
	}
	for _, d := range daemons {
		// The eBGP sessions are signed with TCP MD5 (the BGPPeer's
		// password, in the generated daemon config too).
		for _, mode := range []struct {
			name     string
			asn      int
			password string
		}{{"iBGP", 64512, ""}, {"eBGP", 64600, "s3cret-md5"}} {
			t.Run(string(d.daemon)+"/"+mode.name, func(t *testing.T) {
				t.Parallel()
				bin := d.require(t)
				if d.daemon == topology.DaemonBIRD2 && mode.name == "iBGP" {
					bin = "" // found where deploy looks by default: $VROUTER_BIRD2 or /opt/vrouter-bird2
				}
				name := labName(t, fmt.Sprintf("rt%s%s", d.code, strings.ToLower(mode.name[:1])))
				testRouter(t, name, d.daemon, bin, mode.asn, mode.password)
			})
		}
	}
}

func testRouter(t *testing.T, name string, d topology.Daemon, bin string, asn int, password string) {
	file := routerLab(t, name, d, bin, asn, password)
	// FRR's daemons keep per-process files in /var/tmp/frr/<daemon>.<pid>,
	// removed when they exit cleanly.
	var frrTmp []string
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
		for _, dir := range frrTmp {
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("%s left behind", dir)
			}
		}
	})
	mustVR(t, "deploy", "-t", file)
	st, err := lab.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	rs, ok := st.Router("ext1")
	if !ok || len(rs.Processes) == 0 {
		t.Fatalf("lab state has no router ext1: %+v", st.Routers)
	}
	for _, p := range rs.Processes {
		if pid, err := os.ReadFile(p.PIDFile); err == nil && d == topology.DaemonFRR {
			frrTmp = append(frrTmp, fmt.Sprintf("/var/tmp/frr/%s.%s", p.Name, strings.TrimSpace(string(pid))))
		}
	}
	fibHas := func(node, line string) bool {
		out, _ := vr(t, "route", "--lab", name, node)
		return strings.Contains(out, line+"\n")
	}
	behind := rtBehind + " via " + rtRouter + " dev ens33 proto bird"

	// The daemon's own CLI lists every lab block with the node as next hop.
	waitFor(t, "daemon learns both blocks", 30*time.Second, func() string {
		got, text := daemonRoutes(t, name, rs)
		if got[rtBlock1] != rtNode1 || got[rtBlock2] != rtNode2 {
			return fmt.Sprintf("routes %v, want %s via %s and %s via %s\n%s", got, rtBlock1, rtNode1, rtBlock2, rtNode2, text)
		}
		return ""
	})
	// ... and installs them in the namespace's kernel table.
	waitFor(t, "router kernel has both blocks", 30*time.Second, func() string {
		out, _ := inRouter(t, name, "ip", "route")
		for _, want := range [][2]string{{rtBlock1, rtNode1}, {rtBlock2, rtNode2}} {
			// FRR's zebra installs routes with nexthop objects (nhid N).
			re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want[0]) + ` (nhid \d+ )?via ` + regexp.QuoteMeta(want[1]) + ` dev ens33 `)
			if !re.MatchString(out) {
				return "no " + want[0] + " via " + want[1] + " in\n" + out
			}
		}
		return ""
	})
	// The forwarder's copy of the router's kernel table, as vrouter route
	// prints it, routes each block to its node.
	waitFor(t, "vrouter route ext1 shows the blocks", 30*time.Second, func() string {
		out, _ := vr(t, "route", "--lab", name, "ext1")
		for _, want := range [][2]string{{rtBlock1, rtNode1}, {rtBlock2, rtNode2}} {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want[0]) + ` via ` + regexp.QuoteMeta(want[1]) + ` dev ens33 proto `).MatchString(out) {
				return "no " + want[0] + " via " + want[1] + " in\n" + out
			}
		}
		return ""
	})
	var inspect struct {
		Nodes []struct{ Name, Kind, Address, State string }
	}
	if err := json.Unmarshal([]byte(mustVR(t, "inspect", "--lab", name, "-o", "json")), &inspect); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range inspect.Nodes {
		if n.Name == "ext1" {
			found = true
			if n.Kind != "router ("+string(d)+")" || n.Address != rtRouter || n.State != "running" {
				t.Errorf("inspect: ext1 is %+v", n)
			}
		}
	}
	if !found {
		t.Errorf("inspect lacks ext1: %+v", inspect.Nodes)
	}

	// The daemon's announcement lands in both nodes' FIBs as proto bird.
	waitFor(t, "nodes learn the network behind the router", 30*time.Second, func() string {
		for _, n := range []string{"node1", "node2"} {
			if !fibHas(n, behind) {
				out, _ := vr(t, "route", "--lab", name, n)
				return n + " lacks " + behind + ":\n" + out
			}
		}
		return ""
	})
	for _, w := range []string{"web-1", "web-2"} {
		pingsBehind(t, name, w)
	}

	// The daemon withdraws its announcement: gone from both FIBs, and the
	// address behind the router is unreachable; announced again, back.
	withdrawAnnounce(t, name, rs, asn, false)
	waitFor(t, "withdrawn announcement leaves the FIBs", 30*time.Second, func() string {
		for _, n := range []string{"node1", "node2"} {
			if fibHas(n, behind) {
				return n + " still has " + behind
			}
		}
		return ""
	})
	if out, code := vr(t, "exec", "--lab", name, "web-1", "--", "ping", "-c", "1", "-W", "1", rtBehindAddr); code == 0 {
		t.Fatalf("ping after withdrawal succeeded:\n%s", out)
	}
	withdrawAnnounce(t, name, rs, asn, true)
	waitFor(t, "announcement returns", 30*time.Second, func() string {
		if !fibHas("node1", behind) {
			return "node1 lacks " + behind
		}
		return ""
	})

	// A workload added on a running lab claims a new block on node2: the
	// daemon learns it at once, and the new workload reaches the router.
	mustVR(t, "workload", "add", "--lab", name, "web-9", "--node", "node2", "--address", "10.244.200.5")
	const rtBlock9 = "10.244.200.0/26"
	waitFor(t, "daemon learns node2's new block", 30*time.Second, func() string {
		got, text := daemonRoutes(t, name, rs)
		if got[rtBlock9] != rtNode2 {
			return fmt.Sprintf("routes %v, want %s via %s\n%s", got, rtBlock9, rtNode2, text)
		}
		return ""
	})
	pingsBehind(t, name, "web-9")

	// A node goes away (its agent stops, closing its sessions): its blocks
	// leave the daemon's table and the router's kernel; node1's stays.
	n2, _ := st.Node("node2")
	pid, err := os.ReadFile(n2.PIDFile)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err := syscall.Kill(p, syscall.SIGTERM); err != nil {
		t.Fatalf("stop node2's agent: %v", err)
	}
	waitFor(t, "node2's block leaves the daemon", 30*time.Second, func() string {
		got, text := daemonRoutes(t, name, rs)
		for _, b := range []string{rtBlock2, rtBlock9} {
			if _, still := got[b]; still {
				return "daemon still has " + b + "\n" + text
			}
		}
		if got[rtBlock1] != rtNode1 {
			return "daemon lost node1's " + rtBlock1 + "\n" + text
		}
		out, _ := inRouter(t, name, "ip", "route")
		for _, b := range []string{rtBlock2, rtBlock9} {
			if strings.Contains(out, b) {
				return "router kernel still routes " + b + "\n" + out
			}
		}
		return ""
	})
	pingsBehind(t, name, "web-1")
}

// pingsBehind checks that workload w gets an answer from the address
// behind the router (polling: the first echo may meet a route still on
// its way into the router's kernel).
func pingsBehind(t *testing.T, name, w string) {
	t.Helper()
	waitFor(t, "ping "+w+" -> "+rtBehindAddr+" behind the router", 20*time.Second, func() string {
		out, code := vr(t, "exec", "--lab", name, w, "--", "ping", "-c", "1", "-W", "2", rtBehindAddr)
		if code != 0 || !strings.Contains(out, "1 received") {
			return fmt.Sprintf("exit %d\n%s", code, out)
		}
		return ""
	})
}

// A router whose binary is the other BIRD fails deploy before anything is
// created, saying which daemon to write.
func TestRouterWrongBIRD(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	requireBIRD(t)
	bird2 := requireBIRD2(t)
	name := labName(t, "rtwb")
	for _, c := range []struct {
		daemon topology.Daemon
		binary string
		want   string
	}{
		{topology.DaemonBIRD, bird2, `is "BIRD version 2.0`},
		{topology.DaemonBIRD2, "/usr/sbin/bird", `is "BIRD version 1.6`},
	} {
		t.Run(string(c.daemon), func(t *testing.T) {
			file := routerLab(t, name, c.daemon, c.binary, 64512, "")
			out, code := vr(t, "deploy", "-t", file)
			if code == 0 {
				mustVR(t, "destroy", "-t", file)
				t.Fatalf("deploy with the other BIRD succeeded:\n%s", out)
			}
			if !strings.Contains(out, "router ext1") || !strings.Contains(out, c.want) {
				t.Errorf("error does not name the router and the version (%q):\n%s", c.want, out)
			}
			checkGone(t, name)
		})
	}
}

// A router whose daemon is not installed fails deploy before anything is
// created, naming the Debian package.
func TestRouterDaemonMissing(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	name := labName(t, "rtmiss")
	for _, c := range []struct {
		daemon topology.Daemon
		want   string
	}{
		{topology.DaemonBIRD, "install the Debian package bird"},
		{topology.DaemonBIRD2, "install the Debian package bird2"},
		{topology.DaemonFRR, "install the Debian package frr"},
		{topology.DaemonGoBGP, "install the Debian package gobgpd"},
	} {
		t.Run(string(c.daemon), func(t *testing.T) {
			file := routerLab(t, name, c.daemon, "/nonexistent/vrouter-test/"+string(c.daemon), 64512, "")
			out, code := vr(t, "deploy", "-t", file)
			if code == 0 {
				mustVR(t, "destroy", "-t", file)
				t.Fatalf("deploy with a missing daemon succeeded:\n%s", out)
			}
			if !strings.Contains(out, "router ext1") || !strings.Contains(out, c.want) {
				t.Errorf("error does not name the router and the package (%q):\n%s", c.want, out)
			}
			checkGone(t, name)
		})
	}
}

// userConfigLab writes a lab whose router runs the user's daemon
// configuration (written beside the lab file) and peers with node1 only.
func userConfigLab(t *testing.T, name string, d topology.Daemon, conf string) string {
	t.Helper()
	dir := t.TempDir()
	confFile := "ext1.conf"
	if err := os.WriteFile(filepath.Join(dir, confFile), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf(`name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: %s}
  node2: {network: lan, address: %s}
routers:
  ext1: {network: lan, address: %s, daemon: %s, config: %s, announce: [10.98.0.0/24]}
bgpPeers:
  - {name: ext1, node: node1, peerIP: %s}
workloads:
  - {name: web-1, node: node1, address: 10.244.166.130}
`, name, rtNode1, rtNode2, rtRouter, d, confFile, rtRouter)
	path := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A router runs the configuration the user gives (config: in the lab
// file) instead of a generated one; one the daemon rejects fails deploy
// with the daemon's message and leaves nothing behind.
func TestRouterUserConfig(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	configs := []struct {
		daemon     topology.Daemon
		code       string
		require    func(t *testing.T) string
		good, bad  string
		badMessage string
	}{
		{topology.DaemonBIRD, "b1", requireBIRD, `router id 192.168.50.100;
log stderr all;
protocol device {}
protocol direct { interface "ens33"; }
protocol kernel { scan time 2; import none; export where source = RTS_BGP; }
protocol static mine { route 10.98.0.0/24 blackhole; }
protocol bgp to_node1 {
  local 192.168.50.100 as 64512;
  neighbor 192.168.50.10 as 64512;
  connect retry time 2;
  start delay time 1;
  next hop self;
  import all;
  export where source = RTS_STATIC;
}
`, "router id 192.168.50.100;\nprotocol bgp x { neighbour 1.2.3.4 as 1; }\n", "syntax error"},
		{topology.DaemonFRR, "fr", requireFRR, `hostname mine
router bgp 64512
 bgp router-id 192.168.50.100
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.168.50.10 remote-as 64512
 neighbor 192.168.50.10 timers connect 2
 address-family ipv4 unicast
  network 10.98.0.0/24
 exit-address-family
`, "router bgp 64512\n neighbour 1.2.3.4 remote-as 1\n", "No such command"},
		// gobgpd cannot originate routes from its configuration: vrouter
		// adds the announce: prefixes through its API.
		{topology.DaemonGoBGP, "gb", requireGoBGP, `[global.config]
  as = 64512
  router-id = "192.168.50.100"
  local-address-list = ["192.168.50.100"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.168.50.10"
    peer-as = 64512
  [neighbors.timers.config]
    connect-retry = 2
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
`, "[global.config]\n  as = 64512\n[[neighbours]]\n  [neighbours.config]\n    neighbor-address = \"1.2.3.4\"\n", "invalid keys: neighbours"},
	}
	for _, c := range configs {
		t.Run(string(c.daemon), func(t *testing.T) {
			t.Parallel()
			c.require(t)
			name := labName(t, fmt.Sprintf("rtu%s", c.code))
			t.Run("rejected", func(t *testing.T) {
				file := userConfigLab(t, name, c.daemon, c.bad)
				out, code := vr(t, "deploy", "-t", file)
				if code == 0 {
					mustVR(t, "destroy", "-t", file)
					t.Fatalf("deploy with a broken %s config succeeded:\n%s", c.daemon, out)
				}
				if !strings.Contains(out, "router ext1") || !strings.Contains(out, "ext1.conf") || !strings.Contains(out, c.badMessage) {
					t.Errorf("error does not name the router, the file and the daemon's complaint (%q):\n%s", c.badMessage, out)
				}
				checkGone(t, name)
			})
			t.Run("runs", func(t *testing.T) {
				file := userConfigLab(t, name, c.daemon, c.good)
				t.Cleanup(func() {
					mustVR(t, "destroy", "-t", file)
					checkGone(t, name)
				})
				mustVR(t, "deploy", "-t", file)
				want := "10.98.0.0/24 via " + rtRouter + " dev ens33 proto bird"
				waitFor(t, "node1 learns the user config's prefix", 30*time.Second, func() string {
					out, _ := vr(t, "route", "--lab", name, "node1")
					if !strings.Contains(out, want+"\n") {
						return "node1 lacks " + want + ":\n" + out
					}
					return ""
				})
				// The router's kernel learns node1's block before it can reply.
				waitFor(t, "ping behind the router", 30*time.Second, func() string {
					out, code := vr(t, "exec", "--lab", name, "web-1", "--", "ping", "-c", "1", "-W", "1", "10.98.0.1")
					if code != 0 {
						return out
					}
					return ""
				})
			})
		})
	}
}

// destroy removes a router whose forwarder crashed and whose daemon's pid
// file is lost, and whatever else runs in its namespace; and FRR daemons
// that were killed, with the files they leave in /var/tmp/frr.
func TestRouterDestroyAfterCrash(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	for _, c := range []struct {
		daemon  topology.Daemon
		code    string
		require func(t *testing.T) string
	}{{topology.DaemonBIRD, "b1", requireBIRD}, {topology.DaemonFRR, "fr", requireFRR}, {topology.DaemonGoBGP, "gb", requireGoBGP}} {
		t.Run(string(c.daemon), func(t *testing.T) {
			t.Parallel()
			c.require(t)
			testRouterCrash(t, labName(t, fmt.Sprintf("rtcr%s", c.code)), c.daemon)
		})
	}
}

func testRouterCrash(t *testing.T, name string, d topology.Daemon) {
	file := routerLab(t, name, d, "", 64512, "")
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	st, err := lab.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := st.Router("ext1")
	kill := func(pidFile string) int {
		t.Helper()
		data, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		return pid
	}
	kill(rs.PIDFile)
	var frrTmp []string
	if d == topology.DaemonFRR {
		for _, p := range rs.Processes {
			pid := kill(p.PIDFile)
			dir := fmt.Sprintf("/var/tmp/frr/%s.%d", p.Name, pid)
			if _, err := os.Stat(dir); err != nil {
				t.Fatalf("killed %s left no %s to clean (%v): test is moot", p.Name, dir, err)
			}
			frrTmp = append(frrTmp, dir)
		}
	} else if err := os.Remove(rs.Processes[0].PIDFile); err != nil {
		t.Fatal(err)
	}
	other := exec.Command("ip", "netns", "exec", rs.Namespace, "sleep", "600")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- other.Wait() }()

	mustVR(t, "destroy", "-t", file)
	checkGone(t, name)
	for _, dir := range frrTmp {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s left behind", dir)
		}
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = other.Process.Kill()
		t.Fatal("a process started in the router's namespace outlived destroy")
	}
}

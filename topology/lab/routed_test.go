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
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// captureICMP captures network of lab while fn runs and returns one line
// per ICMP packet tshark finds: "src dst proto", with the outer and inner
// values comma-joined for IP in IP (e.g. "192.168.50.10,10.244.166.128
// 192.168.60.10,10.244.135.1 4,1").
func captureICMP(t *testing.T, lab, network string, fn func()) []string {
	t.Helper()
	file := filepath.Join(t.TempDir(), network+".pcapng")
	// Once the capture says it is capturing, every node of the network
	// copies its frames to it: nothing fn sends is missed.
	wait := startCapture(t, io.Discard, network, "--lab", lab, "--duration", "5s", "-w", file)
	fn()
	if stderr, err := wait(); err != nil {
		t.Fatalf("capture: %v\n%s", err, stderr)
	}
	out, err := exec.Command("tshark", "-r", file, "-Y", "icmp", "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// isIPIP reports whether a captureICMP line is an IP in IP packet (an
// ICMP error also has two addresses per field: its own and the quoted
// packet's).
func isIPIP(line string) bool {
	f := strings.Fields(line)
	return len(f) == 3 && strings.HasPrefix(f[2], "4,")
}

func wantRoutes(t *testing.T, lab, node string, want, not []string) string {
	t.Helper()
	routes := mustVR(t, "route", node, "--lab", lab)
	for _, w := range want {
		if !strings.Contains(routes, w+"\n") {
			t.Errorf("%s's routes lack %q:\n%s", node, w, routes)
		}
	}
	for _, n := range not {
		if strings.Contains(routes, n) {
			t.Errorf("%s's routes have %q:\n%s", node, n, routes)
		}
	}
	return routes
}

// CrossSubnet across a router node: node1 and node2 share rack1, node3 is
// on rack2 behind "tor". BGP crosses the router; same-rack routes stay on
// ens33 and travel plain, routes to node3 go through tunl0, and on both
// racks the pod-to-pod packets toward node3 are IP in IP between the node
// addresses, which tor forwards knowing nothing of pods.
func TestCrossSubnetAcrossRouter(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "tshark", "tshark")
	netnstest.RequireCommand(t, "iperf3", "iperf3")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-crosssubnet.yaml", "xsub", nil)

	wantRoutes(t, name, "node1", []string{
		"default via 192.168.50.1 dev ens33 proto static",
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
		"10.244.135.0/26 via 192.168.60.10 dev tunl0 proto bird onlink",
		"blackhole 10.244.166.128/26 proto bird",
		"192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10",
	}, []string{"via 192.168.50.11 dev tunl0", "via 192.168.60.10 dev ens33"})
	wantRoutes(t, name, "node3", []string{
		"default via 192.168.60.1 dev ens33 proto static",
		"10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink",
		"10.244.166.128/26 via 192.168.50.10 dev tunl0 proto bird onlink",
	}, nil)
	// The router: its networks and its static route, no pod routes, and
	// only the main table, as `ip route` lists it.
	wantRoutes(t, name, "tor", []string{
		"10.99.0.0/16 via 192.168.70.254 dev eth2 proto static",
		"192.168.50.0/24 dev eth0 proto kernel scope link src 192.168.50.1",
		"192.168.60.0/24 dev eth1 proto kernel scope link src 192.168.60.1",
		"192.168.70.0/24 dev eth2 proto kernel scope link src 192.168.70.1",
	}, []string{"10.244.", "local "})

	var insp struct {
		Nodes []struct{ Name, Kind, Interface, Address, State string }
	}
	if err := json.Unmarshal([]byte(mustVR(t, "inspect", "-o", "json", "--lab", name)), &insp); err != nil {
		t.Fatal(err)
	}
	var tor []string
	for _, r := range insp.Nodes {
		if r.Name == "tor" {
			tor = append(tor, r.Kind+" "+r.Interface+" "+r.Address+" "+r.State)
		}
	}
	if want := []string{"router eth0 192.168.50.1 running", "router eth1 192.168.60.1 running", "router eth2 192.168.70.1 running"}; !slices.Equal(tor, want) {
		t.Errorf("inspect rows of tor: %q, want %q", tor, want)
	}

	// The router is a router: it answers pings to its addresses (the one
	// on the far side too) and time exceeded to a traceroute, from the
	// address of the interface the error leaves by.
	for _, to := range []string{"192.168.50.1", "192.168.60.1", "192.168.70.1"} {
		if _, code := vr(t, "exec", "--lab", name, "node1", "--", "ping", "-c", "1", "-W", "2", to); code != 0 {
			t.Errorf("node1 cannot ping the router at %s", to)
		}
	}
	out, code := vr(t, "exec", "--lab", name, "node1", "--", "traceroute", "-n", "-q", "1", "-w", "2", "-m", "4", "192.168.60.10")
	if code != 0 || !regexp.MustCompile(`(?m)^ 1  192\.168\.50\.1 .*\n 2  192\.168\.60\.10 `).MatchString(out) {
		t.Errorf("traceroute node1 -> node3: exit %d, want hop 1 the router, hop 2 node3:\n%s", code, out)
	}

	ping := func(to string) func() {
		return func() {
			if code := pingIn(t, name, "web-1", to); code != 0 {
				t.Errorf("ping web-1 -> %s failed", to)
			}
		}
	}
	// Same rack: plain, pod addresses on the wire.
	sameRack := captureICMP(t, name, "rack1", ping("10.244.104.1"))
	if !slices.Contains(sameRack, "10.244.166.128 10.244.104.1 1") || !slices.Contains(sameRack, "10.244.104.1 10.244.166.128 1") {
		t.Errorf("same-rack ping on rack1 is not plain pod-to-pod ICMP:\n%s", strings.Join(sameRack, "\n"))
	}
	for _, l := range sameRack {
		if isIPIP(l) {
			t.Errorf("IP in IP on rack1 during a same-rack ping: %s", l)
		}
	}
	// Bulk TCP across the router: 64 KB super-packets cross three engines
	// as IPIP.
	if got, code, res := iperfBytes(t, name, "web-3", "web-1", "10.244.135.1"); code != 0 || got < 1<<20 {
		t.Errorf("iperf3 web-1 -> web-3 across the router: exit %d, %v bytes\n%.400s", code, got, res)
	}
	if out, code := vr(t, "node", "status", "tor", "--lab", name); code == 0 || !strings.Contains(out, "tor is a router (kind: router): it runs no BGP") {
		t.Errorf("node status of a router: exit %d\n%s", code, out)
	}

	// Across the router: IP in IP between node addresses on both racks.
	// (Before the link flap below: a session whose keepalives the flap
	// lost may still time out after the link is back, withdrawing the
	// routes for a moment.)
	for _, rack := range []string{"rack1", "rack2"} {
		cross := captureICMP(t, name, rack, ping("10.244.135.1"))
		if !slices.Contains(cross, "192.168.50.10,10.244.166.128 192.168.60.10,10.244.135.1 4,1") ||
			!slices.Contains(cross, "192.168.60.10,10.244.135.1 192.168.50.10,10.244.166.128 4,1") {
			t.Errorf("cross-rack ping on %s is not IP in IP between node1 and node3:\n%s", rack, strings.Join(cross, "\n"))
		}
		for _, l := range cross {
			if !isIPIP(l) {
				t.Errorf("unencapsulated packet on %s during a cross-rack ping: %s", rack, l)
			}
		}
	}

	// Cutting rack2 off the router stops cross-rack traffic only; plugged
	// back, it flows again. A router's interface must be named.
	mustVR(t, "link", "set", "tor", "eth1", "down", "--lab", name)
	if code := pingIn(t, name, "web-1", "10.244.135.1"); code == 0 {
		t.Error("ping web-1 -> web-3 passed with tor's eth1 down")
	}
	if code := pingIn(t, name, "web-1", "10.244.104.1"); code != 0 {
		t.Error("same-rack ping failed with tor's eth1 down")
	}
	if insp := mustVR(t, "inspect", "--lab", name); !regexp.MustCompile(`(?m)^tor +router .* eth1 +192\.168\.60\.1 +link down$`).MatchString(insp) {
		t.Errorf("inspect should show tor's eth1 link down:\n%s", insp)
	}
	if out := mustVR(t, "link", "set", "tor", "eth1", "up", "--lab", name); !strings.Contains(out, "tor/eth1 (network rack2): UP") {
		t.Errorf("link set tor eth1 up: %s", out)
	}
	eventually(t, 30*time.Second, "ping web-1 -> web-3 after tor's eth1 is up", func() (bool, string) {
		return pingIn(t, name, "web-1", "10.244.135.1") == 0, ""
	})
	if out, code := vr(t, "link", "set", "tor", "down", "--lab", name); code == 0 || !strings.Contains(out, "its interfaces: eth0, eth1, eth2") {
		t.Errorf("link set on a router without an interface: exit %d\n%s", code, out)
	}
}

// ipipMode Never across a router fails as the seeds describe: node1 routes
// node3's blocks via its gateway (the next hop resolved recursively), the
// router has no route for pod addresses and answers ICMP net unreachable,
// which ping and traceroute in the workload show. Same-rack traffic is
// fine, and nothing on the wire is IP in IP. `vrouter apply` with
// CrossSubnet then repairs it without restarts, and Never again breaks it.
func TestNeverAcrossRouter(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "traceroute", "traceroute")
	netnstest.RequireCommand(t, "tshark", "tshark")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-routed-never.yaml", "rnever", nil)
	file := filepath.Join(t.TempDir(), name+"-apply.yaml")
	wantRoutes(t, name, "node1", []string{
		"default via 192.168.50.1 dev ens33 proto static",
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
		"10.244.135.0/26 via 192.168.50.1 dev ens33 proto bird",
	}, []string{"tunl0"})

	wire := captureICMP(t, name, "rack1", func() {
		_, _ = vr(t, "exec", "--lab", name, "web-1", "--", "ping", "-c", "2", "-W", "1", "10.244.135.1")
	})
	if !slices.Contains(wire, "10.244.166.128 10.244.135.1 1") || !slices.Contains(wire, "192.168.50.1,10.244.166.128 10.244.166.128,10.244.135.1 1,1") {
		t.Errorf("rack1 should carry the plain echo requests and the router's unreachables:\n%s", strings.Join(wire, "\n"))
	}
	for _, l := range wire {
		if isIPIP(l) {
			t.Errorf("IP in IP on the wire in Never mode: %s", l)
		}
	}
	// The router's errors are rate limited as Linux's are (ip_error: a
	// route error costs a second of a five-second credit per source), so
	// the answer may have to wait for credit: poll, the pings above
	// having spent some.
	eventually(t, 20*time.Second, "ping across the router fails with the router's net unreachable", func() (bool, string) {
		out, code := vr(t, "exec", "--lab", name, "web-1", "--", "ping", "-c", "2", "-W", "2", "10.244.135.1")
		return code != 0 && strings.Contains(out, "From 192.168.50.1 icmp_seq=1 Destination Net Unreachable"), fmt.Sprintf("exit %d\n%s", code, out)
	})
	eventually(t, 20*time.Second, "traceroute across the router shows hop 1 node1, hop 2 the router with !N", func() (bool, string) {
		out, code := vr(t, "exec", "--lab", name, "web-1", "--", "traceroute", "-n", "-q", "1", "-w", "2", "-m", "4", "10.244.135.1")
		return code == 0 && regexp.MustCompile(`(?m)^ 1  192\.168\.50\.10 .*\n 2  192\.168\.50\.1 .*!N`).MatchString(out), fmt.Sprintf("exit %d\n%s", code, out)
	})
	if code := pingIn(t, name, "web-1", "10.244.104.1"); code != 0 {
		t.Error("same-rack ping failed")
	}
	if rack2 := captureICMP(t, name, "rack2", func() {
		_, _ = vr(t, "exec", "--lab", name, "web-1", "--", "ping", "-c", "2", "-W", "1", "10.244.135.1")
	}); len(rack2) != 0 {
		t.Errorf("pod packets crossed the router to rack2:\n%s", strings.Join(rack2, "\n"))
	}

	// CrossSubnet repairs it on the running lab, so does Always (through
	// tunl0 on the same rack too); Never breaks it again (the BGP next
	// hop, not the resolved gateway, is what is reprogrammed).
	data, err := os.ReadFile("../../examples/calico-routed-never.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`(?m)^name: .*$`).ReplaceAllString(string(data), "name: "+name)
	for _, step := range []struct {
		mode   string
		routes []string
		ok     bool
	}{
		{"CrossSubnet", []string{"10.244.135.0/26 via 192.168.60.10 dev tunl0 proto bird onlink", "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird"}, true},
		{"Always", []string{"10.244.135.0/26 via 192.168.60.10 dev tunl0 proto bird onlink", "10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink"}, true},
		{"Never", []string{"10.244.135.0/26 via 192.168.50.1 dev ens33 proto bird", "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird"}, false},
	} {
		if err := os.WriteFile(file, []byte(strings.Replace(text, "ipipMode: Never", "ipipMode: "+step.mode, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		mustVR(t, "apply", "-t", file)
		wantRoutes(t, name, "node1", step.routes, nil)
		if code := pingIn(t, name, "web-1", "10.244.135.1"); (code == 0) != step.ok {
			t.Errorf("after apply %s: ping web-1 -> web-3 exit %d", step.mode, code)
		}
		if code := pingIn(t, name, "web-1", "10.244.104.1"); code != 0 {
			t.Errorf("after apply %s: same-rack ping failed", step.mode)
		}
	}
}

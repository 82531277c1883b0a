package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// minRTT pings to from the workload from in lab and returns the smallest
// round trip time ping reports, or an error if no reply came.
func minRTT(lab, from, to string) (time.Duration, string, error) {
	out, code, err := runVR("exec", "--lab", lab, from, "--", "ping", "-c", "5", "-i", "0.2", "-W", "2", to)
	if err != nil {
		return 0, out, err
	}
	m := regexp.MustCompile(`rtt min/avg/max/mdev = ([0-9.]+)/`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		return 0, out, fmt.Errorf("ping %s -> %s: exit %d", from, to, code)
	}
	ms, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, out, err
	}
	return time.Duration(ms * float64(time.Millisecond)), out, nil
}

// linkRow returns the row of node in `vrouter link show`'s table, its
// fields separated by single spaces.
func linkRow(t *testing.T, lab, node string) string {
	t.Helper()
	out := mustVR(t, "link", "show", "--lab", lab)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == node {
			return strings.Join(f, " ")
		}
	}
	t.Fatalf("link show has no row for %s:\n%s", node, out)
	return ""
}

// Impairments from the lab file and from `vrouter link set`: a delay on
// node2's link shows in the round trip time of pings to its workload (and
// goes with --clear), survives an agent restart, and 100% loss takes the
// BGP sessions down after the hold time; they come back on --clear.
func TestLinkImpairment(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := labName(t, "impair")
	data := fmt.Sprintf(`name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16}
bgp: {keepaliveTime: 1s, holdTime: 3s}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
  node3: {network: lan, address: 192.168.50.12, impairments: {delay: 30ms}}
workloads:
  - {name: a, node: node1, address: 10.244.1.1}
  - {name: b, node: node2, address: 10.244.2.1}
  - {name: c, node: node3, address: 10.244.3.1}
`, name)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", path)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", path)
	lab := []string{"--lab", name}

	// The lab file's impairment is in force from the start.
	if row := linkRow(t, name, "node3"); row != "node3 node ens33 lan UP delay 30ms" {
		t.Errorf("link show node3: %q", row)
	}
	if row := linkRow(t, name, "node2"); row != "node2 node ens33 lan UP -" {
		t.Errorf("link show node2: %q", row)
	}
	if rtt, out, err := minRTT(name, "a", "10.244.3.1"); err != nil || rtt < 30*time.Millisecond {
		t.Errorf("ping a -> c (node3 delayed 30ms by the lab file): min RTT %v, %v\n%s", rtt, err, out)
	}
	base, out, err := minRTT(name, "a", "10.244.2.1")
	if err != nil {
		t.Fatalf("ping a -> b before any impairment: %v\n%s", err, out)
	}
	t.Logf("a -> b min RTT %v before the delay", base)

	out = mustVR(t, append([]string{"link", "set", "node2", "--delay", "50ms"}, lab...)...)
	if strings.TrimSpace(out) != "node2/ens33 (network lan): UP delay 50ms" {
		t.Errorf("link set --delay printed %q", out)
	}
	rtt, out, err := minRTT(name, "a", "10.244.2.1")
	if err != nil || rtt < 50*time.Millisecond { // (not base+50ms: base varies by more than the slack)
		t.Errorf("ping a -> b with node2 delayed 50ms: min RTT %v (before: %v), %v\n%s", rtt, base, err, out)
	}
	t.Logf("a -> b min RTT %v with 50ms delay on node2", rtt)

	// A restarted agent keeps it (the node's config).
	mustVR(t, append([]string{"node", "restart", "node2"}, lab...)...)
	if row := linkRow(t, name, "node2"); row != "node2 node ens33 lan UP delay 50ms" {
		t.Errorf("link show node2 after its agent restarted: %q", row)
	}
	eventually(t, 20*time.Second, "ping a -> b still delayed after node2's restart", func() (bool, string) {
		rtt, out, err := minRTT(name, "a", "10.244.2.1")
		return err == nil && rtt >= 50*time.Millisecond, fmt.Sprintf("min RTT %v, %v\n%s", rtt, err, out)
	})

	out = mustVR(t, append([]string{"link", "set", "node2", "--clear"}, lab...)...)
	if strings.TrimSpace(out) != "node2/ens33 (network lan): UP -" {
		t.Errorf("link set --clear printed %q", out)
	}
	eventually(t, 10*time.Second, "ping a -> b fast again after --clear", func() (bool, string) {
		rtt, out, err := minRTT(name, "a", "10.244.2.1")
		return err == nil && rtt < 50*time.Millisecond, fmt.Sprintf("min RTT %v, %v\n%s", rtt, err, out)
	})

	// 100% loss: pings fail, node1 drops the session once its hold timer
	// (3 s) runs out, and withdraws node2's block.
	mustVR(t, append([]string{"link", "set", "node2", "--loss", "100%"}, lab...)...)
	lossSet := time.Now()
	if code := pingIn(t, name, "a", "10.244.2.1"); code == 0 {
		t.Error("ping a -> b succeeded with 100% loss on node2's link")
	}
	eventually(t, 20*time.Second, "node1's session with node2 down after its hold time", func() (bool, string) {
		status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
		return !established(status, "192.168.50.11"), status
	})
	took := time.Since(lossSet)
	t.Logf("session down %v after 100%% loss (hold time 3s)", took)
	if took < 2*time.Second {
		t.Errorf("session down %v after the loss began, before a 3 s hold time could run out", took)
	}
	if row := linkRow(t, name, "node2"); row != "node2 node ens33 lan UP loss 100%" {
		t.Errorf("link show node2 with loss: %q", row)
	}
	if status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...); !established(status, "192.168.50.12") {
		t.Errorf("node1's session with node3 went down too:\n%s", status)
	}
	mustVR(t, append([]string{"link", "set", "node2", "--clear"}, lab...)...)
	eventually(t, 30*time.Second, "node1's session with node2 back after --clear", func() (bool, string) {
		status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
		return established(status, "192.168.50.11"), status
	})
	eventually(t, 20*time.Second, "ping a -> b works again", func() (bool, string) {
		return pingIn(t, name, "a", "10.244.2.1") == 0, "ping failed"
	})

	// duplicated replies: ping says DUP!
	mustVR(t, append([]string{"link", "set", "node2", "--duplicate", "100%"}, lab...)...)
	if out, _ := vr(t, "exec", "--lab", name, "a", "--", "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.244.2.1"); !strings.Contains(out, "DUP!") {
		t.Errorf("ping a -> b with node2 duplicating every frame shows no DUP!:\n%s", out)
	}
	mustVR(t, append([]string{"link", "set", "node2", "--clear"}, lab...)...)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"node2", "--loss", "150%"}, "not from 0% to 100%"},
		{[]string{"node2", "--delay", "5ms", "--jitter", "10ms"}, "more than the delay"},
		{[]string{"node2", "--rate", "fast"}, "not a rate"},
		{[]string{"node2", "eth7", "--delay", "5ms"}, "no interface"},
		{[]string{"node9", "--delay", "5ms"}, "no node or router"},
		{[]string{"node2"}, "say up or down"},
	} {
		out, code := vr(t, append(append([]string{"link", "set"}, c.args...), lab...)...)
		if code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("link set %v: exit %d, want an error saying %q:\n%s", c.args, code, c.want, out)
		}
	}
	if row := linkRow(t, name, "node2"); row != "node2 node ens33 lan UP -" {
		t.Errorf("link show node2 after refused changes: %q", row)
	}
}

// A router node's interface impaired in the lab file (tor's eth1, towards
// rack2) delays what the router sends into rack2: cross-rack pings slow
// down, same-rack ones do not; `link show` lists it and `link set tor eth1
// --clear` removes it.
func TestRouterLinkImpairment(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-crosssubnet.yaml", "rimpair", func(s string) string {
		return strings.Replace(s, "{name: eth1, network: rack2, address: 192.168.60.1}",
			"{name: eth1, network: rack2, address: 192.168.60.1, impairments: {delay: 40ms, jitter: 1ms}}", 1)
	})
	out := mustVR(t, "link", "show", "tor", "--lab", name)
	for _, want := range []string{`tor +router +eth0 +rack1 +UP +-\n`, `tor +router +eth1 +rack2 +UP +delay 40ms jitter 1ms\n`, `tor +router +eth2 +uplink +UP +-\n`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("link show tor lacks %q:\n%s", want, out)
		}
	}
	if rtt, out, err := minRTT(name, "web-1", "10.244.135.1"); err != nil || rtt < 39*time.Millisecond {
		t.Errorf("cross-rack ping through tor's delayed eth1: min RTT %v, %v\n%s", rtt, err, out)
	}
	if rtt, out, err := minRTT(name, "web-1", "10.244.104.1"); err != nil || rtt >= 39*time.Millisecond {
		t.Errorf("same-rack ping: min RTT %v, %v\n%s", rtt, err, out)
	}
	if out := mustVR(t, "link", "set", "tor", "eth1", "--clear", "--lab", name); strings.TrimSpace(out) != "tor/eth1 (network rack2): UP -" {
		t.Errorf("link set tor eth1 --clear printed %q", out)
	}
	eventually(t, 10*time.Second, "cross-rack ping fast again", func() (bool, string) {
		rtt, out, err := minRTT(name, "web-1", "10.244.135.1")
		return err == nil && rtt < 39*time.Millisecond, fmt.Sprintf("min RTT %v, %v\n%s", rtt, err, out)
	})
	if out := mustVR(t, "link", "set", "tor", "eth2", "--loss", "2.5%", "--lab", name); strings.TrimSpace(out) != "tor/eth2 (network uplink): UP loss 2.5%" {
		t.Errorf("link set tor eth2 --loss printed %q", out)
	}
	if out, code := vr(t, "link", "set", "tor", "--delay", "1ms", "--lab", name); code == 0 || !strings.Contains(out, "its interfaces: eth0, eth1, eth2") {
		t.Errorf("link set --delay on a router without an interface: exit %d\n%s", code, out)
	}
}

// A kernel lab's nodes have no fabric link: `link set --delay` says so and
// changes nothing; `link show` lists their links unimpaired.
func TestKernelLabImpairmentRefused(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	file, name := kernelLabFile(t, "kimpair")
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file, "--no-wait")
	out, code := vr(t, "link", "set", "node2", "--delay", "20ms", "--lab", name)
	if code == 0 || !strings.Contains(out, "link impairments are not supported on this dataplane yet") || !strings.Contains(out, "dataplane is kernel") {
		t.Errorf("link set --delay on a kernel node: exit %d\n%s", code, out)
	}
	if row := linkRow(t, name, "node2"); !strings.HasSuffix(row, " UP -") {
		t.Errorf("link show node2 after the refused impairment: %q", row)
	}
	if out, code := vr(t, "link", "set", "node2", "--clear", "--lab", name); code != 0 {
		t.Errorf("link set --clear on a kernel node: exit %d\n%s", code, out)
	}
}

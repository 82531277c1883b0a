package lab_test

import (
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
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// deployFailLab deploys a three-node lab called name, one workload per
// node at fixed addresses (a 10.244.1.1 on node1, b 10.244.2.1 on node2, c
// 10.244.3.1 on node3), with short BGP timers so failures are noticed
// fast; bgpExtra is added to the bgp mapping (e.g. ", gracefulRestart:
// true"). The test's cleanup destroys it and checks nothing is left.
func deployFailLab(t *testing.T, name, bgpExtra string) {
	t.Helper()
	data := fmt.Sprintf(`name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16}
bgp: {keepaliveTime: 1s, holdTime: 3s%s}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
  node3: {network: lan, address: 192.168.50.12}
workloads:
  - {name: a, node: node1, address: 10.244.1.1}
  - {name: b, node: node2, address: 10.244.2.1}
  - {name: c, node: node3, address: 10.244.3.1}
`, name, bgpExtra)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", path)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", path)
}

// crashAgent kills the agent of node in lab with SIGKILL and waits until
// the process is gone, threads and open files included, as after a crash:
// the leader of a killed process turns zombie while its other threads
// still close its sockets and devices.
func crashAgent(t *testing.T, lab, node string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(topology.StateRoot, lab, "nodes", node+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("pid file of %s: %v", node, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s's agent %d: %v", node, pid, err)
	}
	eventually(t, 10*time.Second, fmt.Sprintf("%s's agent %d gone after SIGKILL", node, pid), func() (bool, string) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return os.IsNotExist(err), fmt.Sprintf("stat /proc/%d: %v", pid, err)
	})
}

// established reports whether `vrouter node status NODE` shows the session
// with peer Established.
func established(status, peer string) bool {
	return regexp.MustCompile(regexp.QuoteMeta(peer) + ` +\| node-to-node mesh \| up +\| [0-9:-]+ +\| Established`).MatchString(status)
}

// Taking node2's underlay link down makes node1 withdraw node2's block once
// its hold timer expires, and pings to node2's workload fail while node3's
// still work; up again, the sessions and routes come back and pings work.
func TestLinkDownUp(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := labName(t, "link")
	deployFailLab(t, name, "")
	lab := []string{"--lab", name}
	const node2Block = "10.244.2.0/26 via 192.168.50.11 dev ens33 proto bird"
	routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
	if !strings.Contains(routes, node2Block+"\n") {
		t.Fatalf("node1 lacks node2's block before the link goes down:\n%s", routes)
	}
	if code := pingIn(t, name, "a", "10.244.2.1"); code != 0 {
		t.Fatal("ping a -> b failed before the link went down")
	}

	out := mustVR(t, append([]string{"link", "set", "node2", "down"}, lab...)...)
	if strings.TrimSpace(out) != "node2/ens33 (network lan): DOWN" {
		t.Errorf("link set down printed %q", out)
	}
	eventually(t, 20*time.Second, "node1 withdraws node2's block after its hold timer", func() (bool, string) {
		routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
		status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
		return !strings.Contains(routes, "via 192.168.50.11") && !established(status, "192.168.50.11"), routes + status
	})
	if code := pingIn(t, name, "a", "10.244.2.1"); code == 0 {
		t.Error("ping a -> b succeeded while node2's link was down")
	}
	if out := mustVR(t, append([]string{"inspect"}, lab...)...); !regexp.MustCompile(`(?m)^node2 .* link down$`).MatchString(out) {
		t.Errorf("inspect does not show node2's link down:\n%s", out)
	}
	if code := pingIn(t, name, "a", "10.244.3.1"); code != 0 {
		t.Error("ping a -> c (node3) failed while only node2's link was down")
	}
	status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
	if !established(status, "192.168.50.12") {
		t.Errorf("node1's session with node3 is down while only node2's link is:\n%s", status)
	}
	// A restarted agent keeps the cable pulled.
	mustVR(t, append([]string{"node", "restart", "node2", "--no-wait"}, lab...)...)
	if out := mustVR(t, append([]string{"inspect"}, lab...)...); !regexp.MustCompile(`(?m)^node2 .* link down$`).MatchString(out) {
		t.Errorf("node2's link is not down after its agent restarted:\n%s", out)
	}
	if code := pingIn(t, name, "a", "10.244.2.1"); code == 0 {
		t.Error("ping a -> b succeeded after node2 restarted with its link down")
	}

	out = mustVR(t, append([]string{"link", "set", "node2", "up"}, lab...)...)
	if strings.TrimSpace(out) != "node2/ens33 (network lan): UP" {
		t.Errorf("link set up printed %q", out)
	}
	eventually(t, 30*time.Second, "node1 relearns node2's block once the link is up", func() (bool, string) {
		routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
		status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
		return strings.Contains(routes, node2Block+"\n") && established(status, "192.168.50.11"), routes + status
	})
	eventually(t, 20*time.Second, "ping a -> b works again", func() (bool, string) {
		return pingIn(t, name, "a", "10.244.2.1") == 0, "ping failed"
	})
	eventually(t, 30*time.Second, "inspect shows node2 running once its link is up", func() (bool, string) {
		out := mustVR(t, append([]string{"inspect"}, lab...)...)
		return regexp.MustCompile(`(?m)^node2 .* running$`).MatchString(out), out
	})
	if _, code := vr(t, append([]string{"link", "set", "node2", "sideways"}, lab...)...); code == 0 {
		t.Error("link set with a bad state succeeded")
	}
	if _, code := vr(t, append([]string{"link", "set", "node9", "down"}, lab...)...); code == 0 {
		t.Error("link set on an unknown node succeeded")
	}
}

// Restarting node2's agent, gracefully and by SIGKILL, brings back every
// session and route; its workloads keep their addresses, eth0 devices and
// Calico's default route, and pings reach them again.
func TestNodeRestart(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := labName(t, "rst")
	deployFailLab(t, name, "")
	lab := []string{"--lab", name}
	// A workload whose address IPAM chose, not the lab file.
	out := mustVR(t, append([]string{"workload", "add", "d", "--node", "node2"}, lab...)...)
	m := regexp.MustCompile(`: (10\.244\.\d+\.\d+) dev (cali[0-9a-f]{11})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("workload add output: %s", out)
	}
	dAddr := m[1]
	inspect := func() string {
		// Names, addresses and ports of node2's workloads, in order.
		out := mustVR(t, append([]string{"get", "workloads", "-o", "wide"}, lab...)...)
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "node2") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
		}
		return strings.Join(lines, "\n")
	}
	before := inspect()
	if !strings.Contains(before, dAddr) || !strings.Contains(before, "10.244.2.1") {
		t.Fatalf("get workloads lacks node2's workloads:\n%s", before)
	}
	pidFile := filepath.Join("/run/vrouter", name, "nodes", "node2.pid")
	for _, mode := range []string{"graceful", "kill"} {
		oldPID, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"node", "restart", "node2"}, lab...)
		if mode == "kill" {
			args = append(args, "--kill")
		}
		out := mustVR(t, args...)
		if !strings.Contains(out, "node node2 restarted in ") {
			t.Errorf("%s: node restart printed:\n%s", mode, out)
		}
		newPID, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		if string(newPID) == string(oldPID) {
			t.Fatalf("%s: node2's agent has the same pid %s after restart", mode, newPID)
		}
		status := mustVR(t, append([]string{"node", "status", "node2"}, lab...)...)
		if !established(status, "192.168.50.10") || !established(status, "192.168.50.12") {
			t.Errorf("%s: node2's sessions after restart:\n%s", mode, status)
		}
		if after := inspect(); after != before {
			t.Errorf("%s: node2's workloads changed across the restart:\nbefore:\n%s\nafter:\n%s", mode, before, after)
		}
		for w, addr := range map[string]string{"b": "10.244.2.1", "d": dAddr} {
			ipAddr := mustVR(t, append(append([]string{"exec"}, lab...), w, "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")...)
			if !strings.Contains(ipAddr, "inet "+addr+"/32") {
				t.Errorf("%s: workload %s's eth0 after restart:\n%s", mode, w, ipAddr)
			}
			route := mustVR(t, append(append([]string{"exec"}, lab...), w, "--", "ip", "route")...)
			if strings.TrimSpace(route) != "default via 169.254.1.1 dev eth0 onlink" {
				t.Errorf("%s: workload %s's routes after restart:\n%s", mode, w, route)
			}
		}
		eventually(t, 30*time.Second, mode+": node1 and node3 see node2 again", func() (bool, string) {
			var all string
			ok := true
			for _, n := range []string{"node1", "node3"} {
				status := mustVR(t, append([]string{"node", "status", n}, lab...)...)
				routes := mustVR(t, append([]string{"route", n}, lab...)...)
				ok = ok && established(status, "192.168.50.11") && strings.Contains(routes, "10.244.2.0/26 via 192.168.50.11 dev ens33 proto bird\n")
				all += status + routes
			}
			return ok, all
		})
		for _, to := range []string{"10.244.2.1", dAddr} {
			if code := pingIn(t, name, "a", to); code != 0 {
				t.Errorf("%s: ping a -> %s failed after node2 restarted", mode, to)
			}
		}
		if code := pingIn(t, name, "b", "10.244.3.1"); code != 0 {
			t.Errorf("%s: ping b -> c failed after node2 restarted", mode)
		}
	}
	if _, code := vr(t, append([]string{"node", "restart", "node9"}, lab...)...); code == 0 {
		t.Error("restart of an unknown node succeeded")
	}

	// A workload namespace deleted behind the lab's back: the restarted
	// agent serves the other workloads and inspect shows that one missing.
	if out, err := exec.Command("ip", "netns", "del", "vr-"+name+".d").CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v\n%s", err, out)
	}
	mustVR(t, append([]string{"node", "restart", "node2"}, lab...)...)
	eventually(t, 30*time.Second, "ping a -> b after d's namespace is gone", func() (bool, string) {
		return pingIn(t, name, "a", "10.244.2.1") == 0, ""
	})
	if insp := mustVR(t, append([]string{"inspect"}, lab...)...); !regexp.MustCompile(`(?m)^d +workload +node2 .* missing$`).MatchString(insp) {
		t.Errorf("inspect should show workload d missing:\n%s", insp)
	}
}

// pingLoss runs a bounded ping flood from a workload and returns the
// packets sent and received. It does not touch the test, so that it can
// run in a goroutine of its own.
func pingLoss(lab, from, to string, count int) (sent, received int, out string, err error) {
	out, _, err = runVR("exec", "--lab", lab, from, "--", "ping", "-q", "-i", "0.01", "-W", "1", "-c", strconv.Itoa(count), to)
	if err != nil {
		return 0, 0, out, err
	}
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out)
	if m == nil {
		return 0, 0, out, fmt.Errorf("ping %s -> %s printed no summary:\n%s", from, to, out)
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	return sent, received, out, nil
}

// While node2's agent is dead, node1 keeps node2's block (stale) with
// graceful restart and drops it without; the restarted node2 restores the
// routes it had before BGP is back; traffic between node1 and node3 goes on
// throughout.
//
// It measures loss (of a 100-packet-a-second flood, at most 1%) under 3 s
// hold timers, yet runs in parallel with the other lab tests: on a 2-core
// machine running eight labs at once it lost nothing (800 of 800) in
// every run.
func TestGracefulRestart(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	for _, gr := range []bool{true, false} {
		t.Run(fmt.Sprintf("gracefulRestart=%v", gr), func(t *testing.T) {
			t.Parallel()
			name := labName(t, fmt.Sprintf("gr%v", gr))
			deployFailLab(t, name, fmt.Sprintf(", gracefulRestart: %v, restartTime: 120s", gr))
			lab := []string{"--lab", name}
			const node2Block = "10.244.2.0/26 via 192.168.50.11 dev ens33 proto bird\n"

			// node1 <-> node3 traffic while node2 dies and comes back.
			type result struct {
				sent, received int
				out            string
				err            error
			}
			flood := make(chan result, 1)
			go func() {
				s, r, out, err := pingLoss(name, "a", "10.244.3.1", 800)
				flood <- result{s, r, out, err}
			}()

			crashAgent(t, name, "node2")
			for _, n := range []string{"node1", "node3"} {
				eventually(t, 20*time.Second, n+" sees its session with node2 fail", func() (bool, string) {
					status := mustVR(t, append([]string{"node", "status", n}, lab...)...)
					return !established(status, "192.168.50.11"), status
				})
				routes := mustVR(t, append([]string{"route", n}, lab...)...)
				if gr && !strings.Contains(routes, node2Block) {
					t.Errorf("%s dropped node2's block while node2 restarts under graceful restart:\n%s", n, routes)
				}
				if !gr && strings.Contains(routes, node2Block) {
					t.Errorf("%s keeps node2's block after the session failed without graceful restart:\n%s", n, routes)
				}
			}
			status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
			if !established(status, "192.168.50.12") {
				t.Errorf("node1's session with node3 failed while node2 was down:\n%s", status)
			}

			mustVR(t, append([]string{"node", "restart", "node2"}, lab...)...)
			logData, err := os.ReadFile(filepath.Join("/run/vrouter", name, "nodes", "node2.log"))
			if err != nil {
				t.Fatal(err)
			}
			restored := strings.Contains(string(logData), `msg="graceful restart: forwarding state restored" node=node2 routes=2`)
			if restored != gr {
				t.Errorf("node2 restored its routes at restart: %v, want %v", restored, gr)
			}
			eventually(t, 30*time.Second, "node1 routes node2's block with node2 Established", func() (bool, string) {
				status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
				routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
				return established(status, "192.168.50.11") && strings.Contains(routes, node2Block), status + routes
			})
			if code := pingIn(t, name, "a", "10.244.2.1"); code != 0 {
				t.Error("ping a -> b failed after node2 restarted")
			}
			r := <-flood
			if r.err != nil {
				t.Fatal(r.err)
			}
			t.Logf("node1 -> node3 while node2 restarted: %d sent, %d received", r.sent, r.received)
			if r.sent == 0 || r.sent-r.received > r.sent/100 {
				t.Errorf("node1 -> node3 lost more than 1%% while node2 restarted:\n%s", r.out)
			}

			// A restart by SIGTERM: with graceful restart node2 leaves
			// without a Cease, so node1 never withdraws node2's block.
			mustVR(t, append([]string{"node", "restart", "node2"}, lab...)...)
			eventually(t, 30*time.Second, "node1 routes node2's block with node2 Established", func() (bool, string) {
				status := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
				routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
				return established(status, "192.168.50.11") && strings.Contains(routes, node2Block), status + routes
			})
			if code := pingIn(t, name, "a", "10.244.2.1"); code != 0 {
				t.Error("ping a -> b failed after node2 restarted by SIGTERM")
			}
			node1Log, err := os.ReadFile(filepath.Join("/run/vrouter", name, "nodes", "node1.log"))
			if err != nil {
				t.Fatal(err)
			}
			withdrawals := strings.Count(string(node1Log), `msg="route withdrawn" node=node1 prefix=10.244.2.0/26`)
			switch {
			case gr && withdrawals != 0:
				t.Errorf("node1 withdrew node2's block %d times across two graceful restarts of node2", withdrawals)
			case !gr && withdrawals != 2:
				t.Errorf("node1 withdrew node2's block %d times across two restarts of node2 without graceful restart, want 2", withdrawals)
			}
		})
	}
}

// A restarted node forwards along the routes it had until BGP is back, and
// then drops those no peer announced again: here node3's block, node3
// being cut off (its link down) while node2 restarts, once restartTime has
// passed without node3's End-of-RIB (30 s: node1 is back well before).
func TestGracefulRestartDropsStaleRoutes(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := labName(t, "grst")
	deployFailLab(t, name, ", gracefulRestart: true, restartTime: 30s")
	lab := []string{"--lab", name}
	const node1Block = "10.244.1.0/26 via 192.168.50.10 dev ens33 proto bird\n"
	const node3Block = "10.244.3.0/26 via 192.168.50.12 dev ens33 proto bird\n"
	logPath := filepath.Join("/run/vrouter", name, "nodes", "node2.log")

	crashAgent(t, name, "node2")
	mustVR(t, append([]string{"link", "set", "node3", "down"}, lab...)...)
	mustVR(t, append([]string{"node", "restart", "node2", "--no-wait"}, lab...)...)
	// node3's block stays stale until the restart time (30 s) passes.
	eventually(t, 20*time.Second, "node status shows node3's stale route", func() (bool, string) {
		out, _ := vr(t, append([]string{"node", "status", "node2"}, lab...)...)
		return strings.Contains(out, "Graceful restart: 1 restored route is still stale"), out
	})
	eventually(t, 30*time.Second, "node2 drops node3's stale block and keeps node1's", func() (bool, string) {
		logData, _ := os.ReadFile(logPath)
		routes := mustVR(t, append([]string{"route", "node2"}, lab...)...)
		return strings.Contains(routes, node1Block) && !strings.Contains(routes, node3Block) &&
			strings.Contains(string(logData), `msg="graceful restart done: stale routes removed" node=node2 removed=1`), routes + string(logData)
	})
	logData, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logData), `msg="graceful restart: forwarding state restored" node=node2 routes=2`) {
		t.Errorf("node2 did not restore its two routes:\n%s", logData)
	}
	if code := pingIn(t, name, "b", "10.244.1.1"); code != 0 {
		t.Error("ping b -> a failed after node2 restarted")
	}

	if out := mustVR(t, append([]string{"node", "status", "node2"}, lab...)...); strings.Contains(out, "stale") {
		t.Errorf("node status still shows stale routes after the sweep:\n%s", out)
	}

	mustVR(t, append([]string{"link", "set", "node3", "up"}, lab...)...)
	eventually(t, 30*time.Second, "node2 learns node3's block again", func() (bool, string) {
		routes := mustVR(t, append([]string{"route", "node2"}, lab...)...)
		return strings.Contains(routes, node3Block), routes
	})
	eventually(t, 20*time.Second, "ping b -> c works again", func() (bool, string) {
		return pingIn(t, name, "b", "10.244.3.1") == 0, "ping failed"
	})
}

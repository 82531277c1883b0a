package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// smallLab writes a two-node lab called name with one workload per node at
// fixed addresses and returns its path.
func smallLab(t *testing.T, name string) string {
	t.Helper()
	data := fmt.Sprintf(`name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
workloads:
  - {name: a, node: node1, address: 10.244.1.1}
  - {name: b, node: node2, address: 10.244.2.1}
`, name)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func pingIn(t *testing.T, lab, from, to string) int {
	t.Helper()
	_, code := vr(t, "exec", "--lab", lab, from, "--", "ping", "-c", "1", "-W", "2", to)
	return code
}

// Two labs with the same addresses run side by side without colliding, and
// destroying one leaves the other working.
func TestTwoLabsSideBySide(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	one := labName(t, "two-a")
	two := labName(t, "two-b")
	f1, f2 := smallLab(t, one), smallLab(t, two)
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", f1)
		mustVR(t, "destroy", "-t", f2)
		checkGone(t, one)
		checkGone(t, two)
	})
	mustVR(t, "deploy", "-t", f1)
	mustVR(t, "deploy", "-t", f2)
	for _, l := range []string{one, two} {
		if code := pingIn(t, l, "a", "10.244.2.1"); code != 0 {
			t.Fatalf("lab %s: ping a -> b failed", l)
		}
	}
	if out, code := vr(t, "inspect"); code == 0 || !strings.Contains(out, "several labs") {
		t.Errorf("inspect without --lab while two labs run: exit %d\n%s", code, out)
	}
	mustVR(t, "destroy", "-t", f1)
	checkGone(t, one)
	if code := pingIn(t, two, "a", "10.244.2.1"); code != 0 {
		t.Fatalf("lab %s stopped working after lab %s was destroyed", two, one)
	}
}

// After the agents die without cleaning up (a crash), deploy refuses to
// start over the stale state, destroy removes it, and the lab deploys again.
func TestDestroyAfterCrash(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := labName(t, "crash")
	file := smallLab(t, name)
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	for _, n := range []string{"node1", "node2"} {
		crashAgent(t, name, n)
	}
	if out, code := vr(t, "deploy", "-t", file); code == 0 || !strings.Contains(out, "already deployed") {
		t.Fatalf("deploy over a crashed lab: exit %d\n%s", code, out)
	}
	mustVR(t, "destroy", "-t", file)
	checkGone(t, name)
	mustVR(t, "destroy", "-t", file) // idempotent
	mustVR(t, "deploy", "-t", file)
	if code := pingIn(t, name, "a", "10.244.2.1"); code != 0 {
		t.Fatal("redeployed lab does not forward")
	}
}

// A deploy that cannot finish in time removes everything it made.
func TestDeployTimeoutCleansUp(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := labName(t, "tmo")
	file := smallLab(t, name)
	out, code := vr(t, "deploy", "-t", file, "--timeout", "1ms")
	if code == 0 || !strings.Contains(out, "timed out") {
		t.Fatalf("deploy with a 1ms timeout: exit %d\n%s", code, out)
	}
	checkGone(t, name)
}

// A node's cpuSet pins its agent, every thread of it, to those CPUs; a CPU
// the machine lacks is refused before anything is made.
func TestCPUSet(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := labName(t, "cpu")
	file := smallLab(t, name)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pinned := strings.Replace(string(data), "address: 192.168.50.10}", "address: 192.168.50.10, cpuSet: '0'}", 1)
	if err := os.WriteFile(file, []byte(pinned), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	pidData, err := os.ReadFile(filepath.Join(topology.StateRoot, name, "nodes", "node1.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(pidData))
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of agent %s: %v, %v", pid, tasks, err)
	}
	for _, task := range tasks {
		status, err := os.ReadFile("/proc/" + pid + "/task/" + task.Name() + "/status")
		if err != nil {
			continue // the thread ended
		}
		if m := regexp.MustCompile(`(?m)^Cpus_allowed_list:\s*(\S+)$`).FindSubmatch(status); m == nil || string(m[1]) != "0" {
			t.Errorf("agent thread %s runs on CPUs %q, want 0", task.Name(), m)
		}
	}
	if code := pingIn(t, name, "a", "10.244.2.1"); code != 0 {
		t.Error("pinned lab does not forward")
	}
	mustVR(t, "destroy", "-t", file)

	bad := strings.Replace(pinned, "cpuSet: '0'", "cpuSet: '1000'", 1)
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := vr(t, "deploy", "-t", file)
	if code == 0 || !strings.Contains(out, "node node1: cpuSet 1000: CPU 1000 is not available here") {
		t.Fatalf("deploy with a missing CPU: exit %d\n%s", code, out)
	}
	checkGone(t, name)
}

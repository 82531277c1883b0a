package lab_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// borrowLab writes a three-node lab whose pool has two blocks of 16, both
// claimed by node1 and node2's workloads, and returns its path.
func borrowLab(t *testing.T, name string, strict bool) string {
	t.Helper()
	data := fmt.Sprintf(`name: %s
ipPools:
  - {name: small, cidr: 10.244.0.0/27, blockSize: 28}
ipam: {strictAffinity: %v}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
  node3: {network: lan, address: 192.168.50.12}
workloads:
  - {name: w1, node: node1}
  - {name: w2, node: node2}
`, name, strict)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// With no free block left, node3 borrows an address from another node's
// block and announces it as a /32; every other node, the block's owner
// included, routes it to node3 by longest-prefix match over the block.
func TestIPAMBorrowing(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := labName(t, "borrow")
	file := borrowLab(t, name, false)
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	lab := []string{"--lab", name}
	blocks := mustVR(t, append([]string{"get", "blocks"}, lab...)...)
	if !regexp.MustCompile(`(?m)^10\.244\.0\.0/28 +host:node[12] `).MatchString(blocks) ||
		!regexp.MustCompile(`(?m)^10\.244\.0\.16/28 +host:node[12] `).MatchString(blocks) {
		t.Fatalf("both blocks should be claimed by node1 and node2:\n%s", blocks)
	}

	out := mustVR(t, append([]string{"workload", "add", "w3", "--node", "node3"}, lab...)...)
	m := regexp.MustCompile(`10\.244\.0\.\d+`).FindString(out)
	w3, err := netip.ParseAddr(m)
	if err != nil {
		t.Fatalf("workload add w3 printed no address:\n%s", out)
	}
	// node3 claimed no block: the address is borrowed.
	if b := mustVR(t, append([]string{"get", "blocks"}, lab...)...); strings.Contains(b, "host:node3") {
		t.Fatalf("node3 claimed a block:\n%s", b)
	}
	host := fmt.Sprintf("%s dev cali", w3)
	if r := mustVR(t, append([]string{"route", "node3"}, lab...)...); !strings.Contains(r, host) || strings.Contains(r, "blackhole") {
		t.Errorf("node3 should route %s locally and blackhole nothing:\n%s", w3, r)
	}
	want := fmt.Sprintf("%s via 192.168.50.12 dev ens33 proto bird\n", w3)
	for _, n := range []string{"node1", "node2"} {
		eventuallyVR(t, 30*time.Second, func(out string) bool { return strings.Contains(out, want) },
			append([]string{"route", n}, lab...)...)
	}
	for _, w := range []string{"w1", "w2"} {
		if code := pingIn(t, name, w, w3.String()); code != 0 {
			t.Errorf("ping %s -> borrowed %s failed", w, w3)
		}
	}
	// Deleting the workload withdraws the /32 everywhere.
	mustVR(t, append([]string{"workload", "del", "w3"}, lab...)...)
	for _, n := range []string{"node1", "node2"} {
		eventuallyVR(t, 30*time.Second, func(out string) bool { return !strings.Contains(out, w3.String()+" via") },
			append([]string{"route", n}, lab...)...)
	}
}

// With strict affinity, the same request is refused with a clear error and
// changes nothing.
func TestIPAMStrictAffinity(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := labName(t, "strict")
	file := borrowLab(t, name, true)
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	lab := []string{"--lab", name}
	before := mustVR(t, append([]string{"get", "blocks", "-o", "wide"}, lab...)...)
	out, code := vr(t, append([]string{"workload", "add", "w3", "--node", "node3"}, lab...)...)
	if code == 0 || !strings.Contains(out, "pool small (10.244.0.0/27) has no free /28 block and strict affinity forbids borrowing") {
		t.Fatalf("workload add under strict affinity: exit %d\n%s", code, out)
	}
	if after := mustVR(t, append([]string{"get", "blocks", "-o", "wide"}, lab...)...); after != before {
		t.Errorf("blocks changed:\n%s\nthen\n%s", before, after)
	}
	if insp := mustVR(t, append([]string{"inspect"}, lab...)...); strings.Contains(insp, "w3") {
		t.Errorf("refused workload left behind:\n%s", insp)
	}
}

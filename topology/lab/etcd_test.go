package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// etcdLabFile writes a 4-node lab with datastore: etcd (and the given
// dataplane) under a name of this test's.
func etcdLabFile(t *testing.T, prefix, dataplane string) (string, string) {
	t.Helper()
	name := labName(t, prefix)
	data := fmt.Sprintf(`name: %s
datastore: etcd
dataplane: %s
ipPools:
  - {name: default-ipv4-ippool, cidr: 10.244.0.0/16}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
  node3: {network: lan, address: 192.168.50.12}
  node4: {network: lan, address: 192.168.50.13}
workloads:
  - {name: w1, node: node1}
  - {name: w4, node: node4}
`, name, dataplane)
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, name
}

// inspectRow is a row of `vrouter inspect -o json`.
type etcdInspectRow struct{ Name, Kind, Node, Namespace, Address, State string }

func inspectLab(t *testing.T, name string) map[string]etcdInspectRow {
	t.Helper()
	var out struct{ Nodes []etcdInspectRow }
	if err := json.Unmarshal([]byte(mustVR(t, "inspect", "-o", "json", "--lab", name)), &out); err != nil {
		t.Fatal(err)
	}
	rows := map[string]etcdInspectRow{}
	for _, r := range out.Nodes {
		rows[r.Name] = r
	}
	return rows
}

// etcdLeader returns the member inspect shows as the leader, or "".
func etcdLeader(t *testing.T, name string) string {
	t.Helper()
	for _, r := range inspectLab(t, name) {
		if r.Kind == "etcd" && r.State == "running (leader)" {
			return r.Name
		}
	}
	return ""
}

// A lab with datastore: etcd, userspace and kernel: a 3-member etcd
// cluster in the lab's namespaces (none in the root namespace, data 0700
// under the state directory) that the 4 nodes' agents keep IPAM in;
// workloads ping across nodes; with one member killed workload adds go
// on; with all down an add fails within a bound, naming etcd, while BGP
// and forwarding go on; with the members back adds work again; the store
// holds every workload's address once and no block twice; a node added
// by apply joins every mesh; ipam check is clean; destroy leaves
// nothing.
func TestEtcdLab(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	etcdtest.RequireEtcd(t)
	netnstest.GuardRoot(t)
	for _, dp := range []string{topology.DataplaneUserspace, topology.DataplaneKernel} {
		t.Run(dp, func(t *testing.T) {
			t.Parallel()
			testEtcdLab(t, dp)
		})
	}
}

func testEtcdLab(t *testing.T, dataplane string) {
	file, name := etcdLabFile(t, "etcd"+dataplane[:1], dataplane)
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
		// No etcd of the lab's survives (they name its state directory).
		out, _ := exec.Command("pgrep", "-a", "-f", "[e]tcd --name .* --data-dir "+filepath.Join(topology.StateRoot, name)+"/").CombinedOutput()
		if strings.TrimSpace(string(out)) != "" {
			t.Errorf("etcd members left: %s", out)
		}
	})
	mustVR(t, "deploy", "-t", file)
	st, err := lab.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Etcd == nil || len(st.Etcd.Members) != 3 {
		t.Fatalf("state records no 3-member etcd cluster: %+v", st.Etcd)
	}

	// The members run in the lab's namespaces, none in the root one, with
	// their data in the state directory, 0700.
	rootNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Etcd.Members {
		data, err := os.ReadFile(m.PIDFile)
		if err != nil {
			t.Fatalf("member %s: %v", m.Name, err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil || ns == rootNS {
			t.Errorf("member %s (pid %d): network namespace %q (%v), the root one is %q", m.Name, pid, ns, err, rootNS)
		}
		fi, err := os.Stat(m.DataDir)
		if err != nil || fi.Mode().Perm() != 0o700 || !strings.HasPrefix(m.DataDir, st.Dir+"/") {
			t.Errorf("member %s: data directory %s: %v %v", m.Name, m.DataDir, fi.Mode(), err)
		}
	}
	rows := inspectLab(t, name)
	leaders := 0
	for _, m := range st.Etcd.Members {
		r := rows[m.Name]
		if r.Kind != "etcd" || r.Namespace != m.Namespace || r.Address != m.ClientURL() || !strings.HasPrefix(r.State, "running (") {
			t.Errorf("inspect row of %s: %+v", m.Name, r)
		}
		if r.State == "running (leader)" {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("inspect shows %d leaders, want 1: %+v", leaders, rows)
	}
	if out := mustVR(t, "get", "etcdmembers", "--lab", name); strings.Count(out, "http://198.18.0.") != 3 {
		t.Errorf("get etcdmembers:\n%s", out)
	}

	w4 := rows["w4"].Address
	ping := func(what string) {
		t.Helper()
		if out, code := vr(t, "exec", "--lab", name, "w1", "--", "ping", "-c", "1", "-W", "2", w4); code != 0 {
			t.Fatalf("%s: w1 cannot ping w4 (%s): exit %d\n%s", what, w4, code, out)
		}
	}
	ping("deployed")
	// The mesh is the nodes registered in etcd: the agents' configs list
	// no mesh peer, yet each node has a session with the other three.
	for _, n := range st.Nodes {
		cfg, err := os.ReadFile(n.Config)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(cfg), `"meshFromDatastore": true`) || strings.Contains(string(cfg), "node-to-node mesh") {
			t.Errorf("node %s: config is not for a mesh from etcd:\n%s", n.Name, cfg)
		}
		if status := mustVR(t, "node", "status", n.Name, "--lab", name); strings.Count(status, "node-to-node mesh | up") != 3 {
			t.Errorf("node %s: want 3 mesh sessions up:\n%s", n.Name, status)
		}
	}

	// One of three members down, the leader: once the others have
	// elected a new one, workload adds go on.
	leader := etcdLeader(t, name)
	if leader == "" {
		t.Fatal("no etcd leader")
	}
	mustVR(t, "etcd", "kill", leader, "--lab", name)
	deadline := time.Now().Add(30 * time.Second)
	for l := etcdLeader(t, name); l == "" || l == leader; l = etcdLeader(t, name) {
		if time.Now().After(deadline) {
			t.Fatalf("no new etcd leader 30s after %s was killed: %+v", leader, inspectLab(t, name))
		}
		time.Sleep(200 * time.Millisecond)
	}
	mustVR(t, "workload", "add", "a1", "--node", "node2", "--lab", name)
	if out := mustVR(t, "etcd", "status", "--lab", name); !regexp.MustCompile(`(?m)^` + leader + ` .* down$`).MatchString(out) {
		t.Errorf("etcd status with %s killed:\n%s", leader, out)
	}
	if out, code := vr(t, "etcd", "kill", "etcd9", "--lab", name); code == 0 || !strings.Contains(out, `has no etcd member "etcd9" (its members: etcd0, etcd1, etcd2)`) {
		t.Errorf("etcd kill etcd9: exit %d\n%s", code, out)
	}

	// Every member down: an add fails within a bound, naming etcd; BGP
	// and forwarding go on.
	var others []string
	for _, m := range st.Etcd.Members {
		if m.Name != leader {
			others = append(others, m.Name)
		}
	}
	mustVR(t, append([]string{"etcd", "kill", "--lab", name}, others...)...)
	start := time.Now()
	out, code := vr(t, "workload", "add", "a2", "--node", "node3", "--lab", name)
	took := time.Since(start)
	if code == 0 || !strings.Contains(out, "etcd at http://198.18.0.") || !strings.Contains(out, "are all etcd members down?") {
		t.Errorf("workload add with etcd down: exit %d, want an error naming etcd:\n%s", code, out)
	}
	if took > 15*time.Second {
		t.Errorf("workload add with etcd down failed after %s, want within 15s", took)
	}
	ping("etcd down")
	status := mustVR(t, "node", "status", "node1", "--lab", name)
	if n := strings.Count(status, "Established"); n != 3 || !strings.Contains(status, "Datastore: ") {
		t.Errorf("node1's status with etcd down: %d sessions Established, want 3, and a datastore line:\n%s", n, status)
	}
	if r := inspectLab(t, name)["node1"]; r.State != "datastore down" {
		t.Errorf("inspect node1 with etcd down: %+v", r)
	}

	// The members back, with their data: adds work again.
	mustVR(t, "etcd", "start", "etcd0", "etcd1", "etcd2", "--lab", name)
	mustVR(t, "workload", "add", "a2", "--node", "node3", "--lab", name)
	mustVR(t, "workload", "add", "a3", "--node", "node2", "--lab", name)
	ping("etcd back")
	// Every agent reads etcd again (its status reads the blocks), before
	// the apply below asks each of them to: a loaded machine's agent can
	// take a few seconds more than another's to reach the members back.
	for deadline := time.Now().Add(30 * time.Second); ; {
		var lagging []string
		for _, r := range inspectLab(t, name) {
			if r.Kind == "node" && r.State != "running" {
				lagging = append(lagging, r.Name+": "+r.State)
			}
		}
		if len(lagging) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after etcd came back, nodes not running: %s", strings.Join(lagging, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The store: every workload's address once, nothing else; blocks that
	// do not overlap, each affine to the node whose workloads it holds.
	rows = inspectLab(t, name)
	want := map[netip.Addr]string{}
	for _, w := range []string{"w1", "w4", "a1", "a2", "a3"} {
		a, err := netip.ParseAddr(rows[w].Address)
		if err != nil {
			t.Fatalf("inspect %s: %+v", w, rows[w])
		}
		if other, dup := want[a]; dup {
			t.Errorf("%s and %s both have %s", other, w, a)
		}
		want[a] = rows[w].Node
	}
	checkEtcdStore(t, name, want)

	// A node added at run time (apply with a fifth node) registers in
	// etcd and joins every mesh; its workloads are reachable.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "  node4: {network: lan, address: 192.168.50.13}\n",
		"  node4: {network: lan, address: 192.168.50.13}\n  node5: {network: lan, address: 192.168.50.14}\n", 1))
	file5 := filepath.Join(t.TempDir(), "lab5.yaml")
	if err := os.WriteFile(file5, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustVR(t, "apply", "-t", file5); !strings.Contains(out, "node node5: added") {
		t.Errorf("apply with node5:\n%s", out)
	}
	for _, n := range []string{"node1", "node2", "node3", "node4", "node5"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			status := mustVR(t, "node", "status", n, "--lab", name)
			if strings.Count(status, "node-to-node mesh | up") == 4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s: want 4 mesh sessions up 30s after node5 was added:\n%s", n, status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	mustVR(t, "workload", "add", "a5", "--node", "node5", "--lab", name)
	a5 := inspectLab(t, name)["a5"].Address
	if out, code := vr(t, "exec", "--lab", name, "w1", "--", "ping", "-c", "1", "-W", "2", a5); code != 0 {
		t.Errorf("w1 cannot ping a5 on the added node5 (%s): exit %d\n%s", a5, code, out)
	}
	// Six workloads: w1, w4, a1, a2, a3, a5.
	if out := mustVR(t, "ipam", "show", "--lab", name); !regexp.MustCompile(`All blocks +- +\d+ +6 \(`).MatchString(out) {
		t.Errorf("ipam show --lab: want 6 addresses in use:\n%s", out)
	}
	if out, code := vr(t, "ipam", "check", "--lab", name); code != 0 || !strings.Contains(out, "found 0 problems") {
		t.Errorf("ipam check: exit %d\n%s", code, out)
	}
}

// checkEtcdStore checks etcd lab name's IPAM state: the allocated
// addresses are exactly want's (address → node), each in a block affine
// to its node; no two blocks overlap.
func checkEtcdStore(t *testing.T, name string, want map[netip.Addr]string) {
	t.Helper()
	st, err := lab.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := st.OpenEtcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var blocks []ipam.Block
	if err := store.View(ctx, func(tx ipam.Tx) error {
		blocks, err = tx.Blocks()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr]bool{}
	for i, b := range blocks {
		for _, o := range blocks[:i] {
			if o.CIDR.Overlaps(b.CIDR) {
				t.Errorf("blocks %s and %s overlap", o.CIDR, b.CIDR)
			}
		}
		for ord := range b.Allocations {
			a := b.Addr(ord)
			node, ok := want[a]
			switch {
			case !ok:
				t.Errorf("block %s (node %s): %s is allocated, but no workload has it", b.CIDR, b.Affinity, a)
			case node != b.Affinity:
				t.Errorf("%s (node %s) is in block %s affine to %s", a, node, b.CIDR, b.Affinity)
			}
			got[a] = true
		}
	}
	for a, n := range want {
		if !got[a] {
			t.Errorf("%s (node %s) is in no block", a, n)
		}
	}
	if len(blocks) == 0 {
		t.Error("the store holds no blocks")
	}
}

// A deploy of an etcd lab that fails while its members start (a timeout
// too short for them) leaves nothing behind: no member, namespace or
// file.
func TestEtcdLabFailedDeployCleansUp(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	etcdtest.RequireEtcd(t)
	netnstest.GuardRoot(t)
	file, name := etcdLabFile(t, "etcdf", topology.DataplaneUserspace)
	out, code := vr(t, "deploy", "-t", file, "--timeout", "300ms")
	if code == 0 {
		mustVR(t, "destroy", "-t", file)
		t.Fatalf("deploy with a 300ms timeout succeeded:\n%s", out)
	}
	if !strings.Contains(out, "etcd member etcd2: started") || !strings.Contains(out, "deploy failed, cleaning up") {
		t.Errorf("deploy output:\n%s", out)
	}
	checkGone(t, name)
	if out, _ := exec.Command("pgrep", "-a", "-f", "[e]tcd --name .* --data-dir "+filepath.Join(topology.StateRoot, name)+"/").CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("etcd members left: %s", out)
	}
}

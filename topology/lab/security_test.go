package lab_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// Every command that takes a lab name refuses names that would climb out
// of the state root, and a directory outside it survives them all.
func TestLabNamesCannotClimbOut(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	victim, err := os.MkdirTemp("", "vrouter-victim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(victim) })
	if err := os.WriteFile(filepath.Join(victim, "lab.json"), []byte(`{"name":"victim"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(topology.StateRoot, victim)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("n", 1000)
	for _, name := range []string{rel, "..", ".", "../../etc", long} {
		for _, args := range [][]string{
			{"destroy", "--name", name}, {"destroy", "--lab", name}, {"inspect", "--lab", name},
			{"node", "status", "node1", "--lab", name}, {"route", "node1", "--lab", name},
			{"get", "nodes", "--lab", name}, {"exec", "--lab", name, "node1", "--", "true"},
			{"workload", "add", "w", "--node", "node1", "--lab", name}, {"workload", "del", "w", "--lab", name},
			{"node", "restart", "node1", "--lab", name}, {"link", "set", "node1", "down", "--lab", name},
		} {
			out, code := vr(t, args...)
			if code == 0 || !strings.Contains(out, "lab name") {
				t.Errorf("vrouter %s: exit %d, want an invalid lab name error:\n%s", strings.Join(args, " "), code, topology.Shorten(out))
			}
			if strings.Count(out, strings.Repeat("n", 40)) > 1 || len(out) > 400 {
				t.Errorf("vrouter %s: the error repeats a long name in full (%d bytes):\n%s", args[0], len(out), topology.Shorten(out))
			}
		}
	}
	if _, err := os.Stat(filepath.Join(victim, "lab.json")); err != nil {
		t.Fatalf("the victim directory lost its file: %v", err)
	}
	if _, err := os.Stat(topology.StateRoot); err != nil {
		t.Fatalf("the state root is gone: %v", err)
	}
}

// A state directory that is a symbolic link is neither read nor removed,
// and what it points to survives destroy.
func TestSymlinkedStateDirectoryIsLeftAlone(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	victim, err := os.MkdirTemp("", "vrouter-victim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(victim) })
	name := labName(t, "sym")
	if err := os.WriteFile(filepath.Join(victim, "lab.json"), []byte(`{"name":"`+name+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(topology.StateRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(topology.StateRoot, name)
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(link)
		os.Remove(link + ".lock")
	})
	for _, args := range [][]string{{"destroy", "--lab", name}, {"inspect", "--lab", name}} {
		if out, code := vr(t, args...); code == 0 || !strings.Contains(out, "symbolic link") {
			t.Errorf("vrouter %s: exit %d, want a refusal naming the symbolic link:\n%s", strings.Join(args, " "), code, out)
		}
	}
	if _, err := os.Stat(filepath.Join(victim, "lab.json")); err != nil {
		t.Fatalf("destroy followed the link: %v", err)
	}
	// The link is no lab: its lock file goes with the command.
	if _, err := os.Lstat(link + ".lock"); !os.IsNotExist(err) {
		t.Errorf("destroy left %s.lock beside a link that is no lab (stat: %v)", link, err)
	}
}

// A lab's state is root's alone: directories 0700 (0710 group frr where
// FRR's daemons must pass), files holding a BGP password 0600 (0640 group
// frr for FRR's own configuration), and an unprivileged user reads no
// password anywhere in it, while FRR still reads its configuration (its
// session comes up).
func TestStateKeepsPasswordsFromOtherUsers(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	requireFRR(t)
	netnstest.GuardRoot(t)
	name := labName(t, "modes")
	secret := fmt.Sprintf("pw-%d-secret", os.Getpid())
	file := routerLab(t, name, topology.DaemonFRR, "", 64512, secret)
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file) // waits for every session: FRR read its 0640 configuration
	dir := filepath.Join(topology.StateRoot, name)
	var holders []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		perm := fi.Mode().Perm()
		if path == dir || path == filepath.Join(dir, "nodes") || path == filepath.Join(dir, "routers") {
			// What lies inside needs no mode of its own: no other
			// user passes these.
			if perm&0o007 != 0 {
				t.Errorf("%s: mode %o lets every user in", path, perm)
			}
			return nil
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(secret)) {
			holders = append(holders, path)
			if perm != 0o600 && perm != 0o640 {
				t.Errorf("%s holds the password with mode %o (want 0600, or 0640 for FRR)", path, perm)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(holders) < 2 {
		t.Fatalf("expected the password in the lab state and the node configs, found it in %v", holders)
	}
	// An unprivileged user tries to read every file.
	grep := exec.Command("grep", "-r", "-l", secret, topology.StateRoot)
	grep.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := grep.CombinedOutput()
	if bytes.Contains(out, []byte(name)) && !bytes.Contains(out, []byte("Permission denied")) || bytes.Contains(out, []byte(secret)) {
		t.Errorf("user nobody found the password:\n%s", out)
	}
	for _, f := range holders {
		cat := exec.Command("cat", f)
		cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := cat.CombinedOutput(); err == nil || bytes.Contains(out, []byte(secret)) {
			t.Errorf("user nobody read %s: %s", f, out)
		}
	}
}

// manyWorkloadsLab writes a two-node lab with n workloads, so that deploy
// spends a while creating namespaces.
func manyWorkloadsLab(t *testing.T, name string, n int) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
workloads:
`, name)
	for i := range n {
		fmt.Fprintf(&b, "  - {name: w%d, node: node%d}\n", i, i%2+1)
	}
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// SIGINT or SIGTERM in the middle of creating namespaces stops deploy,
// which removes everything it made and says it was interrupted.
func TestDeployInterrupted(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			name := labName(t, fmt.Sprintf("int%d", int(sig)))
			file := manyWorkloadsLab(t, name, 300)
			t.Cleanup(func() {
				vr(t, "destroy", "--lab", name)
				checkGone(t, name)
			})
			var out bytes.Buffer
			cmd := exec.Command(vrouterBin, "deploy", "-t", file)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait until it is creating workload namespaces.
			deadline := time.Now().Add(30 * time.Second)
			for {
				nss, _ := netns.List(topology.LabNamespacePrefix(name) + "w")
				if len(nss) >= 10 {
					break
				}
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatalf("deploy created no workload namespaces in 30s:\n%s", out.String())
				}
				time.Sleep(2 * time.Millisecond)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("deploy exited 0 after %s:\n%s", sig, out.String())
				}
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("deploy still ran 60s after %s:\n%s", sig, out.String())
			}
			if !strings.Contains(out.String(), "interrupted") {
				t.Errorf("deploy after %s does not say it was interrupted:\n%s", sig, out.String())
			}
			checkGone(t, name)
		})
	}
}

// Two deploys of one lab at once: one deploys, the other waits for it and
// then says the lab is deployed, touching nothing; the lab works. A
// destroy racing a deploy waits for it, then removes everything.
func TestConcurrentCommandsOnOneLab(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := labName(t, "race")
	file := smallLab(t, name)
	t.Cleanup(func() {
		vr(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	type result struct {
		out  string
		code int
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(vrouterBin, "deploy", "-t", file).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				code = -1
			}
			results[i] = result{string(out), code}
		}()
	}
	wg.Wait()
	won, lost := results[0], results[1]
	if won.code != 0 {
		won, lost = lost, won
	}
	if won.code != 0 || lost.code == 0 {
		t.Fatalf("two deploys: exits %d and %d, want one success\n--- first:\n%s\n--- second:\n%s", results[0].code, results[1].code, results[0].out, results[1].out)
	}
	if !strings.Contains(lost.out, "already deployed") || !strings.Contains(lost.out, "busy") {
		t.Errorf("the losing deploy should wait for the lab (busy) and then find it deployed:\n%s", lost.out)
	}
	if code := pingIn(t, name, "a", "10.244.2.1"); code != 0 {
		t.Fatal("the lab does not forward after two concurrent deploys")
	}
	mustVR(t, "destroy", "-t", file)
	checkGone(t, name)

	// deploy, then destroy while it runs.
	var deployOut bytes.Buffer
	deploy := exec.Command(vrouterBin, "deploy", "-t", file)
	deploy.Stdout, deploy.Stderr = &deployOut, &deployOut
	if err := deploy.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "deploy to hold the lab", func() (bool, string) {
		data, _ := os.ReadFile(filepath.Join(topology.StateRoot, name+".lock"))
		return strings.Contains(string(data), "deploy"), string(data)
	})
	out, code := vr(t, "destroy", "-t", file)
	derr := deploy.Wait()
	if code != 0 || !strings.Contains(out, "busy") {
		t.Errorf("destroy during deploy: exit %d, want it to wait for deploy (busy) and succeed:\n%s", code, out)
	}
	if derr != nil {
		t.Errorf("deploy raced by destroy failed: %v\n%s", derr, deployOut.String())
	}
	checkGone(t, name)
}

// A workload namespace deleted behind vrouter's back shows as missing;
// exec says so and suggests workload del, which removes it.
func TestWorkloadNamespaceDeletedOutside(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := labName(t, "drift")
	file := smallLab(t, name)
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	if err := exec.Command("ip", "netns", "del", topology.LabNamespacePrefix(name)+"a").Run(); err != nil {
		t.Fatal(err)
	}
	out := mustVR(t, "inspect", "--lab", name)
	if !regexpLine(out, `^a\s+workload\s+node1\s.*\smissing$`) {
		t.Errorf("inspect does not show workload a as missing:\n%s", out)
	}
	if !regexpLine(out, `^b\s+workload\s+node2\s.*\srunning$`) {
		t.Errorf("inspect does not show workload b running:\n%s", out)
	}
	out = mustVR(t, "get", "workloads", "-o", "wide", "--lab", name)
	if !regexpLine(out, `^a\s.*\smissing$`) {
		t.Errorf("get workloads -o wide does not show a as missing:\n%s", out)
	}
	out, code := vr(t, "exec", "--lab", name, "a", "--", "true")
	if code == 0 || !strings.Contains(out, "no longer exists") || !strings.Contains(out, "vrouter workload del a") {
		t.Errorf("exec in a deleted namespace: exit %d\n%s", code, out)
	}
	mustVR(t, "workload", "del", "a", "--lab", name)
	if out := mustVR(t, "inspect", "--lab", name); regexpLine(out, `^a\s`) {
		t.Errorf("workload a still listed after workload del:\n%s", out)
	}
}

// Run as another user than root, vrouter says once that it needs root.
func TestNotRootSaysSo(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	dir, err := os.MkdirTemp("", "vrouter-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "vrouter")
	// cp writes the copy: a descriptor this process held open for writing
	// would leak into a parallel test's fork and make exec fail with
	// "text file busy".
	if out, err := exec.Command("cp", vrouterBin, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"inspect"}, {"destroy", "--all"}, {"deploy", "-t", "/nonexistent.yaml"}} {
		c := exec.Command(bin, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := c.CombinedOutput()
		if err == nil || strings.Count(string(out), "must run as root") != 1 || strings.Count(string(out), "\n") > 2 {
			t.Errorf("vrouter %s as nobody: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	c := exec.Command(bin, "version")
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := c.CombinedOutput(); err != nil {
		t.Errorf("vrouter version as nobody: %v\n%s", err, out)
	}
}

// regexpLine reports whether a line of out matches the regular expression.
func regexpLine(out, expr string) bool {
	return regexp.MustCompile(`(?m)` + expr).MatchString(out)
}

// A deploy that times out says, node by node, what it was still waiting
// for: here a BGP peer that never answers.
//
// Not parallel: node2 must be ready within the deploy's 6 s, which other
// labs competing for the CPUs could delay.
func TestDeployTimeoutSaysWhatItWaitedFor(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := labName(t, "wait")
	data := fmt.Sprintf(`name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
bgpPeers:
  - {name: ghost, node: node1, peerIP: 192.168.50.99, asNumber: 65000}
workloads:
  - {name: a, node: node1}
`, name)
	file := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := vr(t, "deploy", "-t", file, "--timeout", "6s")
	checkGone(t, name)
	if code == 0 {
		t.Fatalf("deploy with a peer that never answers succeeded:\n%s", out)
	}
	if !regexpLine(out, `^\s+node1: BGP: 1 of 2 sessions Established; not up: 192\.168\.50\.99 \w+`) {
		t.Errorf("the timeout does not say node1 waits for BGP peer 192.168.50.99:\n%s", out)
	}
	if regexpLine(out, `^\s+node2:`) {
		t.Errorf("node2 was ready, yet the timeout lists it:\n%s", out)
	}
}

// After an agent dies (kill -9), commands that need it say it is not
// running and how to start it, instead of a raw dial error.
func TestDeadAgentSaysNotRunning(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := labName(t, "dead")
	file := smallLab(t, name)
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	crashAgent(t, name, "node2")
	for _, args := range [][]string{
		{"node", "status", "node2"}, {"route", "node2"}, {"workload", "add", "x", "--node", "node2"}, {"link", "set", "node2", "down"},
	} {
		out, code := vr(t, append(args, "--lab", name)...)
		if code == 0 || !strings.Contains(out, "agent is not running") || !strings.Contains(out, "vrouter node restart node2") ||
			strings.Contains(out, "connection refused") || strings.Contains(out, "dial unix") {
			t.Errorf("vrouter %s with node2's agent dead: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	if nss, _ := netns.List(topology.LabNamespacePrefix(name) + "x"); len(nss) > 0 {
		t.Errorf("workload add on a dead node left its namespace: %v", nss)
	}
	if out := mustVR(t, "inspect", "--lab", name); !regexpLine(out, `^node2\s+node\s.*\sdown$`) {
		t.Errorf("inspect does not show node2 down:\n%s", out)
	}
	mustVR(t, "node", "restart", "node2", "--lab", name)
	mustVR(t, "node", "status", "node2", "--lab", name)
}

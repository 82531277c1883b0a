package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// buildVrouter builds the vrouter binary into a temporary directory, with
// the vrouter-cni link a runtime's CNI_PATH would hold.
func buildVrouter(t *testing.T) (bin, plugin string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "vrouter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	plugin = filepath.Join(dir, "vrouter-cni")
	if err := os.Symlink("vrouter", plugin); err != nil {
		t.Fatal(err)
	}
	return bin, plugin
}

// cniNS makes a namespace for this test, removed when it ends.
func cniNS(t *testing.T, role string) string {
	t.Helper()
	name := fmt.Sprintf("vcn%d-%s", os.Getpid(), role)
	if err := netns.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

func ipN(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return strings.ReplaceAll(string(out), " \n", "\n")
}

// kernelHost is a test-made host namespace running a kernel-mode agent
// (the real binary, as `vrouter node run` on a real host: in the
// namespace it runs in).
type kernelHost struct {
	ns, bin, cfgFile string
	cfg              *config.Node
	agent            *exec.Cmd
	log              *bytes.Buffer
}

func (h *kernelHost) start(t *testing.T) {
	t.Helper()
	h.log = new(bytes.Buffer)
	h.agent = exec.Command("ip", "netns", "exec", h.ns, h.bin, "node", "run", "--config", h.cfgFile)
	h.agent.Stdout, h.agent.Stderr = h.log, h.log
	if err := h.agent.Start(); err != nil {
		t.Fatal(err)
	}
	c := control.NewClient(control.Socket(h.cfg.StateDir, h.cfg.Node))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.stop(t)
			t.Fatalf("the agent never answered:\n%s", h.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the agent as systemd would (SIGTERM) and waits for it.
func (h *kernelHost) stop(t *testing.T) {
	t.Helper()
	if h.agent == nil {
		return
	}
	_ = h.agent.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- h.agent.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = h.agent.Process.Kill()
		<-done
		t.Errorf("the agent did not stop on SIGTERM:\n%s", h.log)
	}
	h.agent = nil
}

// cniResult is one run of the plugin.
type cniResult struct {
	code int
	out  string
}

// cni runs the plugin the way a runtime does: the vrouter-cni link,
// inside the host namespace, the CNI_* environment, the config on stdin.
func (h *kernelHost) cni(t *testing.T, plugin, command, containerID, netnsPath, ifName, conf string) cniResult {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", h.ns, plugin)
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+netnsPath,
		"CNI_IFNAME="+ifName, "CNI_PATH="+filepath.Dir(plugin))
	cmd.Stdin = strings.NewReader(conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if stderr.Len() > 0 {
		t.Errorf("the plugin wrote to stderr (%s %s): %s", command, containerID, stderr.String())
	}
	return cniResult{code, stdout.String()}
}

// handles returns the IPAM handles allocated in the datastore.
func handles(t *testing.T, cfg *config.Node) []string {
	t.Helper()
	store, err := ipam.OpenBolt(cfg.Datastore)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m, err := ipam.New(store, []ipam.Pool{{Name: cfg.Pools[0].Name, CIDR: cfg.Pools[0].CIDR, BlockSize: cfg.Pools[0].BlockSize}})
	if err != nil {
		t.Fatal(err)
	}
	as, err := m.Allocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.Handle+"="+a.Addr.String())
	}
	slices.Sort(out)
	return out
}

var caliRE = regexp.MustCompile(`cali[0-9a-f]{11}`)

// The CNI plugin, run the way containerd runs it, against a kernel-mode
// agent: ADD makes exactly one veth, one /32 route and one IPAM entry
// and answers with a spec 1.0 result; ADD again answers the same and
// makes nothing; CHECK passes, and fails once the pod lost its address;
// the workload survives an agent restart; DEL removes exactly what ADD
// made; DEL again, or of a container never added, succeeds; bad stdin
// gets an error object.
func TestCNIPlugin(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardNamespaces(t, fmt.Sprintf("vcn%d-", os.Getpid()))
	netnstest.GuardRoot(t)
	bin, plugin := buildVrouter(t)

	host, peer := cniNS(t, "host"), cniNS(t, "peer")
	pod1, pod2 := cniNS(t, "pod1"), cniNS(t, "pod2")
	ipN(t, host, "link", "add", "ens33", "type", "veth", "peer", "name", "ens33", "netns", peer)
	ipN(t, peer, "link", "set", "ens33", "up")

	// The agent runs as on a real host: a YAML node file, the kernel
	// dataplane in the namespace it runs in.
	dir := t.TempDir()
	nodeFile := filepath.Join(dir, "node.yaml")
	yaml := "node: host1\naddress: 192.168.50.10/24\ninterface: ens33\nasNumber: 64512\n" +
		"ipPools:\n  - name: default-ipv4-ippool\n    cidr: 10.244.0.0/16\n    mtu: 1440\n" +
		"datastore: " + filepath.Join(dir, "lib", "ipam.db") + "\nstateDir: " + filepath.Join(dir, "run") + "\n"
	if err := os.WriteFile(nodeFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadNodeFile(nodeFile)
	if err != nil {
		t.Fatal(err)
	}
	h := &kernelHost{ns: host, bin: bin, cfgFile: nodeFile, cfg: cfg}
	h.start(t)
	t.Cleanup(func() { h.stop(t) })
	// `vrouter node status` on the host finds the agent by its node file.
	if out, err := exec.Command(bin, "node", "status", "--config", nodeFile).CombinedOutput(); err != nil ||
		!strings.HasPrefix(string(out), "vrouter process is running.\n") || !strings.Contains(string(out), "\nIPIP tunnel: none (no IP pool uses IPIP)\n") {
		t.Errorf("vrouter node status --config: %v\n%s", err, out)
	}

	sock := control.Socket(cfg.StateDir, cfg.Node)
	conf := `{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"vrouter-cni","socket":"` + sock + `","dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]}}`
	baseRoutes, baseLinks := ipN(t, host, "route"), caliRE.FindAllString(ipN(t, host, "-o", "link"), -1)
	if len(baseLinks) != 0 {
		t.Fatalf("cali links before ADD: %v", baseLinks)
	}

	// ADD.
	netns1 := netns.Path(pod1)
	add := h.cni(t, plugin, "ADD", "ctr1", netns1, "eth0", conf)
	if add.code != 0 {
		t.Fatalf("ADD: exit %d\n%s\nagent:\n%s", add.code, add.out, h.log)
	}
	t.Logf("ADD result:\n%s", add.out)
	res := parseResult(t, add.out)
	if len(res.Interfaces) != 2 || len(res.IPs) != 1 || len(res.Routes) != 1 {
		t.Fatalf("ADD result:\n%s", add.out)
	}
	hostIf, podIf, ipc := res.Interfaces[0], res.Interfaces[1], res.IPs[0]
	addr, _ := netip.AddrFromSlice(ipc.Address.IP.To4())
	ones, _ := ipc.Address.Mask.Size()
	switch {
	case !caliRE.MatchString(hostIf.Name) || hostIf.Mac != "ee:ee:ee:ee:ee:ee" || hostIf.Sandbox != "":
		t.Errorf("host interface %+v", hostIf)
	case podIf.Name != "eth0" || podIf.Sandbox != netns1 || podIf.Mac == "":
		t.Errorf("pod interface %+v", podIf)
	case ipc.Interface == nil || *ipc.Interface != 1 || ones != 32 || !cfg.Pools[0].CIDR.Contains(addr):
		t.Errorf("ip %+v", ipc)
	case res.Routes[0].Dst.String() != "0.0.0.0/0" || res.Routes[0].GW.String() != "169.254.1.1":
		t.Errorf("route %+v", res.Routes[0])
	case strings.Join(res.DNS.Nameservers, ",") != "10.96.0.10" || strings.Join(res.DNS.Search, ",") != "svc.cluster.local":
		t.Errorf("dns %+v", res.DNS)
	}
	wantRoute := addr.String() + " dev " + hostIf.Name + " scope link"
	routes := ipN(t, host, "route")
	if !strings.Contains(routes, "\n"+wantRoute+"\n") && !strings.HasPrefix(routes, wantRoute+"\n") {
		t.Errorf("host routes lack %q:\n%s", wantRoute, routes)
	}
	if !strings.Contains(ipN(t, pod1, "-o", "addr", "show", "dev", "eth0"), "inet "+addr.String()+"/32") {
		t.Errorf("pod eth0 lacks %s/32", addr)
	}
	if out := ipN(t, pod1, "-o", "link", "show", "dev", "eth0"); !strings.Contains(out, " mtu 1440 ") || !strings.Contains(out, "link/ether "+podIf.Mac+" ") {
		t.Errorf("pod eth0 (want the pool's MTU 1440 and the result's MAC %s): %s", podIf.Mac, out)
	}
	if got := ipN(t, pod1, "route"); !strings.Contains(got, "default via 169.254.1.1 dev eth0") {
		t.Errorf("pod routes:\n%s", got)
	}
	afterAdd := handles(t, cfg)
	if want := []string{"k8s-pod-network.ctr1=" + addr.String()}; !slices.Equal(afterAdd, want) {
		t.Errorf("IPAM after ADD: %v, want %v", afterAdd, want)
	}
	// Exactly one veth and one /32 more; the block's blackhole is the
	// agent's (Calico's) way of owning the block.
	links := caliRE.FindAllString(ipN(t, host, "-o", "link"), -1)
	if len(links) != 1 || links[0] != hostIf.Name {
		t.Errorf("cali links after ADD: %v, want [%s]", links, hostIf.Name)
	}
	block := netip.PrefixFrom(addr, 26).Masked()
	if got, want := routeSet(routes), routeSet(baseRoutes+wantRoute+"\nblackhole "+block.String()+" proto bird\n"); !slices.Equal(got, want) {
		t.Errorf("host routes after ADD:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// ADD again: the same answer, nothing more made.
	if again := h.cni(t, plugin, "ADD", "ctr1", netns1, "eth0", conf); again.code != 0 || again.out != add.out {
		t.Errorf("second ADD: exit %d\n%s\nwant the first's:\n%s", again.code, again.out, add.out)
	}
	if got := caliRE.FindAllString(ipN(t, host, "-o", "link"), -1); !slices.Equal(got, links) {
		t.Errorf("cali links after the second ADD: %v", got)
	}
	if got := handles(t, cfg); !slices.Equal(got, afterAdd) {
		t.Errorf("IPAM after the second ADD: %v", got)
	}

	// CHECK with prevResult.
	checkConf := strings.TrimSuffix(conf, "}") + `,"prevResult":` + add.out + "}"
	if r := h.cni(t, plugin, "CHECK", "ctr1", netns1, "eth0", checkConf); r.code != 0 || r.out != "" {
		t.Errorf("CHECK: exit %d\n%s", r.code, r.out)
	}
	ipN(t, pod1, "addr", "del", addr.String()+"/32", "dev", "eth0")
	if r := h.cni(t, plugin, "CHECK", "ctr1", netns1, "eth0", checkConf); r.code != 1 || !strings.Contains(r.out, "lacks "+addr.String()+"/32") {
		t.Errorf("CHECK of a pod without its address: exit %d\n%s", r.code, r.out)
	}
	ipN(t, pod1, "addr", "add", addr.String()+"/32", "dev", "eth0")
	// The kernel flushed the routes of eth0 with its last address.
	ipN(t, pod1, "route", "replace", "169.254.1.1", "dev", "eth0", "scope", "link")
	ipN(t, pod1, "route", "replace", "default", "via", "169.254.1.1", "dev", "eth0")
	if r := h.cni(t, plugin, "CHECK", "ctr2", netns1, "eth0", checkConf); r.code != 1 || !strings.Contains(r.out, `"code": 3`) {
		t.Errorf("CHECK of an unknown container: exit %d\n%s", r.code, r.out)
	}

	// The agent restarts (systemd): the workload stays, CHECK passes.
	h.stop(t)
	if got := ipN(t, host, "route"); got != routes {
		t.Errorf("routes while no agent runs:\n%s\nwant:\n%s", got, routes)
	}
	h.start(t)
	if r := h.cni(t, plugin, "CHECK", "ctr1", netns1, "eth0", checkConf); r.code != 0 {
		t.Errorf("CHECK after the agent restarted: exit %d\n%s", r.code, r.out)
	}

	// A second container, its namespace given as /proc/PID/ns/net.
	sleeper := exec.Command("ip", "netns", "exec", pod2, "sleep", "120")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	procNS := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	waitSameNS(t, procNS, netns.Path(pod2))
	add2 := h.cni(t, plugin, "ADD", "ctr2", procNS, "eth0", conf)
	if add2.code != 0 {
		t.Fatalf("ADD of ctr2: exit %d\n%s", add2.code, add2.out)
	}
	res2 := parseResult(t, add2.out)
	if res2.Interfaces[1].Sandbox != procNS || res2.IPs[0].Address.IP.Equal(ipc.Address.IP) {
		t.Errorf("ctr2's result:\n%s", add2.out)
	}
	if r := h.cni(t, plugin, "DEL", "ctr2", procNS, "eth0", conf); r.code != 0 {
		t.Errorf("DEL of ctr2: exit %d\n%s", r.code, r.out)
	}

	// `vrouter workload add --netns` / `del --host`: the same through the
	// command line, on the host's agent.
	pod3 := cniNS(t, "pod3")
	out, err := exec.Command(bin, "workload", "add", "web-1", "--netns", netns.Path(pod3), "--config", nodeFile).CombinedOutput()
	m := regexp.MustCompile(`^workload web-1 added on host1: (\S+) dev (cali[0-9a-f]{11})\n$`).FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("workload add --netns: %v\n%s", err, out)
	}
	if !strings.Contains(ipN(t, pod3, "-o", "addr", "show", "dev", "eth0"), "inet "+m[1]+"/32") || !strings.Contains(ipN(t, host, "route"), m[1]+" dev "+m[2]+" scope link") {
		t.Errorf("workload web-1 (%s dev %s): pod or host route missing", m[1], m[2])
	}
	if out, err := exec.Command(bin, "workload", "del", "web-1", "--host", "--config", nodeFile).CombinedOutput(); err != nil || string(out) != "workload web-1 deleted\n" {
		t.Errorf("workload del --host: %v\n%s", err, out)
	}
	if strings.Contains(ipN(t, host, "-o", "link"), m[2]) {
		t.Errorf("%s still there after workload del", m[2])
	}

	// DEL: the veth, the /32 and the IPAM entry go; the block stays the
	// node's (as in Calico).
	if r := h.cni(t, plugin, "DEL", "ctr1", netns1, "eth0", conf); r.code != 0 || r.out != "" {
		t.Fatalf("DEL: exit %d\n%s", r.code, r.out)
	}
	if got := caliRE.FindAllString(ipN(t, host, "-o", "link"), -1); len(got) != 0 {
		t.Errorf("cali links after DEL: %v", got)
	}
	if got, want := routeSet(ipN(t, host, "route")), routeSet(baseRoutes+"blackhole "+block.String()+" proto bird\n"); !slices.Equal(got, want) {
		t.Errorf("host routes after DEL:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := handles(t, cfg); len(got) != 0 {
		t.Errorf("IPAM after DEL: %v", got)
	}
	if out := ipN(t, pod1, "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("pod1 still has eth0: %s", out)
	}
	// DEL again, DEL of a container never added, DEL without CNI_NETNS.
	for _, id := range []string{"ctr1", "never-added"} {
		if r := h.cni(t, plugin, "DEL", id, "", "eth0", conf); r.code != 0 || r.out != "" {
			t.Errorf("DEL of %s: exit %d\n%s", id, r.code, r.out)
		}
	}

	// Bad stdin: an error object with a code, exit status 1.
	for stdin, code := range map[string]int{"{not json": 6, `{"cniVersion":"1.0.0"}`: 7, `{"cniVersion":"7.0.0","name":"x"}`: 1} {
		r := h.cni(t, plugin, "ADD", "ctr3", netns1, "eth0", stdin)
		var e struct {
			CNIVersion string `json:"cniVersion"`
			Code       int    `json:"code"`
			Msg        string `json:"msg"`
		}
		if err := json.Unmarshal([]byte(r.out), &e); err != nil || r.code != 1 || e.Code != code || e.Msg == "" || e.CNIVersion == "" {
			t.Errorf("stdin %q: exit %d, want an error object with code %d:\n%s", stdin, r.code, code, r.out)
		}
	}
	// VERSION through `vrouter cni` too.
	cmd := exec.Command(bin, "cni")
	cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
	cmd.Stdin = strings.NewReader(`{"cniVersion":"1.0.0"}`)
	if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), `"1.0.0"`) {
		t.Errorf("vrouter cni VERSION: %v\n%s", err, out)
	}
}

func parseResult(t *testing.T, out string) *types100.Result {
	t.Helper()
	var probe map[string]any
	if err := json.Unmarshal([]byte(out), &probe); err != nil || probe["cniVersion"] != "1.0.0" {
		t.Fatalf("result is not a 1.0.0 result (%v):\n%s", err, out)
	}
	r, err := types100.NewResult([]byte(out))
	if err != nil {
		t.Fatalf("result: %v\n%s", err, out)
	}
	res, err := types100.GetResult(r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// routeSet returns the lines of an `ip route` listing, sorted.
func routeSet(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// waitSameNS waits until the namespace file a is the namespace file b
// (a process entering a namespace after it started).
func waitSameNS(t *testing.T, a, b string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var sa, sb syscall.Stat_t
		if syscall.Stat(a, &sa) == nil && syscall.Stat(b, &sb) == nil && sa.Ino == sb.Ino && sa.Dev == sb.Dev {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became %s", a, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package scenarios

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// vrouterBinary builds cmd/vrouter once per test process: the labs' nodes
// run it, and the suite test runs `vrouter test` with it.
func vrouterBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vrouter-scenarios-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "vrouter")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/vrouter").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build vrouter: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// labGone fails the test if anything of the lab is left: its state
// directory or a namespace.
func labGone(t *testing.T, name string) {
	t.Helper()
	if dir, err := lab.Dir(name); err == nil {
		if _, err := os.Lstat(dir); err == nil {
			t.Errorf("lab %s left its state directory %s", name, dir)
		}
	}
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(out), topology.LabNamespacePrefix(name)) {
		t.Errorf("lab %s left namespaces:\n%s", name, out)
	}
}

// wrongLab is a two-node lab in ipipMode Never with one workload each.
const wrongLab = `lab:
  name: wrong
  ipPools:
    - {name: pool, cidr: 10.244.0.0/16, ipipMode: Never}
  bgp: {asNumber: 64512, keepaliveTime: 3s, holdTime: 9s}
  networks:
    - {name: lan, cidr: 192.168.50.0/24}
  nodes:
    node1: {network: lan, address: 192.168.50.10}
    node2: {network: lan, address: 192.168.50.11}
  workloads:
    - {name: a, node: node1, address: 10.244.1.1}
    - {name: b, node: node2, address: 10.244.2.1}
dut: node1
`

// The runner catches wrong behaviour: for each assertion kind, a scenario
// whose expectation is false fails at that step with what was observed
// and what was expected, and its lab is destroyed anyway.
func TestRunnerCatchesWrongExpectations(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "traceroute", "traceroute")
	netnstest.GuardRoot(t)
	bin := vrouterBinary(t)
	cases := []struct {
		name  string
		steps string
		step  int    // the step that must fail
		want  string // a regular expression the failure must match
	}{
		{"routes", `  - routes: {contains: 10.244.2.0/26 via 192.168.50.11 dev tunl0 proto bird onlink, timeout: 2s}`, 2,
			`^step 2 \(routes node1, line \d+\): node1's table lacks "10\.244\.2\.0/26 via 192\.168\.50\.11 dev tunl0 proto bird onlink"; observed:\n(    .*\n)*    10\.244\.2\.0/26 via 192\.168\.50\.11 dev ens33 proto bird\n`},
		{"golden", "  - routes:\n      equals: |\n        10.244.2.0/26 via 192.168.50.11 dev ens33 proto bird\n      timeout: 1s", 2,
			`node1's table differs from the golden block:\nobserved:\n(.|\n)*    10\.244\.1\.1 dev cali[0-9a-f]+ scope link\n(.|\n)*expected:\n    10\.244\.2\.0/26 via 192\.168\.50\.11 dev ens33 proto bird \(after 1s\)$`},
		{"bgp", `  - bgp: {peer: 192.168.50.11, state: down, timeout: 2s}`, 2,
			`^step 2 \(bgp node1 peer 192\.168\.50\.11, line \d+\): peer 192\.168\.50\.11 of node1: state "up", info "Established"; expected state "down" \(after 2s\)$`},
		// three echoes: one lost to a loaded machine does not make
		// the wrong expectation hold
		{"ping", `  - ping: {from: a, to: b, count: 3, expect: failure, timeout: 2s}`, 2,
			`^step 2 \(ping a -> b \(expect failure\), line \d+\): ping a -> b \(10\.244\.2\.1\): expected it to fail; observed:\nPING 10\.244\.2\.1`},
		// the hop after node2 is b, or silent when a loaded machine
		// loses its reply: the expectation is wrong either way
		{"traceroute", `  - traceroute: {from: a, to: b, hops: [192.168.50.10, 10.244.2.1], timeout: 2s}`, 2,
			`^step 2 \(traceroute a -> b, line \d+\): traceroute a -> b \(10\.244\.2\.1\): hops \[192\.168\.50\.10, 192\.168\.50\.11, (10\.244\.2\.1|\*(, \*)*)\], expected \[192\.168\.50\.10, 10\.244\.2\.1\]; observed:\ntraceroute to 10\.244\.2\.1`},
		{"tcp", `  - tcp: {from: a, to: b, port: 8081, timeout: 2s}`, 2,
			`^step 2 \(tcp a -> b:8081 connected, line \d+\): tcp a -> 10\.244\.2\.1:8081: refused \(.*connection refused\), expected connected \(after 2s\)$`},
		// IPIP expected where ipipMode Never sends none
		{"packets", "  - captureStart: lan\n  - ping: {from: a, to: b, count: 2}\n  - captureStop: lan\n  - packets: {capture: lan, match: {proto: ipip}}", 5,
			`^step 5 \(packets lan \{proto: ipip\}, line \d+\): expected at least 1 packets matching \{proto: ipip\} in capture lan, found 0 \(of [1-9]\d*\)$`},
		// NOTIFICATION 2/2 expected where none is sent
		{"bgpMessages", "  - captureStart: lan\n  - restart: node2\n  - captureStop: lan\n  - bgpMessages: {capture: lan, notification: {code: 2, subcode: 2}}", 5,
			`^step 5 \(bgpMessages lan notification \{code: 2, subcode: 2\}, line \d+\): expected at least 1 BGP messages matching notification \{code: 2, subcode: 2\} in capture lan, found 0 \(of [1-9]\d*\)(; closest: NOTIFICATION .* \(code 6, subcode \d+\): code 6, subcode \d+, want code 2, subcode 2)?$`},
	}
	dir := t.TempDir()
	var list []*Scenario
	for _, tc := range cases {
		data := fmt.Sprintf("name: wrong-%s\ndescription: a false expectation\n%ssteps:\n  - deploy:\n%s\n", tc.name, wrongLab, tc.steps)
		file := filepath.Join(dir, tc.name+".yaml")
		if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, s)
	}
	var progress bytes.Buffer
	art := t.TempDir()
	r, err := NewRunner(Options{Binary: bin, Artifacts: art, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	netnstest.GuardNamespaces(t, "vr-"+r.prefix)
	results := r.RunAll(context.Background(), list)
	t.Logf("progress:\n%s", progress.String())
	if len(results) != len(cases) {
		t.Fatalf("%d results for %d scenarios", len(results), len(cases))
	}
	for i, tc := range cases {
		res := results[i]
		labGone(t, res.Lab)
		if res.Passed {
			t.Errorf("%s: a false expectation passed", tc.name)
			continue
		}
		if res.FailedStep != tc.step {
			t.Errorf("%s: failed at step %d, want %d: %s", tc.name, res.FailedStep, tc.step, res.Failure)
		}
		if !regexp.MustCompile(tc.want).MatchString(res.Failure) {
			t.Errorf("%s: failure\n%s\ndoes not match\n%s", tc.name, res.Failure, tc.want)
		}
		// a failed scenario leaves its nodes' evidence
		for _, f := range []string{"node1.log", "node1.routes", "node1.status"} {
			if _, err := os.Stat(filepath.Join(res.Dir, "nodes", f)); err != nil {
				t.Errorf("%s: no evidence: %v", tc.name, err)
			}
		}
		if len(res.Captures) > 0 {
			if _, err := os.Stat(res.Captures[0]); err != nil {
				t.Errorf("%s: capture not kept: %v", tc.name, err)
			}
		}
	}
	if got := Summary(results); got != fmt.Sprintf("0 passed, %d failed", len(cases)) {
		t.Errorf("summary %q", got)
	}
	for _, want := range []string{"=== RUN   wrong-routes", "step 2/2 routes node1", "FAIL (", "--- FAIL: wrong-routes"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q", want)
		}
	}
}

// Cancelling the context (Ctrl-C) fails the running step, stops the
// remaining scenarios and destroys the lab; --keep-on-failure keeps the
// lab of a failed scenario.
func TestRunnerInterruptAndKeep(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	bin := vrouterBinary(t)
	dir := t.TempDir()
	write := func(name, steps string) *Scenario {
		file := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(file, []byte("name: "+name+"\n"+wrongLab+"steps:\n  - deploy:\n"+steps), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	long := write("long", "  - captureStart: lan\n  - wait: 10m\n")
	never := write("never-run", "  - wait: 1s\n")
	r, err := NewRunner(Options{Binary: bin, Artifacts: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	netnstest.GuardNamespaces(t, "vr-"+r.prefix)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// cancel once the wait has begun
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if names, _ := lab.List(); len(names) > 0 {
				for _, n := range names {
					if strings.HasPrefix(n, r.prefix) {
						time.Sleep(3 * time.Second)
						cancel()
						return
					}
				}
			}
		}
		cancel()
	}()
	start := time.Now()
	results := r.RunAll(ctx, []*Scenario{long, never})
	if len(results) != 1 {
		t.Fatalf("%d scenarios ran after the interrupt, want 1", len(results))
	}
	res := results[0]
	if res.Passed || !strings.Contains(res.Failure, "context canceled") || time.Since(start) > 2*time.Minute {
		t.Fatalf("interrupted scenario: passed %v, failure %q after %s", res.Passed, res.Failure, time.Since(start))
	}
	labGone(t, res.Lab)
	if _, err := os.Stat(res.Captures[0]); err != nil {
		t.Errorf("the capture of an interrupted scenario is lost: %v", err)
	}

	kr, err := NewRunner(Options{Binary: bin, Artifacts: t.TempDir(), KeepOnFailure: true})
	if err != nil {
		t.Fatal(err)
	}
	netnstest.GuardNamespaces(t, "vr-"+kr.prefix)
	failing := write("kept", "  - routes: {contains: nothing, timeout: 1s}\n")
	res = kr.Run(context.Background(), failing)
	t.Cleanup(func() {
		unlock, err := lab.Lock(res.Lab, "test cleanup", time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		if err := lab.Destroy(res.Lab); err != nil {
			t.Error(err)
		}
		labGone(t, res.Lab)
	})
	if res.Passed || !res.Kept {
		t.Fatalf("kept: passed %v, kept %v", res.Passed, res.Kept)
	}
	if _, err := lab.Load(res.Lab); err != nil {
		t.Errorf("the kept lab is gone: %v", err)
	}
}

// The shipped suite passes through the real binary: `vrouter test
// suite/` prints "N passed, 0 failed", exits 0, writes JUnit and keeps
// pcapng files tshark opens. It runs four scenarios at once, as make
// conformance does, and takes about two minutes; -short skips it.
func TestShippedSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the shipped suite takes minutes")
	}
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	requireBIRD2(t) // the DUT scenarios' routers
	netnstest.GuardRoot(t)
	bin := vrouterBinary(t)
	files, err := Discover([]string{"suite"})
	if err != nil {
		t.Fatal(err)
	}
	art := t.TempDir()
	junit := filepath.Join(t.TempDir(), "conformance.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "test", "suite/", "--parallel", "4", "--junit", junit, "--artifacts", art)
	out, err := cmd.CombinedOutput()
	t.Logf("vrouter test suite/:\n%s", out)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	summary := fmt.Sprintf("%d passed, 0 failed", len(files))
	if !regexp.MustCompile(`(?m)^` + summary + `$`).Match(out) {
		t.Errorf("output lacks the line %q", summary)
	}
	if err != nil {
		t.Errorf("vrouter test exited %v", err)
	}
	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var root xmlNode
	if err := xml.Unmarshal(data, &root); err != nil {
		t.Fatalf("JUnit: %v", err)
	}
	if n, _ := root.attr("tests"); n != fmt.Sprint(len(files)) {
		t.Errorf("JUnit counts %s tests, want %d", n, len(files))
	}
	pcaps, _ := filepath.Glob(filepath.Join(art, "*", "*.pcapng"))
	if len(pcaps) < 5 {
		t.Errorf("%d pcapng files kept, want one per capture", len(pcaps))
	}
	if _, err := exec.LookPath("tshark"); err == nil && len(pcaps) > 0 {
		for _, p := range pcaps[:min(3, len(pcaps))] {
			if out, err := exec.Command("tshark", "-r", p, "-c", "1").CombinedOutput(); err != nil {
				t.Errorf("tshark cannot read %s: %v\n%s", p, err, out)
			}
		}
	}
	// every lab is gone
	names, _ := lab.List()
	for _, n := range names {
		if regexp.MustCompile(`^sc[0-9a-f]{5}-\d+$`).MatchString(n) && strings.Contains(string(out), "lab "+n+")") {
			t.Errorf("lab %s left behind", n)
		}
	}
}

// requireBIRD2 fails (under CI) or skips the test when BIRD 2 is not where
// a lab looks for it.
func requireBIRD2(t *testing.T) {
	t.Helper()
	bin := os.Getenv("VROUTER_BIRD2")
	if bin == "" {
		bin = lab.DefaultBIRD2
	}
	if _, err := os.Stat(bin); err == nil {
		return
	}
	msg := fmt.Sprintf("%s not found; BIRD 2 conflicts with bird: apt-get download bird2 && dpkg-deb -x bird2_*.deb /opt/vrouter-bird2 (or set VROUTER_BIRD2)", bin)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// birdLab is a lab whose device under test is rr1, a BIRD 2 route
// reflector for node1 and node2.
const birdLab = `lab:
  name: wrong-bird
  ipPools:
    - {name: pool, cidr: 10.244.0.0/16, ipipMode: Never}
  bgp: {asNumber: 64512, nodeToNodeMesh: false, keepaliveTime: 3s, holdTime: 9s}
  networks:
    - {name: lan, cidr: 192.168.50.0/24}
  nodes:
    node1: {network: lan, address: 192.168.50.10}
    node2: {network: lan, address: 192.168.50.11}
  routers:
    rr1: {network: lan, address: 192.168.50.100, daemon: bird2, routeReflectorClusterID: 244.0.0.2}
  bgpPeers:
    - {name: rr1, peerIP: 192.168.50.100}
  workloads:
    - {name: a, node: node1, address: 10.244.1.1}
    - {name: b, node: node2, address: 10.244.2.1}
dut: rr1
`

// The runner catches wrong behaviour of an external daemon as DUT, and
// the variants the DUT scenarios use: a router's session state as BIRD
// reports it, a router's table, reflection expected absent where BIRD
// reflects, a hold timer NOTIFICATION expected where none is sent.
func TestRunnerCatchesWrongDUTExpectations(t *testing.T) {
	netnstest.RequireRoot(t)
	requireBIRD2(t)
	netnstest.GuardRoot(t)
	bin := vrouterBinary(t)
	cases := []struct {
		name  string
		steps string
		step  int
		want  string
	}{
		{"router-bgp", `  - bgp: {peer: 192.168.50.10, state: down, timeout: 2s}`, 2,
			`^step 2 \(bgp rr1 peer 192\.168\.50\.10, line \d+\): peer 192\.168\.50\.10 of rr1 \(peer_node1\): state "up", info "Established"; expected state "down" \(after 2s\)$`},
		{"router-routes", `  - routes: {lacks: 10.244.2.0/26 via 192.168.50.11 dev ens33 proto bird, timeout: 2s}`, 2,
			`^step 2 \(routes rr1, line \d+\): rr1's table contains "10\.244\.2\.0/26 via 192\.168\.50\.11 dev ens33 proto bird", expected it absent; observed:\n`},
		// "BIRD does not reflect": it does, with ORIGINATOR_ID
		{"no-reflection", "  - captureStart: lan\n  - restart: node2\n  - routes: {node: node1, contains: 10.244.2.0/26 via 192.168.50.11 dev ens33 proto bird}\n  - captureStop: lan\n" +
			"  - bgpMessages: {capture: lan, from: 192.168.50.100, to: 192.168.50.10, update: {nlri: [10.244.2.0/26], originatorID: 192.168.50.11}, expect: absent}", 6,
			`^step 6 \(bgpMessages lan update from 192\.168\.50\.100 to 192\.168\.50\.10 \{nlri: \[10\.244\.2\.0/26\], originatorID: 192\.168\.50\.11\}, line \d+\): expected no BGP messages matching .* in capture lan, found 1; first: UPDATE 192\.168\.50\.100 > 192\.168\.50\.10 .*10\.244\.2\.0/26`},
		// NOTIFICATION 4/0 expected where nobody hangs
		{"hold-timer", "  - captureStart: lan\n  - bgpMessages: {capture: lan, notification: {code: 4, subcode: 0}, timeout: 4s}", 3,
			`^step 3 \(bgpMessages lan notification \{code: 4, subcode: 0\}, line \d+\): expected at least 1 BGP messages matching notification \{code: 4, subcode: 0\} in capture lan, found 0 \(of \d+\) \(after 4s\)$`},
	}
	dir := t.TempDir()
	var list []*Scenario
	for _, tc := range cases {
		data := fmt.Sprintf("name: wrong-%s\ndescription: a false expectation\n%ssteps:\n  - deploy:\n%s\n", tc.name, birdLab, tc.steps)
		file := filepath.Join(dir, tc.name+".yaml")
		if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, s)
	}
	var progress bytes.Buffer
	r, err := NewRunner(Options{Binary: bin, Artifacts: t.TempDir(), Progress: &progress, Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	netnstest.GuardNamespaces(t, "vr-"+r.prefix)
	results := r.RunAll(context.Background(), list)
	t.Logf("progress:\n%s", progress.String())
	if len(results) != len(cases) {
		t.Fatalf("%d results for %d scenarios", len(results), len(cases))
	}
	for i, tc := range cases {
		res := results[i]
		labGone(t, res.Lab)
		if res.Scenario.Name != "wrong-"+tc.name {
			t.Errorf("result %d is %s, want wrong-%s: RunAll keeps the order", i, res.Scenario.Name, tc.name)
		}
		if res.Passed {
			t.Errorf("%s: a false expectation passed", tc.name)
			continue
		}
		if res.FailedStep != tc.step {
			t.Errorf("%s: failed at step %d, want %d: %s", tc.name, res.FailedStep, tc.step, res.Failure)
		}
		if !regexp.MustCompile(tc.want).MatchString(res.Failure) {
			t.Errorf("%s: failure\n%s\ndoes not match\n%s", tc.name, res.Failure, tc.want)
		}
	}
	// parallel: each scenario's lines come together, the DUT named
	if !regexp.MustCompile(`(?m)^=== RUN   wrong-router-bgp \(.*, dut rr1\)\n(    .*\n)+--- FAIL: wrong-router-bgp `).MatchString(progress.String()) {
		t.Errorf("progress of wrong-router-bgp is not one block naming the DUT:\n%s", progress.String())
	}
}

package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// uiLab is the lab the browser test draws: the CrossSubnet example's
// shape (two racks joined by a router node, three nodes, a workload each)
// with an external BIRD router peering with node3 over eBGP, and short
// BGP timers, so a link taken down drops its sessions fast.
const uiLab = `name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16, ipipMode: CrossSubnet}
bgp: {keepaliveTime: 1s, holdTime: 3s}
networks:
  - {name: rack1, cidr: 192.168.50.0/24}
  - {name: rack2, cidr: 192.168.60.0/24}
nodes:
  node1: {network: rack1, address: 192.168.50.10}
  node2: {network: rack1, address: 192.168.50.11}
  node3: {network: rack2, address: 192.168.60.10}
  tor:
    kind: router
    interfaces:
      - {name: eth0, network: rack1, address: 192.168.50.1}
      - {name: eth1, network: rack2, address: 192.168.60.1}
routers:
  ext1: {network: rack2, address: 192.168.60.100, daemon: bird, asNumber: 64600, announce: [10.99.0.0/24]}
bgpPeers:
  - {name: ext1, peerIP: 192.168.60.100, node: node3, asNumber: 64600}
workloads:
  - {name: web-1, node: node1, address: 10.244.1.1}
  - {name: web-2, node: node2, address: 10.244.2.1}
  - {name: web-3, node: node3}
`

// chromium finds Debian's Chromium (or another Chrome); under CI=true its
// absence fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return netnstest.RequireCommand(t, "chromium", "chromium")
}

// artifactDir is where the test leaves its screenshots: $VROUTER_ARTIFACTS
// (CI sets it), else a directory of the test's own.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VROUTER_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startUI runs `vrouter ui` on a free loopback port and returns the page's
// address; the test's cleanup stops it.
func startUI(t *testing.T, name string) string {
	t.Helper()
	cmd := exec.Command(vrouterBin, "ui", "--lab", name, "--listen", "127.0.0.1:0", "--interval", "500ms")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("vrouter ui: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("vrouter ui did not stop within 10s of SIGTERM")
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("vrouter ui printed no address: %v\n%s", err, stderr.String())
	}
	url := regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/`).FindString(line)
	if url == "" {
		t.Fatalf("vrouter ui printed no address: %q", line)
	}
	return url
}

// syncBuffer is a strings.Builder safe for a process to write while the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startInspectWatch runs `vrouter inspect --watch` (not on a terminal: one
// listing after the other) and returns its output so far; the test's
// cleanup interrupts it, which must end it cleanly.
func startInspectWatch(t *testing.T, name string) *syncBuffer {
	t.Helper()
	var out syncBuffer
	cmd := exec.Command(vrouterBin, "inspect", "--watch", "--interval", "500ms", "--lab", name)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("inspect --watch interrupted: %v\n%s", err, out.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("inspect --watch did not stop within 10s of SIGINT")
		}
	})
	return &out
}

// TestUIInBrowser loads the live page of a running lab in headless
// Chromium: every node, router, workload and BGP session is drawn, the
// sessions turn Established, traffic shows as packet rates, taking a link
// down shows on its line and its sessions, and clicking a node shows its
// route table and BGP status. Screenshots are left as artifacts. Beside
// it, `vrouter inspect --watch` follows the same lab.
func TestUIInBrowser(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	browser := chromium(t)
	netnstest.RequireCommand(t, "bird", "bird")
	netnstest.GuardRoot(t)
	name := labName(t, "ui")
	file := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(uiLab, name)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	lab := []string{"--lab", name}
	url := startUI(t, name)
	watch := startInspectWatch(t, name)
	artifacts := artifactDir(t)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // as root Chromium refuses to start with its sandbox
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1500, 1000),
	)...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	// The first action starts the browser, which lives as long as the
	// context of that first call: no timeout on it (one bounds each
	// step below).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) (bool, error) {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
	}
	text := func(expr string) string {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Evaluate[string](expr))
		if err != nil {
			return err.Error()
		}
		return s
	}
	// waitJS evaluates expr in the page until it is true, for up to d;
	// explain says what the page shows if it never is.
	waitJS := func(d time.Duration, what, expr, explain string) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			ok, err := eval(expr)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not so after %s; the page shows:\n%s", what, d, text(explain))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	screenshot := func(file string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(artifacts, file)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		if len(png) < 8 || string(png[1:4]) != "PNG" {
			t.Errorf("screenshot %s is not a PNG", path)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
	const sessionStates = `Array.from(document.querySelectorAll("path.session")).map(p => p.dataset.a + " - " + p.dataset.b + ": " + p.dataset.state).join("\n")`
	const linkStates = `Array.from(document.querySelectorAll("#links tbody tr")).map(r => r.innerText).join("\n")`

	do("load the page", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("svg#topology")))
	waitJS(20*time.Second, "a sample arrives", `+(document.body.dataset.samples || 0) >= 1`, `document.getElementById("status").innerText`)

	// Everything drawn.
	for _, q := range []string{
		`g.node[data-name="node1"]`, `g.node[data-name="node2"]`, `g.node[data-name="node3"]`, `g.node.kind-router[data-name="tor"]`,
		`g.node.kind-external[data-name="ext1"]`, `g.link[data-node="ext1"][data-network="rack2"]`,
		`g.workload[data-name="web-1"]`, `g.workload[data-name="web-2"]`, `g.workload[data-name="web-3"]`,
		`g.network[data-name="rack1"]`, `g.network[data-name="rack2"]`,
		`g.link[data-node="tor"][data-network="rack1"]`, `g.link[data-node="tor"][data-network="rack2"]`,
	} {
		if ok, err := eval(fmt.Sprintf("document.querySelectorAll(%q).length === 1", q)); err != nil || !ok {
			t.Errorf("the page has not one element %s (%v)", q, err)
		}
	}
	// The mesh's three sessions and node3's with ext1, each Established.
	sessions := [][2]string{{"node1", "node2"}, {"node1", "node3"}, {"node2", "node3"}, {"node3", "ext1"}}
	sessionIs := func(a, b, cond string) string {
		return fmt.Sprintf(`(() => { const p = document.querySelector('path.session[data-a=%q][data-b=%q]'); return !!p && %s; })()`, a, b, cond)
	}
	var all []string
	for _, s := range sessions {
		all = append(all, sessionIs(s[0], s[1], `p.dataset.state === "Established"`))
	}
	waitJS(30*time.Second, "every session Established", strings.Join(all, " && ")+` && document.querySelectorAll("path.session").length === 4 && document.querySelectorAll("#sessions tbody tr").length === 4`, sessionStates)
	// web-3's address comes from IPAM: the page shows the one its node gave.
	waitJS(10*time.Second, "web-3's address", `/^10\.244\.\d+\.\d+$/.test(document.querySelector('g.workload[data-name="web-3"]').dataset.address)`,
		`document.querySelector('g.workload[data-name="web-3"]').outerHTML`)

	// Traffic from web-1 to web-2 crosses node1's and node2's links: their
	// rates rise.
	// (ip netns exec becomes ping: killing it stops the traffic.)
	ping := exec.Command("ip", "netns", "exec", topology.LabNamespacePrefix(name)+"web-1", "ping", "-q", "-i", "0.1", "-w", "60", "10.244.2.1")
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ping.Process.Kill(); _ = ping.Wait() }()
	rateOf := func(node, iface string) string {
		return fmt.Sprintf(`((r) => r ? +r.cells[5].innerText.replace("k", "e3") : 0)(document.querySelector('#links tbody tr[data-node=%q][data-interface=%q]'))`, node, iface)
	}
	waitJS(20*time.Second, "node1's and node2's links show packets per second", rateOf("node1", "ens33")+" >= 3 && "+rateOf("node2", "ens33")+" >= 3", linkStates)
	screenshot("ui-lab.png")
	_ = ping.Process.Kill()
	_ = ping.Wait()

	// Clicking node1 shows its routes and its sessions.
	do("click node1", chromedp.Click(chromedp.CSS(`g.node[data-name="node1"]`)))
	waitJS(10*time.Second, "node1's details", `document.getElementById("detail").dataset.loaded === "true" && document.getElementById("detail").dataset.node === "node1"`,
		`document.getElementById("detail").innerText`)
	routes, bgp := text(`document.getElementById("detail-routes").textContent`), text(`document.getElementById("detail-bgp").textContent`)
	if !strings.Contains(routes, "10.244.2.0/26 via 192.168.50.11 dev ens33 proto bird") || !strings.Contains(routes, "dev tunl0 proto bird onlink") {
		t.Errorf("node1's routes on the page lack node2's block via ens33 or node3's via tunl0:\n%s", routes)
	}
	if !regexp.MustCompile(`192\.168\.50\.11 +\| node-to-node mesh \| up +\| [0-9:]+ +\| Established`).MatchString(bgp) {
		t.Errorf("node1's BGP status on the page lacks its Established session with node2:\n%s", bgp)
	}

	// ext1's details are its BIRD's: its session with node3.
	do("click ext1", chromedp.Click(chromedp.CSS(`g.node[data-name="ext1"]`)))
	waitJS(10*time.Second, "ext1's details", `document.getElementById("detail").dataset.loaded === "true" && document.getElementById("detail").dataset.node === "ext1"`,
		`document.getElementById("detail").innerText`)
	if bgp := text(`document.getElementById("detail-bgp").textContent`); !regexp.MustCompile(`(?m)^peer_node3 +BGP .* up .*Established`).MatchString(bgp) {
		t.Errorf("ext1's BGP status on the page lacks BIRD's Established session with node3:\n%s", bgp)
	}

	// node2's link down: its line turns down, its two sessions leave
	// Established once the hold timer expires, node1-node3 stays.
	mustVR(t, append([]string{"link", "set", "node2", "down"}, lab...)...)
	waitJS(10*time.Second, "node2's link down on the page",
		`document.querySelector('g.link[data-node="node2"]').dataset.up === "false" && document.querySelector('#links tbody tr[data-node="node2"]').dataset.up === "down"`, linkStates)
	waitJS(30*time.Second, "node2's sessions down on the page",
		sessionIs("node1", "node2", `p.dataset.state !== "Established" && p.classList.contains("notup")`)+" && "+
			sessionIs("node2", "node3", `p.dataset.state !== "Established"`)+" && "+
			sessionIs("node1", "node3", `p.dataset.state === "Established"`)+" && "+
			sessionIs("node3", "ext1", `p.dataset.state === "Established"`), sessionStates)
	// inspect --watch, running all along, printed listing after listing,
	// and saw node2's link go down.
	eventually(t, 10*time.Second, "inspect --watch shows node2's link down", func() (bool, string) {
		out := watch.String()
		return regexp.MustCompile(`(?m)^node2 +node .* running$`).MatchString(out) && regexp.MustCompile(`(?m)^node2 +node .* link down$`).MatchString(out), out
	})
	if n := len(regexp.MustCompile(`(?m)^--- \d\d:\d\d:\d\d\n+NAME +KIND`).FindAllString(watch.String(), -1)); n < 3 {
		t.Errorf("inspect --watch printed %d listings, want one every 500ms:\n%s", n, watch.String())
	}
	// node1's table, clicked again, has lost node2's block.
	do("click node2, then node1 again", chromedp.Click(chromedp.CSS(`g.node[data-name="node2"]`)), chromedp.Click(chromedp.CSS(`g.node[data-name="node1"]`)))
	waitJS(10*time.Second, "node1's routes without node2's block",
		`document.getElementById("detail").dataset.loaded === "true" && document.getElementById("detail").dataset.node === "node1" && !document.getElementById("detail-routes").innerText.includes("via 192.168.50.11")`,
		`document.getElementById("detail-routes").innerText`)
	screenshot("ui-link-down.png")
}

package lab_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// netstackLab is a lab of two nodes, each with a netstack workload running
// every service and a namespace workload.
const netstackLab = `name: NAME
ipPools:
  - {name: default-ipv4-ippool, cidr: 10.244.0.0/16, ipipMode: MODE}
bgp: {asNumber: 64512, keepaliveTime: 3s, holdTime: 9s}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
workloads:
  - {name: api-1, node: node1, stack: netstack, serve: [tcp:80:http, tcp:5201:sink, udp:53:echo, tcp:7:echo]}
  - {name: web-1, node: node1, address: 10.244.1.10}
  - {name: api-2, node: node2, stack: netstack, serve: [tcp:80:http, tcp:5201:sink, udp:53:echo, tcp:7:echo, udp:9:sink], address: 10.244.2.20}
  - {name: web-2, node: node2, address: 10.244.2.21}
`

// deployText deploys the lab file text (NAME replaced by a name of this
// test's) and returns the lab's name.
func deployText(t *testing.T, prefix, text string) string {
	t.Helper()
	name := labName(t, prefix)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "NAME", name)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", path)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", path)
	return name
}

// probeResult is what `vrouter probe -o json` prints.
type probeResult struct {
	OK       bool
	Error    string
	To       string
	Sent     int
	Received int
	RTT      time.Duration
	Connect  time.Duration
	Status   int
	Body     string
	Bytes    int64
	Mbps     float64
	PPS      float64
}

// probe runs `vrouter probe FROM TO ARGS -o json` and returns its result;
// it fails the test if the probe could not run at all.
func probe(t *testing.T, lab, from, to string, args ...string) probeResult {
	t.Helper()
	out, code := vr(t, append([]string{"probe", from, to, "--lab", lab, "-o", "json"}, args...)...)
	var r probeResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("probe %s -> %s %v: exit %d, not a result: %v\n%s", from, to, args, code, err, out)
	}
	if r.OK != (code == 0) {
		t.Errorf("probe %s -> %s %v: ok %v but exit %d", from, to, args, r.OK, code)
	}
	return r
}

// mustProbe is probe that fails the test unless the probe succeeds.
func mustProbe(t *testing.T, lab, from, to string, args ...string) probeResult {
	t.Helper()
	r := probe(t, lab, from, to, args...)
	if !r.OK {
		t.Errorf("probe %s -> %s %v failed: %s", from, to, args, r.Error)
	}
	return r
}

// serveInNamespace runs, in namespace ns, a kernel TCP HTTP server on
// port 8080 answering body and a UDP echo on port 5353, until the test
// ends.
func serveInNamespace(t *testing.T, ns, body string) {
	t.Helper()
	var l net.Listener
	var u net.PacketConn
	if err := netns.Do(ns, func() (err error) {
		if l, err = net.Listen("tcp4", ":8080"); err != nil {
			return err
		}
		u, err = net.ListenPacket("udp4", ":5353")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); u.Close() })
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }))
	}()
	go func() {
		buf := make([]byte, 9000)
		for {
			n, from, err := u.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = u.WriteTo(buf[:n], from)
		}
	}()
}

// Netstack workloads and namespace workloads on two nodes reach each other
// both ways (ping, TCP, UDP echo, HTTP, bulk TCP) with vrouter probe, in
// Never and IPIP Always modes; a capture of the underlay shows their
// packets as it shows any workload's (inside IPIP in Always mode).
func TestNetstackLab(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "tshark", "tshark")
	netnstest.GuardRoot(t)
	for _, mode := range []string{"Never", "Always"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			name := deployText(t, "ns-"+strings.ToLower(mode)[:3], strings.ReplaceAll(netstackLab, "MODE", mode))
			testNetstackLab(t, name, mode)
		})
	}
}

func testNetstackLab(t *testing.T, name, mode string) {
	lab := []string{"--lab", name}
	serveInNamespace(t, topology.LabNamespacePrefix(name)+"web-2", "web-2 in its namespace\n")
	serveInNamespace(t, topology.LabNamespacePrefix(name)+"web-1", "web-1 in its namespace\n")

	// what the lab shows
	wl := mustVR(t, append([]string{"get", "workloads"}, lab...)...)
	for _, re := range []string{`(?m)^api-1\s+node1\s+\S+\s+cali\S+\s+netstack$`, `(?m)^web-2\s+node2\s+10\.244\.2\.21/32\s+cali\S+\s+namespace$`} {
		if !regexp.MustCompile(re).MatchString(wl) {
			t.Errorf("get workloads does not match %s:\n%s", re, wl)
		}
	}
	var insp struct {
		Nodes []struct{ Name, Kind, Namespace, State string }
	}
	if err := json.Unmarshal([]byte(mustVR(t, append([]string{"inspect", "-o", "json"}, lab...)...)), &insp); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, r := range insp.Nodes {
		kinds[r.Name] = r.Kind + " " + r.Namespace + " " + r.State
	}
	if kinds["api-2"] != "workload (netstack) - running" || kinds["web-2"] != "workload "+topology.LabNamespacePrefix(name)+"web-2 running" {
		t.Errorf("inspect: %v", kinds)
	}
	out, code := vr(t, append([]string{"exec", "api-1"}, append(lab, "--", "true")...)...)
	if code == 0 || !strings.Contains(out, "netstack workload") || !strings.Contains(out, "vrouter probe api-1") {
		t.Errorf("exec into a netstack workload: exit %d\n%s", code, out)
	}

	// every pair across the nodes, both kinds as sender and receiver
	for _, p := range [][2]string{{"api-1", "api-2"}, {"api-1", "web-2"}, {"web-1", "api-2"}, {"api-2", "web-1"}} {
		r := mustProbe(t, name, p[0], p[1], "--ping", "2", "--interval", "200ms")
		if r.Sent != 2 || r.Received != 2 || r.RTT <= 0 {
			t.Errorf("ping %s -> %s: %+v", p[0], p[1], r)
		}
	}
	// to a netstack workload's services, from both kinds
	for _, from := range []string{"api-1", "web-1"} {
		if r := mustProbe(t, name, from, "api-2", "--tcp", "7"); r.Connect <= 0 {
			t.Errorf("tcp %s -> api-2:7: %+v", from, r)
		}
		mustProbe(t, name, from, "api-2", "--udp", "53", "--size", "1200")
		if r := mustProbe(t, name, from, "api-2", "--http", "/"); r.Status != 200 || r.Body != "api-2 10.244.2.20\n" {
			t.Errorf("http %s -> api-2: %+v", from, r)
		}
		if r := mustProbe(t, name, from, "api-2", "--bulk", "500ms"); r.Bytes < 1<<20 || r.Mbps <= 0 {
			t.Errorf("bulk %s -> api-2: %+v", from, r)
		}
		if r := mustProbe(t, name, from, "api-2", "--flood", "500ms", "--size", "64"); r.Received < 100 || r.Received > r.Sent || r.PPS <= 0 {
			t.Errorf("flood %s -> api-2: %+v", from, r)
		}
	}
	// from a netstack workload to a namespace workload's kernel servers
	if r := mustProbe(t, name, "api-1", "web-2", "--http", "http://web-2:8080/"); r.Status != 200 || r.Body != "web-2 in its namespace\n" {
		t.Errorf("http api-1 -> web-2: %+v", r)
	}
	mustProbe(t, name, "api-1", "web-2", "--tcp", "8080")
	mustProbe(t, name, "api-2", "web-1", "--udp", "5353")
	// a port nothing listens on is refused, and the probe says so
	if r := probe(t, name, "api-1", "api-2", "--tcp", "81"); r.OK || !strings.Contains(r.Error, "refused") {
		t.Errorf("tcp to a closed port: %+v", r)
	}

	// the capture shows netstack packets as any workload's
	file := filepath.Join(t.TempDir(), "lan.pcapng")
	wait := startCapture(t, io.Discard, "lan", "--lab", name, "--duration", "4s", "-w", file)
	mustProbe(t, name, "api-1", "api-2", "--ping", "1")
	if stderr, err := wait(); err != nil {
		t.Fatalf("capture: %v\n%s", err, stderr)
	}
	a1 := addressOf(t, name, "api-1")
	capOut, err := exec.Command("tshark", "-r", file, "-Y", "icmp", "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, capOut)
	}
	want := map[string]string{
		"Never":  a1 + "\t10.244.2.20\t1\n",
		"Always": "192.168.50.10," + a1 + "\t192.168.50.11,10.244.2.20\t4,1\n",
	}[mode]
	if !strings.Contains(string(capOut), want) {
		t.Errorf("capture in %s mode lacks %q:\n%s", mode, want, capOut)
	}

	// add and delete a netstack workload: the address comes back
	blocksInUse := func() string {
		return regexp.MustCompile(`(?m)^10\.244\.\S+\s+host:node2\s+\d+\s+(\d+)`).FindString(mustVR(t, append([]string{"get", "blocks"}, lab...)...))
	}
	before := blocksInUse()
	added := mustVR(t, append([]string{"workload", "add", "api-3", "--node", "node2", "--stack", "netstack", "--serve", "tcp:80:http,udp:53:echo"}, lab...)...)
	m := regexp.MustCompile(`added on node2: (\S+) dev cali\S+ \(netstack\)`).FindStringSubmatch(added)
	if m == nil {
		t.Fatalf("workload add: %s", added)
	}
	if r := mustProbe(t, name, "web-1", "api-3", "--http", "/"); r.Body != "api-3 "+m[1]+"\n" {
		t.Errorf("http web-1 -> api-3: %+v", r)
	}
	if blocksInUse() == before {
		t.Errorf("api-3's address is not in use in IPAM: %s", before)
	}
	mustVR(t, append([]string{"workload", "del", "api-3"}, lab...)...)
	if after := blocksInUse(); after != before {
		t.Errorf("after workload del, node2's block: %q, before add %q", after, before)
	}
	if r := probe(t, name, "web-1", m[1], "--ping", "1", "--timeout", "1s"); r.OK {
		t.Errorf("the deleted netstack workload's address still answers: %+v", r)
	}
}

// addressOf returns a workload's address as vrouter get workloads shows
// it.
func addressOf(t *testing.T, lab, w string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(w) + `\s+\S+\s+(\S+)/32`).FindStringSubmatch(mustVR(t, "get", "workloads", "--lab", lab))
	if m == nil {
		t.Fatalf("no address for %s", w)
	}
	return m[1]
}

// A netstack workload behind a router node (examples/calico-crosssubnet.yaml:
// node3 on rack2, node1 on rack1, CrossSubnet IPIP across tor) reaches and
// is reached by netstack and namespace workloads on the other rack.
func TestNetstackBehindRouter(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-crosssubnet.yaml", "ns-xsub", func(s string) string {
		return s + "  - {name: api-1, node: node1, stack: netstack, serve: [tcp:80:http, udp:53:echo]}\n" +
			"  - {name: api-3, node: node3, stack: netstack, serve: [tcp:80:http, udp:53:echo, tcp:5201:sink]}\n"
	})
	a3 := addressOf(t, name, "api-3")
	for _, p := range [][2]string{{"api-1", "api-3"}, {"api-3", "api-1"}, {"web-1", "api-3"}, {"api-3", "web-2"}} {
		mustProbe(t, name, p[0], p[1], "--ping", "2", "--interval", "200ms")
	}
	if r := mustProbe(t, name, "web-1", "api-3", "--http", "/"); r.Body != fmt.Sprintf("api-3 %s\n", a3) {
		t.Errorf("http web-1 -> api-3: %+v", r)
	}
	mustProbe(t, name, "api-1", "api-3", "--udp", "53")
	if r := mustProbe(t, name, "api-1", "api-3", "--bulk", "500ms"); r.Bytes < 1<<20 {
		t.Errorf("bulk api-1 -> api-3: %+v", r)
	}
	// CrossSubnet: across the router, node3 reaches node1 through tunl0
	routes := mustVR(t, "route", "node3", "--lab", name)
	if !strings.Contains(routes, "dev tunl0") {
		t.Errorf("node3 routes rack1's blocks without the tunnel (CrossSubnet):\n%s", routes)
	}
}

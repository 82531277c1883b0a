package lab_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// The policy conformance matrix, in the style of cyclonus: four
// workloads on two nodes in two namespaces, every ordered pair probed with
// a TCP connect to port 80 and to port 81, a UDP exchange on port 53 and
// a ping, for a series of policy sets applied to the running lab with
// `vrouter apply`. Each case's expected table is written by hand below.
//
// runPolicyMatrix takes the dataplane, so that the same matrix runs on
// the userspace engine and in kernel mode: a kernel test is
//
//	name, apply := runPolicyMatrix(t, "polmk", topology.DataplaneKernel)
//	checkEstablishedFlows(t, name, apply)

// matrixWorkloads: name, node, namespace, labels, fixed address.
var matrixWorkloads = []struct{ name, node, ns, labels, addr string }{
	{"w1", "node1", "default", "{app: web}", "10.244.10.1"},
	{"w2", "node1", "default", "{app: client}", "10.244.10.2"},
	{"w3", "node2", "default", "{app: db}", "10.244.20.3"},
	{"w4", "node2", "prod", "{app: client}", "10.244.20.4"},
}

// policyLabYAML returns the matrix lab file with the given policies (YAML
// list items, indented by two spaces, or "").
func policyLabYAML(name, dataplane, policies string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\ndataplane: %s\n", name, dataplane)
	b.WriteString("ipPools: [{name: default-ipv4-ippool, cidr: 10.244.0.0/16}]\n")
	b.WriteString("networks: [{name: lan, cidr: 192.168.50.0/24}]\n")
	b.WriteString("nodes:\n  node1: {network: lan, address: 192.168.50.10}\n  node2: {network: lan, address: 192.168.50.11}\n")
	b.WriteString("workloads:\n")
	for _, w := range matrixWorkloads {
		fmt.Fprintf(&b, "  - {name: %s, node: %s, namespace: %s, labels: %s, address: %s}\n", w.name, w.node, w.ns, w.labels, w.addr)
	}
	if policies != "" {
		b.WriteString("policies:\n" + policies)
	}
	return b.String()
}

// The probes of a cell, in order: their letters in the tables.
var probeNames = []string{"T", "t", "U", "P"} // TCP 80, TCP 81, UDP 53, ping

type policyCase struct {
	name     string
	policies string
	// want: one row per source, one cell per destination, each cell the
	// letters of the probes that must succeed and '.' for those that must
	// fail ("TtUP" everything, "T..." only TCP 80); "-" for itself.
	want string
}

const allOpen = `
    w1   w2   w3   w4
w1  -    TtUP TtUP TtUP
w2  TtUP -    TtUP TtUP
w3  TtUP TtUP -    TtUP
w4  TtUP TtUP TtUP -
`

var policyCases = []policyCase{
	{name: "no policy", want: allOpen},
	{name: "default deny", policies: `
  - kind: GlobalNetworkPolicy
    metadata: {name: default-deny}
    spec: {selector: all(), types: [Ingress]}
`, want: `
    w1   w2   w3   w4
w1  -    .... .... ....
w2  .... -    .... ....
w3  .... .... -    ....
w4  .... .... .... -
`},
	// Only w1 is policed: TCP 80 from app=client in its own namespace
	// (w2, not w4 in prod).
	{name: "allow from selector", policies: `
  - kind: NetworkPolicy
    metadata: {name: web-from-clients}
    spec:
      selector: app == 'web'
      ingress:
        - action: Allow
          protocol: TCP
          source: {selector: app == 'client'}
          destination: {ports: [80]}
`, want: `
    w1   w2   w3   w4
w1  -    TtUP TtUP TtUP
w2  T... -    TtUP TtUP
w3  .... TtUP -    TtUP
w4  .... TtUP TtUP -
`},
	// Each namespace accepts only its own: prod (w4 alone) from nobody
	// else, default from default.
	{name: "namespace isolation", policies: `
  - kind: NetworkPolicy
    metadata: {name: same-ns, namespace: default}
    spec:
      ingress: [{action: Allow, source: {selector: all()}}]
  - kind: NetworkPolicy
    metadata: {name: same-ns, namespace: prod}
    spec:
      ingress: [{action: Allow, source: {namespaceSelector: projectcalico.org/name == 'prod'}}]
`, want: `
    w1   w2   w3   w4
w1  -    TtUP TtUP ....
w2  TtUP -    TtUP ....
w3  TtUP TtUP -    ....
w4  .... .... .... -
`},
	// Clients may send only to w3's address.
	{name: "egress to CIDR only", policies: `
  - kind: GlobalNetworkPolicy
    metadata: {name: clients-to-db}
    spec:
      selector: app == 'client'
      egress: [{action: Allow, destination: {nets: [10.244.20.3/32]}}]
`, want: `
    w1   w2   w3   w4
w1  -    TtUP TtUP TtUP
w2  .... -    TtUP ....
w3  TtUP TtUP -    TtUP
w4  .... .... TtUP -
`},
	{name: "deny ICMP", policies: `
  - kind: GlobalNetworkPolicy
    metadata: {name: no-ping}
    spec:
      order: 10
      ingress: [{action: Deny, protocol: ICMP}, {action: Allow}]
`, want: `
    w1   w2   w3   w4
w1  -    TtU. TtU. TtU.
w2  TtU. -    TtU. TtU.
w3  TtU. TtU. -    TtU.
w4  TtU. TtU. TtU. -
`},
	// Clients' traffic passes the tier (the profile allows it); the
	// rest meets the next policy, which allows TCP 80 only.
	{name: "pass then allow", policies: `
  - kind: GlobalNetworkPolicy
    metadata: {name: pass-clients}
    spec:
      order: 10
      ingress: [{action: Pass, source: {selector: app == 'client'}}]
  - kind: GlobalNetworkPolicy
    metadata: {name: web-only}
    spec:
      order: 20
      ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
`, want: `
    w1   w2   w3   w4
w1  -    T... T... T...
w2  TtUP -    TtUP TtUP
w3  T... T... -    T...
w4  TtUP TtUP TtUP -
`},
	// The lower order decides: deny TCP 81 (10) before allow TCP (50)
	// before allow everything (100), whatever the file order.
	{name: "order precedence", policies: `
  - kind: GlobalNetworkPolicy
    metadata: {name: allow-rest}
    spec: {order: 100, ingress: [{action: Allow}]}
  - kind: GlobalNetworkPolicy
    metadata: {name: allow-tcp}
    spec: {order: 50, ingress: [{action: Allow, protocol: TCP}]}
  - kind: GlobalNetworkPolicy
    metadata: {name: deny-81}
    spec: {order: 10, ingress: [{action: Deny, protocol: TCP, destination: {ports: [81]}}]}
`, want: `
    w1   w2   w3   w4
w1  -    T.UP T.UP T.UP
w2  T.UP -    T.UP T.UP
w3  T.UP T.UP -    T.UP
w4  T.UP T.UP T.UP -
`},
	{name: "notPorts", policies: `
  - kind: GlobalNetworkPolicy
    metadata: {name: tcp-but-80}
    spec:
      ingress: [{action: Allow, protocol: TCP, destination: {notPorts: [80]}}]
`, want: `
    w1   w2   w3   w4
w1  -    .t.. .t.. .t..
w2  .t.. -    .t.. .t..
w3  .t.. .t.. -    .t..
w4  .t.. .t.. .t.. -
`},
	// Stateful: clients may send anything and receive no new flow (not
	// even from each other); the replies of what they send come back.
	{name: "egress only, replies allowed", policies: `
  - kind: GlobalNetworkPolicy
    metadata: {name: clients-out-only}
    spec:
      selector: app == 'client'
      types: [Ingress, Egress]
      egress: [{action: Allow}]
`, want: `
    w1   w2   w3   w4
w1  -    .... TtUP ....
w2  TtUP -    TtUP ....
w3  TtUP .... -    ....
w4  TtUP .... TtUP -
`},
}

// matrixServers serves TCP 80 and 81 and UDP 53 (echo) in every workload
// of the lab, from sockets made in the workloads' namespaces.
func matrixServers(t *testing.T, lab string) {
	t.Helper()
	var closers []func()
	t.Cleanup(func() {
		for _, c := range closers {
			c()
		}
	})
	for _, w := range matrixWorkloads {
		ns := topology.LabNamespacePrefix(lab) + w.name
		err := netns.Do(ns, func() error {
			for _, port := range []string{":80", ":81"} {
				l, err := net.Listen("tcp4", port)
				if err != nil {
					return err
				}
				closers = append(closers, func() { l.Close() })
				go func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						c.Write([]byte("ok\n"))
						c.Close()
					}
				}()
			}
			u, err := net.ListenPacket("udp4", ":53")
			if err != nil {
				return err
			}
			closers = append(closers, func() { u.Close() })
			go func() {
				buf := make([]byte, 1500)
				for {
					n, from, err := u.ReadFrom(buf)
					if err != nil {
						return
					}
					u.WriteTo(buf[:n], from)
				}
			}()
			return nil
		})
		if err != nil {
			t.Fatalf("servers in %s: %v", w.name, err)
		}
	}
}

var echoID atomic.Uint32

// matrixProbe runs probe k from workload src (namespace ns) to address dst and
// reports whether it succeeded within timeout.
func matrixProbe(ns string, k int, dst string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	switch k {
	case 0, 1:
		var c net.Conn
		err := netns.Do(ns, func() error {
			var err error
			c, err = net.DialTimeout("tcp4", net.JoinHostPort(dst, []string{"80", "81"}[k]), timeout)
			return err
		})
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetReadDeadline(deadline)
		buf := make([]byte, 3)
		n, _ := c.Read(buf)
		return n > 0
	case 2:
		var c net.Conn
		if err := netns.Do(ns, func() error {
			var err error
			c, err = net.Dial("udp4", net.JoinHostPort(dst, "53"))
			return err
		}); err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(deadline)
		msg := []byte(fmt.Sprintf("probe %d", echoID.Add(1)))
		if _, err := c.Write(msg); err != nil {
			return false
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		return err == nil && bytes.Equal(buf[:n], msg)
	}
	var c net.PacketConn
	if err := netns.Do(ns, func() error {
		var err error
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return false
	}
	defer c.Close()
	id := uint16(echoID.Add(1))
	req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'v', 'r'}
	binary.BigEndian.PutUint16(req[2:], inetChecksum(req))
	if _, err := c.WriteTo(req, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
		return false
	}
	c.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		if from.String() == dst && n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id {
			return true
		}
	}
}

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// parseTable reads a hand-written table: result[src][dst] is the cell.
func parseTable(t *testing.T, s string) map[string]map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(s), "\n")
	cols := strings.Fields(lines[0])
	out := map[string]map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != len(cols)+1 {
			t.Fatalf("table row %q: %d cells, want %d", l, len(f)-1, len(cols))
		}
		out[f[0]] = map[string]string{}
		for i, c := range cols {
			out[f[0]][c] = f[i+1]
		}
	}
	return out
}

// formatTable prints a table; cells that differ from want are marked *.
func formatTable(got, want map[string]map[string]string) string {
	var b strings.Builder
	b.WriteString("     ")
	for _, w := range matrixWorkloads {
		fmt.Fprintf(&b, "%-6s", w.name)
	}
	b.WriteString("\n")
	for _, s := range matrixWorkloads {
		fmt.Fprintf(&b, "%-5s", s.name)
		for _, d := range matrixWorkloads {
			mark := " "
			if want != nil && got[s.name][d.name] != want[s.name][d.name] {
				mark = "*"
			}
			fmt.Fprintf(&b, "%-5s%s", got[s.name][d.name], mark)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// probeMatrix probes every cell in parallel. A probe that fails where the
// table expects success is tried twice more (a lost packet is not a
// policy); one that succeeds where it must not is a failure at once.
func probeMatrix(t *testing.T, lab string, want map[string]map[string]string) map[string]map[string]string {
	t.Helper()
	addr := map[string]string{}
	for _, w := range matrixWorkloads {
		addr[w.name] = w.addr
	}
	got := map[string]map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range matrixWorkloads {
		got[s.name] = map[string]string{s.name: "-"}
	}
	for _, s := range matrixWorkloads {
		for _, d := range matrixWorkloads {
			if s.name == d.name {
				continue
			}
			cell := []byte("....")
			for k := range probeNames {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ns := topology.LabNamespacePrefix(lab) + s.name
					expect := want[s.name][d.name][k] != '.'
					ok := false
					for try := 0; try < 3 && !ok; try++ {
						ok = matrixProbe(ns, k, addr[d.name], 1500*time.Millisecond)
						if !expect {
							break
						}
					}
					mu.Lock()
					if ok {
						cell[k] = probeNames[k][0]
					}
					got[s.name][d.name] = string(cell)
					mu.Unlock()
				}()
			}
		}
	}
	wg.Wait()
	return got
}

// runPolicyMatrix deploys the matrix lab with the given dataplane and
// checks every case, applying each case's policies with vrouter apply. It
// returns the lab's name and a function that applies other policies, for
// more checks on the same lab (destroyed when the test ends).
func runPolicyMatrix(t *testing.T, prefix, dataplane string) (string, applyFunc) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := labName(t, prefix)
	file := filepath.Join(t.TempDir(), "lab.yaml")
	write := func(policies string, edits ...string) {
		data := policyLabYAML(name, dataplane, policies)
		if len(edits) > 0 {
			data = strings.NewReplacer(edits...).Replace(data)
		}
		if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	matrixServers(t, name)
	for _, c := range policyCases {
		write(c.policies)
		out := mustVR(t, "apply", "-t", file)
		want := parseTable(t, c.want)
		got := probeMatrix(t, name, want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("case %q (apply: %s): probes differ from the expected table (* marks a difference; T: TCP 80, t: TCP 81, U: UDP 53, P: ping)\ngot:\n%swant:\n%s",
				c.name, strings.TrimSpace(out), formatTable(got, want), formatTable(want, nil))
		}
	}
	// The counters saw it all: the last case denied new flows to clients.
	out := mustVR(t, "get", "denied", "--lab", name)
	if !strings.Contains(out, "INGRESS-DEFAULT-DENY") || !strings.Contains(out, "node2") {
		t.Errorf("get denied:\n%s", out)
	}
	out = mustVR(t, "get", "policies", "-o", "wide", "--lab", name)
	if !strings.Contains(out, "clients-out-only") || !strings.Contains(out, "egress[0] Allow") {
		t.Errorf("get policies -o wide:\n%s", out)
	}
	return name, func(policies string, edits ...string) {
		t.Helper()
		write(policies, edits...)
		mustVR(t, "apply", "-t", file)
	}
}

// applyFunc applies policies to the matrix lab, with the lab file edited
// by strings.NewReplacer(edits...) (to change workloads' labels).
type applyFunc func(policies string, edits ...string)

// denied returns node's denial counters (vrouter get denied -o json).
func denied(t *testing.T, lab, node string) map[string]uint64 {
	t.Helper()
	var items []struct {
		Node   string            `json:"node"`
		Denied map[string]uint64 `json:"denied"`
	}
	if err := json.Unmarshal([]byte(mustVR(t, "get", "denied", "-o", "json", "--lab", lab)), &items); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Node == node {
			return it.Denied
		}
	}
	t.Fatalf("no node %s in get denied", node)
	return nil
}

func TestPolicyMatrix(t *testing.T) {
	t.Parallel()
	name, apply := runPolicyMatrix(t, "polmx", topology.DataplaneUserspace)
	ns := func(w string) string { return topology.LabNamespacePrefix(name) + w }

	t.Run("established flows", func(t *testing.T) {
		before := denied(t, name, "node1")["revoked"]
		checkEstablishedFlows(t, name, apply)
		if after := denied(t, name, "node1")["revoked"]; after <= before {
			t.Errorf("node1 revoked %d -> %d, want an increase", before, after)
		}
	})

	// vrouter apply with new labels: w4 becomes a db and is let in.
	t.Run("labels", func(t *testing.T) {
		const fromDB = `
  - kind: GlobalNetworkPolicy
    metadata: {name: web-from-db}
    spec:
      selector: app == 'web'
      ingress: [{action: Allow, source: {selector: app == 'db'}}]
`
		w1 := "10.244.10.1"
		apply(fromDB)
		if matrixProbe(ns("w3"), 0, w1, 2*time.Second) != true || matrixProbe(ns("w4"), 0, w1, time.Second) != false {
			t.Fatal("before: want w3 (db) in and w4 (client) out")
		}
		apply(fromDB, "labels: {app: client}, address: 10.244.20.4", "labels: {app: db}, address: 10.244.20.4")
		if !matrixProbe(ns("w4"), 0, w1, 2*time.Second) {
			t.Error("w4 relabelled app=db is still denied")
		}
		if !strings.Contains(mustVR(t, "get", "policies", "-o", "wide", "--lab", name), "w1") {
			t.Error("get policies does not list w1 as selected")
		}
	})

	// A workload added to the running lab is in the selectors' address
	// sets at once (it has no labels: all() in its namespace selects it).
	t.Run("workload add", func(t *testing.T) {
		apply(`
  - kind: NetworkPolicy
    metadata: {name: web-from-namespace}
    spec:
      selector: app == 'web'
      ingress: [{action: Allow, source: {selector: all()}}]
`)
		mustVR(t, "workload", "add", "w5", "--node", "node2", "--address", "10.244.20.5", "--lab", name)
		defer mustVR(t, "workload", "del", "w5", "--lab", name)
		if !matrixProbe(ns("w5"), 0, "10.244.10.1", 2*time.Second) {
			t.Error("w5, added after the policy, is not let in by all() in its namespace")
		}
		if matrixProbe(ns("w4"), 0, "10.244.10.1", time.Second) {
			t.Error("w4 (namespace prod) is let in")
		}
	})

	// Where enforcement happens: w3's ingress denies everything and w1's
	// egress too. A datagram from w2 to w3 crosses the fabric and dies in
	// node2's engine; one from w1 to w3 never leaves node1.
	t.Run("capture", func(t *testing.T) {
		apply(`
  - kind: NetworkPolicy
    metadata: {name: db-closed}
    spec: {selector: app == 'db'}
  - kind: GlobalNetworkPolicy
    metadata: {name: web-mute}
    spec: {selector: app == 'web', types: [Egress]}
`)
		var rx net.PacketConn
		if err := netns.Do(ns("w3"), func() error {
			var err error
			rx, err = net.ListenPacket("udp4", ":9999")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer rx.Close()
		got := make(chan string, 16)
		go func() {
			buf := make([]byte, 1500)
			for {
				n, _, err := rx.ReadFrom(buf)
				if err != nil {
					return
				}
				got <- string(buf[:n])
			}
		}()
		in0, out0 := denied(t, name, "node2")["ingress_default_deny"], denied(t, name, "node1")["egress_default_deny"]
		pcapFile := filepath.Join(t.TempDir(), "lan.pcapng")
		wait := startCapture(t, io.Discard, "lan", "-w", pcapFile, "--duration", "3s", "--lab", name)
		send := func(from, msg string) {
			if err := netns.Do(ns(from), func() error {
				c, err := net.Dial("udp4", "10.244.20.3:9999")
				if err != nil {
					return err
				}
				defer c.Close()
				for i := 0; i < 3; i++ {
					if _, err := c.Write([]byte(msg)); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		send("w2", "VRPOLICY-INGRESS-DENIED")
		send("w1", "VRPOLICY-EGRESS-DENIED")
		if stderr, err := wait(); err != nil {
			t.Fatalf("capture: %v\n%s", err, stderr)
		}
		data, err := os.ReadFile(pcapFile)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("VRPOLICY-INGRESS-DENIED")) {
			t.Error("the datagram denied at w3's ingress is not on the fabric: it should cross it and die at node2")
		}
		if bytes.Contains(data, []byte("VRPOLICY-EGRESS-DENIED")) {
			t.Error("the datagram denied at w1's egress is on the fabric: it should not leave node1")
		}
		select {
		case m := <-got:
			t.Errorf("w3 received %q", m)
		default:
		}
		if in1 := denied(t, name, "node2")["ingress_default_deny"]; in1 < in0+3 {
			t.Errorf("node2 ingress_default_deny %d -> %d, want +3", in0, in1)
		}
		if out1 := denied(t, name, "node1")["egress_default_deny"]; out1 < out0+3 {
			t.Errorf("node1 egress_default_deny %d -> %d, want +3", out0, out1)
		}
	})
}

// checkEstablishedFlows: a TCP connection from w3 (node2) to w1 (node1)
// established with no policy survives a policy that allows it and is cut
// by one that denies it, as Calico keeps established connections unless
// the new policy denies them. apply is runPolicyMatrix's.
func checkEstablishedFlows(t *testing.T, name string, apply applyFunc) {
	t.Helper()
	ns := func(w string) string { return topology.LabNamespacePrefix(name) + w }
	var l net.Listener
	if err := netns.Do(ns("w1"), func() error {
		var err error
		l, err = net.Listen("tcp4", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	apply("")
	var c net.Conn
	if err := netns.Do(ns("w3"), func() error {
		var err error
		c, err = net.DialTimeout("tcp4", "10.244.10.1:8080", 3*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(msg string) bool {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return false
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		return err == nil && string(buf[:n]) == msg
	}
	if !echo("before") {
		t.Fatal("no echo without policy")
	}
	apply(`
  - kind: NetworkPolicy
    metadata: {name: web-from-db}
    spec:
      selector: app == 'web'
      ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'db'}, destination: {ports: [8080]}}]
`)
	if !echo("allowed") {
		t.Fatal("the established connection was cut by a policy that allows it")
	}
	apply(`
  - kind: NetworkPolicy
    metadata: {name: web-from-db}
    spec:
      selector: app == 'web'
      ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'client'}, destination: {ports: [8080]}}]
`)
	if echo("denied") {
		t.Fatal("the established connection still works under a policy that denies it")
	}
}

// The same matrix and established-flow checks on kernel-mode nodes, where
// the policies are nftables rules in each node's namespace (table ip
// vrouter); nobody else's table is touched.
func TestPolicyMatrixKernel(t *testing.T) {
	t.Parallel()
	netnstest.RequireCommand(t, "nft", "nftables")
	name, apply := runPolicyMatrix(t, "polmk", topology.DataplaneKernel)
	node2 := topology.LabNamespacePrefix(name) + "node2"
	nft := func(args ...string) string {
		out, err := exec.Command("ip", append([]string{"netns", "exec", node2, "nft"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("nft %s in %s: %v\n%s", strings.Join(args, " "), node2, err, out)
		}
		return string(out)
	}
	// A table of somebody else's in node2, which applying must not touch.
	nft("add table inet theirs; add chain inet theirs c { type filter hook forward priority 10; }")
	t.Run("established flows", func(t *testing.T) { checkEstablishedFlows(t, name, apply) })
	apply(`
  - kind: NetworkPolicy
    metadata: {name: db-closed}
    spec: {selector: app == 'db'}
`)
	// w3 (app: db) is node2's: its ingress chain drops what no rule allows.
	w3 := config.InterfaceName(name, "w3")
	table := nft("list", "table", "ip", "vrouter")
	for _, want := range []string{
		`oifname "` + w3 + `" jump cali-tw-` + w3,
		"chain cali-tw-" + w3 + " {",
		`drop comment "default deny"`,
	} {
		if !strings.Contains(table, want) {
			t.Errorf("node2's table ip vrouter lacks %q:\n%s", want, table)
		}
	}
	if out := nft("list", "tables"); !strings.Contains(out, "table inet theirs") {
		t.Errorf("somebody else's table is gone:\n%s", out)
	}
}

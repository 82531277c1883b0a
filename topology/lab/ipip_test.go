package lab_test

import (
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// deployExample deploys examples/FILE under a name unique to this test,
// with edit applied to the file's text, and returns the lab's name.
func deployExample(t *testing.T, file, prefix string, edit func(string) string) string {
	t.Helper()
	data, err := os.ReadFile("../../examples/" + file)
	if err != nil {
		t.Fatal(err)
	}
	name := labName(t, prefix)
	text := regexp.MustCompile(`(?m)^name: .*$`).ReplaceAllString(string(data), "name: "+name)
	if edit != nil {
		text = edit(text)
	}
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", path)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", path)
	return name
}

// capturePing captures network lan of lab while from pings to, and returns
// tshark's fields (ip.src, ip.dst, ip.proto, comma-joined for IP in IP) of
// every packet between the two.
func capturePing(t *testing.T, lab, from, to string) []string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "lan.pcapng")
	// Ready, the capture misses nothing sent afterwards.
	wait := startCapture(t, io.Discard, "lan", "--lab", lab, "--duration", "5s", "-w", file)
	if code := pingIn(t, lab, from, to); code != 0 {
		t.Errorf("ping %s -> %s failed", from, to)
	}
	if stderr, err := wait(); err != nil {
		t.Fatalf("capture: %v\n%s", err, stderr)
	}
	out, err := exec.Command("tshark", "-r", file, "-Y", "icmp", "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// In Always mode every route to another node's block goes through tunl0,
// pod-to-pod packets are IP in IP between the node addresses on the wire,
// each node has a tunl0 address from its own block, and workloads get
// Calico's MTU (1480).
func TestIPIPAlways(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "tshark", "tshark")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-ipip.yaml", "ipip", nil)
	lab := []string{"--lab", name}

	routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
	for _, want := range []string{
		"10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink\n",
		"10.244.135.0/26 via 192.168.50.12 dev tunl0 proto bird onlink\n",
		"blackhole 10.244.166.128/26 proto bird\n",
		"192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10\n",
	} {
		if !strings.Contains(routes, want) {
			t.Errorf("node1's routes lack %q:\n%s", want, routes)
		}
	}
	if strings.Contains(routes, "via 192.168.50.11 dev ens33") {
		t.Errorf("a block is routed without the tunnel:\n%s", routes)
	}

	// tunl0 addresses: one per node, from a block of the node's own.
	var insp struct {
		Nodes []struct{ Name, Kind, Interface, Address string }
	}
	if err := json.Unmarshal([]byte(mustVR(t, append([]string{"inspect", "-o", "json"}, lab...)...)), &insp); err != nil {
		t.Fatal(err)
	}
	tunnels := map[string]string{}
	for _, r := range insp.Nodes {
		if r.Kind == "tunnel" && r.Interface == "tunl0" {
			tunnels[r.Name] = r.Address
		}
	}
	if len(tunnels) != 3 {
		t.Fatalf("tunl0 rows in inspect: %v", tunnels)
	}
	blocks := mustVR(t, append([]string{"get", "blocks"}, lab...)...)
	for node, a := range tunnels {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			t.Fatalf("%s tunl0 address %q", node, a)
		}
		found := false
		for _, m := range regexp.MustCompile(`(?m)^(\S+/26) +host:(\S+) `).FindAllStringSubmatch(blocks, -1) {
			if netip.MustParsePrefix(m[1]).Contains(addr) {
				found = m[2] == node
			}
		}
		if !found {
			t.Errorf("%s's tunl0 address %s is not in a block of its own:\n%s", node, addr, blocks)
		}
	}
	// node1 reaches node2's tunl0 address through the tunnel.
	if _, code := vr(t, append(append([]string{"exec"}, lab...), "node1", "--", "ping", "-c", "1", "-W", "2", tunnels["node2"])...); code != 0 {
		t.Errorf("node1 cannot ping node2's tunl0 address %s", tunnels["node2"])
	}

	// On the wire: IP in IP, outer node addresses, inner pod addresses.
	fields := capturePing(t, name, "web-1", "10.244.135.1")
	want := map[string]bool{
		"192.168.50.10,10.244.166.128 192.168.50.12,10.244.135.1 4,1": false,
		"192.168.50.12,10.244.135.1 192.168.50.10,10.244.166.128 4,1": false,
	}
	for i := 0; i+2 < len(fields); i += 3 {
		line := strings.Join(fields[i:i+3], " ")
		if _, ok := want[line]; ok {
			want[line] = true
		} else if !strings.Contains(line, "4,1") {
			t.Errorf("ICMP on the wire outside the tunnel: %s", line)
		}
	}
	for line, seen := range want {
		if !seen {
			t.Errorf("capture lacks %q; got %v", line, fields)
		}
	}

	// Calico's workload MTU for IPIP: 1480, so a 1500-byte DF ping fails
	// in the workload itself.
	link, _ := vr(t, append(append([]string{"exec"}, lab...), "web-1", "--", "ip", "link", "show", "eth0")...)
	if !strings.Contains(link, " mtu 1480 ") {
		t.Errorf("web-1 eth0:\n%s", link)
	}
	out, code := vr(t, append(append([]string{"exec"}, lab...), "web-1", "--", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "10.244.135.1")...)
	if code == 0 || !strings.Contains(out, "mtu=1480") {
		t.Errorf("DF ping of 1500 bytes from a 1480-MTU workload: exit %d\n%s", code, out)
	}
}

// With a 1500-byte workload MTU, a DF packet too big for tunl0 gets ICMP
// fragmentation needed (mtu = 1480) from the node, so the workloads' own
// path-MTU discovery makes a bulk TCP transfer work.
func TestIPIPPathMTU(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "iperf3", "iperf3")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-ipip.yaml", "pmtu", func(s string) string {
		return strings.Replace(s, "ipipMode: Always}", "ipipMode: Always, mtu: 1500}", 1)
	})
	lab := []string{"--lab", name}
	ex := func(ws string, args ...string) (string, int) {
		return vr(t, append(append(append([]string{"exec"}, lab...), ws, "--"), args...)...)
	}
	if link, _ := ex("web-1", "ip", "link", "show", "eth0"); !strings.Contains(link, " mtu 1500 ") {
		t.Fatalf("web-1 eth0 with pool mtu 1500:\n%s", link)
	}
	out, code := ex("web-1", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "10.244.135.1")
	if code == 0 || !strings.Contains(out, "From 192.168.50.10 icmp_seq=1 Frag needed and DF set (mtu = 1480)") {
		t.Errorf("DF ping of 1500 bytes into tunl0: exit %d\n%s", code, out)
	}
	if _, code := ex("web-1", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1452", "10.244.135.1"); code != 0 {
		t.Error("a DF ping that fits tunl0 (1480 bytes) failed")
	}
	// A bulk transfer (2 s), which needs PMTU discovery to pass.
	if got, code, res := iperfBytes(t, name, "web-3", "web-1", "10.244.135.1"); code != 0 || got < 1<<20 {
		t.Errorf("iperf3 through IPIP with 1500-byte workloads: exit %d, %v bytes\n%.400s", code, got, res)
	}
}

// iperfBytes runs a 2-second iperf3 TCP transfer from workload client to
// workload server (at addr) in lab and returns the bytes received,
// iperf3's exit code and its output.
func iperfBytes(t *testing.T, lab, server, client, addr string) (float64, int, string) {
	t.Helper()
	startIperfServer(t, lab, server)
	res, code := vr(t, "exec", "--lab", lab, client, "--", "iperf3", "-c", addr, "-t", "2", "-J")
	var r struct {
		End struct {
			SumReceived struct {
				Bytes float64 `json:"bytes"`
			} `json:"sum_received"`
		}
	}
	if code == 0 && json.Unmarshal([]byte(res), &r) != nil {
		code = -1
	}
	return r.End.SumReceived.Bytes, code, res
}

// startIperfServer starts a one-off iperf3 server (it serves one client,
// then exits) in workload ws of lab and waits until it listens.
func startIperfServer(t *testing.T, lab, ws string) {
	t.Helper()
	mustVR(t, "exec", "--lab", lab, ws, "--", "iperf3", "-s", "-D", "-1")
	eventually(t, 10*time.Second, "iperf3 server listening in "+ws, func() (bool, string) {
		out, _ := vr(t, "exec", "--lab", lab, ws, "--", "ss", "-Hltn", "sport = :5201")
		return strings.Contains(out, ":5201"), out
	})
}

// IPIP from a source that is not a node is dropped and counted: a
// workload crafts an IP-in-IP packet to node3 with a raw socket.
func TestIPIPRogueSourceDropped(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "python3", "python3")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-ipip.yaml", "rogue", nil)
	sock := lab.ControlSocket(filepath.Join(topology.StateRoot, name), "node3")
	stats := func() map[string]uint64 {
		s, err := control.NewClient(sock).Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := stats()
	// An ICMP echo from web-1 to web-3, wrapped by web-1 (not a node) in
	// an outer header to node3; the kernel writes the outer header.
	const script = `
import socket, struct
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
icmp = struct.pack('!BBHHH', 8, 0, 0, 1, 1) + b'rogue!!!'
icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]
hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20+len(icmp), 1, 0, 64, 1, 0,
    socket.inet_aton('10.244.166.128'), socket.inet_aton('10.244.135.1'))
hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
for _ in range(3):
    s.sendto(hdr + icmp, ('192.168.50.12', 0))
`
	if out, code := vr(t, "exec", "--lab", name, "web-1", "--", "python3", "-c", script); code != 0 {
		t.Fatalf("python3: exit %d\n%s", code, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := stats()
		if after["ipip_decap_unknown_source"]-before["ipip_decap_unknown_source"] == 3 {
			if a, b := after["ipip_decap_accepted"], before["ipip_decap_accepted"]; a != b {
				// keepalives never use the tunnel: nothing else was accepted
				t.Errorf("accepted went from %d to %d", b, a)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rogue IPIP not counted: before %v, after %v", before, after)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// In Never mode there is no IP in IP on the wire at all.
func TestIPIPNeverIsPlain(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "tshark", "tshark")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-ipip.yaml", "never", func(s string) string {
		return strings.Replace(s, "ipipMode: Always", "ipipMode: Never", 1)
	})
	if r := mustVR(t, "route", "node1", "--lab", name); strings.Contains(r, "tunl0") ||
		!strings.Contains(r, "10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird\n") {
		t.Errorf("Never mode routes:\n%s", r)
	}
	if insp := mustVR(t, "inspect", "--lab", name); strings.Contains(insp, "tunl0") {
		t.Errorf("tunl0 in Never mode:\n%s", insp)
	}
	fields := capturePing(t, name, "web-1", "10.244.135.1")
	joined := strings.Join(fields, " ")
	if !strings.Contains(joined, "10.244.166.128 10.244.135.1 1") || strings.Contains(joined, "4,1") {
		t.Errorf("Never mode on the wire: %v", fields)
	}
}

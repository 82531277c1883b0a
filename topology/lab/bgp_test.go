package lab_test

import (
	"encoding/json"
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

// eventuallyVR runs vrouter args until check accepts its output or the
// deadline passes, and returns the last output.
func eventuallyVR(t *testing.T, d time.Duration, check func(out string) bool, args ...string) string {
	t.Helper()
	var out string
	eventually(t, d, "vrouter "+strings.Join(args, " "), func() (bool, string) {
		out, _ = vr(t, args...)
		return check(out), out
	})
	return out
}

// peerRow matches a node status row of the peer at addr in state info.
func peerRow(addr, typ, info string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(addr) + ` +\| ` + regexp.QuoteMeta(typ) + ` +\| [a-z]+ +\| [0-9:]+ +\| ` + info)
}

// Without the mesh, sessions come from BGPPeer resources: TCP MD5 with the
// same password on both ends comes up, with different passwords it does
// not and node status says why; a node with its own AS peers over eBGP and
// routes straight to the node owning a block (third-party next hop on the
// shared network, as BIRD does).
func TestBGPPeersPasswordsAndEBGP(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := labName(t, "md5")
	data := fmt.Sprintf(`name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16}
bgp: {asNumber: 64512, nodeToNodeMesh: false}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  n1: {network: lan, address: 192.168.50.10}
  n2: {network: lan, address: 192.168.50.11}
  n3: {network: lan, address: 192.168.50.12, asNumber: 65003}
  n4: {network: lan, address: 192.168.50.13}
bgpPeers:
  - {name: n1-n2, node: n1, peerIP: 192.168.50.11, asNumber: 64512, password: s3cret}
  - {name: n2-n1, node: n2, peerIP: 192.168.50.10, asNumber: 64512, password: s3cret}
  - {name: n1-n3, node: n1, peerIP: 192.168.50.12, asNumber: 65003}
  - {name: n3-n1, node: n3, peerIP: 192.168.50.10, asNumber: 64512}
  - {name: n1-n4, node: n1, peerIP: 192.168.50.13, asNumber: 64512, password: right}
  - {name: n4-n1, node: n4, peerIP: 192.168.50.10, asNumber: 64512, password: wrong}
workloads:
  - {name: a, node: n1, address: 10.244.1.1}
  - {name: b, node: n2, address: 10.244.2.1}
  - {name: c, node: n3, address: 10.244.3.1}
  - {name: d, node: n4, address: 10.244.4.1}
`, name)
	file := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	// The n1-n4 session never comes up: deploy must not wait for it.
	mustVR(t, "deploy", "-t", file, "--no-wait")
	lab := []string{"--lab", name}

	status := eventuallyVR(t, 30*time.Second, func(out string) bool {
		return peerRow("192.168.50.11", "node specific", "Established").MatchString(out) &&
			peerRow("192.168.50.12", "node specific", "Established").MatchString(out) &&
			strings.Contains(out, "TCP MD5")
	}, append([]string{"node", "status", "n1"}, lab...)...)
	if peerRow("192.168.50.13", "node specific", "Established").MatchString(status) {
		t.Errorf("n1-n4 with different passwords came up:\n%s", status)
	}
	// The reason is the kernel's: segments with a bad signature dropped.
	if !regexp.MustCompile(`(?s)192\.168\.50\.13 .*(Active|Connect|Idle).*TCP MD5: \d+\s.*bad signature`).MatchString(status) {
		t.Errorf("n1's status does not say why n4 is down:\n%s", status)
	}
	// n2 (iBGP with n1) routes n3's block via n3 itself; n3 (eBGP, AS
	// 65003) routes n2's block via n2, not via n1 that told it.
	for node, want := range map[string]string{
		"n2": "10.244.3.0/26 via 192.168.50.12 dev ens33 proto bird\n",
		"n3": "10.244.2.0/26 via 192.168.50.11 dev ens33 proto bird\n",
		"n1": "10.244.3.0/26 via 192.168.50.12 dev ens33 proto bird\n",
	} {
		eventuallyVR(t, 30*time.Second, func(out string) bool { return strings.Contains(out, want) },
			append([]string{"route", node}, lab...)...)
	}
	// n4 has no session, so no routes but its own.
	if out := mustVR(t, append([]string{"route", "n4"}, lab...)...); strings.Contains(out, "via") {
		t.Errorf("n4 learned routes without a session:\n%s", out)
	}
	for _, p := range []struct{ from, to string }{{"a", "10.244.3.1"}, {"b", "10.244.3.1"}, {"c", "10.244.2.1"}} {
		if code := pingIn(t, name, p.from, p.to); code != 0 {
			t.Errorf("ping %s -> %s failed", p.from, p.to)
		}
	}
	if code := pingIn(t, name, "d", "10.244.1.1"); code == 0 {
		t.Error("d reached a, though n4 has no BGP session")
	}

	nodes := mustVR(t, append([]string{"get", "nodes", "-o", "wide"}, lab...)...)
	for _, re := range []string{`(?m)^n1 +\(64512\) +192\.168\.50\.10 `, `(?m)^n3 +65003 +192\.168\.50\.12 `} {
		if !regexp.MustCompile(re).MatchString(nodes) {
			t.Errorf("get nodes -o wide does not match %s:\n%s", re, nodes)
		}
	}
	peers := mustVR(t, append([]string{"get", "bgppeers", "-o", "wide"}, lab...)...)
	if !regexp.MustCompile(`(?m)^n1-n4 +192\.168\.50\.13 +n1 +64512 +set$`).MatchString(peers) ||
		!regexp.MustCompile(`(?m)^n3-n1 +192\.168\.50\.10 +n3 +64512 +-$`).MatchString(peers) {
		t.Errorf("get bgppeers -o wide:\n%s", peers)
	}
	if strings.Contains(peers, "s3cret") || strings.Contains(peers, "wrong") {
		t.Errorf("get bgppeers prints passwords:\n%s", peers)
	}
	var items []map[string]any
	if err := json.Unmarshal([]byte(mustVR(t, append([]string{"get", "bgppeers", "-o", "json"}, lab...)...)), &items); err != nil || len(items) != 6 {
		t.Fatalf("get bgppeers -o json: %v, %d items", err, len(items))
	}
	if items[0]["name"] != "n1-n2" || items[0]["password"] != true || items[0]["peerIP"] != "192.168.50.11" {
		t.Errorf("first BGP peer in json: %v", items[0])
	}
}

// The route reflector example: no mesh, every node peers with node1 only,
// node1 reflects every block with its next hop unchanged.
func TestRouteReflectorExample(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	data, err := os.ReadFile("../../examples/calico-rr.yaml")
	if err != nil {
		t.Fatal(err)
	}
	name := labName(t, "rr")
	data = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(data, []byte("name: "+name))
	file := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file) // waits for every session and route
	lab := []string{"--lab", name}

	rr := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...)
	for _, a := range []string{"192.168.50.11", "192.168.50.12", "192.168.50.13"} {
		if !peerRow(a, "node specific", "Established").MatchString(rr) {
			t.Errorf("route reflector has no Established session with %s:\n%s", a, rr)
		}
	}
	client := mustVR(t, append([]string{"node", "status", "node2"}, lab...)...)
	if !peerRow("192.168.50.10", "node specific", "Established").MatchString(client) || strings.Count(client, "| 192.168.50.") != 1 {
		t.Errorf("node2 should have exactly one session, with the route reflector:\n%s", client)
	}

	// Every block is routed via the node that owns it, not the reflector.
	var inspect struct {
		Nodes []struct{ Name, Kind, Node, Address string } // nodes and workloads
	}
	if err := json.Unmarshal([]byte(mustVR(t, append([]string{"inspect", "-o", "json"}, lab...)...)), &inspect); err != nil {
		t.Fatal(err)
	}
	owner := map[string]string{"node1": "192.168.50.10", "node2": "192.168.50.11", "node3": "192.168.50.12", "node4": "192.168.50.13"}
	routes := mustVR(t, append([]string{"route", "node2"}, lab...)...)
	checked := 0
	for _, w := range inspect.Nodes {
		if w.Kind != "workload" || w.Node == "node2" {
			continue
		}
		checked++
		block := regexp.MustCompile(`(?m)^(10\.244\.\d+\.\d+/26) via (\S+) dev ens33 proto bird$`)
		found := false
		for _, m := range block.FindAllStringSubmatch(routes, -1) {
			if prefixContains(t, m[1], w.Address) {
				found = true
				if m[2] != owner[w.Node] {
					t.Errorf("node2 routes %s (on %s) via %s, want %s", w.Address, w.Node, m[2], owner[w.Node])
				}
			}
		}
		if !found {
			t.Errorf("node2 has no block route for %s:\n%s", w.Address, routes)
		}
		if code := pingIn(t, name, "web-2", w.Address); code != 0 {
			t.Errorf("ping web-2 -> %s (%s) failed", w.Name, w.Address)
		}
	}
	if checked != 3 {
		t.Errorf("checked %d workloads on other nodes, want 3 (web-1, web-3, web-4)", checked)
	}
	peers := mustVR(t, append([]string{"get", "bgppeers"}, lab...)...)
	if !regexp.MustCompile(`(?m)^peer-with-rr +route-reflector == 'true' +all\(\) +\(node's own\)$`).MatchString(peers) {
		t.Errorf("get bgppeers:\n%s", peers)
	}
}

func prefixContains(t *testing.T, prefix, addr string) bool {
	t.Helper()
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		t.Fatalf("workload address %q: %v", addr, err)
	}
	return p.Contains(a)
}

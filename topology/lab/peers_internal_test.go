package lab

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// peerList renders a node's configured peers compactly:
// node:type:asn[:rr=cluster][:pw].
func peerList(ps []config.BGPPeer) string {
	var out []string
	for _, p := range ps {
		s := fmt.Sprintf("%s:%s:%d", p.Node, p.Type, p.ASN)
		if p.Node == "" {
			s = fmt.Sprintf("%s:%s:%d", p.Address, p.Type, p.ASN)
		}
		if p.RouteReflectorClient {
			s += ":rr=" + p.ClusterID.String()
		}
		if p.Password != "" {
			s += ":pw"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func configs(t *testing.T, l *topology.Lab) map[string]*config.Node {
	t.Helper()
	out := map[string]*config.Node{}
	for _, n := range l.Nodes {
		c, err := nodeConfig(l, "/nonexistent", n)
		if err != nil {
			t.Fatal(err)
		}
		out[n.Name] = c
	}
	return out
}

func TestNodeConfigRouteReflector(t *testing.T) {
	l, err := topology.Load("../../examples/calico-rr.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs := configs(t, l)
	want := map[string]string{
		"node1": "node2:node specific:64512:rr=244.0.0.1 node3:node specific:64512:rr=244.0.0.1 node4:node specific:64512:rr=244.0.0.1",
		"node2": "node1:node specific:64512",
		"node3": "node1:node specific:64512",
		"node4": "node1:node specific:64512",
	}
	for n, w := range want {
		if got := peerList(cs[n].BGP.Peers); got != w {
			t.Errorf("%s peers = %s\nwant %s", n, got, w)
		}
		others := []string{}
		for _, o := range []string{"node1", "node2", "node3", "node4"} {
			if o != n {
				others = append(others, o)
			}
		}
		if got := strings.Join(cs[n].BGP.RouteNodes, ","); got != strings.Join(others, ",") {
			t.Errorf("%s route nodes = %s", n, got)
		}
	}
}

func TestNodeConfigPeers(t *testing.T) {
	l, err := topology.Parse("lab.yaml", []byte(`name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
bgp: {asNumber: 64512, nodeToNodeMesh: true}
networks: [{name: lan, cidr: 192.168.50.0/24}]
nodes:
  rr1: {network: lan, address: 192.168.50.1, labels: {rr: 'y'}, routeReflectorClusterID: 1.1.1.1}
  rr2: {network: lan, address: 192.168.50.2, labels: {rr: 'y'}, routeReflectorClusterID: 1.1.1.1}
  a: {network: lan, address: 192.168.50.10, asNumber: 65001}
  b: {network: lan, address: 192.168.50.11}
bgpPeers:
  - {name: tor, peerIP: 192.168.50.254, asNumber: 65000, password: pw}
  - {name: b-only, node: b, peerIP: 192.168.50.253, asNumber: 65000}
`))
	if err != nil {
		t.Fatal(err)
	}
	cs := configs(t, l)
	want := map[string]string{
		// Mesh first, each peer in its own AS; an RR makes iBGP non-RR
		// peers its clients, never an eBGP peer or another RR.
		"rr1": "rr2:node-to-node mesh:64512 a:node-to-node mesh:65001 b:node-to-node mesh:64512:rr=1.1.1.1 192.168.50.254:global:65000:pw",
		"a":   "rr1:node-to-node mesh:64512 rr2:node-to-node mesh:64512 b:node-to-node mesh:64512 192.168.50.254:global:65000:pw",
		"b":   "rr1:node-to-node mesh:64512 rr2:node-to-node mesh:64512 a:node-to-node mesh:65001 192.168.50.254:global:65000:pw 192.168.50.253:node specific:65000",
	}
	for n, w := range want {
		if got := peerList(cs[n].BGP.Peers); got != w {
			t.Errorf("%s peers = %s\nwant %s", n, got, w)
		}
	}
	if cs["a"].BGP.ASN != 65001 || cs["b"].BGP.ASN != 64512 {
		t.Errorf("speaker ASNs: a %d b %d", cs["a"].BGP.ASN, cs["b"].BGP.ASN)
	}
	if cs["rr1"].BGP.Peers[2].ClusterID != netip.MustParseAddr("1.1.1.1") {
		t.Error("cluster ID")
	}
}

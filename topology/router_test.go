package topology

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// routersBase is a valid lab the router tests append to; the routers
// mapping starts on line 8.
const routersBase = `name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
bgp: {asNumber: 64512}
networks: [{name: lan, cidr: 192.168.50.0/24}, {name: wan, cidr: 172.16.0.0/24}]
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
routers:
`

func TestRoutersValid(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ext2.conf")
	if err := os.WriteFile(conf, []byte("router id 192.168.50.101;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lab, err := Parse(filepath.Join(dir, "lab.yaml"), []byte(routersBase+`  ext1: {network: lan, address: 192.168.50.100, daemon: bird, announce: [10.99.0.0/24, 10.98.0.1/32], routeReflectorClusterID: 244.0.0.2, password: s3cret, holdTime: 30s, impairments: {delay: 20ms, loss: 1%}}
  ext2: {network: lan, address: 192.168.50.101, asNumber: 64600, daemon: frr, config: ext2.conf}
  ext3: {network: lan, address: 192.168.50.102, daemon: bird2, binary: /opt/b/bird, interface: eth1, asNumber: 64601}
bgpPeers:
  - {name: ext1, peerIP: 192.168.50.100}
  - {name: ext3, node: node1, peerIP: 192.168.50.102}
  - {name: ext2, node: node2, peerIP: 192.168.50.101, asNumber: 64600}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Router{
		{Name: "ext1", Network: "lan", Address: netip.MustParseAddr("192.168.50.100"), Interface: "ens33", ASNumber: 64512, Daemon: DaemonBIRD,
			Peers: []string{"node1", "node2"}, Announce: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24"), netip.MustParsePrefix("10.98.0.1/32")},
			RouteReflectorClusterID: netip.MustParseAddr("244.0.0.2"), Password: "s3cret", HoldTime: 30 * time.Second, Impairment: config.Impairment{Delay: 20 * time.Millisecond, Loss: 1}},
		{Name: "ext2", Network: "lan", Address: netip.MustParseAddr("192.168.50.101"), Interface: "ens33", ASNumber: 64600, Daemon: DaemonFRR,
			Config: conf, Peers: []string{"node2"}},
		{Name: "ext3", Network: "lan", Address: netip.MustParseAddr("192.168.50.102"), Interface: "eth1", ASNumber: 64601, Daemon: DaemonBIRD2,
			Binary: "/opt/b/bird", Peers: []string{"node1"}},
	}
	if !reflect.DeepEqual(lab.Routers, want) {
		t.Errorf("Routers =\n%+v\nwant\n%+v", lab.Routers, want)
	}
	// A bgpPeers entry toward a router takes the router's AS.
	if lab.BGPPeers[0].ASNumber != 64512 || lab.BGPPeers[1].ASNumber != 64601 {
		t.Errorf("BGP peer ASes %d, %d; want the routers' 64512, 64601", lab.BGPPeers[0].ASNumber, lab.BGPPeers[1].ASNumber)
	}
}

func TestRoutersRules(t *testing.T) {
	for _, tc := range []struct {
		rule, routers string
		want          []want
	}{
		{"required fields", "  ext1: {interface: eth0}\nbgpPeers: [{name: a, peerIP: 192.168.50.100, asNumber: 1}]", []want{
			{9, "routers.ext1.network", "is required (known: lan, wan)"},
			{9, "routers.ext1.address", "is required"},
			{9, "routers.ext1.daemon", "is required (bird, bird2, frr or gobgpd)"}}},
		{"daemon", "  ext1: {network: lan, address: 192.168.50.100, daemon: gobgp}\n  ext2: {network: lan, address: 192.168.50.101, daemon: quagga}", []want{
			{9, "routers.ext1.daemon", `"gobgp" is not a supported daemon (valid: bird, bird2, frr, gobgpd); did you mean gobgpd?`},
			{10, "routers.ext2.daemon", "did you mean frr?"}}},
		{"address", "  ext1: {network: lan, address: 192.168.50.10, daemon: bird}\n  ext2: {network: wan, address: 192.168.50.101, daemon: bird}\n  ext3: {network: lan, address: 192.168.50.255, daemon: bird}", []want{
			{9, "routers.ext1.address", "192.168.50.10 is already the address of node node1"},
			{10, "routers.ext2.address", "192.168.50.101 is not in network wan (172.16.0.0/24)"},
			{11, "routers.ext3.address", "is the network or broadcast address of lan"}}},
		{"names shared with nodes", "  node1: {network: lan, address: 192.168.50.100, daemon: bird}\n  Ext: {network: lan, address: 192.168.50.101, daemon: bird}", []want{
			{9, "routers.node1", "node1 is already the name of a node"},
			{10, "routers.Ext", `"Ext" is not a valid router name`}}},
		{"unknown network and field", "  ext1: {network: dmz, address: 192.168.50.100, daemon: bird, asn: 1}", []want{
			{9, "routers.ext1.asn", "unknown field (known: network, address, interface, asNumber, daemon, binary, config, announce, routeReflectorClusterID, password, holdTime, impairments)"},
			{9, "routers.ext1.network", "unknown network dmz (known: lan, wan)"}}},
		{"some node peers with a generated config", "  ext1: {network: lan, address: 192.168.50.100, daemon: bird}\n  ext2: {network: lan, address: 192.168.50.101, daemon: bird, peers: [node1]}", []want{
			{9, "routers.ext1", "no node peers with router ext1: add a bgpPeers entry with peerIP: 192.168.50.100"},
			{10, "routers.ext2.peers", "unknown field"},
			{10, "routers.ext2", "no node peers with router ext2"}}},
		{"announce", "  ext1:\n    network: lan\n    address: 192.168.50.100\n    daemon: bird\n    announce: [10.244.1.0/24, 192.168.50.0/25, 10.99.0.1/24, 127.0.0.0/8, 0.0.0.0/0, 10.98.0.0/16, 10.98.1.0/24]", []want{
			{13, "routers.ext1.announce[2]", "has host bits set; did you mean 10.99.0.0/24?"},
			{13, "routers.ext1.announce[0]", "10.244.1.0/24 overlaps IP pool p"},
			{13, "routers.ext1.announce[1]", "192.168.50.0/25 overlaps network lan"},
			{13, "routers.ext1.announce[3]", "overlaps the loopback range"},
			{13, "routers.ext1.announce[4]", "a default route cannot be put behind the router"},
			{13, "routers.ext1.announce[6]", "10.98.1.0/24 overlaps 10.98.0.0/16, announced by router ext1"}}},
		{"config must exist", "  ext1: {network: lan, address: 192.168.50.100, daemon: bird, config: /nonexistent/bird.conf}", []want{
			{9, "routers.ext1.config", "/nonexistent/bird.conf: no such file or directory"}}},
		{"peer AS must be the router's", "  ext1: {network: lan, address: 192.168.50.100, daemon: bird, asNumber: 64600}\nbgpPeers: [{name: a, peerIP: 192.168.50.100, asNumber: 64512}]", []want{
			{10, "bgpPeers[0].asNumber", "64512 is not the AS of router ext1 (64600)"}}},
		{"peers share the router's network", "  ext1: {network: wan, address: 172.16.0.100, daemon: bird}\nbgpPeers: [{name: a, node: node1, peerIP: 172.16.0.100}]", []want{
			{10, "bgpPeers[0].peerIP", "router ext1 is on network wan but node node1 is on lan"}}},
		{"generated configuration fields", "  ext1: {network: lan, address: 192.168.50.100, daemon: bird, routeReflectorClusterID: 244.0.0, holdTime: 2s, impairments: {loss: 200%}}\n  ext2:\n    network: lan\n    address: 192.168.50.101\n    daemon: bird\n    config: /etc/hostname\n    password: x\nbgpPeers: [{name: a, peerIP: 192.168.50.100}]", []want{
			{9, "routers.ext1.routeReflectorClusterID", `"244.0.0" is not an IPv4 address`},
			{9, "routers.ext1.holdTime", "2s is less than 3s"},
			{9, "routers.ext1.impairments.loss", ""},
			{15, "routers.ext2.password", "shapes the configuration vrouter generates, but config: names your own (line 14)"}}},
		{"routers is a mapping", "  - {name: ext1}", []want{
			{9, "routers", "must be a mapping of router name to router"}}},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			_, err := Parse("lab.yaml", []byte(routersBase+tc.routers+"\n"))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error %v, want *ValidationError", err)
			}
			checkProblems(t, ve, tc.want)
		})
	}
}

package topology

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// peersBase is a valid lab the BGP peer tests append to; its nodes are on
// lines 6-9.
const peersBase = `name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
bgp: {asNumber: 64512, nodeToNodeMesh: false}
networks: [{name: lan, cidr: 192.168.50.0/24}]
nodes:
  node1: {network: lan, address: 192.168.50.10, labels: {route-reflector: 'true'}, routeReflectorClusterID: 244.0.0.1}
  node2: {network: lan, address: 192.168.50.11, labels: {rack: a}}
  node3: {network: lan, address: 192.168.50.12, labels: {rack: b}, asNumber: 64513}
  node4: {network: lan, address: 192.168.50.13}
`

func TestBGPPeersValid(t *testing.T) {
	lab, err := Parse("lab.yaml", []byte(peersBase+`bgpPeers:
  - {name: peer-with-rr, nodeSelector: all(), peerSelector: route-reflector == 'true'}
  - {name: tor, peerIP: 192.168.50.1, asNumber: 65000, password: s3cret}
  - {name: n2-n3, node: node2, peerIP: 192.168.50.12}
  - {name: racks, nodeSelector: "has(rack) && rack != 'b'", peerSelector: '!has(rack)'}
`))
	if err != nil {
		t.Fatal(err)
	}
	n1, _ := lab.Node("node1")
	n3, _ := lab.Node("node3")
	if !n1.RouteReflector() || n1.RouteReflectorClusterID != netip.MustParseAddr("244.0.0.1") || n1.Labels["route-reflector"] != "true" {
		t.Errorf("node1 = %+v", n1)
	}
	if n1.ASNumber != 64512 || n3.ASNumber != 64513 || n3.RouteReflector() {
		t.Errorf("AS numbers: node1 %d node3 %d", n1.ASNumber, n3.ASNumber)
	}
	want := []BGPPeer{
		{Name: "peer-with-rr", NodeSelector: "all()", PeerSelector: "route-reflector == 'true'"},
		{Name: "tor", PeerIP: netip.MustParseAddr("192.168.50.1"), ASNumber: 65000, Password: "s3cret"},
		{Name: "n2-n3", Node: "node2", PeerIP: netip.MustParseAddr("192.168.50.12"), ASNumber: 64513},
		{Name: "racks", NodeSelector: "has(rack) && rack != 'b'", PeerSelector: "!has(rack)"},
	}
	if len(lab.BGPPeers) != len(want) {
		t.Fatalf("BGPPeers = %+v", lab.BGPPeers)
	}
	for i := range want {
		if lab.BGPPeers[i] != want[i] {
			t.Errorf("BGPPeers[%d] = %+v, want %+v", i, lab.BGPPeers[i], want[i])
		}
	}
	if lab.BGPPeers[0].Global() || !lab.BGPPeers[1].Global() || lab.BGPPeers[2].Global() {
		t.Error("Global: only a peering without node and nodeSelector is global")
	}
	var got []string
	for _, n := range lab.Peers(lab.BGPPeers[3]) {
		got = append(got, n.Name)
	}
	if strings.Join(got, ",") != "node1,node4" {
		t.Errorf("peers of racks = %v", got)
	}
	got = nil
	for _, n := range lab.Nodes {
		if lab.BGPPeers[3].AppliesTo(n) {
			got = append(got, n.Name)
		}
	}
	if strings.Join(got, ",") != "node2" {
		t.Errorf("racks applies to %v", got)
	}
}

func TestBGPPeersRules(t *testing.T) {
	for _, tc := range []struct {
		rule, peers string
		want        []want
	}{
		{"peerIP or peerSelector", `  - {name: a}`, []want{
			{11, "bgpPeers[0]", "needs peerIP (an address) or peerSelector"}}},
		{"not both", `  - {name: a, peerIP: 192.168.50.1, asNumber: 1, peerSelector: all()}`, []want{
			{11, "bgpPeers[0].peerSelector", "peerIP and peerSelector exclude each other"}}},
		{"node and nodeSelector exclude each other", `  - {name: a, node: node1, nodeSelector: all(), peerSelector: all()}`, []want{
			{11, "bgpPeers[0].nodeSelector", "node and nodeSelector exclude each other"}}},
		{"name required, unique and valid", "  - {peerSelector: all()}\n  - {name: Bad_Name, peerSelector: all()}\n  - {name: a, peerSelector: all()}\n  - {name: a, peerSelector: all()}", []want{
			{11, "bgpPeers[0].name", "is required"},
			{12, "bgpPeers[1].name", `"Bad_Name" is not a valid BGP peer name`},
			{14, "bgpPeers[3].name", "BGP peer a is already defined on line 13"}}},
		{"unknown node", `  - {name: a, node: node9, peerSelector: all()}`, []want{
			{11, "bgpPeers[0].node", "unknown node node9 (known: node1, node2, node3, node4)"}}},
		{"selector syntax", "  - {name: a, peerSelector: \"rack = 'a'\"}\n  - {name: b, nodeSelector: 'has(rack', peerSelector: all()}\n  - {name: c, peerSelector: \"Bad Key == 'x'\"}", []want{
			{11, "bgpPeers[0].peerSelector", `cannot parse "rack = 'a'"`},
			{12, "bgpPeers[1].nodeSelector", `cannot parse "has(rack"`},
			{13, "bgpPeers[2].peerSelector", `cannot parse "Bad Key == 'x'"`}}},
		{"selectors select something", "  - {name: a, nodeSelector: \"rack == 'c'\", peerSelector: has(zone)}", []want{
			{11, "bgpPeers[0].nodeSelector", `"rack == 'c'" selects no node`},
			{11, "bgpPeers[0].peerSelector", `"has(zone)" selects no node`}}},
		{"peer to itself", "  - {name: a, node: node2, peerIP: 192.168.50.11}\n  - {name: b, peerIP: 192.168.50.12}", []want{
			{11, "bgpPeers[0].peerIP", "192.168.50.11 is the address of node node2: a node cannot peer with itself"},
			{12, "bgpPeers[1].peerIP", "192.168.50.12 is the address of node node3, one of the nodes"}}},
		{"bad AS", "  - {name: a, peerIP: 192.168.50.1, asNumber: 23456}\n  - {name: b, peerIP: 192.168.50.2, asNumber: 0}\n  - {name: c, peerIP: 192.168.50.3}\n  - {name: d, peerSelector: all(), asNumber: 65000}", []want{
			{11, "bgpPeers[0].asNumber", "23456 is AS_TRANS"},
			{12, "bgpPeers[1].asNumber", "0 is outside 1-4294967295"},
			{13, "bgpPeers[2].asNumber", "is required for a peer outside the lab (192.168.50.3 is no node's address)"},
			{14, "bgpPeers[3].asNumber", "a peerSelector peer's AS is each selected node's own"}}},
		{"peerIP is an IPv4 address", `  - {name: a, peerIP: 192.168.50.0/24, asNumber: 1}`, []want{
			{11, "bgpPeers[0].peerIP", "write the address without a prefix length"}}},
		{"password length", "  - {name: a, peerSelector: all(), password: " + strings.Repeat("x", 81) + "}\n  - {name: b, peerSelector: all(), password: ''}", []want{
			{11, "bgpPeers[0].password", "is 81 bytes long; TCP MD5 keys are at most 80"},
			{12, "bgpPeers[1].password", "must not be empty"}}},
		{"unknown field", `  - {name: a, peerSelector: all(), peerAS: 1}`, []want{
			{11, "bgpPeers[0].peerAS", "unknown field (known: name, peerIP, peerSelector, node, nodeSelector, asNumber, password)"}}},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			_, err := Parse("lab.yaml", []byte(peersBase+"bgpPeers:\n"+tc.peers+"\n"))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error %v, want *ValidationError", err)
			}
			checkProblems(t, ve, tc.want)
		})
	}
}

func TestNodeBGPFieldRules(t *testing.T) {
	const head = `name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks: [{name: lan, cidr: 192.168.50.0/24}]
nodes:
`
	for _, tc := range []struct {
		rule, node string
		want       want
	}{
		{"asNumber range", "{network: lan, address: 192.168.50.10, asNumber: 0}", want{5, "nodes.node1.asNumber", "0 is outside 1-4294967295"}},
		{"asNumber not AS_TRANS", "{network: lan, address: 192.168.50.10, asNumber: 23456}", want{5, "nodes.node1.asNumber", "23456 is AS_TRANS"}},
		{"cluster ID is an address", "{network: lan, address: 192.168.50.10, routeReflectorClusterID: 1}", want{5, "nodes.node1.routeReflectorClusterID", `"1" is not an IPv4 address`}},
		{"labels are a mapping", "{network: lan, address: 192.168.50.10, labels: [a]}", want{5, "nodes.node1.labels", "must be a mapping of label to value"}},
		{"label keys", "{network: lan, address: 192.168.50.10, labels: {'bad key': x}}", want{5, "nodes.node1.labels.bad key", `"bad key" is not a valid label key`}},
		{"label values", "{network: lan, address: 192.168.50.10, labels: {a: 'x y'}}", want{5, "nodes.node1.labels.a", `"x y" is not a valid label value`}},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			_, err := Parse("lab.yaml", []byte(head+"  node1: "+tc.node+"\n"))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error %v, want *ValidationError", err)
			}
			checkProblems(t, ve, []want{tc.want})
		})
	}
}

func TestSelector(t *testing.T) {
	labels := map[string]string{"route-reflector": "true", "rack": "a"}
	for _, tc := range []struct {
		sel  string
		want bool
	}{
		{"all()", true},
		{"route-reflector == 'true'", true},
		{`route-reflector == "true"`, true},
		{"route-reflector=='false'", false},
		{"has(rack)", true},
		{"!has(rack)", false},
		{"! has( zone )", true},
		{"rack != 'a'", false},
		{"zone != 'a'", true},
		{"has(rack) && rack == 'a' && !has(zone)", true},
		{"has(rack) && rack == 'b'", false},
		{"example.com/role == ''", false},
	} {
		s, err := ParseSelector(tc.sel)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tc.sel, err)
			continue
		}
		if got := s.Matches(labels); got != tc.want {
			t.Errorf("%q matches = %v, want %v", tc.sel, got, tc.want)
		}
	}
	for _, bad := range []string{"", "all", "rack = 'a'", "rack == a", "has()", "a && ", "rack in {'a'}", "|| has(a)"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) succeeded", bad)
		}
	}
}

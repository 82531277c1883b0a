package topology

import (
	"net/netip"
	"reflect"
	"testing"
)

// routerNodeLab is the example of a router node between two racks.
const routerNodeLab = `name: racks
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks:
  - {name: rack1, cidr: 192.168.50.0/24, gateway: 192.168.50.1}
  - {name: rack2, cidr: 192.168.60.0/24}          # gateway defaults to tor's address on rack2
nodes:
  node1: {network: rack1, address: 192.168.50.10}
  node3: {kind: calico, network: rack2, address: 192.168.60.10}
  tor:
    kind: router
    interfaces:
      - {network: rack1, address: 192.168.50.1}             # name defaults to eth0
      - {name: eth1, network: rack2, address: 192.168.60.1}
    routes:
      - {dst: 10.10.0.0/16, via: 192.168.50.20}
      - {dst: default, via: 192.168.60.254}                 # "default" means 0.0.0.0/0
`

func TestRouterNodesValid(t *testing.T) {
	lab, err := Parse("racks.yaml", []byte(routerNodeLab))
	if err != nil {
		t.Fatal(err)
	}
	want := []RouterNode{{
		Name: "tor",
		Interfaces: []RouterInterface{
			{Name: "eth0", Network: "rack1", Address: netip.MustParseAddr("192.168.50.1")},
			{Name: "eth1", Network: "rack2", Address: netip.MustParseAddr("192.168.60.1")},
		},
		Routes: []StaticRoute{
			{Dst: netip.MustParsePrefix("10.10.0.0/16"), Via: netip.MustParseAddr("192.168.50.20")},
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("192.168.60.254")},
		},
	}}
	if !reflect.DeepEqual(lab.RouterNodes, want) {
		t.Errorf("RouterNodes =\n%+v\nwant\n%+v", lab.RouterNodes, want)
	}
	wantNets := []Network{
		{Name: "rack1", CIDR: netip.MustParsePrefix("192.168.50.0/24"), MTU: DefaultMTU, Gateway: netip.MustParseAddr("192.168.50.1")},
		{Name: "rack2", CIDR: netip.MustParsePrefix("192.168.60.0/24"), MTU: DefaultMTU, Gateway: netip.MustParseAddr("192.168.60.1")},
	}
	if !reflect.DeepEqual(lab.Networks, wantNets) {
		t.Errorf("Networks =\n%+v\nwant\n%+v", lab.Networks, wantNets)
	}
	// Router nodes are not Calico nodes.
	var names []string
	for _, n := range lab.Nodes {
		names = append(names, n.Name)
	}
	if !reflect.DeepEqual(names, []string{"node1", "node3"}) {
		t.Errorf("Nodes = %v, want node1 node3", names)
	}
	if _, found := lab.Node("tor"); found {
		t.Error("Node(tor) found a router node")
	}
	if r, found := lab.RouterNode("tor"); !found || r.Name != "tor" {
		t.Errorf("RouterNode(tor) = %+v, %v", r, found)
	}
	checkInvariants(t, lab)
}

// A network's gateway defaults to the address of the only router node on
// it: with none or two, there is no default.
func TestGatewayDefault(t *testing.T) {
	const file = `name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks:
  - {name: a, cidr: 192.168.50.0/24}
  - {name: b, cidr: 192.168.60.0/24}
  - {name: c, cidr: 192.168.70.0/24}
  - {name: d, cidr: 192.168.80.0/24, gateway: 192.168.80.9}
nodes:
  node1: {network: a, address: 192.168.50.10}
  r1: {kind: router, interfaces: [{network: a, address: 192.168.50.1}, {network: b, address: 192.168.60.1}, {network: d, address: 192.168.80.1}]}
  r2: {kind: router, interfaces: [{network: b, address: 192.168.60.2}]}
`
	lab, err := Parse("gw.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"192.168.50.1", "", "", "192.168.80.9"} {
		var w netip.Addr
		if want != "" {
			w = netip.MustParseAddr(want)
		}
		if got := lab.Networks[i].Gateway; got != w {
			t.Errorf("network %s gateway %v, want %v", lab.Networks[i].Name, got, w)
		}
	}
	if got := lab.RouterNodes[0].Interfaces[2].Name; got != "eth2" {
		t.Errorf("third interface named %q, want eth2", got)
	}
	checkInvariants(t, lab)
}

// A workload's MTU: the pool's if set; without IPIP the node's network's;
// with IPIP the smallest network's minus the outer header, since tunnel
// packets may cross every network of a routed lab.
func TestWorkloadMTU(t *testing.T) {
	l := &Lab{Networks: []Network{{Name: "rack1", MTU: 9000}, {Name: "rack2", MTU: 1500}}}
	rack1 := l.Networks[0]
	for _, tc := range []struct {
		pool IPPool
		want int
	}{
		{IPPool{IPIPMode: IPIPNever}, 9000},
		{IPPool{IPIPMode: IPIPAlways}, 1480},
		{IPPool{IPIPMode: IPIPCrossSubnet}, 1480},
		{IPPool{IPIPMode: IPIPAlways, MTU: 8000}, 8000},
	} {
		if got := l.WorkloadMTU(tc.pool, rack1); got != tc.want {
			t.Errorf("%s mtu %d on rack1: %d, want %d", tc.pool.IPIPMode, tc.pool.MTU, got, tc.want)
		}
	}
	one := &Lab{Networks: []Network{{Name: "lan", MTU: 1500}}}
	if got := one.WorkloadMTU(IPPool{IPIPMode: IPIPAlways}, one.Networks[0]); got != 1480 {
		t.Errorf("one network, Always: %d, want 1480", got)
	}
}

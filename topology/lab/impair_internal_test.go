package lab

import (
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// A lab file's impairments reach the node's and the router's configs,
// which the agent and the forwarder apply when they start.
func TestImpairmentsInConfigs(t *testing.T) {
	l, err := topology.Parse("lab.yaml", []byte(`name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks:
  - {name: lan, cidr: 192.168.50.0/24}
  - {name: wan, cidr: 192.168.60.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10, impairments: {delay: 20ms, jitter: 5ms, loss: 1%, rate: 100mbit}}
  node2: {network: wan, address: 192.168.60.10}
  tor:
    kind: router
    interfaces:
      - {network: lan, address: 192.168.50.1}
      - {name: uplink, network: wan, address: 192.168.60.1, impairments: {loss: 5%}}
`))
	if err != nil {
		t.Fatal(err)
	}
	cs := configs(t, l)
	want := config.Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1, Rate: 100_000_000}
	if got := cs["node1"].Impairment; got == nil || *got != want {
		t.Errorf("node1 config impairment %+v, want %+v", got, want)
	}
	if got := cs["node2"].Impairment; got != nil {
		t.Errorf("node2 config impairment %+v, want none", got)
	}
	tor, _ := l.RouterNode("tor")
	rc, err := routerNodeConfig(l, "/nonexistent", tor)
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Impairments) != 1 || rc.Impairments["uplink"] != (config.Impairment{Loss: 5}) {
		t.Errorf("router config impairments %+v, want uplink: loss 5%%", rc.Impairments)
	}
}

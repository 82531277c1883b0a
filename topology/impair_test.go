package topology

import (
	"errors"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
)

func TestImpairments(t *testing.T) {
	lab, err := Parse("lab.yaml", []byte(`name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks:
  - {name: lan, cidr: 192.168.50.0/24}
  - {name: wan, cidr: 192.168.60.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10, impairments: {delay: 20ms, jitter: 5ms, loss: 1%, rate: 100mbit}}
  node2: {network: wan, address: 192.168.60.10, impairments: {loss: 5, duplicate: 1%, corrupt: 0.5%}}
  node3: {network: lan, address: 192.168.50.11}
  tor:
    kind: router
    interfaces:
      - {network: lan, address: 192.168.50.1}
      - {name: uplink, network: wan, address: 192.168.60.1, impairments: {delay: 1s, rate: 1.5gbit}}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]config.Impairment{
		"node1": {Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1, Rate: 100_000_000},
		"node2": {Loss: 5, Duplicate: 1, Corrupt: 0.5},
		"node3": {},
	}
	for name, imp := range want {
		n, ok := lab.Node(name)
		if !ok || n.Impairment != imp {
			t.Errorf("%s: impairment %+v, want %+v", name, n.Impairment, imp)
		}
	}
	tor, ok := lab.RouterNode("tor")
	if !ok || len(tor.Interfaces) != 2 {
		t.Fatalf("router tor: %+v", tor)
	}
	if got := tor.Interfaces[0].Impairment; !got.IsZero() {
		t.Errorf("tor eth0: %+v, want none", got)
	}
	if got, w := tor.Interfaces[1].Impairment, (config.Impairment{Delay: time.Second, Rate: 1_500_000_000}); got != w {
		t.Errorf("tor uplink: %+v, want %+v", got, w)
	}
	checkInvariants(t, lab)
}

// A kernel lab's nodes have no fabric link to impair: the lab file is
// refused at the impairments.
func TestImpairmentsRefusedInKernelLab(t *testing.T) {
	_, err := Parse("lab.yaml", []byte(`name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11, impairments: {delay: 20ms}}
dataplane: kernel
`))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error %v, want *ValidationError", err)
	}
	checkProblems(t, ve, []want{{7, "nodes.node2.impairments", "link impairments are not supported on a kernel-mode node yet (dataplane: kernel, line 8)"}})
}

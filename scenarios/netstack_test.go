package scenarios

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// The ping and tcp steps from a netstack workload (no namespace) probe
// from its stack: what connects, what is refused, what is unreachable,
// as from a namespace workload.
func TestNetstackSteps(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	bin := vrouterBinary(t)
	const data = `name: netstack-steps
description: ping and tcp from a netstack workload
lab:
  name: nstep
  ipPools:
    - {name: pool, cidr: 10.244.0.0/16, ipipMode: Always}
  bgp: {asNumber: 64512, keepaliveTime: 3s, holdTime: 9s}
  networks:
    - {name: lan, cidr: 192.168.50.0/24}
  nodes:
    node1: {network: lan, address: 192.168.50.10}
    node2: {network: lan, address: 192.168.50.11}
  workloads:
    - {name: api, node: node1, stack: netstack, address: 10.244.1.1}
    - {name: web, node: node2, stack: netstack, serve: [tcp:80:http], address: 10.244.2.1}
    - {name: b, node: node2, address: 10.244.2.2}
steps:
  - deploy:
  - ping: {from: api, to: b, count: 2}
  - ping: {from: api, to: web, count: 1}
  - ping: {from: api, to: 10.244.2.9, count: 1, expect: failure}
  - tcp: {from: api, to: web, port: 80}
  - tcp: {from: api, to: web, port: 81, expect: refused}
  - tcp: {from: api, to: 10.244.2.9, port: 80, expect: unreachable}
`
	file := filepath.Join(t.TempDir(), "netstack.yaml")
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	r, err := NewRunner(Options{Binary: bin, Artifacts: t.TempDir(), Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	netnstest.GuardNamespaces(t, "vr-"+r.prefix)
	res := r.RunAll(context.Background(), []*Scenario{s})
	labGone(t, res[0].Lab)
	if !res[0].Passed {
		t.Errorf("failed at step %d: %s\n%s", res[0].FailedStep, res[0].Failure, progress.String())
	}
}

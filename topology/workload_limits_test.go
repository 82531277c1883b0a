package topology

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// limitsLab returns a lab file whose node1 and node2 have n1 and n2
// workloads, listed alternately from line 10 on, one per line.
func limitsLab(n1, n2 int) string {
	var s strings.Builder
	s.WriteString(`name: limits
ipPools:
  - {name: p, cidr: 10.244.0.0/16}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
workloads:
`)
	for i := 0; i < max(n1, n2); i++ {
		if i < n1 {
			fmt.Fprintf(&s, "  - {name: a%d, node: node1}\n", i)
		}
		if i < n2 {
			fmt.Fprintf(&s, "  - {name: b%d, node: node2}\n", i)
		}
	}
	return s.String()
}

// A node takes up to MaxWorkloadsPerNode workloads; past that the first
// workload too many is reported once per node, on its node field.
func TestWorkloadsPerNodeLimit(t *testing.T) {
	lab, err := Parse("lab.yaml", []byte(limitsLab(MaxWorkloadsPerNode, 3)))
	if err != nil {
		t.Fatalf("%d workloads on node1: %v", MaxWorkloadsPerNode, err)
	}
	if len(lab.Workloads) != MaxWorkloadsPerNode+3 {
		t.Fatalf("%d workloads, want %d", len(lab.Workloads), MaxWorkloadsPerNode+3)
	}

	_, err = Parse("lab.yaml", []byte(limitsLab(MaxWorkloadsPerNode+1, MaxWorkloadsPerNode+5)))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T %v, want *ValidationError", err, err)
	}
	// Workloads alternate a0 b0 a1 b1 ... from line 10 (index 0): aK is
	// workloads[2K], bK workloads[2K+1].
	k := MaxWorkloadsPerNode
	checkProblems(t, ve, []want{
		{10 + 2*k, fmt.Sprintf("workloads[%d].node", 2*k),
			fmt.Sprintf("node node1 has %d workloads, 1 more than a node serves (at most %d; README: Limits)", k+1, k)},
		{11 + 2*k, fmt.Sprintf("workloads[%d].node", 2*k+1),
			fmt.Sprintf("node node2 has %d workloads, 5 more than a node serves (at most %d; README: Limits)", k+5, k)},
	})
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("lab.yaml:%d: workloads[%d].node: node node1 has", 10+2*k, 2*k)) {
		t.Errorf("error does not name file, line and field:\n%s", msg)
	}
}

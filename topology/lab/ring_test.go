package lab_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/metrics"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// TestFabricRingMetrics: a ping flood between workloads of two nodes
// moves the engines' traffic onto the fabric's shared-memory rings by
// default (ring frames both ways on both nodes, one ring each way, the
// ring files there), and not with VROUTER_FABRIC_RING=0 in the deploy's
// environment (the agents inherit it); destroy leaves no ring file.
func TestFabricRingMetrics(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	for _, c := range []struct {
		prefix string
		env    []string
		rings  bool
	}{
		{"ringobs", nil, true},
		{"ringoff", []string{fabric.RingEnv + "=0"}, false},
	} {
		t.Run(c.prefix, func(t *testing.T) {
			t.Parallel()
			name := labName(t, c.prefix)
			file := smallLab(t, name)
			ringsDir := filepath.Join(topology.StateRoot, name, "fabric", "lan", "rings")
			t.Cleanup(func() {
				mustVR(t, "destroy", "-t", file)
				checkGone(t, name)
				if _, err := os.Stat(ringsDir); !os.IsNotExist(err) {
					t.Errorf("rings directory %s left after destroy (stat: %v)", ringsDir, err)
				}
			})
			if out, err := benchRunEnv(90*time.Second, c.env, vrouterBin, "deploy", "-t", file); err != nil {
				t.Fatalf("deploy %v: %v\n%s", c.env, err, out)
			}
			// 500 echo requests and replies at 2 ms, beyond the 64 frames
			// a second that make a ring.
			if out, code := vr(t, "exec", "--lab", name, "a", "--", "ping", "-q", "-c", "500", "-i", "0.002", "-w", "20", "10.244.2.1"); code != 0 {
				t.Fatalf("ping flood a -> b: exit %d\n%s", code, out)
			}
			for node, peer := range map[string]string{"node1": "node2", "node2": "node1"} {
				fams, err := metrics.Parse([]byte(mustVR(t, "metrics", "--lab", name, node)))
				if err != nil {
					t.Fatal(err)
				}
				val := func(metric string, labels ...string) float64 {
					t.Helper()
					want := map[string]string{"port": "ens33"}
					for i := 0; i+1 < len(labels); i += 2 {
						want[labels[i]] = labels[i+1]
					}
					v, ok := sample(fams, metric, want)
					if !ok {
						t.Fatalf("%s: no sample %s%v", node, metric, want)
					}
					return v
				}
				tx, rx := val("vrouter_port_transmit_packets_total", "kind", "underlay"), val("vrouter_port_receive_packets_total", "kind", "underlay")
				if tx < 500 || rx < 500 {
					t.Errorf("%s: %v frames sent, %v received on the fabric, want the 500 pings' at least", node, tx, rx)
				}
				rtx, rrx := val("vrouter_fabric_ring_frames_total", "direction", "tx"), val("vrouter_fabric_ring_frames_total", "direction", "rx")
				out, in := val("vrouter_fabric_rings", "direction", "out"), val("vrouter_fabric_rings", "direction", "in")
				rbytes := val("vrouter_fabric_ring_bytes_total", "direction", "tx")
				t.Logf("%s: fabric frames tx %v rx %v, through rings tx %v rx %v (%v bytes sent), rings out %v in %v", node, tx, rx, rtx, rrx, rbytes, out, in)
				ringFile := filepath.Join(ringsDir, peer, node)
				_, statErr := os.Stat(ringFile)
				if c.rings {
					// Most of the flood, not just a frame: the ring is made
					// at the 64th frame within a second.
					if rtx < 300 || rrx < 300 || rtx > tx || rrx > rx || rbytes < 300*84 {
						t.Errorf("%s: ring frames tx %v rx %v (of %v and %v), %v bytes sent: want most of the flood through the rings", node, rtx, rrx, tx, rx, rbytes)
					}
					if out != 1 || in != 1 {
						t.Errorf("%s: rings out %v, in %v, want 1 and 1", node, out, in)
					}
					if statErr != nil {
						t.Errorf("%s: ring file to %s: %v", node, peer, statErr)
					}
				} else {
					if rtx != 0 || rrx != 0 || out != 0 || in != 0 {
						t.Errorf("%s with %v: ring frames tx %v rx %v, rings out %v in %v, want none", node, c.env, rtx, rrx, out, in)
					}
					if _, err := os.Stat(ringsDir); !os.IsNotExist(err) {
						t.Errorf("%s with %v: rings directory exists (stat: %v)", node, c.env, err)
					}
				}
			}
		})
	}
}

package agent

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

// Workloads added through the control API (a CNI plugin's) outlive the
// agent: a restarted agent serves them again with their addresses; one
// whose namespace went while no agent ran is released. GET
// /v1/workloads/NAME returns one workload, or 404.
func TestAPIWorkloadsSurviveRestart(t *testing.T) {
	cfg := testConfig(t)
	n := startTestNode(t, cfg)
	c := control.NewClient(control.Socket(cfg.StateDir, cfg.Node))
	ctx := context.Background()
	// The fake dataplane opens no namespace: any file that exists will do.
	kept, err := c.AddWorkload(ctx, config.Workload{Name: "ctr-1", Namespace: "/proc/self/ns/net", PodInterface: "net1"})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := c.AddWorkload(ctx, config.Workload{Name: "ctr-2", Namespace: "/run/netns/vrouter-test-never-made"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Workload(ctx, "ctr-1"); err != nil || *got != *kept {
		t.Errorf("Workload(ctr-1) = %+v, %v; want %+v", got, err, kept)
	}
	if _, err := c.Workload(ctx, "ctr-9"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("Workload(ctr-9) = %v, want ErrNotFound", err)
	}
	n.stop()

	n = startTestNode(t, cfg)
	got, err := c.Workload(ctx, "ctr-1")
	if err != nil || *got != *kept {
		t.Fatalf("after the restart ctr-1 is %+v, %v; want %+v", got, err, kept)
	}
	if p, ok := n.dp.port(kept.Interface); !ok || p.PodInterface != "net1" || p.Address != kept.Address {
		t.Errorf("port of ctr-1 after the restart: %+v, %v", p, ok)
	}
	if _, err := c.Workload(ctx, "ctr-2"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("ctr-2, whose namespace is gone, is served: %v", err)
	}
	if a, err := n.ipam.AddressByHandle(ctx, handle(cfg.Lab, "ctr-2")); err == nil {
		t.Errorf("ctr-2's address %s is still allocated (was %s)", a, gone.Address)
	}
	if err := c.DeleteWorkload(ctx, "ctr-1"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(cfg.WorkloadsFile())
	if err != nil || strings.TrimSpace(string(data)) != "[]" {
		t.Errorf("workloads file after the last delete: %q, %v", data, err)
	}
}

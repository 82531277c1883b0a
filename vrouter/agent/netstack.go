package agent

import (
	"context"
	"fmt"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netstack"
	"github.com/vrouter-lab/vrouter/vrouter/probe"
)

// checkWorkload checks a workload asked for and fills in its defaults:
// a namespace workload's pod interface (eth0); a netstack workload has
// no namespace and no pod interface, and its services are parsed.
func checkWorkload(w *config.Workload) ([]netstack.Service, error) {
	if err := config.CheckStack(w.Stack); err != nil {
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	if !w.IsNetstack() {
		if len(w.Serve) > 0 {
			return nil, fmt.Errorf("workload %s: serve is for netstack workloads (stack: %s); a namespace workload runs its own servers", w.Name, config.StackNetstack)
		}
		if w.PodInterface == "" {
			w.PodInterface = "eth0"
		}
		return nil, nil
	}
	if w.Namespace != "" || w.PodInterface != "" {
		return nil, fmt.Errorf("workload %s: a netstack workload has no namespace or pod interface", w.Name)
	}
	svcs, err := netstack.ParseServices(w.Serve)
	if err != nil {
		return nil, fmt.Errorf("workload %s: %w", w.Name, err)
	}
	return svcs, nil
}

// stackInfo is a workload's Stack as control.WorkloadInfo reports it:
// "netstack" or empty.
func stackInfo(w config.Workload) string {
	if w.IsNetstack() {
		return config.StackNetstack
	}
	return ""
}

// stacker is a dataplane holding netstack workloads' stacks (the
// userspace one).
type stacker interface {
	Stack(port string) (*netstack.Stack, bool)
}

// probe runs req from inside the stack of netstack workload name. A
// failed probe is a Result with OK false, not an error; an error is a
// request that cannot run (no such workload, not a netstack, bad
// request).
func (a *Agent) probe(ctx context.Context, name string, req probe.Request) (*probe.Result, error) {
	a.mu.Lock()
	info, ok := a.workloads[name]
	a.mu.Unlock()
	if !ok {
		return nil, control.NotFoundf("no workload %s on node %s", name, a.cfg.Node)
	}
	if info.Stack != config.StackNetstack {
		return nil, fmt.Errorf("workload %s is a namespace workload: probe it from its namespace (vrouter probe does)", name)
	}
	if err := req.Check(); err != nil {
		return nil, fmt.Errorf("%v", err)
	}
	sd, ok := a.dp.(stacker)
	if !ok {
		return nil, fmt.Errorf("node %s's dataplane holds no netstack workloads", a.cfg.Node)
	}
	st, ok := sd.Stack(info.Interface)
	if !ok {
		return nil, control.NotFoundf("workload %s has no stack on node %s", name, a.cfg.Node)
	}
	ctx, cancel := context.WithTimeout(ctx, req.Longest())
	defer cancel()
	res := probe.Run(ctx, st, req)
	res.From = name
	return &res, nil
}

package agent

import (
	"fmt"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netstack"
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

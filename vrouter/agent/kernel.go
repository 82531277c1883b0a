package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/kernel"
)

// newDataplaneFunc makes a node's dataplane from its config.
type newDataplaneFunc func(context.Context, *config.Node, *slog.Logger) (Dataplane, error)

// dataplanes are the node's possible dataplanes by config.Node.Dataplane.
var dataplanes = map[string]newDataplaneFunc{
	"":                        newUserspace,
	config.DataplaneUserspace: newUserspace,
	config.DataplaneKernel:    newKernel,
}

// dataplaneFor returns the constructor of the dataplane named name; an
// unknown name gives one that fails.
func dataplaneFor(name string) newDataplaneFunc {
	if f, ok := dataplanes[name]; ok {
		return f
	}
	return func(context.Context, *config.Node, *slog.Logger) (Dataplane, error) {
		return nil, config.CheckDataplane(name)
	}
}

// kernelDataplane is the Linux kernel of the node's namespace as a
// Dataplane: the underlay is the namespace's own interface (cfg.Interface),
// routes go into its main table, workloads are veth pairs. Its Close leaves
// routes and workloads in place, so forwarding survives the agent.
type kernelDataplane struct {
	*kernel.Dataplane
	policy *kernelPolicy // network policy as nftables (kernelpolicy.go)
}

// errNetstackKernel is the kernel dataplane's answer to a netstack
// workload.
var errNetstackKernel = errors.New("the kernel dataplane has no netstack workloads (a gVisor stack attaches to the userspace engine): use dataplane userspace, or a namespace workload")

func (k kernelDataplane) AddWorkload(ctx context.Context, p WorkloadPort) error {
	if p.Stack == config.StackNetstack {
		return errNetstackKernel
	}
	return k.Dataplane.AddWorkload(ctx, kernel.Port{Name: p.Name, Namespace: p.Namespace, Address: p.Address, MTU: p.MTU, PodInterface: p.PodInterface})
}

// Tunnel names the kernel dataplane's tunl0 in control's terms.
// SetImpairment: a kernel-mode node's underlay is a veth, not a fabric
// endpoint; impairing it (netem) is not built yet.
// Clearing (the zero imp) has nothing to do.
func (k kernelDataplane) SetImpairment(imp config.Impairment) error {
	if imp.IsZero() {
		return nil
	}
	return control.ErrImpairmentUnsupported
}

func (k kernelDataplane) Impairment() config.Impairment { return config.Impairment{} }

func (k kernelDataplane) Tunnel() string {
	switch k.Dataplane.Tunnel() {
	case kernel.TunnelKernel:
		return control.TunnelKernel
	case kernel.TunnelUserspace:
		return control.TunnelUserspace
	}
	return ""
}

// newKernel opens the node namespace's kernel. Owned routes already there
// (left by an earlier agent) are adopted: kept until the agent claims them
// or, unclaimed, until the BGP restart time (the default adoption time
// without one) has passed.
func newKernel(_ context.Context, cfg *config.Node, log *slog.Logger) (Dataplane, error) {
	d, err := kernel.New(kernel.Options{
		Namespace: cfg.Namespace,
		Interface: cfg.Interface,
		Address:   cfg.Prefix,
		MTU:       cfg.MTU,
		AdoptFor:  cfg.BGP.RestartTime,
		// The periodic full resync (0: Felix's default).
		ResyncInterval: cfg.RouteRefreshInterval,
		// A userspace tunl0 (no ipip module) accepts IPIP from the
		// nodes, as the engine's does.
		TunnelSources: tunnelSources(cfg),
		Logger:        log.With("dataplane", config.DataplaneKernel),
	})
	if err != nil {
		return nil, fmt.Errorf("kernel dataplane: %w", err)
	}
	if cfg.Impairment != nil && !cfg.Impairment.IsZero() {
		d.Close()
		return nil, fmt.Errorf("node %s: impairment %s: %w (dataplane kernel)", cfg.Node, cfg.Impairment, control.ErrImpairmentUnsupported)
	}
	if cfg.LinkDown {
		d.SetLinkUp(false)
		log.Info("underlay link is down (vrouter link set)", "interface", cfg.Interface)
	}
	return kernelDataplane{d, &kernelPolicy{namespace: cfg.Namespace}}, nil
}

package kernel

import (
	"net"
	"strings"

	"github.com/vrouter-lab/vrouter/encap"
	"golang.org/x/sys/unix"
)

// Metrics is a snapshot of the kernel dataplane's counters, structured for
// a metrics exporter (Stats flattens them into names): the reconcile
// loop's, the userspace tunl0's if there is one, and the kernel's own
// counters of the node's interfaces.
type Metrics struct {
	Resyncs        uint64 // full resynchronisations of the owned routes
	RoutesRestored uint64 // owned routes put back after something removed them
	RoutesRemoved  uint64 // stray routes removed
	RoutesAdopted  uint64 // routes left by an earlier agent and adopted
	RoutesClaimed  uint64 // adopted routes the agent claimed again
	// Tunnel is TunnelKernel, TunnelUserspace or "" (no tunl0).
	Tunnel string
	// UserTunnel holds the userspace tunl0's counters; nil without one.
	UserTunnel *UserTunnelMetrics
	// Ports are the underlay interface, tunl0 and the workloads' host
	// sides (cali*), with the kernel's counters.
	Ports []PortMetrics
}

// UserTunnelMetrics are the userspace tunl0's counters.
type UserTunnelMetrics struct {
	EncapPackets, EncapNoRoute, EncapErrors uint64
	DecapWriteErrors                        uint64
	Decap                                   []encap.Counter // "accepted", then drops by reason
	// EncapSuperPackets counts the GSO super-packets read from tunl0 and
	// cut into segments; DecapSuperPackets the super-packets written to
	// it, each joined from consecutive segments of a TCP flow.
	EncapSuperPackets, DecapSuperPackets uint64
}

// PortMetrics is one interface of the node namespace as the kernel counts
// it (rtnl_link_stats64).
type PortMetrics struct {
	Name string
	Kind string // "underlay", "tunnel" or "workload"
	Up   bool   // administratively up with a carrier

	RxPackets, TxPackets, RxBytes, TxBytes   uint64
	RxDropped, TxDropped, RxErrors, TxErrors uint64
}

// Metrics returns a snapshot of the dataplane's counters; an interface
// list the kernel does not give leaves Ports empty.
func (d *Dataplane) Metrics() Metrics {
	m := Metrics{
		Resyncs:        d.resyncs.Load(),
		RoutesRestored: d.restored.Load(),
		RoutesRemoved:  d.removed.Load(),
		RoutesAdopted:  d.adoptedN.Load(),
		RoutesClaimed:  d.claimed.Load(),
		Tunnel:         d.Tunnel(),
	}
	d.mu.Lock()
	if t := d.utun; t != nil {
		m.UserTunnel = &UserTunnelMetrics{
			EncapPackets:      t.txPackets.Load(),
			EncapNoRoute:      t.txNoRoute.Load(),
			EncapErrors:       t.txErrors.Load(),
			DecapWriteErrors:  t.rxWriteErrors.Load(),
			EncapSuperPackets: t.txSuper.Load(),
			DecapSuperPackets: t.rxSuper.Load(),
			Decap:             t.decap.Counters(),
		}
	}
	d.mu.Unlock()
	links, err := d.h.LinkList()
	if err != nil {
		return m
	}
	for _, l := range links {
		a := l.Attrs()
		var kind string
		switch {
		case a.Name == d.opts.Interface:
			kind = "underlay"
		case a.Name == "tunl0":
			kind = "tunnel"
		case strings.HasPrefix(a.Name, WorkloadPrefix):
			kind = "workload"
		default:
			continue
		}
		p := PortMetrics{Name: a.Name, Kind: kind, Up: a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0}
		if s := a.Statistics; s != nil {
			p.RxPackets, p.TxPackets, p.RxBytes, p.TxBytes = s.RxPackets, s.TxPackets, s.RxBytes, s.TxBytes
			p.RxDropped, p.TxDropped, p.RxErrors, p.TxErrors = s.RxDropped, s.TxDropped, s.RxErrors, s.TxErrors
		}
		m.Ports = append(m.Ports, p)
	}
	return m
}

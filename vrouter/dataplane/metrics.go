package dataplane

import (
	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
)

// EngineMetrics is a snapshot of every counter of an engine, structured
// for a metrics exporter (Stats flattens the same counters into names).
// Taking it reads atomics only: nothing on the forwarding paths changes.
type EngineMetrics struct {
	// Forwarder holds the forwarding decisions and drops by Reason.
	Forwarder Stats
	// Underlays are the fabric endpoints' counters, the primary
	// interface's first.
	Underlays []UnderlayMetrics
	// SegmentDrops counts super-packets that could not be segmented;
	// EncapDrops packets for tunl0 that could not be encapsulated.
	SegmentDrops, EncapDrops uint64
	// Tunnel reports that tunl0 is up; Decap then holds the IPIP
	// decapsulator's counters ("accepted", then drops by reason).
	Tunnel bool
	Decap  []encap.Counter
	// Policy holds the network policy and conntrack counters.
	Policy PolicyMetrics
}

// UnderlayMetrics are one underlay interface's counters.
type UnderlayMetrics struct {
	Name  string // the interface's name in routes, e.g. "ens33"
	Up    bool   // the link is up (false when the underlay cannot say)
	Stats fabric.Stats
}

// linkStater is an underlay that reports its link state (*fabric.Endpoint).
type linkStater interface{ IsUp() bool }

// Metrics returns a snapshot of the engine's counters.
func (e *Engine) Metrics() EngineMetrics {
	m := EngineMetrics{
		Forwarder:    e.fwd.Stats(),
		SegmentDrops: e.segDrops.Load(),
		EncapDrops:   e.encapDrops.Load(),
		Tunnel:       e.tunnel.Load(),
		Policy:       e.PolicyMetrics(),
	}
	for _, u := range e.underlays {
		um := UnderlayMetrics{Name: u.name, Stats: u.ep.Stats()}
		if l, ok := u.ep.(linkStater); ok {
			um.Up = l.IsUp()
		}
		m.Underlays = append(m.Underlays, um)
	}
	if m.Tunnel {
		m.Decap = e.decap.Counters()
	}
	return m
}

package routerfwd

import (
	"context"
	"net/http"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/metrics"
)

// metricsHandler serves the router's Prometheus metrics: its engine's
// counters (every interface a port) and its routes. A router has no BGP
// speaker of vrouter's, no IPAM and no workloads.
func metricsHandler(table *fib.Table, engine *dataplane.Engine) http.Handler {
	return metrics.Handler(metrics.NewCollector(func(context.Context) (*metrics.Snapshot, error) {
		m := engine.Metrics()
		s := &metrics.Snapshot{Dataplane: config.DataplaneUserspace, Router: true, Engine: &m, Routes: map[metrics.RouteKind]int{}}
		if len(m.Underlays) > 0 {
			s.LinkUp = m.Underlays[0].Up
		}
		if m.Tunnel {
			s.Tunnel = control.TunnelEngine
		}
		for _, r := range table.Routes() {
			s.Routes[metrics.RouteKind{Protocol: r.Protocol.String(), Type: r.Type.String()}]++
		}
		return s, nil
	}, 5*time.Second))
}

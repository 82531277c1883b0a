package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/kernel"
	"github.com/vrouter-lab/vrouter/vrouter/metrics"
)

// engineMetrics is a dataplane with a userspace engine's counters.
type engineMetrics interface {
	EngineMetrics() dataplane.EngineMetrics
}

// kernelMetrics is a dataplane with the kernel dataplane's counters.
type kernelMetrics interface {
	Metrics() kernel.Metrics
}

// advertisedPeers is a speaker that can count the prefixes it advertises
// to each peer (*bgp.Speaker).
type advertisedPeers interface {
	PeersAdvertised(ctx context.Context) ([]bgp.PeerStatus, error)
}

func (u *userspace) EngineMetrics() dataplane.EngineMetrics { return u.engine.Metrics() }

// metricsSnapshot reads the node's counters and state for a scrape: the
// dataplane's counters, the BGP sessions, the FIB, IPAM. BGP or IPAM
// failing leaves their part out (counted by the collector).
func (a *Agent) metricsSnapshot(ctx context.Context) (*metrics.Snapshot, error) {
	s := &metrics.Snapshot{
		Dataplane:   a.cfg.Dataplane,
		Tunnel:      a.dp.Tunnel(),
		LinkUp:      a.dp.LinkUp(),
		StaleRoutes: a.staleCount(),
		Routes:      map[metrics.RouteKind]int{},
	}
	if s.Dataplane == "" {
		s.Dataplane = config.DataplaneUserspace
	}
	switch dp := a.dp.(type) {
	case engineMetrics:
		m := dp.EngineMetrics()
		s.Engine = &m
	case kernelMetrics:
		m := dp.Metrics()
		s.Kernel = &m
	}
	for _, r := range a.dp.Routes() {
		s.Routes[metrics.RouteKind{Protocol: r.Protocol.String(), Type: r.Type.String()}]++
	}
	a.mu.Lock()
	s.Workloads = len(a.workloads)
	a.mu.Unlock()

	var err error
	if p, ok := a.bgp.(advertisedPeers); ok {
		s.Peers, err = p.PeersAdvertised(ctx)
	} else {
		s.Peers, err = a.bgp.Peers(ctx)
	}
	if err != nil {
		a.log.Warn("metrics: BGP peers", "err", err)
		s.FailedParts = append(s.FailedParts, "bgp")
	}
	if s.IPAM, err = a.ipamUsage(ctx); err != nil {
		a.log.Warn("metrics: IPAM", "err", err)
		s.FailedParts = append(s.FailedParts, "ipam")
	}
	return s, nil
}

// ipamUsage counts the node's blocks and the addresses assigned to it.
func (a *Agent) ipamUsage(ctx context.Context) (metrics.IPAM, error) {
	var u metrics.IPAM
	blocks, err := a.ipam.Blocks(ctx)
	if err != nil {
		return u, err
	}
	node := a.cfg.Node
	for _, b := range blocks {
		if b.Affinity == node {
			u.Blocks++
			u.BlockAddresses += b.NumAddresses()
		}
		for _, al := range b.Allocations {
			if al.Node != node {
				continue
			}
			u.InUse++
			if b.Affinity != node {
				u.Borrowed++
			}
		}
	}
	return u, nil
}

// metricsHandler serves the node's metrics (made once, on first use).
func (a *Agent) metricsHandler() http.Handler {
	a.metricsOnce.Do(func() {
		a.metrics = metrics.Handler(metrics.NewCollector(a.metricsSnapshot, 5*time.Second))
	})
	return a.metrics
}

// serveMetrics serves /metrics on cfg.MetricsAddr (TCP) until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics", "err", err)
		}
	}()
	a.metricsAddr.Store(ln.Addr().String())
	a.log.Info("serving metrics", "address", ln.Addr().String())
	return nil
}

package vrouter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// Graceful restart, the forwarding side. A router restarting its BGP
// process keeps forwarding along the routes it had (RFC 4724's "forwarding
// state preserved"); BIRD does it by leaving its routes in the kernel. The
// engine lives in the agent's process, so an agent with graceful restart
// keeps the routes it learned over BGP in a file beside its config,
// rewritten at every change; a restarted agent installs them before its
// engine starts, as stale, and drops those that are not learned again once
// every peer is back and has sent End-of-RIB (or once the restart time has
// passed).

// learnedRoute is one route learned over BGP as the routes file keeps it.
type learnedRoute struct {
	Dst     netip.Prefix `json:"dst"`
	Gateway netip.Addr   `json:"gateway"`
}

// routesFile is where the agent keeps the routes it learned.
func routesFile(stateDir, node string) string {
	return filepath.Join(stateDir, "nodes", node+".routes.json")
}

// bgpRoute is the FIB route for a prefix learned over BGP with next hop
// nextHop. Through tunl0 the next hop is the outer destination ("via NODE
// dev tunl0 onlink"). Otherwise a next hop off the node's network is
// resolved recursively, as BIRD's "gateway recursive" in Calico's
// configuration does: the route goes via the gateway of the (non-BGP)
// route to the next hop, typically the default gateway, which has to
// know the destination itself. It records nextHop as dst's BGP next hop.
func (a *Agent) bgpRoute(dst netip.Prefix, nextHop netip.Addr) fib.Route {
	a.hopMu.Lock()
	a.hops[dst] = nextHop
	a.hopMu.Unlock()
	r := fib.Route{Dst: dst, Type: fib.Unicast, Gateway: nextHop, Dev: a.cfg.Interface, Protocol: fib.ProtoBird}
	if encapsulate(a.currentPools(), a.cfg.Prefix, dst, nextHop) {
		r.Dev, r.OnLink = dataplane.TunnelName, true
		return r
	}
	if !a.cfg.Prefix.Masked().Contains(nextHop) {
		if via, ok := a.fib.Lookup(nextHop); ok && via.Protocol != fib.ProtoBird && via.Type == fib.Unicast && via.Gateway.IsValid() && via.Dev == a.cfg.Interface {
			r.Gateway = via.Gateway
		}
	}
	return r
}

// forgetRoute removes the learned route to dst and its BGP next hop.
func (a *Agent) forgetRoute(dst netip.Prefix) {
	a.fib.Delete(dst, 0)
	a.hopMu.Lock()
	delete(a.hops, dst)
	a.hopMu.Unlock()
}

// bgpNextHop returns the BGP next hop of learned route r: its gateway,
// unless that was resolved recursively.
func (a *Agent) bgpNextHop(r fib.Route) netip.Addr {
	a.hopMu.Lock()
	defer a.hopMu.Unlock()
	if h, ok := a.hops[r.Dst]; ok {
		return h
	}
	return r.Gateway
}

// saveRoutes writes the routes learned over BGP to the routes file.
func (a *Agent) saveRoutes() {
	if !a.cfg.BGP.GracefulRestart {
		return
	}
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	var out []learnedRoute
	for _, r := range a.fib.Routes() {
		if r.Protocol == fib.ProtoBird && r.Type == fib.Unicast && r.Gateway.IsValid() {
			out = append(out, learnedRoute{Dst: r.Dst, Gateway: a.bgpNextHop(r)})
		}
	}
	data, err := json.Marshal(out)
	if err == nil {
		path := routesFile(a.cfg.StateDir, a.cfg.Node)
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, data, 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		a.log.Error("save learned routes for graceful restart", "err", err)
	}
}

// restoreRoutes installs the routes an earlier agent of this node learned,
// as stale, and returns how many.
func (a *Agent) restoreRoutes() (int, error) {
	data, err := os.ReadFile(routesFile(a.cfg.StateDir, a.cfg.Node))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("restore routes: %w", err)
	}
	var routes []learnedRoute
	if err := json.Unmarshal(data, &routes); err != nil {
		return 0, fmt.Errorf("restore routes from %s: %w", routesFile(a.cfg.StateDir, a.cfg.Node), err)
	}
	a.staleMu.Lock()
	defer a.staleMu.Unlock()
	for _, r := range routes {
		if err := a.fib.Replace(a.bgpRoute(r.Dst, r.Gateway)); err != nil {
			return 0, fmt.Errorf("restore route %s: %w", r.Dst, err)
		}
		a.stale[r.Dst] = true
	}
	return len(routes), nil
}

// refreshed records that prefix was learned (or withdrawn) in this run: it
// is no longer stale.
func (a *Agent) refreshed(prefix netip.Prefix) {
	a.staleMu.Lock()
	delete(a.stale, prefix)
	a.staleMu.Unlock()
}

// staleCount returns how many restored routes are still stale.
func (a *Agent) staleCount() int {
	a.staleMu.Lock()
	defer a.staleMu.Unlock()
	return len(a.stale)
}

// sweepStale waits until every peer is Established and has sent End-of-RIB
// (or the restart time has passed), then removes the restored routes BGP
// did not bring back.
func (a *Agent) sweepStale(ctx context.Context) {
	restart := a.cfg.BGP.RestartTime
	if restart <= 0 {
		restart = 120 * time.Second
	}
	deadline := time.Now().Add(restart)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if a.staleCount() == 0 {
			a.log.Info("graceful restart done: every restored route learned again")
			return
		}
		if time.Now().Before(deadline) && !a.peersSynced(ctx) {
			continue
		}
		learned, err := a.bgp.Learned(ctx)
		if err != nil {
			a.log.Error("sweep stale routes", "err", err)
			continue
		}
		a.staleMu.Lock()
		var dropped []netip.Prefix
		for p := range a.stale {
			if _, ok := learned[p]; !ok {
				a.forgetRoute(p)
				dropped = append(dropped, p)
			}
		}
		clear(a.stale)
		a.staleMu.Unlock()
		a.saveRoutes()
		a.log.Info("graceful restart done: stale routes removed", "removed", len(dropped), "prefixes", dropped)
		return
	}
}

// peersSynced reports whether every configured peer is Established and has
// sent End-of-RIB.
func (a *Agent) peersSynced(ctx context.Context) bool {
	peers, err := a.bgp.Peers(ctx)
	if err != nil || len(peers) < len(a.cfg.BGP.Peers) {
		return false
	}
	for _, p := range peers {
		if p.State != "Established" || !p.EndOfRIB {
			return false
		}
	}
	return true
}

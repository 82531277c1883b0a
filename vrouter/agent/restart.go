package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
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

// bgpRoute is the route for a prefix learned over BGP with next hop
// nextHop. Through tunl0 the next hop is the outer destination ("via NODE
// dev tunl0 onlink"). Otherwise a next hop off the node's network is
// resolved recursively, as BIRD's "gateway recursive" in Calico's
// configuration does: the route goes via the gateway of the (non-BGP)
// route to the next hop, typically the default gateway, which has to
// know the destination itself.
func (a *Agent) bgpRoute(dst netip.Prefix, nextHop netip.Addr) fib.Route {
	r := fib.Route{Dst: dst, Type: fib.Unicast, Gateway: nextHop, Dev: a.cfg.Interface, Protocol: fib.ProtoBird}
	if encapsulate(a.currentPools(), a.cfg.Prefix, dst, nextHop) {
		r.Dev, r.OnLink = dataplane.TunnelName, true
		return r
	}
	if !a.cfg.Prefix.Masked().Contains(nextHop) {
		if via, ok := a.dp.Lookup(nextHop); ok && via.Protocol != fib.ProtoBird && via.Type == fib.Unicast && via.Gateway.IsValid() && via.Dev == a.cfg.Interface {
			r.Gateway = via.Gateway
		}
	}
	return r
}

// installLearned programs the route to dst learned with BGP next hop
// nextHop and records it. The caller holds routeMu.
func (a *Agent) installLearned(dst netip.Prefix, nextHop netip.Addr) (fib.Route, error) {
	r := a.bgpRoute(dst, nextHop)
	if err := a.dp.ReplaceRoute(r); err != nil {
		return r, err
	}
	a.learned[dst] = nextHop
	return r, nil
}

// forgetLearned removes the learned route to dst from the dataplane and
// the record. The caller holds routeMu.
func (a *Agent) forgetLearned(dst netip.Prefix) {
	if _, ok := a.learned[dst]; ok {
		a.dp.DeleteRoute(dst)
		delete(a.learned, dst)
	}
}

// saveRoutes writes the routes learned over BGP to the routes file.
func (a *Agent) saveRoutes() {
	if !a.cfg.BGP.GracefulRestart {
		return
	}
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	a.routeMu.Lock()
	out := make([]learnedRoute, 0, len(a.learned))
	for dst, nextHop := range a.learned {
		out = append(out, learnedRoute{Dst: dst, Gateway: nextHop})
	}
	a.routeMu.Unlock()
	slices.SortFunc(out, func(x, y learnedRoute) int {
		return cmp.Or(x.Dst.Addr().Compare(y.Dst.Addr()), x.Dst.Bits()-y.Dst.Bits())
	})
	data, err := json.Marshal(out)
	if err == nil {
		path := a.cfg.RoutesFile()
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
	data, err := os.ReadFile(a.cfg.RoutesFile())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("restore routes: %w", err)
	}
	var routes []learnedRoute
	if err := json.Unmarshal(data, &routes); err != nil {
		return 0, fmt.Errorf("restore routes from %s: %w", a.cfg.RoutesFile(), err)
	}
	a.routeMu.Lock()
	defer a.routeMu.Unlock()
	for _, r := range routes {
		if _, err := a.installLearned(r.Dst, r.Gateway); err != nil {
			return 0, fmt.Errorf("restore route %s: %w", r.Dst, err)
		}
		a.stale[r.Dst] = true
	}
	return len(routes), nil
}

// staleCount returns how many restored routes are still stale.
func (a *Agent) staleCount() int {
	a.routeMu.Lock()
	defer a.routeMu.Unlock()
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
		// A route learned after Learned's answer is no longer stale:
		// learn took it out of stale, so the sweep leaves it alone.
		a.routeMu.Lock()
		var dropped []netip.Prefix
		for p := range a.stale {
			if _, ok := learned[p]; !ok {
				a.forgetLearned(p)
				dropped = append(dropped, p)
			}
		}
		clear(a.stale)
		a.routeMu.Unlock()
		a.saveRoutes()
		a.log.Info("graceful restart done: stale routes removed", "removed", len(dropped), "prefixes", dropped)
		return
	}
}

// peersSynced reports whether every configured peer is Established and has
// sent End-of-RIB.
func (a *Agent) peersSynced(ctx context.Context) bool {
	peers, err := a.bgp.Peers(ctx)
	if err != nil || len(peers) < len(a.peerList()) {
		return false
	}
	for _, p := range peers {
		if p.State != bgp.StateEstablished || !p.EndOfRIB {
			return false
		}
	}
	return true
}

package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	api "github.com/osrg/gobgp/v3/api"
)

// RouteUpdate is a change of the best path to a prefix learned from a peer.
type RouteUpdate struct {
	// Prefix is the destination.
	Prefix netip.Prefix
	// NextHop is the path's next hop; for a withdrawal, the next hop of
	// the path withdrawn.
	NextHop netip.Addr
	// Peer is the peer the path was learned from.
	Peer netip.Addr
	// Withdrawn reports that no path learned from a peer is the best path
	// to Prefix any more: the peer withdrew it, its session went down,
	// or a path this speaker announces itself won.
	Withdrawn bool
}

// watch is one Watch registration.
type watch struct {
	fn     func(RouteUpdate)
	cancel context.CancelFunc

	mu   sync.Mutex
	done bool
	// learned is the best learned path last reported for each prefix.
	learned map[netip.Prefix]RouteUpdate
}

// Watch calls fn for every change of the best paths learned from peers,
// starting with the best paths known now, and returns at once. Paths the
// speaker announces itself are not reported. fn is called from one
// goroutine at a time, in order, until ctx is done or the speaker is
// stopped; it should return promptly and must not call Stop.
func (s *Speaker) Watch(ctx context.Context, fn func(RouteUpdate)) error {
	wctx, cancel := context.WithCancel(ctx)
	w := &watch{fn: fn, cancel: cancel, learned: make(map[netip.Prefix]RouteUpdate)}

	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		cancel()
		return ErrStopped
	}
	s.watches[w] = struct{}{}
	s.mu.Unlock()

	req := &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true}},
	}}
	if err := s.srv.WatchEvent(wctx, req, func(r *api.WatchEventResponse) {
		w.deliver(r.GetTable().GetPaths(), s.log)
	}); err != nil {
		s.dropWatch(w)
		w.close()
		return fmt.Errorf("bgp: watch: %w", err)
	}
	context.AfterFunc(wctx, func() {
		s.dropWatch(w)
		w.close()
	})
	return nil
}

// dropWatch forgets a watch that has ended.
func (s *Speaker) dropWatch(w *watch) {
	s.mu.Lock()
	delete(s.watches, w)
	s.mu.Unlock()
}

// close ends the watch: GoBGP's watcher goroutine is told to stop, and no
// call of fn starts after close returns.
func (w *watch) close() {
	w.cancel()
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// deliver turns a batch of GoBGP best paths into route updates.
func (w *watch) deliver(paths []*api.Path, log *slog.Logger) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	for _, p := range paths {
		u, err := decodePath(p)
		if err != nil {
			log.Warn("ignoring a path GoBGP reported", "err", err)
			continue
		}
		last, reported := w.learned[u.Prefix]
		switch {
		case p.GetIsWithdraw() || !u.Peer.IsValid():
			// Withdrawn, or our own path is now the best one.
			if !reported {
				continue
			}
			delete(w.learned, u.Prefix)
			last.Withdrawn = true
			w.fn(last)
		case reported && last == u:
			continue
		default:
			w.learned[u.Prefix] = u
			w.fn(u)
		}
	}
}

// Learned returns the best paths learned from peers now, IPv4 and IPv6
// (paths the speaker announces itself are left out), by prefix.
func (s *Speaker) Learned(ctx context.Context) (map[netip.Prefix]RouteUpdate, error) {
	if err := s.alive(); err != nil {
		return nil, err
	}
	out := map[netip.Prefix]RouteUpdate{}
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		req := &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}}
		err := s.srv.ListPath(ctx, req, func(d *api.Destination) {
			for _, p := range d.GetPaths() {
				if !p.GetBest() || p.GetIsWithdraw() {
					continue
				}
				u, err := decodePath(p)
				if err != nil || !u.Peer.IsValid() {
					continue
				}
				out[u.Prefix] = u
			}
		})
		if err != nil {
			return nil, fmt.Errorf("bgp: list paths: %w", err)
		}
	}
	return out, nil
}

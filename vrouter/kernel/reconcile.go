package kernel

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"golang.org/x/sys/unix"
)

// Run reconciles the kernel's main table with the wanted routes until ctx
// ends or Close is called: at once, whenever a route notification shows a
// wanted route gone or an owned route that is not wanted, every
// ResyncInterval, and when the adoption time (AdoptFor from now) ends.
func (d *Dataplane) Run(ctx context.Context) {
	d.mu.Lock()
	if d.closed.Load() {
		d.mu.Unlock()
		return
	}
	// Close waits for the loop before it releases the netlink handle the
	// loop reads links with.
	d.running.Add(1)
	defer d.running.Done()
	d.adoptUntil = time.Now().Add(d.opts.AdoptFor)
	d.mu.Unlock()

	stop := make(chan struct{})
	defer close(stop)
	updates := d.subscribe(stop)
	d.resync()
	tick := time.NewTicker(d.opts.ResyncInterval)
	defer tick.Stop()
	adopt := time.NewTimer(d.opts.AdoptFor)
	defer adopt.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.done:
			return
		case u, ok := <-updates:
			if !ok {
				// The subscription failed: the periodic resync makes up
				// for it until a new one is made at the next tick.
				d.log.Warn("route notifications stopped; relying on the periodic resync")
				updates = nil
				continue
			}
			if d.interesting(u) {
				d.Resync()
			}
		case <-d.kick:
			d.resync()
		case <-tick.C:
			if updates == nil {
				updates = d.subscribe(stop)
			}
			d.resync()
		case <-adopt.C:
			d.resync()
		}
	}
}

// Resync asks the reconcile loop for a full resync (coalesced with one
// already asked for). Without a running loop it does nothing.
func (d *Dataplane) Resync() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// subscribe returns the namespace's route notifications, or nil when they
// cannot be had (the periodic resync then carries on alone).
func (d *Dataplane) subscribe(stop <-chan struct{}) <-chan netlink.RouteUpdate {
	ns, err := nsFile(d.opts.Namespace)
	if err != nil {
		d.log.Error("route notifications", "err", err)
		return nil
	}
	defer ns.Close()
	ch := make(chan netlink.RouteUpdate, 1024)
	err = netlink.RouteSubscribeWithOptions(ch, stop, netlink.RouteSubscribeOptions{
		Namespace:     &ns,
		ErrorCallback: func(err error) { d.log.Debug("route notification", "err", err) },
	})
	if err != nil {
		d.log.Error("route notifications", "err", err)
		return nil
	}
	return ch
}

// interesting reports whether a notification calls for a resync: a
// wanted route deleted, or an owned route added that is not the wanted
// one. The dataplane's own writes are not.
func (d *Dataplane) interesting(u netlink.RouteUpdate) bool {
	if u.Table != unix.RT_TABLE_MAIN || (u.Family != 0 && u.Family != unix.AF_INET) {
		return false
	}
	r := d.fromNetlink(u.Route, map[int]string{})
	d.mu.Lock()
	defer d.mu.Unlock()
	w, wanted := d.wanted[keyOf(r)]
	switch u.Type {
	case unix.RTM_DELROUTE:
		// An adopted route deleted before it is claimed is no longer
		// there to adopt: claiming it must write it.
		if a, ok := d.adopted[keyOf(r)]; ok && a == r {
			delete(d.adopted, keyOf(r))
		}
		return wanted
	case unix.RTM_NEWROUTE:
		if _, ok := d.adopted[keyOf(r)]; ok {
			return false
		}
		return Owned(r) && (!wanted || w != r)
	}
	return false
}

// resync makes the main table's owned routes the wanted ones: it writes
// every wanted route that is missing or different, and deletes every
// owned route that is not wanted (adopted routes wait until the adoption
// time ends). Routes it does not own it leaves alone.
func (d *Dataplane) resync() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() { // the handle is released
		return
	}
	d.resyncs.Add(1)
	routes, err := d.list()
	if err != nil {
		d.log.Error("resync", "err", err)
		return
	}
	if !d.adoptUntil.IsZero() && time.Now().After(d.adoptUntil) && len(d.adopted) > 0 {
		d.log.Info("adoption time over: removing the adopted routes nobody claimed", "routes", len(d.adopted))
		clear(d.adopted)
	}
	ok := map[key]bool{}
	for _, r := range routes {
		if !Owned(r) {
			continue
		}
		k := keyOf(r)
		if w, wanted := d.wanted[k]; wanted {
			ok[k] = w == r
			continue
		}
		if _, adopted := d.adopted[k]; adopted {
			continue
		}
		if err := d.remove(r); err != nil {
			d.log.Error("resync: remove unwanted route", "route", r.String(), "err", err)
			continue
		}
		d.removed.Add(1)
		d.log.Info("resync: removed a route nobody wants", "route", r.String())
	}
	for k, w := range d.wanted {
		if ok[k] {
			continue
		}
		if err := d.write(w); err != nil {
			// A workload's device may be gone ahead of its route's
			// deletion, a link may be down: retried at the next resync.
			d.log.Debug("resync: restore route", "route", w.String(), "err", err)
			continue
		}
		d.restored.Add(1)
		d.log.Info("resync: restored a wanted route", "route", w.String())
	}
}

// Wanted returns the routes the dataplane keeps in the kernel, in no
// particular order.
func (d *Dataplane) Wanted() []fib.Route {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]fib.Route, 0, len(d.wanted))
	for _, r := range d.wanted {
		out = append(out, r)
	}
	return out
}

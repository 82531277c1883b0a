// Package routerfwd is the forwarder of a lab's external router (BIRD,
// FRR or gobgpd in a namespace of its own, or a router node between
// networks): it joins the router's namespace to the lab's underlay
// networks with the userspace engine and forwards by a copy of the
// namespace kernel's routing table, which the router's BGP daemon fills.
// `vrouter router run --config FILE` runs it.
package routerfwd

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"golang.org/x/sys/unix"
)

// kernelSyncInterval is how often the forwarder re-reads the namespace's
// routing table even without a netlink notification (a lost notification
// is repaired within it).
const kernelSyncInterval = time.Second

// Run runs the forwarder of an external router until ctx ends. The
// router's BGP daemon installs routes in the namespace's kernel table
// (BIRD's kernel protocol, FRR's zebra); the kernel sends packets for them
// out of the underlay TUN device, where the forwarder routes them by a copy
// of that kernel table, to the gateway's engine over the fabric. Packets
// from the fabric for the router's addresses go to its kernel.
func Run(ctx context.Context, cfg *config.Router) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("router", cfg.Router)
	table := fib.NewTable()
	if err := loopbackUp(cfg.Namespace, cfg.Loopback); err != nil {
		return fmt.Errorf("router %s: %w", cfg.Router, err)
	}
	all := append([]config.RouterInterface{{Network: cfg.Network, Prefix: cfg.Prefix, Interface: cfg.Interface, MTU: cfg.MTU, Neighbors: cfg.Neighbors}}, cfg.Interfaces...)
	var hosts []*netns.TUN
	var eps []*fabric.Endpoint
	defer func() {
		for _, h := range hosts {
			h.Close()
		}
	}()
	for _, ri := range all {
		host, ep, err := openRouterInterface(cfg, ri)
		if err != nil {
			for _, ep := range eps {
				ep.Close()
			}
			return fmt.Errorf("router %s: %w", cfg.Router, err)
		}
		hosts, eps = append(hosts, host), append(eps, ep)
		if imp, ok := cfg.Impairments[ri.Interface]; ok && !imp.IsZero() {
			if err := ep.SetImpairment(fabricImpairment(imp)); err != nil {
				for _, ep := range eps {
					ep.Close()
				}
				return fmt.Errorf("router %s: %s impairment: %w", cfg.Router, ri.Interface, err)
			}
			log.Info("link impaired", "interface", ri.Interface, "impairment", imp.String())
		}
	}
	ecfg := dataplane.EngineConfig{
		FIB: table, Host: hosts[0], HostName: "@host", Underlay: eps[0],
		Interface: cfg.Interface, MTU: cfg.MTU, Address: cfg.Prefix.Addr(), Logger: log,
		ErrorsToIngress: cfg.ErrorsToIngress,
	}
	devs := []string{cfg.Interface}
	for i, ri := range cfg.Interfaces {
		ecfg.Interfaces = append(ecfg.Interfaces, dataplane.Interface{Name: ri.Interface, Host: hosts[i+1], Underlay: eps[i+1], MTU: ri.MTU, Address: ri.Prefix.Addr()})
		devs = append(devs, ri.Interface)
	}
	engine, err := dataplane.NewEngine(ecfg)
	if err != nil {
		for _, ep := range eps {
			ep.Close()
		}
		return fmt.Errorf("router %s: %w", cfg.Router, err)
	}
	defer engine.Close()
	if err := staticRoutes(cfg.Namespace, cfg.Routes); err != nil {
		return fmt.Errorf("router %s: %w", cfg.Router, err)
	}
	m := &kernelMirror{ns: cfg.Namespace, devs: devs, table: table, log: log, installed: map[netip.Prefix]fib.Route{}}
	if err := m.sync(); err != nil {
		return fmt.Errorf("router %s: %w", cfg.Router, err)
	}
	go m.run(ctx)
	if cfg.GoBGP != nil {
		go runGoBGPKernel(ctx, cfg.Namespace, cfg.GoBGP, log)
	}
	go engine.Run(ctx)
	links := map[string]routerLink{}
	for i, ri := range all {
		links[ri.Interface] = routerLink{network: ri.Network, ep: eps[i]}
	}
	if err := serveRouterControl(ctx, cfg, table, engine, links, log); err != nil {
		return fmt.Errorf("router %s: %w", cfg.Router, err)
	}
	log.Info("router forwarder running", "address", cfg.Prefix.Addr())
	<-ctx.Done()
	log.Info("router forwarder stopping")
	_ = os.Remove(cfg.Control)
	return nil
}

// openRouterInterface opens interface ri of a router: a TUN device in the
// namespace with the router's address (the kernel adds the connected
// route), and the fabric endpoint on ri's network.
func openRouterInterface(cfg *config.Router, ri config.RouterInterface) (*netns.TUN, *fabric.Endpoint, error) {
	host, err := netns.OpenTUN(cfg.Namespace, ri.Interface, ri.MTU)
	if err != nil {
		return nil, nil, err
	}
	if err := host.AddAddress(ri.Prefix); err != nil {
		host.Close()
		return nil, nil, err
	}
	ep, err := fabric.Attach(cfg.Fabric, ri.Network, cfg.Router, fabric.Options{
		Interface: cfg.Router + "/" + ri.Interface,
		Neighbors: config.NeighborTable(ri.Neighbors),
	})
	if err != nil {
		host.Close()
		return nil, nil, err
	}
	return host, ep, nil
}

// staticRoutes puts the routes in the namespace's main table, proto
// static, as `ip route add DST via VIA` would.
func staticRoutes(ns string, routes []config.StaticRoute) error {
	if len(routes) == 0 {
		return nil
	}
	h, err := netns.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, r := range routes {
		dst := &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)}
		kr := &netlink.Route{Dst: dst, Gw: r.Via.AsSlice(), Protocol: unix.RTPROT_STATIC}
		if err := h.RouteReplace(kr); err != nil {
			return fmt.Errorf("static route %s via %s: %w", r.Dst, r.Via, err)
		}
	}
	return nil
}

// loopbackUp brings lo up and puts the addresses on it.
func loopbackUp(ns string, addrs []netip.Prefix) error {
	h, err := netns.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	for _, p := range addrs {
		a, err := netlink.ParseAddr(p.String())
		if err != nil {
			return err
		}
		if err := h.AddrReplace(lo, a); err != nil {
			return fmt.Errorf("loopback: add address %s: %w", p, err)
		}
	}
	return nil
}

// kernelMirror keeps a FIB equal to the namespace kernel's routing table
// as far as forwarding needs it: routes out of an underlay device keep
// their gateway (the engine sends to it over the fabric); anything the
// kernel delivers locally or sends elsewhere (lo, blackholes) is a local
// route, handed back to the kernel.
type kernelMirror struct {
	ns        string
	devs      []string // the underlay devices
	table     *fib.Table
	log       *slog.Logger
	installed map[netip.Prefix]fib.Route
}

// rtnLocal is RTN_LOCAL, a route type package fib has no constant for.
const rtnLocal fib.Type = unix.RTN_LOCAL

func (m *kernelMirror) run(ctx context.Context) {
	updates := make(chan netlink.RouteUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	subscribe := func() {
		_ = netns.Do(m.ns, func() error {
			return netlink.RouteSubscribeWithOptions(updates, done, netlink.RouteSubscribeOptions{
				ErrorCallback: func(err error) { m.log.Debug("route subscription", "err", err) },
			})
		})
	}
	subscribe()
	tick := time.NewTicker(kernelSyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, open := <-updates:
			if !open {
				updates = nil // the periodic dump carries on
			}
		case <-tick.C:
		}
		if err := m.sync(); err != nil {
			m.log.Warn("read kernel routes", "err", err)
		}
	}
}

// sync makes the FIB match the kernel's main and local tables.
func (m *kernelMirror) sync() error {
	h, err := netns.Handle(m.ns)
	if err != nil {
		return err
	}
	defer h.Close()
	devs := map[int]string{}
	for _, d := range m.devs {
		link, err := h.LinkByName(d)
		if err != nil {
			return fmt.Errorf("underlay %s: %w", d, err)
		}
		devs[link.Attrs().Index] = d
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	want := map[netip.Prefix]fib.Route{}
	for _, kr := range routes {
		if kr.Table != unix.RT_TABLE_MAIN && kr.Table != unix.RT_TABLE_LOCAL {
			continue
		}
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if kr.Dst != nil {
			a, ok := netip.AddrFromSlice(kr.Dst.IP.To4())
			bits, _ := kr.Dst.Mask.Size()
			if !ok {
				continue
			}
			dst = netip.PrefixFrom(a, bits).Masked()
		}
		if old, seen := want[dst]; seen && old.Type == rtnLocal {
			continue // the local table is consulted first
		}
		r := fib.Route{Dst: dst, Type: rtnLocal, Protocol: fib.Protocol(kr.Protocol), Scope: fib.ScopeHost, Dev: "lo"}
		linkIndex, gw := kr.LinkIndex, kr.Gw
		if len(kr.MultiPath) > 0 {
			linkIndex, gw = kr.MultiPath[0].LinkIndex, kr.MultiPath[0].Gw
		}
		if dev, ok := devs[linkIndex]; ok && kr.Type == unix.RTN_UNICAST {
			r = fib.Route{Dst: dst, Type: fib.Unicast, Dev: dev, Protocol: fib.Protocol(kr.Protocol), Scope: fib.Scope(kr.Scope)}
			if g, ok := netip.AddrFromSlice(gw.To4()); ok && gw != nil {
				r.Gateway = g
				r.OnLink = kr.Flags&unix.RTNH_F_ONLINK != 0
			}
			if s, ok := netip.AddrFromSlice(kr.Src.To4()); ok && kr.Src != nil {
				r.PrefSrc = s
			}
		}
		want[dst] = r
	}
	for p, r := range want {
		if old, ok := m.installed[p]; ok && old == r {
			continue
		}
		if err := m.table.Replace(r); err != nil {
			m.log.Warn("mirror kernel route", "route", r.String(), "err", err)
			continue
		}
		m.installed[p] = r
		m.log.Debug("kernel route", "route", r.String())
	}
	for p := range m.installed {
		if _, ok := want[p]; !ok {
			m.table.Delete(p, 0)
			delete(m.installed, p)
			m.log.Debug("kernel route gone", "prefix", p)
		}
	}
	return nil
}

// routerLink is one interface's link to its network.
type routerLink struct {
	network string
	ep      *fabric.Endpoint
}

// state returns the link's state as the control API reports it.
func (l routerLink) state(name string) control.Link {
	c := control.Link{Interface: name, Network: l.network, Up: l.ep.IsUp()}
	if f := l.ep.Impairment(); !f.IsZero() {
		c.Impairment = &config.Impairment{Delay: f.Delay, Jitter: f.Jitter, Loss: f.Loss * 100, Rate: f.Rate, Duplicate: f.Duplicate * 100, Corrupt: f.Corrupt * 100}
	}
	return c
}

// fabricImpairment is imp as a fabric endpoint applies it (loss as a
// probability).
func fabricImpairment(imp config.Impairment) fabric.Impairment {
	return fabric.Impairment{Delay: imp.Delay, Jitter: imp.Jitter, Loss: imp.Loss / 100, Rate: imp.Rate, Duplicate: imp.Duplicate / 100, Corrupt: imp.Corrupt / 100}
}

// serveRouterControl serves status, routes, stats and the interfaces'
// link state on the router's control socket.
func serveRouterControl(ctx context.Context, cfg *config.Router, table *fib.Table, engine *dataplane.Engine, links map[string]routerLink, log *slog.Logger) error {
	started := time.Now().UTC()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		control.Reply(w, &control.Status{Node: cfg.Router, Address: cfg.Prefix.Addr(), Started: started, Ready: true, Routes: table.Len()}, nil)
	})
	mux.HandleFunc("GET /v1/routes", func(w http.ResponseWriter, r *http.Request) {
		// the main table, as `ip route` lists it: the local table's
		// routes are in the FIB only to hand packets to the kernel
		w.Header().Set("Content-Type", "text/plain")
		routes := slices.DeleteFunc(table.Routes(), func(r fib.Route) bool { return r.Type == rtnLocal })
		fmt.Fprint(w, fib.Format(routes))
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		control.Reply(w, engine.Stats(), nil)
	})
	mux.Handle("GET /metrics", metricsHandler(table, engine))
	mux.HandleFunc("GET /v1/links", func(w http.ResponseWriter, r *http.Request) {
		var ls []control.Link
		for name, l := range links {
			ls = append(ls, l.state(name))
		}
		control.Reply(w, ls, nil)
	})
	mux.HandleFunc("PUT /v1/link", func(w http.ResponseWriter, r *http.Request) {
		var l control.Link
		if err := control.Decode(r, &l); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if l.Interface == "" && len(links) == 1 {
			l.Interface = cfg.Interface
		}
		link, ok := links[l.Interface]
		if !ok {
			names := slices.Sorted(maps.Keys(links))
			http.Error(w, fmt.Sprintf("router %s has no interface %q (its interfaces: %s)", cfg.Router, l.Interface, strings.Join(names, ", ")), http.StatusBadRequest)
			return
		}
		link.ep.SetUp(l.Up)
		log.Info("link set", "interface", l.Interface, "up", l.Up)
		control.Reply(w, link.state(l.Interface), nil)
	})
	mux.HandleFunc("PUT /v1/impairment", func(w http.ResponseWriter, r *http.Request) {
		var li control.LinkImpairment
		if err := control.Decode(r, &li); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if li.Interface == "" && len(links) == 1 {
			li.Interface = cfg.Interface
		}
		link, ok := links[li.Interface]
		if !ok {
			names := slices.Sorted(maps.Keys(links))
			http.Error(w, fmt.Sprintf("router %s has no interface %q (its interfaces: %s)", cfg.Router, li.Interface, strings.Join(names, ", ")), http.StatusBadRequest)
			return
		}
		if err := li.Impairment.Validate(); err != nil {
			http.Error(w, "impairment: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := link.ep.SetImpairment(fabricImpairment(li.Impairment)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		log.Info("link impairment set", "interface", li.Interface, "impairment", li.Impairment.String())
		control.Reply(w, link.state(li.Interface), nil)
	})
	return control.Serve(ctx, cfg.Control, mux, log)
}

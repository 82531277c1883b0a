// Package kernel is kernel mode's dataplane: a node whose forwarding is the
// Linux kernel's, programmed the way Calico's Felix and BIRD program a host.
//
// It owns, in the main routing table of one network namespace (a named one,
// or the namespace the process runs in on a real host):
//
//   - routes of protocol bird (RTPROT_BIRD, 12): the blocks learned over BGP
//     ("10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird", through
//     tunl0 "onlink" with IPIP) and the blackholes of the node's own blocks;
//   - routes whose device is a workload's (cali*): "10.244.166.128 dev
//     cali717821d73f3 scope link", protocol boot as Calico's CNI plugin
//     writes them;
//   - the workloads' veth pairs (host side cali*, pod side eth0) and their
//     per-interface sysctls;
//   - tunl0: the kernel's (address, MTU, state) where the kernel has the
//     ipip module, else a userspace tunl0 of its own (a TUN device and a
//     raw IPIP socket, see EnableTunnel) behind the same routes.
//
// A reconcile loop (route notifications plus a periodic full resync)
// restores wanted routes that disappear and deletes owned routes nobody
// wants; it never touches a route it does not own (a default route,
// docker0's, any other protocol's). A new Dataplane on a namespace that
// already has owned routes adopts them: they stay in the kernel untouched
// until the caller claims them (ReplaceRoute with the same route writes
// nothing) or the adoption time ends, so restarting the agent costs no
// forwarding gap. Close leaves every route and workload in place (all but
// a userspace tunl0, which lives in the process).
//
// Routes go in and come out as fib.Route values: Routes reads the kernel's
// main table back, so fib.Format of it is what `ip route` prints.
//
// The package does not import the agent: vrouter/agent adapts a Dataplane to
// its Dataplane interface.
package kernel

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"golang.org/x/sys/unix"
)

// WorkloadPrefix starts the name of every workload's host-side interface;
// routes on such devices belong to the dataplane, as to Felix.
const WorkloadPrefix = "cali"

// Defaults of Options.
const (
	// DefaultResyncInterval is Felix's default route refresh interval.
	DefaultResyncInterval = 90 * time.Second
	// DefaultAdoptFor is how long adopted routes wait to be claimed.
	DefaultAdoptFor = 2 * time.Minute
)

// Options configure a Dataplane.
type Options struct {
	// Namespace is the named network namespace the dataplane programs;
	// empty means the namespace the process runs in (a real host). A named
	// namespace is never the root one (package netns refuses it).
	Namespace string
	// Interface is the underlay interface (ens33); it must exist.
	Interface string
	// Address is the node address on Interface, with the network's
	// length; New adds it if the interface lacks it. Invalid: none.
	Address netip.Prefix
	// MTU is the underlay's MTU; tunl0 gets MTU-20. 0: 1500.
	MTU int
	// ResyncInterval is the period of the full resync (0: the default).
	ResyncInterval time.Duration
	// AdoptFor is how long after Run starts owned routes found by New
	// stay in place unclaimed before the resync deletes them (0: the
	// default).
	AdoptFor time.Duration
	// TunnelSources are the node addresses whose IPIP a userspace tunl0
	// accepts, besides the next hops of the routes through tunl0.
	TunnelSources []netip.Addr
	// NoUserspaceTunnel makes EnableTunnel fail (with ErrNoIPIP) on a
	// kernel without the ipip module instead of making a userspace tunl0.
	NoUserspaceTunnel bool
	Logger            *slog.Logger
}

// Port is a workload's veth pair as AddWorkload makes it.
type Port struct {
	Name string // the host side: caliXXXXXXXXXXX
	// Namespace is the workload's namespace, where eth0 goes: a name
	// under /run/netns, or a namespace file's path (/proc/PID/ns/net,
	// a CNI runtime's CNI_NETNS).
	Namespace string
	Address   netip.Addr // the workload's address, a /32 on eth0
	MTU       int        // of both ends; 0: the underlay's
	// PodInterface is the pod side's name; empty: eth0 (PodInterface).
	PodInterface string
}

// key identifies a route in the main table as the kernel's replace does:
// destination and metric.
type key struct {
	dst    netip.Prefix
	metric uint32
}

func keyOf(r fib.Route) key { return key{r.Dst, r.Metric} }

// Dataplane programs one namespace's kernel. Its methods are safe for
// concurrent use.
type Dataplane struct {
	opts Options
	log  *slog.Logger
	h    *netlink.Handle

	// mu guards wanted, adopted and adoptUntil, and serializes every
	// change to owned routes (the caller's and the reconcile loop's).
	mu         sync.Mutex
	wanted     map[key]fib.Route
	adopted    map[key]fib.Route // found at New, not claimed yet
	adoptUntil time.Time         // zero until Run starts

	// tunnelRoutes are the wanted routes through tunl0, for a userspace
	// tunl0 to find a packet's next hop; utun is that tunl0, once
	// EnableTunnel made it (under mu), and tunnel says which tunl0 is up.
	tunnelRoutes *fib.Table
	utun         *userTunnel
	tunnel       atomic.Value // string: TunnelKernel, TunnelUserspace

	kick    chan struct{}  // asks the reconcile loop for a resync
	closed  atomic.Bool    // set by Close, under mu
	done    chan struct{}  // closed by Close: ends Run's subscription
	running sync.WaitGroup // the reconcile loop, which Close waits for

	resyncs, restored, removed, adoptedN, claimed atomic.Uint64
}

// New opens the namespace's kernel, checks the underlay interface (giving
// it Address and bringing it up when needed), enables IPv4 forwarding and
// adopts the owned routes already in the main table.
func New(opts Options) (*Dataplane, error) {
	if opts.Interface == "" {
		return nil, errors.New("kernel dataplane: no underlay interface")
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	if opts.AdoptFor <= 0 {
		opts.AdoptFor = DefaultAdoptFor
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h, err := openHandle(opts.Namespace)
	if err != nil {
		return nil, err
	}
	d := &Dataplane{
		opts: opts, log: log, h: h,
		wanted: map[key]fib.Route{}, adopted: map[key]fib.Route{}, tunnelRoutes: fib.NewTable(),
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if err := d.setup(); err != nil {
		h.Close()
		return nil, err
	}
	return d, nil
}

func (d *Dataplane) setup() error {
	link, err := d.h.LinkByName(d.opts.Interface)
	if err != nil {
		return fmt.Errorf("kernel dataplane: underlay interface %s: %w", d.opts.Interface, err)
	}
	if a := d.opts.Address; a.IsValid() {
		addrs, err := d.h.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("kernel dataplane: addresses of %s: %w", d.opts.Interface, err)
		}
		if !slices.ContainsFunc(addrs, func(x netlink.Addr) bool { return prefixOf(x.IPNet) == a }) {
			if err := d.h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(a)}); err != nil {
				return fmt.Errorf("kernel dataplane: add %s to %s: %w", a, d.opts.Interface, err)
			}
			d.log.Info("node address added to the underlay interface", "interface", d.opts.Interface, "address", a)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := d.h.LinkSetUp(link); err != nil {
			return fmt.Errorf("kernel dataplane: set %s up: %w", d.opts.Interface, err)
		}
	}
	if err := d.sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	routes, err := d.list()
	if err != nil {
		return err
	}
	for _, r := range routes {
		if Owned(r) {
			d.adopted[keyOf(r)] = r
		}
	}
	d.adoptedN.Store(uint64(len(d.adopted)))
	if len(d.adopted) > 0 {
		d.log.Info("adopted the routes already in the kernel", "routes", len(d.adopted))
	}
	return nil
}

// Owned reports whether r belongs to the dataplane: a route of protocol
// bird, or one on a workload's device (cali*).
func Owned(r fib.Route) bool {
	return r.Protocol == fib.ProtoBird || strings.HasPrefix(r.Dev, WorkloadPrefix)
}

// openHandle returns a netlink handle on the named namespace, or on the
// current one for "".
func openHandle(ns string) (*netlink.Handle, error) {
	if ns != "" {
		return netns.Handle(ns)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return h, nil
}

// nsFile opens the named namespace (refusing the root one), or the
// current one for "", as a namespace descriptor the caller closes.
func nsFile(ns string) (vnetns.NsHandle, error) {
	if ns == "" {
		return vnetns.Get()
	}
	fd := -1
	err := netns.Do(ns, func() error {
		var err error
		fd, err = unix.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return vnetns.None(), fmt.Errorf("open namespace %s: %w", ns, err)
	}
	return vnetns.NsHandle(fd), nil
}

// sysctl writes a network sysctl of the dataplane's namespace, such as
// "net/ipv4/ip_forward".
func (d *Dataplane) sysctl(k, v string) error {
	if d.opts.Namespace != "" {
		return netns.SetSysctl(d.opts.Namespace, k, v)
	}
	if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v+"\n"), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
	}
	return nil
}

// list reads the IPv4 main table, in the kernel's order.
func (d *Dataplane) list() ([]fib.Route, error) {
	nrs, err := d.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	names := map[int]string{}
	out := make([]fib.Route, 0, len(nrs))
	for _, nr := range nrs {
		out = append(out, d.fromNetlink(nr, names))
	}
	return out, nil
}

// linkName returns the name of the link with index i, caching it in names.
func (d *Dataplane) linkName(i int, names map[int]string) string {
	if i == 0 {
		return ""
	}
	if n, ok := names[i]; ok {
		return n
	}
	n := ""
	if l, err := d.h.LinkByIndex(i); err == nil {
		n = l.Attrs().Name
	}
	names[i] = n
	return n
}

// fromNetlink converts a kernel route.
func (d *Dataplane) fromNetlink(nr netlink.Route, names map[int]string) fib.Route {
	r := fib.Route{
		Dst:      prefixOf(nr.Dst),
		Type:     fib.Type(nr.Type),
		Dev:      d.linkName(nr.LinkIndex, names),
		Protocol: fib.Protocol(nr.Protocol),
		Scope:    fib.Scope(nr.Scope),
		OnLink:   nr.Flags&int(netlink.FLAG_ONLINK) != 0,
		Metric:   uint32(nr.Priority),
	}
	if !r.Dst.IsValid() {
		r.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	r.Gateway = addrOf(nr.Gw)
	r.PrefSrc = addrOf(nr.Src)
	return r
}

// toNetlink converts r for the main table.
func (d *Dataplane) toNetlink(r fib.Route) (*netlink.Route, error) {
	nr := &netlink.Route{
		Dst:      ipNet(r.Dst),
		Type:     int(r.Type),
		Protocol: netlink.RouteProtocol(r.Protocol),
		Scope:    netlink.Scope(r.Scope),
		Priority: int(r.Metric),
		Table:    unix.RT_TABLE_MAIN,
	}
	if r.Type == 0 {
		nr.Type = unix.RTN_UNICAST
	}
	if r.Gateway.IsValid() {
		nr.Gw = net.IP(r.Gateway.AsSlice())
	}
	if r.PrefSrc.IsValid() {
		nr.Src = net.IP(r.PrefSrc.AsSlice())
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	if r.Dev != "" {
		l, err := d.h.LinkByName(r.Dev)
		if err != nil {
			return nil, fmt.Errorf("route %s: device %s: %w", r, r.Dev, err)
		}
		nr.LinkIndex = l.Attrs().Index
	}
	return nr, nil
}

// Routes returns the IPv4 main table as `ip route` lists it (nil if it
// cannot be read).
func (d *Dataplane) Routes() []fib.Route {
	rs, err := d.list()
	if err != nil {
		d.log.Error("read the kernel's routes", "err", err)
		return nil
	}
	return rs
}

// Route returns the routes to exactly dst, lowest metric first.
func (d *Dataplane) Route(dst netip.Prefix) []fib.Route {
	var out []fib.Route
	for _, r := range d.Routes() {
		if r.Dst == dst {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b fib.Route) int { return cmp.Compare(a.Metric, b.Metric) })
	return out
}

// Lookup returns the route of the main table a packet to addr would take:
// the longest prefix containing it, the lowest metric among equals.
func (d *Dataplane) Lookup(addr netip.Addr) (fib.Route, bool) {
	var best fib.Route
	found := false
	for _, r := range d.Routes() {
		if !r.Dst.Contains(addr) {
			continue
		}
		if !found || r.Dst.Bits() > best.Dst.Bits() || (r.Dst.Bits() == best.Dst.Bits() && r.Metric < best.Metric) {
			best, found = r, true
		}
	}
	return best, found
}

// ReplaceRoute installs r. An owned route (see Owned) becomes wanted: the
// reconcile loop keeps it in the kernel until DeleteRoute. If the kernel
// already has exactly r (an adopted route), nothing is written. Any other
// route is the host's: it is added if the kernel has no route to r.Dst,
// and then left alone (never replaced, restored or deleted).
func (d *Dataplane) ReplaceRoute(r fib.Route) error {
	if !Owned(r) {
		return d.ensureHostRoute(r)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := keyOf(r)
	if old, ok := d.adopted[k]; ok {
		delete(d.adopted, k)
		if old == r {
			d.wanted[k] = r
			d.trackTunnelRoute(r)
			d.claimed.Add(1)
			return nil
		}
	}
	if err := d.write(r); err != nil {
		return err
	}
	d.wanted[k] = r
	d.trackTunnelRoute(r)
	return nil
}

// trackTunnelRoute keeps the routes through tunl0 for a userspace tunl0,
// and accepts IPIP from their next hops. Called with mu held.
func (d *Dataplane) trackTunnelRoute(r fib.Route) {
	if r.Dev != TunnelName {
		d.tunnelRoutes.Delete(r.Dst, r.Metric)
		return
	}
	_ = d.tunnelRoutes.Replace(r)
	if d.utun != nil && r.Gateway.Is4() {
		_ = d.utun.decap.AddNodes(r.Gateway)
	}
}

// write replaces r in the kernel.
func (d *Dataplane) write(r fib.Route) error {
	nr, err := d.toNetlink(r)
	if err != nil {
		return err
	}
	if err := d.h.RouteReplace(nr); err != nil {
		return fmt.Errorf("route replace %s: %w", r, err)
	}
	return nil
}

// remove deletes the route r from the kernel; one already gone is not an
// error.
func (d *Dataplane) remove(r fib.Route) error {
	// The scope is matched too: netlink sends the route's (universe when
	// zero), not the kernel's wildcard.
	nr := &netlink.Route{Dst: ipNet(r.Dst), Table: unix.RT_TABLE_MAIN, Protocol: netlink.RouteProtocol(r.Protocol), Scope: netlink.Scope(r.Scope), Priority: int(r.Metric), Type: int(r.Type)}
	if r.Type == 0 {
		nr.Type = unix.RTN_UNICAST
	}
	if err := d.h.RouteDel(nr); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("route del %s: %w", r, err)
	}
	return nil
}

// ensureHostRoute adds r if the kernel has no route to r.Dst.
func (d *Dataplane) ensureHostRoute(r fib.Route) error {
	if len(d.Route(r.Dst)) > 0 {
		return nil
	}
	nr, err := d.toNetlink(r)
	if err != nil {
		return err
	}
	if err := d.h.RouteAdd(nr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("route add %s: %w", r, err)
	}
	return nil
}

// DeleteRoute removes the owned route to dst with metric 0, wanted or
// adopted. Routes the dataplane does not own are never deleted.
func (d *Dataplane) DeleteRoute(dst netip.Prefix) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := key{dst: dst}
	r, ok := d.wanted[k]
	if !ok {
		r, ok = d.adopted[k]
	}
	delete(d.wanted, k)
	delete(d.adopted, k)
	d.tunnelRoutes.Delete(dst, 0)
	if !ok {
		return
	}
	if err := d.remove(r); err != nil {
		d.log.Error("delete route", "route", r.String(), "err", err)
	}
}

// LinkUp reports whether the underlay interface is up (administratively,
// with a carrier).
func (d *Dataplane) LinkUp() bool {
	l, err := d.h.LinkByName(d.opts.Interface)
	if err != nil {
		return false
	}
	return l.Attrs().Flags&net.FlagUp != 0 && l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
}

// SetLinkUp sets the underlay interface administratively up or down. The
// kernel drops the routes through a link that goes down; the resync
// started when it comes back up restores the owned ones.
func (d *Dataplane) SetLinkUp(up bool) {
	l, err := d.h.LinkByName(d.opts.Interface)
	if err == nil {
		if up {
			err = d.h.LinkSetUp(l)
		} else {
			err = d.h.LinkSetDown(l)
		}
	}
	if err != nil {
		d.log.Error("set underlay link", "interface", d.opts.Interface, "up", up, "err", err)
		return
	}
	if up {
		d.Resync()
	}
}

// Stats returns the reconcile loop's counters and the underlay
// interface's.
func (d *Dataplane) Stats() map[string]uint64 {
	m := map[string]uint64{
		"kernel_resyncs":         d.resyncs.Load(),
		"kernel_routes_restored": d.restored.Load(),
		"kernel_routes_removed":  d.removed.Load(),
		"kernel_routes_adopted":  d.adoptedN.Load(),
		"kernel_routes_claimed":  d.claimed.Load(),
	}
	switch d.Tunnel() {
	case TunnelKernel:
		m["tunl0_kernel"] = 1
	case TunnelUserspace:
		m["tunl0_userspace"] = 1
	}
	d.mu.Lock()
	if d.utun != nil {
		d.utun.stats(m)
	}
	d.mu.Unlock()
	if l, err := d.h.LinkByName(d.opts.Interface); err == nil && l.Attrs().Statistics != nil {
		s := l.Attrs().Statistics
		m["underlay_rx_packets"] = s.RxPackets
		m["underlay_tx_packets"] = s.TxPackets
		m["underlay_rx_bytes"] = s.RxBytes
		m["underlay_tx_bytes"] = s.TxBytes
		m["underlay_rx_dropped"] = s.RxDropped
		m["underlay_tx_dropped"] = s.TxDropped
	}
	return m
}

// Close stops the reconcile loop and releases the netlink handle. Routes,
// workloads and the kernel's tunl0 stay as they are: forwarding goes on
// while no agent runs. A userspace tunl0 goes (with the routes through it):
// it lives in this process. It may be called more than once.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	if d.closed.Swap(true) {
		d.mu.Unlock()
		return nil
	}
	close(d.done)
	d.mu.Unlock()
	d.running.Wait() // a resync takes mu
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.utun != nil {
		d.utun.close()
	}
	d.h.Close()
	return nil
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	a = a.Unmap()
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

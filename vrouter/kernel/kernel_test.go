package kernel

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
	"golang.org/x/sys/unix"
)

// The seed's node 1 in BGP mode (ipipMode Never): the dataplane programs
// its blocks, blackhole and workload; the host's own routes (default,
// ens33's and docker0's connected routes) are there as on the seed's host.
// `ip route` prints the seed's table byte for byte, and so does fib.Format
// of what the dataplane reads back.
func TestSeedNeverTable(t *testing.T) {
	guard(t)
	h := newHosts(t, "192.168.50.10/24")[0]
	pod := newNS(t, "pod")
	d := newDP(t, h, Options{})
	if err := d.AddWorkload(context.Background(), Port{Name: "cali717821d73f3", Namespace: pod, Address: netip.MustParseAddr("10.244.166.128"), MTU: 1440}); err != nil {
		t.Fatal(err)
	}
	replace(t, d,
		"blackhole 10.244.166.128/26 proto bird",
		"10.244.166.128 dev cali717821d73f3 scope link",
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
		"10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird",
	)
	want := seed(t, "seed-never.txt")
	if got := ipRoute(t, h.ns); got != want {
		t.Errorf("ip route:\n%s\nwant the seed's:\n%s", got, want)
	}
	if got := fib.Format(d.Routes()); got != want {
		t.Errorf("fib.Format(Routes()):\n%s\nwant the seed's:\n%s", got, want)
	}
	// The host's own routes, given through ReplaceRoute as the agent
	// does (with metric 0), change nothing: the host has routes there.
	replace(t, d, "default via 192.168.50.1 dev ens33 proto static", "192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10")
	if got := ipRoute(t, h.ns); got != want {
		t.Errorf("after the host routes were given again, ip route:\n%s\nwant:\n%s", got, want)
	}
	if r, ok := d.Lookup(netip.MustParseAddr("10.244.104.7")); !ok || r.String() != "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird" {
		t.Errorf("Lookup(10.244.104.7) = %v, %v", r, ok)
	}
	if r, ok := d.Lookup(netip.MustParseAddr("10.244.166.130")); !ok || r.Type != fib.Blackhole {
		t.Errorf("Lookup(10.244.166.130) = %v, %v; want the blackhole", r, ok)
	}
	if rs := d.Route(netip.MustParsePrefix("10.244.166.128/32")); len(rs) != 1 || rs[0].Dev != "cali717821d73f3" {
		t.Errorf("Route(10.244.166.128/32) = %v", rs)
	}
}

// The seed's node 1 in IPIP mode (ipipMode Always): the blocks go through
// tunl0, the kernel's where it has the ipip module, else a userspace one;
// the table is the same.
func TestSeedAlwaysTable(t *testing.T) {
	guard(t)
	h := newHosts(t, "192.168.50.10/24")[0]
	pod := newNS(t, "pod")
	d := newDP(t, h, Options{MTU: 1460})
	if err := d.EnableTunnel(netip.MustParseAddr("10.244.166.128")); err != nil {
		t.Fatal(err)
	}
	t.Logf("tunl0 is the %s one", d.Tunnel())
	if out := ip(t, h.ns, "-o", "link", "show", "dev", "tunl0"); !strings.Contains(out, "mtu 1440") || !strings.Contains(out, ",UP") {
		t.Errorf("tunl0: %s", out)
	}
	if out := ip(t, h.ns, "-o", "addr", "show", "dev", "tunl0"); !strings.Contains(out, "inet 10.244.166.128/32") {
		t.Errorf("tunl0 addresses: %s", out)
	}
	if err := d.AddWorkload(context.Background(), Port{Name: "calif3c799362a5", Namespace: pod, Address: netip.MustParseAddr("10.244.166.129")}); err != nil {
		t.Fatal(err)
	}
	replace(t, d,
		"blackhole 10.244.166.128/26 proto bird",
		"10.244.166.129 dev calif3c799362a5 scope link",
		"10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink",
		"10.244.135.0/26 via 192.168.50.12 dev tunl0 proto bird onlink",
	)
	if got, want := ipRoute(t, h.ns), seed(t, "seed-always.txt"); got != want {
		t.Errorf("ip route:\n%s\nwant the seed's:\n%s", got, want)
	}
}

// Without the ipip module, and told to make no userspace tunl0,
// EnableTunnel says the module is missing, and leaves no tunl0.
func TestEnableTunnelWithoutIPIP(t *testing.T) {
	guard(t)
	h := newHosts(t, "192.168.50.10/24")[0]
	d := newDP(t, h, Options{NoUserspaceTunnel: true})
	if _, err := d.h.LinkByName("tunl0"); err == nil {
		t.Skip("this kernel has the ipip module (tunl0 exists): TestSeedAlwaysTable covers it")
	}
	err := d.EnableTunnel(netip.MustParseAddr("10.244.166.128"))
	if !errors.Is(err, ErrNoIPIP) || !strings.Contains(err.Error(), "ipip module") {
		t.Fatalf("EnableTunnel = %v, want an error saying the ipip module is missing", err)
	}
	if out := ip(t, h.ns, "-o", "link"); strings.Contains(out, "tunl0") {
		t.Errorf("a tunl0 was left:\n%s", out)
	}
}

// Ownership as Felix's: wanted routes deleted by hand come back, owned
// routes nobody wants go, routes of other protocols and devices stay
// through every resync.
func TestOwnership(t *testing.T) {
	guard(t)
	h := newHosts(t, "192.168.50.10/24")[0]
	pod := newNS(t, "pod")
	// A long resync interval: what happens at once is the notifications'.
	d := newDP(t, h, Options{ResyncInterval: time.Hour})
	if err := d.AddWorkload(context.Background(), Port{Name: "cali0123456789a", Namespace: pod, Address: netip.MustParseAddr("10.244.166.130")}); err != nil {
		t.Fatal(err)
	}
	replace(t, d,
		"blackhole 10.244.166.128/26 proto bird",
		"10.244.166.130 dev cali0123456789a scope link",
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
	)
	// Not the dataplane's: a static route, another routing daemon's, one
	// on docker0, a blackhole of protocol boot.
	foreign := []string{
		"10.99.0.0/24 via 192.168.50.1 dev ens33 proto static",
		"10.98.0.0/24 via 192.168.50.1 dev ens33 proto bgp",
		"10.97.0.0/24 dev docker0 scope link",
		"blackhole 10.96.0.0/24",
	}
	for _, l := range foreign {
		ip(t, h.ns, append([]string{"route", "add"}, strings.Fields(l)...)...)
	}
	run(t, d)
	eventually(t, 5*time.Second, "first resync", func() bool { return d.Stats()["kernel_resyncs"] >= 1 })

	// A wanted route deleted by hand comes back (a notification).
	for _, l := range []string{"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird", "blackhole 10.244.166.128/26 proto bird", "10.244.166.130 dev cali0123456789a scope link"} {
		ip(t, h.ns, "route", "del", strings.Fields(strings.TrimPrefix(l, "blackhole "))[0])
		eventually(t, 5*time.Second, "route restored: "+l, func() bool { return hasLine(t, h.ns, l) })
	}
	// Changed by hand, it is set back.
	ip(t, h.ns, "route", "replace", "10.244.104.0/26", "via", "192.168.50.99", "dev", "ens33", "proto", "bird")
	eventually(t, 5*time.Second, "route set back", func() bool {
		return hasLine(t, h.ns, "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird")
	})
	// Owned routes nobody wants are deleted: protocol bird, or on a cali
	// device.
	ip(t, h.ns, "link", "add", "calideadbeef000", "type", "veth", "peer", "name", "deadpeer")
	ip(t, h.ns, "link", "set", "calideadbeef000", "up")
	ip(t, h.ns, "link", "set", "deadpeer", "up")
	ip(t, h.ns, "route", "add", "10.244.200.0/26", "via", "192.168.50.11", "dev", "ens33", "proto", "bird")
	ip(t, h.ns, "route", "add", "10.244.201.5", "dev", "calideadbeef000", "scope", "link")
	eventually(t, 5*time.Second, "unwanted owned routes removed", func() bool {
		out := ipRoute(t, h.ns)
		return !strings.Contains(out, "10.244.200.0/26") && !strings.Contains(out, "10.244.201.5 ")
	})
	// Several full resyncs later the foreign routes are all there.
	for range 3 {
		n := d.Stats()["kernel_resyncs"]
		d.Resync()
		eventually(t, 5*time.Second, "a resync", func() bool { return d.Stats()["kernel_resyncs"] > n })
	}
	for _, l := range append(foreign, "default via 192.168.50.1 dev ens33 proto static metric 100", "172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1") {
		if !hasLine(t, h.ns, l) {
			t.Errorf("route %q not the dataplane's is gone:\n%s", l, ipRoute(t, h.ns))
		}
	}
	if s := d.Stats(); s["kernel_routes_removed"] != 2 || s["kernel_routes_restored"] < 4 {
		t.Errorf("stats %v: want 2 routes removed, at least 4 restored", s)
	}
	// DeleteRoute deletes owned routes, and nothing else.
	d.DeleteRoute(netip.MustParsePrefix("10.244.104.0/26"))
	d.DeleteRoute(netip.MustParsePrefix("10.99.0.0/24"))
	if hasLine(t, h.ns, "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird") {
		t.Error("DeleteRoute left its route")
	}
	if !hasLine(t, h.ns, foreign[0]) {
		t.Error("DeleteRoute deleted a static route")
	}
}

// The periodic resync restores what no notification reports: routes the
// kernel flushes when the underlay link goes down and comes back up.
func TestResyncAfterLinkDown(t *testing.T) {
	guard(t)
	h := newHosts(t, "192.168.50.10/24")[0]
	d := newDP(t, h, Options{ResyncInterval: 100 * time.Millisecond})
	route := "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird"
	replace(t, d, route)
	run(t, d)
	if !d.LinkUp() {
		t.Fatal("LinkUp() = false on an up underlay")
	}
	d.SetLinkUp(false)
	if d.LinkUp() {
		t.Fatal("LinkUp() = true after SetLinkUp(false)")
	}
	if hasLine(t, h.ns, route) {
		t.Fatal("the kernel kept a route through a down link")
	}
	// Down, the route cannot be written: the resyncs keep trying.
	n := d.Stats()["kernel_resyncs"]
	eventually(t, 5*time.Second, "resyncs while down", func() bool { return d.Stats()["kernel_resyncs"] >= n+2 })
	// Back up by hand (no resync asked), with the connected route the
	// host's network manager puts back.
	ip(t, h.ns, "link", "set", "ens33", "up")
	ip(t, h.ns, "route", "add", "192.168.50.0/24", "dev", "ens33", "proto", "kernel", "scope", "link", "src", "192.168.50.10", "metric", "100")
	eventually(t, 5*time.Second, "route restored after the link came back", func() bool { return hasLine(t, h.ns, route) })
}

// A second dataplane on a namespace the first left (a restarted agent)
// adopts its routes: the claimed ones are never deleted nor rewritten,
// the one nobody claims goes once the adoption time is over, and the
// workload's veth stays the same device.
func TestRestartAdoptsRoutes(t *testing.T) {
	guard(t)
	h := newHosts(t, "192.168.50.10/24")[0]
	pod := newNS(t, "pod")
	port := Port{Name: "cali717821d73f3", Namespace: pod, Address: netip.MustParseAddr("10.244.166.128")}
	kept := []string{
		"blackhole 10.244.166.128/26 proto bird",
		"10.244.166.128 dev cali717821d73f3 scope link",
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
	}
	withdrawn := "10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird"

	d1 := newDP(t, h, Options{})
	if err := d1.AddWorkload(context.Background(), port); err != nil {
		t.Fatal(err)
	}
	replace(t, d1, append(kept, withdrawn)...)
	stop := run(t, d1)
	stop()
	d1.Close()
	index := linkIndex(t, h.ns, "cali717821d73f3")
	before := ipRoute(t, h.ns)

	events := watchRoutes(t, h.ns)
	d2 := newDP(t, h, Options{AdoptFor: 500 * time.Millisecond})
	if n := d2.Stats()["kernel_routes_adopted"]; n != 4 {
		t.Errorf("adopted %d routes, want 4", n)
	}
	if err := d2.AddWorkload(context.Background(), port); err != nil {
		t.Fatal(err)
	}
	replace(t, d2, kept...)
	run(t, d2)
	if got := ipRoute(t, h.ns); got != before {
		t.Errorf("ip route changed at the restart:\n%s\nwas:\n%s", got, before)
	}
	eventually(t, 5*time.Second, "the unclaimed route removed after the adoption time", func() bool {
		return !strings.Contains(ipRoute(t, h.ns), "10.244.135.0/26")
	})
	if got := linkIndex(t, h.ns, "cali717821d73f3"); got != index {
		t.Errorf("the workload's veth is interface %d, was %d: made anew", got, index)
	}
	if n := d2.Stats()["kernel_routes_claimed"]; n != 3 {
		t.Errorf("claimed %d routes, want 3", n)
	}
	sawWithdrawn := false
	for _, e := range events.stop() {
		switch {
		case e.Type == unix.RTM_DELROUTE && e.Dst == netip.MustParsePrefix("10.244.135.0/26"):
			sawWithdrawn = true
		case e.Table == unix.RT_TABLE_MAIN && !e.Dst.Addr().Is6():
			// (IPv6 link-local routes come and go with the veths'
			// addrconf; the dataplane owns IPv4 routes only.)
			t.Errorf("route event during the restart: %s", e)
		}
	}
	if !sawWithdrawn {
		t.Error("the watch did not see the unclaimed route's deletion: it saw nothing")
	}
}

// linkIndex returns the index of interface name in namespace ns.
func linkIndex(t *testing.T, ns, name string) int {
	t.Helper()
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// routeEvent is a route notification, as a test sees it.
type routeEvent struct {
	Type  uint16
	Table int
	Dst   netip.Prefix
}

func (e routeEvent) String() string {
	op := "new"
	if e.Type == unix.RTM_DELROUTE {
		op = "del"
	}
	return op + " " + e.Dst.String()
}

type watcher struct {
	stopOnce func()
	mu       sync.Mutex
	events   []routeEvent
}

// stop ends the watch and returns what it saw.
func (w *watcher) stop() []routeEvent {
	w.stopOnce()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events
}

// watchRoutes records the route notifications of namespace ns.
func watchRoutes(t *testing.T, ns string) *watcher {
	t.Helper()
	f, err := nsFile(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ch := make(chan netlink.RouteUpdate, 1024)
	done := make(chan struct{})
	if err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: &f}); err != nil {
		t.Fatal(err)
	}
	w := &watcher{}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for u := range ch {
			w.mu.Lock()
			w.events = append(w.events, routeEvent{Type: u.Type, Table: u.Table, Dst: prefixOf(u.Dst)})
			w.mu.Unlock()
		}
	}()
	w.stopOnce = sync.OnceFunc(func() {
		close(done)
		// The subscription closes ch at its next message or timeout; a
		// route change in a namespace of its own wakes it.
		select {
		case <-finished:
		case <-time.After(2 * time.Second):
		}
	})
	t.Cleanup(w.stopOnce)
	return w
}

// Pods on two hosts ping each other and their hosts through the routes
// the dataplanes program, Calico's way (proxy ARP for 169.254.1.1).
func TestWorkloadsPing(t *testing.T) {
	guard(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	hosts := newHosts(t, "192.168.50.10/24", "192.168.50.11/24")
	a := newDP(t, hosts[0], Options{})
	b := newDP(t, hosts[1], Options{})
	pa1, pa2, pb := newNS(t, "pa1"), newNS(t, "pa2"), newNS(t, "pb")
	ctx := context.Background()
	for _, w := range []struct {
		d    *Dataplane
		port Port
	}{
		{a, Port{Name: "calia0000000001", Namespace: pa1, Address: netip.MustParseAddr("10.244.166.128"), MTU: 1440}},
		{a, Port{Name: "calia0000000002", Namespace: pa2, Address: netip.MustParseAddr("10.244.166.129"), MTU: 1440}},
		{b, Port{Name: "calib0000000001", Namespace: pb, Address: netip.MustParseAddr("10.244.104.1"), MTU: 1440}},
	} {
		if err := w.d.AddWorkload(ctx, w.port); err != nil {
			t.Fatal(err)
		}
		replace(t, w.d, w.port.Address.String()+" dev "+w.port.Name+" scope link")
	}
	replace(t, a, "blackhole 10.244.166.128/26 proto bird", "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird")
	replace(t, b, "blackhole 10.244.104.0/26 proto bird", "10.244.166.128/26 via 192.168.50.10 dev ens33 proto bird")

	// The pod side is Calico's.
	if got, want := ipRoute(t, pa1), "default via 169.254.1.1 dev eth0\n169.254.1.1 dev eth0 scope link\n"; got != want {
		t.Errorf("pod routes:\n%s\nwant:\n%s", got, want)
	}
	if out := ip(t, pa1, "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "inet 10.244.166.128/32") {
		t.Errorf("pod eth0: %s", out)
	}
	if out := ip(t, pa1, "-o", "link", "show", "dev", "eth0"); !strings.Contains(out, "mtu 1440") {
		t.Errorf("pod eth0 MTU: %s", out)
	}
	host := ip(t, hosts[0].ns, "-o", "link", "show", "dev", "calia0000000001")
	if !strings.Contains(host, "link/ether ee:ee:ee:ee:ee:ee") || !strings.Contains(host, "mtu 1440") {
		t.Errorf("host side: %s", host)
	}
	for _, s := range []string{"net.ipv4.conf.calia0000000001.proxy_arp", "net.ipv4.neigh.calia0000000001.proxy_delay", "net.ipv4.conf.calia0000000001.forwarding", "net.ipv4.ip_forward"} {
		out, err := exec.Command("ip", "netns", "exec", hosts[0].ns, "sysctl", "-n", s).CombinedOutput()
		want := "1"
		if strings.Contains(s, "proxy_delay") {
			want = "0"
		}
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("sysctl %s = %q (%v), want %s", s, out, err, want)
		}
	}

	ping := func(from, to string) {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", from, "ping", "-c", "2", "-i", "0.2", "-W", "2", to).CombinedOutput()
		if err != nil {
			t.Errorf("ping %s from %s: %v\n%s", to, from, err, out)
		}
	}
	ping(pa1, "10.244.104.1")   // across the hosts
	ping(pb, "10.244.166.129")  // back, to the other pod
	ping(pa1, "10.244.166.129") // on one host
	ping(pa1, "192.168.50.10")  // its host
	ping(pb, "192.168.50.10")   // the other host

	// RemoveWorkload removes the pair; the kernel drops its route.
	a.RemoveWorkload("calia0000000002")
	a.DeleteRoute(netip.MustParsePrefix("10.244.166.129/32"))
	if out := ip(t, pa2, "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("eth0 left in the pod after RemoveWorkload:\n%s", out)
	}
	if strings.Contains(ipRoute(t, hosts[0].ns), "10.244.166.129") {
		t.Errorf("route to the removed workload left:\n%s", ipRoute(t, hosts[0].ns))
	}
}

// The seed's three nodes on one network (a bridge in a namespace of its
// own), each dataplane programming its node's shapes: node1's table is
// the seed's byte for byte, and its pod reaches the pods of the other two.
func TestSeedMeshPing(t *testing.T) {
	guard(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	hosts := newHosts(t, "192.168.50.10/24", "192.168.50.11/24", "192.168.50.12/24")
	nodes := []struct {
		block, pod, port string
	}{
		{"10.244.166.128/26", "10.244.166.128", "cali717821d73f3"},
		{"10.244.104.0/26", "10.244.104.1", "cali00000000002"},
		{"10.244.135.0/26", "10.244.135.1", "cali00000000003"},
	}
	pods := make([]string, len(hosts))
	for i, h := range hosts {
		d := newDP(t, h, Options{})
		n := nodes[i]
		pods[i] = newNS(t, "pod")
		if err := d.AddWorkload(context.Background(), Port{Name: n.port, Namespace: pods[i], Address: netip.MustParseAddr(n.pod)}); err != nil {
			t.Fatal(err)
		}
		replace(t, d, n.pod+" dev "+n.port+" scope link", "blackhole "+n.block+" proto bird")
		for j, o := range nodes {
			if j != i {
				replace(t, d, o.block+" via "+hosts[j].addr.Addr().String()+" dev ens33 proto bird")
			}
		}
	}
	if got, want := ipRoute(t, hosts[0].ns), seed(t, "seed-never.txt"); got != want {
		t.Errorf("node1's ip route:\n%s\nwant the seed's:\n%s", got, want)
	}
	for _, to := range []string{"10.244.104.1", "10.244.135.1"} {
		out, err := exec.Command("ip", "netns", "exec", pods[0], "ping", "-c", "2", "-i", "0.2", "-W", "2", to).CombinedOutput()
		if err != nil {
			t.Errorf("ping %s from node1's pod: %v\n%s", to, err, out)
		}
	}
}

// Routes without a device convert to netlink and back unchanged, and
// ownership follows the protocol and the device's name.
func TestConvert(t *testing.T) {
	d := &Dataplane{}
	for _, l := range []string{
		"blackhole 10.244.166.128/26 proto bird",
		"10.244.104.0/26 via 192.168.50.11 proto bird",
		"10.244.104.0/26 via 192.168.50.11 proto bird onlink metric 5",
		"unreachable 10.1.0.0/16 proto static",
		"default via 192.168.50.1 proto static metric 100",
		"192.168.50.0/24 proto kernel scope link src 192.168.50.10",
	} {
		r := mustRoute(t, l)
		nr, err := d.toNetlink(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.fromNetlink(*nr, map[int]string{}); got != r {
			t.Errorf("%s: round trip gave %s", l, got)
		}
	}
	for l, want := range map[string]bool{
		"blackhole 10.244.166.128/26 proto bird":                 true,
		"10.244.166.128 dev cali717821d73f3 scope link":          true,
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird": true,
		"default via 192.168.50.1 dev ens33 proto static":        false,
		"172.17.0.0/16 dev docker0 proto kernel scope link":      false,
		"10.98.0.0/24 via 192.168.50.1 dev ens33 proto bgp":      false,
		"blackhole 10.96.0.0/24":                                 false,
	} {
		if got := Owned(mustRoute(t, l)); got != want {
			t.Errorf("Owned(%s) = %v, want %v", l, got, want)
		}
	}
}

// Pods on two hosts ping each other through tunl0 (ipipMode Always): on a
// kernel without the ipip module through the userspace tunl0, whose
// counters show the packets encapsulated and decapsulated; IPIP from an
// address that is no node's is dropped and counted.
func TestTunnelPing(t *testing.T) {
	guard(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	hosts := newHosts(t, "192.168.50.10/24", "192.168.50.11/24")
	a := newDP(t, hosts[0], Options{})
	b := newDP(t, hosts[1], Options{})
	pa, pb := newNS(t, "pa"), newNS(t, "pb")
	ctx := context.Background()
	for _, w := range []struct {
		d               *Dataplane
		port            Port
		tunl0, block    string
		remote, nextHop string
	}{
		{a, Port{Name: "calia0000000001", Namespace: pa, Address: netip.MustParseAddr("10.244.166.129"), MTU: 1440}, "10.244.166.128", "10.244.166.128/26", "10.244.104.0/26", "192.168.50.11"},
		{b, Port{Name: "calib0000000001", Namespace: pb, Address: netip.MustParseAddr("10.244.104.1"), MTU: 1440}, "10.244.104.0", "10.244.104.0/26", "10.244.166.128/26", "192.168.50.10"},
	} {
		if err := w.d.EnableTunnel(netip.MustParseAddr(w.tunl0)); err != nil {
			t.Fatal(err)
		}
		if err := w.d.AddWorkload(ctx, w.port); err != nil {
			t.Fatal(err)
		}
		replace(t, w.d,
			w.port.Address.String()+" dev "+w.port.Name+" scope link",
			"blackhole "+w.block+" proto bird",
			w.remote+" via "+w.nextHop+" dev tunl0 proto bird onlink")
	}
	for _, to := range []string{"10.244.104.1", "10.244.104.0"} { // the pod, the other host's tunl0
		out, err := exec.Command("ip", "netns", "exec", pa, "ping", "-c", "3", "-i", "0.2", "-W", "2", to).CombinedOutput()
		if err != nil {
			t.Errorf("ping %s through tunl0: %v\n%s", to, err, out)
		}
	}
	if a.Tunnel() != TunnelUserspace {
		return // the kernel's tunl0: no userspace counters
	}
	for _, d := range []*Dataplane{a, b} {
		if s := d.Stats(); s["ipip_encap_packets"] < 3 || s["ipip_decap_accepted"] < 3 || s["tunl0_userspace"] != 1 {
			t.Errorf("userspace tunl0 counters: %v", s)
		}
	}
	// Rogue IPIP: from an address on the network that is no node's.
	ip(t, hosts[1].ns, "addr", "add", "192.168.50.99/24", "dev", "ens33")
	if err := sendIPIP(hosts[1].ns, "192.168.50.99", "192.168.50.10", "10.244.104.1", "10.244.166.129"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "rogue IPIP counted", func() bool { return a.Stats()["ipip_decap_unknown_source"] == 1 })
}

// sendIPIP sends one IPIP packet (an inner ICMP echo request from inner
// src to inner dst) from outer src to outer dst in namespace ns.
func sendIPIP(ns, outerSrc, outerDst, innerSrc, innerDst string) error {
	inner := make([]byte, 28)
	inner[0], inner[8], inner[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(inner[2:], 28)
	copy(inner[12:16], netip.MustParseAddr(innerSrc).AsSlice())
	copy(inner[16:20], netip.MustParseAddr(innerDst).AsSlice())
	binary.BigEndian.PutUint16(inner[10:], ^checksum(inner[:20]))
	inner[20] = 8 // echo request
	binary.BigEndian.PutUint16(inner[22:], ^checksum(inner[20:]))
	pkt := make([]byte, encap.HeaderLen+len(inner))
	n, err := encap.Encapsulate(pkt, inner, netip.MustParseAddr(outerSrc), netip.MustParseAddr(outerDst))
	if err != nil {
		return err
	}
	return netns.Do(ns, func() error {
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		return unix.Sendto(s, pkt[:n], 0, &unix.SockaddrInet4{Addr: netip.MustParseAddr(outerDst).As4()})
	})
}

// checksum is the Internet checksum's sum (RFC 1071), not complemented.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// Close ends the reconcile loop before it releases the netlink handle:
// when Close returns, Run has returned, though route notifications kept
// the loop reading links through the handle (under -race, the handle
// closed beneath a running loop was a data race; without a handle,
// netlink would have read the agent's own namespace).
func TestCloseWaitsForRun(t *testing.T) {
	guard(t)
	h := newHosts(t, "192.168.50.10/24")[0]
	d := newDP(t, h, Options{ResyncInterval: time.Hour})
	replace(t, d, "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird")
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		d.Run(context.Background())
	}()
	// Notifications of a wanted route deleted by hand, again and again:
	// each one makes the loop look the route's link up.
	stop := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = exec.Command("ip", "-n", h.ns, "route", "del", "10.244.104.0/26").Run()
		}
	}()
	eventually(t, 10*time.Second, "the loop to resync on the notifications", func() bool { return d.resyncs.Load() >= 3 })
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	default:
		t.Error("Close returned while Run was still running")
	}
	close(stop)
	<-churned
	<-ran
}

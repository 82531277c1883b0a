package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// Calico's workload plumbing.
var (
	// HostMAC is the MAC address of every workload's host-side interface.
	HostMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	// Gateway is the next hop of every workload's default route: an
	// address nobody owns, answered by the host's proxy ARP.
	Gateway = netip.MustParseAddr("169.254.1.1")
)

// PodInterface is the name of a workload's side of its veth pair.
const PodInterface = "eth0"

// AddWorkload gives a workload its veth pair, Calico's way: the host side
// p.Name with MAC ee:ee:ee:ee:ee:ee, proxy_arp=1, neigh proxy_delay=0 and
// forwarding=1; the pod side eth0 in p.Namespace with p.Address/32, the
// route "169.254.1.1 dev eth0 scope link" and "default via 169.254.1.1 dev
// eth0"; both ends with MTU p.MTU. The route to the workload on the host
// (p.Address dev p.Name scope link) is the caller's, through ReplaceRoute.
//
// A pair that exists already (a restarted agent) is kept and its settings
// made right, so the workload's traffic goes on; a host side without its
// pod side is replaced.
func (d *Dataplane) AddWorkload(_ context.Context, p Port) error {
	if !strings.HasPrefix(p.Name, WorkloadPrefix) || len(p.Name) > 15 {
		return fmt.Errorf("workload interface %q: want %s and at most 11 more characters", p.Name, WorkloadPrefix)
	}
	if !p.Address.Is4() {
		return fmt.Errorf("workload %s: address %s is not IPv4", p.Name, p.Address)
	}
	if p.MTU == 0 {
		p.MTU = d.opts.MTU
	}
	if p.PodInterface == "" {
		p.PodInterface = PodInterface
	}
	pod, err := netns.Handle(p.Namespace)
	if err != nil {
		return fmt.Errorf("workload %s: %w", p.Name, err)
	}
	defer pod.Close()

	host, err := d.h.LinkByName(p.Name)
	if err == nil {
		if _, perr := pod.LinkByName(p.PodInterface); perr == nil && host.Type() == "veth" {
			d.log.Info("workload veth exists: keeping it", "interface", p.Name)
			return d.configureWorkload(pod, p)
		}
		if err := d.h.LinkDel(host); err != nil {
			return fmt.Errorf("workload %s: remove stale %s: %w", p.Name, p.Name, err)
		}
	}
	podNS, err := nsFile(p.Namespace)
	if err != nil {
		return fmt.Errorf("workload %s: %w", p.Name, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: p.Name, MTU: p.MTU, HardwareAddr: HostMAC, TxQLen: -1},
		PeerName:      p.PodInterface,
		PeerNamespace: netlink.NsFd(podNS),
	}
	err = d.h.LinkAdd(veth)
	podNS.Close()
	if err != nil {
		return fmt.Errorf("workload %s: create veth %s/%s in %s: %w", p.Name, p.Name, p.PodInterface, p.Namespace, err)
	}
	if err := d.configureWorkload(pod, p); err != nil {
		d.RemoveWorkload(p.Name)
		return err
	}
	return nil
}

// configureWorkload sets both ends of an existing pair; every step is
// idempotent.
func (d *Dataplane) configureWorkload(pod *netlink.Handle, p Port) error {
	fail := func(what string, err error) error { return fmt.Errorf("workload %s: %s: %w", p.Name, what, err) }
	host, err := d.h.LinkByName(p.Name)
	if err != nil {
		return fail("host side", err)
	}
	if !slices.Equal(host.Attrs().HardwareAddr, HostMAC) {
		if err := d.h.LinkSetHardwareAddr(host, HostMAC); err != nil {
			return fail("host side MAC", err)
		}
	}
	if host.Attrs().MTU != p.MTU {
		if err := d.h.LinkSetMTU(host, p.MTU); err != nil {
			return fail("host side MTU", err)
		}
	}
	for _, s := range [][2]string{
		{"net/ipv4/conf/" + p.Name + "/proxy_arp", "1"},
		{"net/ipv4/neigh/" + p.Name + "/proxy_delay", "0"},
		{"net/ipv4/conf/" + p.Name + "/forwarding", "1"},
	} {
		if err := d.sysctl(s[0], s[1]); err != nil {
			return fail("sysctl", err)
		}
	}
	if err := d.h.LinkSetUp(host); err != nil {
		return fail("host side up", err)
	}

	eth0, err := pod.LinkByName(p.PodInterface)
	if err != nil {
		return fail("pod side", err)
	}
	if eth0.Attrs().MTU != p.MTU {
		if err := pod.LinkSetMTU(eth0, p.MTU); err != nil {
			return fail("eth0 MTU", err)
		}
	}
	if err := pod.AddrReplace(eth0, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(p.Address, 32))}); err != nil {
		return fail("eth0 address", err)
	}
	if err := pod.LinkSetUp(eth0); err != nil {
		return fail("eth0 up", err)
	}
	idx := eth0.Attrs().Index
	gw := ipNet(netip.PrefixFrom(Gateway, 32))
	if err := pod.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: gw, Scope: netlink.SCOPE_LINK}); err != nil {
		return fail("route to "+Gateway.String(), err)
	}
	def := ipNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0))
	if err := pod.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: def, Gw: gw.IP}); err != nil {
		return fail("default route", err)
	}
	return nil
}

// RemoveWorkload deletes the workload's veth pair (its eth0 goes with it,
// and the kernel drops the routes through it). A missing one is not an
// error.
func (d *Dataplane) RemoveWorkload(name string) {
	l, err := d.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			d.log.Error("remove workload", "interface", name, "err", err)
		}
		return
	}
	if err := d.h.LinkDel(l); err != nil {
		d.log.Error("remove workload", "interface", name, "err", err)
	}
}

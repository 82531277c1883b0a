package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// TunnelName is the IPIP device's name, as Calico's.
const TunnelName = "tunl0"

// IPIPHeaderLen is what IPIP adds to a packet: tunl0's MTU is the
// underlay's less this.
const IPIPHeaderLen = 20

// Which tunl0 is up, as Tunnel reports it.
const (
	TunnelKernel    = "kernel"    // the kernel's (ipip module)
	TunnelUserspace = "userspace" // a TUN device and a raw socket
)

// ErrNoIPIP is returned by EnableTunnel when the kernel has no ipip module
// (so no tunl0) and no userspace tunl0 may be made.
var ErrNoIPIP = errors.New("the kernel has no ipip module: no kernel tunl0")

// EnableTunnel brings up tunl0 with address addr/32 and the underlay's MTU
// less the IPIP header, as Calico configures it. Where the ipip module is
// loaded every namespace has tunl0 (its fallback device), which it uses;
// otherwise creating one loads the module if the kernel can. On a kernel
// without it, it makes a userspace tunl0 (see userTunnel) with the same
// name and routes, unless Options.NoUserspaceTunnel is set or the node has
// no address (then the error wraps ErrNoIPIP). Once tunl0 is up it does
// nothing.
func (d *Dataplane) EnableTunnel(addr netip.Addr) error {
	if d.Tunnel() != "" {
		return nil
	}
	link, err := d.h.LinkByName(TunnelName)
	if err != nil {
		if err := d.h.LinkAdd(&netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: TunnelName}}); err != nil {
			if d.opts.NoUserspaceTunnel || !d.opts.Address.IsValid() {
				return fmt.Errorf("tunl0: %w (creating an ipip link failed: %v)", ErrNoIPIP, err)
			}
			return d.enableUserTunnel(addr)
		}
		if link, err = d.h.LinkByName(TunnelName); err != nil {
			return fmt.Errorf("tunl0: %w", err)
		}
	}
	if link.Type() != "ipip" {
		return fmt.Errorf("tunl0 exists and is a %s device, not ipip", link.Type())
	}
	mtu := d.opts.MTU - IPIPHeaderLen
	if link.Attrs().MTU != mtu {
		if err := d.h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("tunl0 MTU %d: %w", mtu, err)
		}
	}
	if err := d.h.AddrReplace(link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, 32))}); err != nil {
		return fmt.Errorf("tunl0 address %s: %w", addr, err)
	}
	if err := d.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("tunl0 up: %w", err)
	}
	d.tunnel.Store(TunnelKernel)
	return nil
}

// enableUserTunnel makes and starts a userspace tunl0.
func (d *Dataplane) enableUserTunnel(addr netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	nodes := append([]netip.Addr(nil), d.opts.TunnelSources...)
	d.tunnelRoutes.Walk(func(r fib.Route) bool {
		if r.Gateway.Is4() {
			nodes = append(nodes, r.Gateway)
		}
		return true
	})
	t, err := d.openUserTunnel(d.opts.Address.Addr(), d.opts.MTU-IPIPHeaderLen, d.tunnelRoutes, nodes)
	if err != nil {
		return err
	}
	link, err := d.h.LinkByName(TunnelName)
	if err == nil {
		err = d.h.AddrReplace(link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, 32))})
	}
	if err != nil {
		t.close()
		return fmt.Errorf("tunl0 address %s: %w", addr, err)
	}
	t.run()
	d.utun = t
	d.tunnel.Store(TunnelUserspace)
	d.log.Info("no ipip module in the kernel: tunl0 is a userspace tunnel", "address", addr)
	return nil
}

// Tunnel says which tunl0 is up: TunnelKernel, TunnelUserspace, or "" if
// none.
func (d *Dataplane) Tunnel() string {
	s, _ := d.tunnel.Load().(string)
	return s
}

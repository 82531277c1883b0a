package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// TunnelName is the IPIP device's name, as Calico's.
const TunnelName = "tunl0"

// IPIPHeaderLen is what IPIP adds to a packet: tunl0's MTU is the
// underlay's less this.
const IPIPHeaderLen = 20

// ErrNoIPIP is returned by EnableTunnel when the kernel has no ipip module
// (so no tunl0).
var ErrNoIPIP = errors.New("the kernel has no ipip module: no kernel tunl0")

// EnableTunnel brings up the kernel's tunl0 with address addr/32 and the
// underlay's MTU less the IPIP header, as Calico configures it. Where
// the ipip module is loaded every namespace has tunl0 (its fallback
// device); otherwise creating one loads the module if the kernel can. On a
// kernel without it the error wraps ErrNoIPIP.
func (d *Dataplane) EnableTunnel(addr netip.Addr) error {
	link, err := d.h.LinkByName(TunnelName)
	if err != nil {
		if err := d.h.LinkAdd(&netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: TunnelName}}); err != nil {
			return fmt.Errorf("tunl0: %w (creating an ipip link failed: %v)", ErrNoIPIP, err)
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
	return nil
}

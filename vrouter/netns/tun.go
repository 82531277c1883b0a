package netns

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// TUN is a TUN device opened inside a named namespace. The file descriptor
// belongs to this process; the device lives in the namespace and vanishes
// when the descriptor is closed.
type TUN struct {
	tun.Device
	Namespace string
	Name      string
}

// OpenTUN creates the TUN device ifName inside the named namespace with
// IFF_VNET_HDR and TCP offloads (so the kernel hands over GSO super-packets),
// sets its MTU and brings it up. The device is unmonitored: nothing in this
// process ever queries it by name from the wrong namespace.
func OpenTUN(nsName, ifName string, mtu int) (*TUN, error) {
	var fd int = -1
	err := Do(nsName, func() error {
		f, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(ifName)
		if err != nil {
			unix.Close(f)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(f, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(f)
			return fmt.Errorf("TUNSETIFF %s: %w", ifName, err)
		}
		fd = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create tun %s in %s: %w", ifName, nsName, err)
	}
	dev, name, err := tun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tun %s in %s: %w", ifName, nsName, err)
	}
	t := &TUN{Device: dev, Namespace: nsName, Name: name}
	if err := t.configure(mtu); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *TUN) configure(mtu int) error {
	h, err := Handle(t.Namespace)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(t.Name)
	if err != nil {
		return fmt.Errorf("tun %s in %s: %w", t.Name, t.Namespace, err)
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("tun %s in %s: set mtu %d: %w", t.Name, t.Namespace, mtu, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("tun %s in %s: set up: %w", t.Name, t.Namespace, err)
	}
	return nil
}

// AddAddress assigns addr/bits to the device, as `ip addr add` does.
func (t *TUN) AddAddress(p netip.Prefix) error {
	h, err := Handle(t.Namespace)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(t.Name)
	if err != nil {
		return fmt.Errorf("tun %s in %s: %w", t.Name, t.Namespace, err)
	}
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		return err
	}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("tun %s in %s: add address %s: %w", t.Name, t.Namespace, p, err)
	}
	return nil
}

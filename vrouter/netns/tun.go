package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TUN offloads: TCP segmentation offload (with checksum offload) is
// required, UDP segmentation offload (Linux 6.2) is used when the kernel
// has it.
const (
	tunTCPOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
	tunUDPOffloads = unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// TUN is a TUN device opened inside a named namespace. The file descriptor
// belongs to this process; the device lives in the namespace and vanishes
// when the descriptor is closed.
//
// A TUN is only its descriptor and names: it keeps no buffers of its own
// (a node has one per workload; the engine reading it brings the buffers).
// Each read(2) of File returns one virtio_net_hdr (10 bytes,
// header.VirtioNetHdrLen) and one packet, each write(2) takes them; the
// descriptor is nonblocking and registered with Go's poller.
type TUN struct {
	file      *os.File
	Namespace string
	Name      string
}

// OpenTUN creates the TUN device ifName inside the named namespace with
// IFF_VNET_HDR and TCP offloads (so the kernel hands over GSO super-packets;
// UDP ones too where the kernel supports it), sets its MTU and brings it
// up.
func OpenTUN(nsName, ifName string, mtu int) (*TUN, error) {
	var fd int = -1
	var name string
	err := Do(nsName, func() error {
		f, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
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
		if err := unix.IoctlSetInt(f, unix.TUNSETOFFLOAD, tunTCPOffloads|tunUDPOffloads); err != nil {
			if err := unix.IoctlSetInt(f, unix.TUNSETOFFLOAD, tunTCPOffloads); err != nil {
				unix.Close(f)
				return fmt.Errorf("TUNSETOFFLOAD %s: %w", ifName, err)
			}
		}
		fd, name = f, ifr.Name()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create tun %s in %s: %w", ifName, nsName, err)
	}
	// A nonblocking descriptor: os.NewFile registers it with the poller.
	t := &TUN{file: os.NewFile(uintptr(fd), "/dev/net/tun"), Namespace: nsName, Name: name}
	if err := t.configure(mtu); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// File returns the device's descriptor.
func (t *TUN) File() *os.File { return t.file }

// Close closes the descriptor, which removes the device.
func (t *TUN) Close() error {
	if err := t.file.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
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

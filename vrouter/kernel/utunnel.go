package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"golang.org/x/sys/unix"
)

// userTunnel is a userspace tunl0, for kernels without the ipip module: a
// TUN device named tunl0 the kernel routes into ("via NODE dev tunl0
// onlink", the same routes as with the kernel's tunl0), whose packets it
// encapsulates (RFC 2003, package encap) towards the route's next hop and
// sends through a raw IPPROTO_IPIP socket; and the IPIP packets arriving
// at the host, read from that socket, decapsulated (only from known nodes:
// the others are dropped and counted) and written into tunl0, where the
// kernel routes them on.
//
// A TUN device hands over packets without their next hop, so the tunnel
// keeps the routes through tunl0 and looks the inner destination up in
// them. tunl0 has no offloads: the kernel segments and checksums before
// handing a packet over, so every packet fits the tunnel's MTU.
type userTunnel struct {
	tun    *os.File
	raw    *os.File
	src    netip.Addr // outer source: the node address
	routes *fib.Table // the routes through tunl0
	decap  *encap.Decapsulator
	wg     sync.WaitGroup

	txPackets, txNoRoute, txErrors atomic.Uint64
	rxWriteErrors                  atomic.Uint64
}

// rawSocketBuffer is the receive buffer of the raw IPIP socket.
const rawSocketBuffer = 4 << 20

// openUserTunnel creates tunl0 as a TUN device and the raw socket in the
// dataplane's namespace: packets go out from src to the next hops of
// routes, come in from nodes and the next hops added later.
func (d *Dataplane) openUserTunnel(src netip.Addr, mtu int, routes *fib.Table, nodes []netip.Addr) (*userTunnel, error) {
	decap, err := encap.NewDecapsulator(nodes...)
	if err != nil {
		return nil, err
	}
	var tunFD, rawFD = -1, -1
	open := func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(TunnelName)
		if err == nil {
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", TunnelName, err)
		}
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_IPIP)
		if err == nil {
			err = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_HDRINCL, 1)
			if err == nil {
				// A burst the reader has not caught up with yet waits
				// in the socket instead of being dropped (and
				// retransmitted): 4 MB, as the root may force.
				_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rawSocketBuffer)
			}
			if err != nil {
				unix.Close(s)
			}
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("raw IPIP socket: %w", err)
		}
		tunFD, rawFD = fd, s
		return nil
	}
	if d.opts.Namespace == "" {
		err = open()
	} else {
		err = netns.Do(d.opts.Namespace, open)
	}
	if err != nil {
		return nil, fmt.Errorf("userspace tunl0: %w", err)
	}
	t := &userTunnel{
		tun:    os.NewFile(uintptr(tunFD), TunnelName),
		raw:    os.NewFile(uintptr(rawFD), "ipip"),
		src:    src,
		routes: routes,
		decap:  decap,
	}
	link, err := d.h.LinkByName(TunnelName)
	if err == nil {
		err = d.h.LinkSetMTU(link, mtu)
	}
	if err == nil {
		err = d.h.LinkSetUp(link)
	}
	if err != nil {
		t.close()
		return nil, fmt.Errorf("userspace tunl0: %w", err)
	}
	return t, nil
}

// run starts moving packets both ways until close.
func (t *userTunnel) run() {
	t.wg.Add(2)
	go func() { defer t.wg.Done(); t.encapsulate() }()
	go func() { defer t.wg.Done(); t.decapsulate() }()
}

// encapsulate sends what the kernel routes into tunl0.
func (t *userTunnel) encapsulate() {
	buf := make([]byte, encap.HeaderLen+0xffff)
	raw, err := t.raw.SyscallConn()
	if err != nil {
		return
	}
	for {
		n, err := t.tun.Read(buf[encap.HeaderLen:])
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		pkt := buf[encap.HeaderLen : encap.HeaderLen+n]
		if n < 20 || pkt[0]>>4 != 4 {
			continue // not IPv4 (tunl0 carries IPv4 only)
		}
		dst := netip.AddrFrom4([4]byte(pkt[16:20]))
		r, ok := t.routes.Lookup(dst)
		if !ok || !r.Gateway.Is4() {
			t.txNoRoute.Add(1)
			continue
		}
		out, err := encap.EncapsulateInPlace(buf[:encap.HeaderLen+n], encap.HeaderLen, t.src, r.Gateway)
		if err != nil {
			t.txErrors.Add(1)
			continue
		}
		sa := &unix.SockaddrInet4{Addr: r.Gateway.As4()}
		var sendErr error
		werr := raw.Write(func(fd uintptr) bool {
			sendErr = unix.Sendto(int(fd), out, 0, sa)
			return sendErr != unix.EAGAIN
		})
		switch {
		case werr != nil && errors.Is(werr, os.ErrClosed):
			return
		case werr != nil || sendErr != nil:
			t.txErrors.Add(1)
		default:
			t.txPackets.Add(1)
		}
	}
}

// decapsulate hands the IPIP packets from known nodes to the kernel
// through tunl0.
func (t *userTunnel) decapsulate() {
	buf := make([]byte, 0xffff)
	for {
		n, err := t.raw.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		inner, _, r := t.decap.Decapsulate(buf[:n])
		if r != encap.Accepted {
			continue // counted by the Decapsulator
		}
		if _, err := t.tun.Write(inner); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			t.rxWriteErrors.Add(1)
		}
	}
}

// stats adds the tunnel's counters to m.
func (t *userTunnel) stats(m map[string]uint64) {
	m["ipip_encap_packets"] = t.txPackets.Load()
	m["ipip_encap_no_route"] = t.txNoRoute.Load()
	m["ipip_encap_errors"] = t.txErrors.Load()
	m["ipip_decap_write_errors"] = t.rxWriteErrors.Load()
	for _, c := range t.decap.Counters() {
		m["ipip_decap_"+c.Name] = c.Value
	}
}

// close removes tunl0 (with its descriptor) and the socket, and waits for
// the loops to end.
func (t *userTunnel) close() {
	t.tun.Close()
	t.raw.Close()
	t.wg.Wait()
}

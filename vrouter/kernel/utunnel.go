package kernel

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/header"
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
// them. tunl0 has IFF_VNET_HDR and checksum and TCP segmentation offload:
// a TCP stream comes as GSO super-packets of up to 64 KB, which the tunnel
// cuts into segments of the tunnel's MTU itself (encapGSO: a raw socket
// sends no more than the MTU) and sends in batches (sendmmsg). Without the
// offloads every 1480-byte packet cost a read and a sendto, the reader
// fell behind, and the TUN queue (500 packets) overflowed: every packet
// the kernel dropped there was a TCP retransmission.
type userTunnel struct {
	tun    *os.File
	raw    *os.File
	src    netip.Addr // outer source: the node address
	routes *fib.Table // the routes through tunl0
	decap  *encap.Decapsulator
	wg     sync.WaitGroup

	txPackets, txNoRoute, txErrors atomic.Uint64
	txSuper                        atomic.Uint64 // GSO super-packets cut into segments
	rxWriteErrors                  atomic.Uint64
	rxSuper                        atomic.Uint64 // super-packets written (segments joined)
}

// rawSocketBuffer is the receive and the send buffer of the raw IPIP
// socket.
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
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err == nil {
			// Checksum and TCP segmentation offload: the kernel hands
			// over TCP super-packets whole (see encapGSO).
			err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUN %s: %w", TunnelName, err)
		}
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_IPIP)
		if err == nil {
			err = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_HDRINCL, 1)
			if err == nil {
				// A burst the reader has not caught up with yet waits
				// in the socket instead of being dropped (and
				// retransmitted): 4 MB, as the root may force.
				_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rawSocketBuffer)
				// The segments of several super-packets go out at
				// once: room for them in the send buffer.
				_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, rawSocketBuffer)
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

// Batches: a wakeup of the encapsulating loop reads up to tunBatch
// packets from tunl0 (super-packets of up to 64 KB each) and sends their
// segments with as few sendmmsg calls as sendBatch allows; the
// decapsulating loop takes up to recvBatch packets per recvmmsg.
const (
	tunBatch  = 8
	sendBatch = 256
	recvBatch = 64
	// tunBufLen holds a virtio_net_hdr and the largest packet, after
	// room for the outer header.
	tunBufLen = encap.HeaderLen + 0x10000
)

// run starts moving packets both ways until close.
func (t *userTunnel) run() {
	t.wg.Add(2)
	go func() { defer t.wg.Done(); t.encapsulate() }()
	go func() { defer t.wg.Done(); t.decapsulate() }()
}

// encapsulate sends what the kernel routes into tunl0: every wakeup reads
// the packets there are (up to tunBatch), looks each one's next hop up,
// encapsulates it, cut into segments if it is a super-packet (encapGSO),
// and sends them all with sendmmsg.
func (t *userTunnel) encapsulate() {
	tunRC, err := t.tun.SyscallConn()
	if err != nil {
		return
	}
	rawRC, err := t.raw.SyscallConn()
	if err != nil {
		return
	}
	// Each buffer: room for the outer header, the virtio_net_hdr (which
	// the outer header overwrites) and the packet.
	bufs := make([][]byte, tunBatch)
	for i := range bufs {
		bufs[i] = make([]byte, tunBufLen)
	}
	var sizes [tunBatch]int
	var n int
	var rerr error
	read := func(fd uintptr) bool {
		for n < tunBatch {
			m, err := unix.Read(int(fd), bufs[n][encap.HeaderLen-header.VirtioNetHdrLen:])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return n > 0
			case err != nil:
				rerr = err
				return true
			case m == 0:
				rerr = os.ErrClosed
				return true
			}
			sizes[n] = m - header.VirtioNetHdrLen
			n++
		}
		return true
	}
	var closed bool
	send := func(msgs []mmsghdr) {
		for len(msgs) > 0 && !closed {
			var k int
			var errno syscall.Errno
			err := rawRC.Write(func(fd uintptr) bool {
				k, errno = sendmmsg(fd, msgs)
				return errno != unix.EAGAIN
			})
			switch {
			case err != nil:
				closed = true
				t.txErrors.Add(uint64(len(msgs)))
				return
			case errno == unix.EINTR:
			case errno != 0:
				// The first message failed (no route, too big,
				// ...): count it, send the rest.
				t.txErrors.Add(1)
				msgs = msgs[1:]
			default:
				t.txPackets.Add(uint64(k))
				msgs = msgs[k:]
			}
		}
	}
	batch := newTxBatch(sendBatch, send)
	for {
		n, rerr = 0, nil
		if err := tunRC.Read(read); err != nil && rerr == nil {
			rerr = err
		}
		for i := range n {
			t.encapsulateOne(bufs[i], sizes[i], batch)
		}
		batch.flush()
		if rerr != nil || closed {
			return
		}
	}
}

// encapsulateOne encapsulates the packet of size bytes read into buf
// (after its virtio_net_hdr, at encap.HeaderLen) into batch.
func (t *userTunnel) encapsulateOne(buf []byte, size int, batch *txBatch) {
	if size < 20 {
		return
	}
	g, _ := header.DecodeVirtioNetHdr(buf[encap.HeaderLen-header.VirtioNetHdrLen:])
	pkt := buf[encap.HeaderLen : encap.HeaderLen+size]
	if pkt[0]>>4 != 4 {
		return // not IPv4 (tunl0 carries IPv4 only)
	}
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	r, ok := t.routes.Lookup(dst)
	if !ok || !r.Gateway.Is4() {
		t.txNoRoute.Add(1)
		return
	}
	if _, err := encapGSO(buf[:encap.HeaderLen+size], encap.HeaderLen, g, t.src, r.Gateway, batch); err != nil {
		t.txErrors.Add(1)
	} else if g.IsGSO() {
		t.txSuper.Add(1)
	}
}

// decapsulate hands the IPIP packets from known nodes to the kernel
// through tunl0: every wakeup takes the packets the raw socket holds (up
// to recvBatch, one recvmmsg), and writes the accepted inner packets into
// tunl0, consecutive segments of a TCP flow joined into a super-packet
// (see coalescer), anything else behind a zero virtio_net_hdr (an
// ordinary packet, its checksums to be verified by the kernel).
func (t *userTunnel) decapsulate() {
	rawRC, err := t.raw.SyscallConn()
	if err != nil {
		return
	}
	tunRC, err := t.tun.SyscallConn()
	if err != nil {
		return
	}
	bufs := make([][]byte, recvBatch)
	iovs := make([]unix.Iovec, recvBatch)
	msgs := make([]mmsghdr, recvBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 0xffff)
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.SetIovlen(1)
	}
	var n int
	var rerr error
	recv := func(fd uintptr) bool {
		for {
			k, errno := recvmmsg(fd, msgs)
			switch errno {
			case 0:
				n = k
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			default:
				rerr = errno
				return true
			}
		}
	}
	var out []byte
	var werr error
	write := func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), out)
		return werr != unix.EAGAIN
	}
	gro := newCoalescer()
	emit := func(b []byte) bool {
		out = b
		if b[1] != header.GSONone {
			t.rxSuper.Add(1)
		}
		if err := tunRC.Write(write); err != nil {
			return false // closed
		}
		if werr != nil {
			t.rxWriteErrors.Add(1)
		}
		return true
	}
	for {
		n, rerr = 0, nil
		if err := rawRC.Read(recv); err != nil {
			return // closed
		}
		if rerr != nil {
			continue
		}
		for i := range n {
			m := int(msgs[i].n)
			msgs[i].n = 0
			inner, _, r := t.decap.Decapsulate(bufs[i][:m])
			if r != encap.Accepted {
				continue // counted by the Decapsulator
			}
			if gro.held() && gro.add(inner) {
				continue
			}
			if gro.held() && !emit(gro.finish()) {
				return
			}
			// The inner packet starts after the outer header, where
			// its virtio_net_hdr goes.
			at := int(bufs[i][0]&0x0f) * 4
			pkt := bufs[i][:at+len(inner)]
			if gro.start(pkt, at) {
				continue
			}
			clear(pkt[at-header.VirtioNetHdrLen : at])
			if !emit(pkt[at-header.VirtioNetHdrLen:]) {
				return
			}
		}
		if gro.held() && !emit(gro.finish()) {
			return
		}
	}
}

// stats adds the tunnel's counters to m.
func (t *userTunnel) stats(m map[string]uint64) {
	m["ipip_encap_packets"] = t.txPackets.Load()
	m["ipip_encap_no_route"] = t.txNoRoute.Load()
	m["ipip_encap_errors"] = t.txErrors.Load()
	m["ipip_encap_gso_packets"] = t.txSuper.Load()
	m["ipip_decap_write_errors"] = t.rxWriteErrors.Load()
	m["ipip_decap_gro_packets"] = t.rxSuper.Load()
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

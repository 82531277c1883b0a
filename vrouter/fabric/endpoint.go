package fabric

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/header"
)

// Errors SendTo, SendToNode and ReadBatch return. They are values, never
// wrapped, so the engine can compare them cheaply; the endpoint counts
// every drop in Stats whether or not the caller looks at the error.
var (
	// ErrNoNeighbor: the neighbour table has no entry for the next hop.
	// The engine answers ICMP host unreachable, as Linux does when ARP
	// fails.
	ErrNoNeighbor = errors.New("fabric: no neighbour for the next hop")

	// ErrNeighborDown: the neighbour is known but nothing is attached at
	// its socket (its engine is not running). It matches ErrNoNeighbor
	// under errors.Is: to the sender it is the same failure.
	ErrNeighborDown error = neighborDownError{}

	// ErrLinkDown: this endpoint is down (SetUp(false)); the frame was
	// dropped.
	ErrLinkDown = errors.New("fabric: link down")

	// ErrQueueFull: the receiver's queue (or this endpoint's send buffer,
	// or the delay queue) was full and the frame was dropped, as a NIC
	// drops when its transmit ring is full. Sending never waits.
	ErrQueueFull = errors.New("fabric: queue full, frame dropped")

	// ErrTooLarge: the packet is longer than a frame can carry.
	ErrTooLarge = errors.New("fabric: packet too large")

	// ErrClosed: the endpoint or tap is closed.
	ErrClosed = errors.New("fabric: closed")
)

type neighborDownError struct{}

func (neighborDownError) Error() string        { return "fabric: neighbour not attached" }
func (neighborDownError) Is(target error) bool { return target == ErrNoNeighbor }

// DefaultTapScanInterval is how often an endpoint looks for new taps when
// Options.TapScanInterval is zero, besides when inotify tells it the taps
// directory changed (at once, normally): a tap sees an endpoint's frames
// at most this long after it opens (Tap.WaitReady waits for the endpoints'
// hellos).
const DefaultTapScanInterval = 2 * time.Second

// Options configures an endpoint.
type Options struct {
	// Interface names the endpoint in tap records, as a capture shows the
	// interface a packet left by, e.g. "node1/ens33". Empty means the
	// node name.
	Interface string

	// Neighbors is the neighbour table, like ARP's: the underlay address
	// of every node on the network mapped to its node name. SetNeighbors
	// replaces it later. The map is copied.
	Neighbors map[netip.Addr]string

	// SocketBuffer is the SO_SNDBUF and SO_RCVBUF to ask for; zero means
	// DefaultSocketBuffer. Beyond net.core.wmem_max it needs root
	// (SO_SNDBUFFORCE); without, the kernel's limit applies.
	SocketBuffer int

	// Namespace, if not empty, is a named network namespace in which the
	// socket is created (the process needs root for that). A unix
	// datagram socket takes its receive queue length from the
	// net.unix.max_dgram_qlen of the namespace it is created in; see
	// SetMaxDgramQlen. Empty means the calling thread's namespace.
	Namespace string

	// TapScanInterval is how often the endpoint looks for taps; zero
	// means DefaultTapScanInterval, a negative value disables taps.
	TapScanInterval time.Duration

	// NoRing keeps every frame this endpoint sends on the socket: no
	// shared-memory ring is made toward its neighbours (rings they make
	// toward it are still read). The environment variable
	// VROUTER_FABRIC_RING=0 does the same for every endpoint of the
	// process.
	NoRing bool

	// RingSize is the data size of the rings the endpoint makes, a power
	// of two from 64 KiB to 1 GiB; zero means DefaultRingSize.
	RingSize int

	// RingAfter is how many frames the endpoint sends a neighbour within
	// a second over the socket before it makes a ring to it; zero means
	// DefaultRingAfter, a negative value at the first frame.
	RingAfter int
}

// RingEnv is the environment variable that, set to 0, disables the
// shared-memory rings of every endpoint the process attaches (as
// Options.NoRing), so that benchmarks can compare both paths; set to
// "eager", it makes each ring at the first frame to a neighbour (as
// Options.RingAfter -1), so that tests exercise the rings with little
// traffic.
const RingEnv = "VROUTER_FABRIC_RING"

// peer is a resolved neighbour: its node name and socket address.
type peer struct {
	name string
	sa   sockaddr
	link *link // nil for a node outside the neighbour table
}

// neighborTable is an immutable neighbour table; changes publish a new
// one so senders never wait.
type neighborTable struct {
	byAddr map[netip.Addr]*peer
	byName map[string]*peer
	src    map[netip.Addr]string
}

// Endpoint is one node's attachment to an underlay network: a unix
// datagram socket at <dir>/<network>/<node>.sock, and shared-memory rings
// to and from its busy neighbours under <dir>/<network>/rings. SendTo, SendToNode,
// SetNeighbors, SetUp, SetImpairment and Stats are safe for concurrent
// use; ReadBatch calls are serialized.
type Endpoint struct {
	node, network string
	netDir, path  string
	iface         string
	ino           uint64    // of the socket file, to remove only ours
	tapMeta       [2]string // sender node and interface, as tap records carry them
	epoch         time.Time // origin of the delay queue's monotonic clock
	file          *os.File  // owns fd; closing it wakes ReadBatch
	rc            syscall.RawConn
	fd            int // the bound socket: receives, and sends frames
	tapFD         int // an unbound socket sending tap copies, so a slow tap never eats the frames' send buffer

	// mu is held for reading around every system call on fd and tapFD,
	// and for writing by Close, so Close never closes a descriptor in
	// use. closed is guarded by it.
	mu     sync.RWMutex
	closed bool

	down  atomic.Bool
	neigh atomic.Pointer[neighborTable]
	imp   atomic.Pointer[impairState]
	taps  atomic.Pointer[tapList] // nil when no tap exists

	ctl   sync.Mutex // serializes SetImpairment and starting the delay queue
	delay *delayQueue

	done chan struct{}
	wg   sync.WaitGroup

	stats counters
	rx    receiver

	// The rings this endpoint makes toward its neighbours, by node name.
	linksMu   sync.Mutex
	links     map[string]*link
	ringSize  int // 0: no rings
	ringAfter int
	closing   atomic.Bool
}

// Attach attaches node to the underlay network: it binds the socket
// <dir>/<network>/<node>.sock, creating the directories as needed. A
// socket file left by a process that died is replaced; one a live
// process is bound to is an error (the node is attached already). The
// path must fit in a unix socket address (107 bytes).
func Attach(dir, network, node string, opts Options) (*Endpoint, error) {
	if dir == "" {
		return nil, errors.New("fabric: attach: empty directory")
	}
	if err := checkName("network", network); err != nil {
		return nil, err
	}
	if err := checkName("node", node); err != nil {
		return nil, err
	}
	iface := opts.Interface
	if iface == "" {
		iface = node
	}
	if len(iface) > maxName {
		return nil, fmt.Errorf("fabric: interface name %q longer than %d bytes", iface, maxName)
	}
	size := opts.SocketBuffer
	if size == 0 {
		size = DefaultSocketBuffer
	}
	netDir := filepath.Join(dir, network)
	e := &Endpoint{
		node:    node,
		network: network,
		netDir:  netDir,
		path:    filepath.Join(netDir, node+sockSuffix),
		iface:   iface,
		tapMeta: [2]string{node, iface},
		epoch:   time.Now(),
		done:    make(chan struct{}),
		fd:      -1,
		tapFD:   -1,
		links:   map[string]*link{},
	}
	if env := os.Getenv(RingEnv); !opts.NoRing && env != "0" {
		e.ringSize = opts.RingSize
		if e.ringSize == 0 {
			e.ringSize = DefaultRingSize
		}
		if e.ringSize < minRingSize || e.ringSize > maxRingSize || e.ringSize&(e.ringSize-1) != 0 {
			return nil, fmt.Errorf("fabric: ring size %d is not a power of two from %d to %d", e.ringSize, minRingSize, maxRingSize)
		}
		e.ringAfter = opts.RingAfter
		switch {
		case env == "eager":
			e.ringAfter = -1
		case e.ringAfter == 0:
			e.ringAfter = DefaultRingAfter
		}
	}
	if err := e.SetNeighbors(opts.Neighbors); err != nil {
		return nil, err
	}
	fd, err := newSocket(opts.Namespace, size)
	if err != nil {
		return nil, fmt.Errorf("fabric: attach %s to %s: %w", node, network, err)
	}
	if err := bindSocket(fd, e.path); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fabric: attach %s to %s: %w", node, network, err)
	}
	e.ino = inode(e.path)
	e.disownRings()
	e.file = os.NewFile(uintptr(fd), e.path) // fd is nonblocking: the file uses the runtime poller
	e.fd = fd
	if e.rc, err = e.file.SyscallConn(); err == nil {
		e.tapFD, err = newSocket("", size)
	}
	if err != nil {
		e.file.Close()
		e.removeFiles()
		return nil, fmt.Errorf("fabric: attach %s to %s: %w", node, network, err)
	}
	e.rx.fn = e.rx.recv
	e.rx.tryFn = e.rx.try
	interval := opts.TapScanInterval
	if interval == 0 {
		interval = DefaultTapScanInterval
	}
	if interval > 0 {
		e.wg.Add(1)
		go e.scanTaps(interval)
	}
	return e, nil
}

// maxName bounds node, network and interface names (tap records carry
// their length in a byte).
const maxName = 255

// checkName accepts names that are one path component.
func checkName(what, s string) error {
	if s == "" || s == "." || s == ".." || len(s) > maxName || strings.ContainsAny(s, "/\x00") {
		return fmt.Errorf("fabric: invalid %s name %q", what, s)
	}
	return nil
}

// Node returns the endpoint's node name.
func (e *Endpoint) Node() string { return e.node }

// Network returns the name of the network the endpoint is attached to.
func (e *Endpoint) Network() string { return e.network }

// Interface returns the interface name tap records carry for this
// endpoint.
func (e *Endpoint) Interface() string { return e.iface }

// Path returns the endpoint's socket path.
func (e *Endpoint) Path() string { return e.path }

// SetNeighbors replaces the neighbour table (underlay address to node
// name). Senders are never blocked: they see the old table or the new
// one. The map is copied.
func (e *Endpoint) SetNeighbors(m map[netip.Addr]string) error {
	t := &neighborTable{
		byAddr: make(map[netip.Addr]*peer, len(m)),
		byName: make(map[string]*peer, len(m)),
		src:    make(map[netip.Addr]string, len(m)),
	}
	for addr, node := range m {
		if !addr.IsValid() {
			return errors.New("fabric: neighbour with an invalid address")
		}
		if err := checkName("node", node); err != nil {
			return err
		}
		p := t.byName[node]
		if p == nil {
			p = &peer{name: node}
			if !p.sa.setJoin(e.netDir, node) {
				return fmt.Errorf("fabric: socket path of neighbour %s under %s is too long for a unix socket address", node, e.netDir)
			}
			p.link = e.linkFor(node)
			t.byName[node] = p
		}
		addr = addr.Unmap()
		t.byAddr[addr] = p
		t.src[addr] = node
	}
	e.neigh.Store(t)
	return nil
}

// Neighbors returns a copy of the neighbour table.
func (e *Endpoint) Neighbors() map[netip.Addr]string {
	src := e.neigh.Load().src
	m := make(map[netip.Addr]string, len(src))
	for k, v := range src {
		m[k] = v
	}
	return m
}

// Neighbor resolves a next hop to a node name, as SendTo does.
func (e *Endpoint) Neighbor(nextHop netip.Addr) (string, bool) {
	p := e.neigh.Load().byAddr[nextHop.Unmap()]
	if p == nil {
		return "", false
	}
	return p.name, true
}

// SetUp sets the link state. A down endpoint is a pulled cable: frames
// sent are dropped (ErrLinkDown, nothing is captured), frames arriving
// are dropped, frames waiting in the delay queue are dropped when due,
// and all of it is counted. Endpoints start up.
func (e *Endpoint) SetUp(up bool) { e.down.Store(!up) }

// IsUp reports the link state set by SetUp.
func (e *Endpoint) IsUp() bool { return !e.down.Load() }

// Stats returns a snapshot of the endpoint's counters.
func (e *Endpoint) Stats() Stats { return e.stats.snapshot() }

// SendTo sends f to the node owning the underlay address nextHop, resolved
// through the neighbour table. It never blocks and never allocates
// (without delay impairments); f.Packet may be reused as soon as it
// returns. Every frame not put in the receiver's queue is counted in
// Stats().TxDrops and reported as ErrNoNeighbor, ErrNeighborDown,
// ErrLinkDown, ErrQueueFull or ErrBadFrame (kernel errors as unix.Errno).
// Frames lost to an impairment are not errors: the sender cannot know.
func (e *Endpoint) SendTo(nextHop netip.Addr, f Frame) error {
	p := e.neigh.Load().byAddr[nextHop]
	if p == nil {
		if nextHop.Is4In6() {
			p = e.neigh.Load().byAddr[nextHop.Unmap()]
		}
		if p == nil {
			e.stats.txNoNeighbor.Add(1)
			return ErrNoNeighbor
		}
	}
	return e.send(p, &f)
}

// SendToNode sends f to the named node, in or out of the neighbour table,
// as SendTo does.
func (e *Endpoint) SendToNode(node string, f Frame) error {
	if p := e.neigh.Load().byName[node]; p != nil {
		return e.send(p, &f)
	}
	var p peer
	if checkName("node", node) != nil || !p.sa.setJoin(e.netDir, node) {
		e.stats.txNoNeighbor.Add(1)
		return ErrNoNeighbor
	}
	p.name = node
	return e.send(&p, &f)
}

func (e *Endpoint) send(p *peer, f *Frame) error {
	n := len(f.Packet)
	if err := checkFrame(&f.GSO, n); err != nil {
		e.stats.txBadFrame.Add(1)
		return err
	}
	if uint64(n) > maxPacket {
		e.stats.txBadFrame.Add(1)
		return ErrTooLarge
	}
	if e.down.Load() {
		e.stats.txLinkDown.Add(1)
		return ErrLinkDown
	}
	if tl := e.taps.Load(); tl != nil {
		e.mirror(tl, p.name, f)
	}
	if imp := e.imp.Load(); imp != nil {
		if imp.lose() {
			e.stats.txLoss.Add(1)
			return nil
		}
		if imp.delays {
			return e.delay.push(e, imp, p, f)
		}
	}
	if p.link != nil {
		if handled, err := e.ringSend(p.link, &f.GSO, f.Packet, nil); handled {
			return err
		}
	}
	return e.transmit(&p.sa, &f.GSO, f.Packet)
}

// transmit puts one frame on the wire: header and packet gathered into one
// datagram, without copying in user space.
func (e *Endpoint) transmit(sa *sockaddr, g *header.GSO, pkt []byte) error {
	var h [HeaderLen]byte
	putHeader(&h, g, len(pkt))
	var iov [2]unix.Iovec
	iov[0].Base = &h[0]
	iov[0].SetLen(HeaderLen)
	setIov(&iov[1], pkt)
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return ErrClosed
	}
	errno := sendmsg(e.fd, sa, iov[:])
	e.mu.RUnlock()
	return e.txResult(errno, len(pkt))
}

// txResult counts the outcome of a send and turns it into SendTo's error.
func (e *Endpoint) txResult(errno unix.Errno, n int) error {
	switch errno {
	case 0:
		e.stats.txFrames.Add(1)
		e.stats.txBytes.Add(uint64(n))
		return nil
	case unix.EAGAIN, unix.ENOBUFS:
		e.stats.txQueueFull.Add(1)
		return ErrQueueFull
	case unix.ECONNREFUSED, unix.ENOENT, unix.ENOTDIR:
		e.stats.txNeighborDown.Add(1)
		return ErrNeighborDown
	default:
		e.stats.txError.Add(1)
		return errno
	}
}

// maxBatch bounds the datagrams one ReadBatch receives (recvmmsg's vlen).
const maxBatch = 256

// socketEvery is how often (in ReadBatch calls while the endpoint has
// rings) the socket is read first, without waiting, so that frames and
// announces from senders without a ring are not starved by busy rings
// (TestRingNoStarvation); the rings take turns to be drained first.
const socketEvery = 8

// receiver is ReadBatch's state: the recvmmsg vectors, reused across
// calls, the callbacks the runtime poller runs when the socket is readable
// (made once, so waiting allocates nothing), and the inbound rings.
type receiver struct {
	mu    sync.Mutex
	msgs  []mmsghdr
	iovs  [][2]unix.Iovec
	hdrs  [][HeaderLen]byte
	names []unix.RawSockaddrUnix // the senders' socket addresses
	order []int                  // frames[k] came in msgs[order[k]], if src[k] is nil
	src   []*ring                // frames[k] came from ring src[k]
	last  int                    // frames the last ReadBatch returned
	vlen  int
	got   int
	errno unix.Errno
	fn    func(fd uintptr) bool
	tryFn func(fd uintptr)

	rings   []*ring // inbound, one per sender that made one
	newRing bool    // an announce was just accepted
	next    int     // the ring drainRings starts at next
	calls   uint
}

func (r *receiver) grow(n int) {
	if len(r.msgs) >= n {
		return
	}
	r.msgs = make([]mmsghdr, n)
	r.iovs = make([][2]unix.Iovec, n)
	r.hdrs = make([][HeaderLen]byte, n)
	r.names = make([]unix.RawSockaddrUnix, n)
	r.order = make([]int, n)
	r.src = make([]*ring, n)
	for i := range r.msgs {
		r.iovs[i][0].Base = &r.hdrs[i][0]
		r.iovs[i][0].SetLen(HeaderLen)
		r.msgs[i].hdr.Iov = &r.iovs[i][0]
		r.msgs[i].hdr.SetIovlen(2)
	}
}

// recv is the poller callback: one nonblocking recvmmsg; false means
// "nothing yet, wait for readability".
func (r *receiver) recv(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(r.vlen), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.got, r.errno = int(n), errno
		return true
	}
}

// try is recv without waiting: nothing queued is zero datagrams.
func (r *receiver) try(fd uintptr) {
	if !r.recv(fd) {
		r.got, r.errno = 0, 0
	}
}

// setSleeping sets or clears the sleeping flag of every inbound ring.
func (r *receiver) setSleeping(v uint32) {
	for _, rg := range r.rings {
		rg.sleeping().Store(v)
	}
}

// ReadBatch waits for frames and receives as many as are queued, up to
// min(len(bufs), len(frames), 256): from the inbound rings, copied, and
// from the socket, in one system call (recvmmsg). Each frame's packet is
// put straight into a caller buffer, so a buffer must hold the largest
// packet expected (64 KB for GSO super-packets); give it headroom by
// slicing (bufs[i] = b[off:]) when the packet must be preceded by
// something later, such as a virtio_net_hdr. Longer frames are dropped
// and counted (RxDrops.TooBig).
//
// It returns n ≥ 1 frames: frames[i].Packet is bufs[i][:len] for i < n.
// To keep that so when some datagrams are dropped (malformed, link down)
// it may swap elements of bufs. It returns ErrClosed once the endpoint is
// closed. Calls are serialized; it does not allocate (but for accepting a
// new ring, once per neighbour).
//
// While frames flow through the rings it makes no system call: the socket
// is read without waiting only when the rings are empty or every
// socketEvery calls. Only when both are empty does it set the rings'
// sleeping flags, look at the rings once more (a producer that published
// before it saw the flag), and wait on the socket, where a producer that
// sees the flag sends a doorbell.
func (e *Endpoint) ReadBatch(bufs [][]byte, frames []Frame) (int, error) {
	n := min(len(bufs), len(frames), maxBatch)
	if n == 0 {
		return 0, nil
	}
	r := &e.rx
	r.mu.Lock()
	defer r.mu.Unlock()
	r.grow(n)
	r.last = 0
	for {
		r.newRing = false
		if len(r.rings) > 0 {
			// Every socketEvery calls the socket comes first, so that
			// rings that always fill a batch (a flood) cannot starve the
			// neighbours without one (BGP keepalives) or a new ring's
			// announce; otherwise it is read when the rings are empty.
			r.calls++
			k := 0
			socketTurn := r.calls%socketEvery == 0
			var err error
			if socketTurn {
				if k, err = e.readSocket(bufs, frames, 0, n, false); err != nil {
					return 0, err
				}
			}
			k = e.drainRings(bufs, frames, k, n)
			if k == 0 && !socketTurn {
				if k, err = e.readSocket(bufs, frames, 0, n, false); err != nil {
					return 0, err
				}
			}
			if k > 0 {
				r.last = k
				return k, nil
			}
			if r.newRing {
				continue
			}
			r.setSleeping(1)
			if k = e.drainRings(bufs, frames, 0, n); k > 0 {
				r.setSleeping(0)
				r.last = k
				return k, nil
			}
		}
		k, err := e.readSocket(bufs, frames, 0, n, true)
		r.setSleeping(0)
		if err != nil {
			return 0, err
		}
		if k > 0 {
			r.last = k
			return k, nil
		}
	}
}

// drainRings copies frames from the inbound rings into bufs[k:n] and
// frames[k:n], counts them, and returns the new k. A ring its producer
// closed is dropped once read.
func (e *Endpoint) drainRings(bufs [][]byte, frames []Frame, k, n int) int {
	r := &e.rx
	down := e.down.Load()
	var c ringCounts
	k0 := k
	// Each call starts at the next ring, so that one ring that always
	// has a batch's worth (a flood) cannot starve the others (the BGP
	// keepalives of a busy neighbour).
	if m := len(r.rings); m > 0 {
		first := r.next % m
		r.next = first + 1
		for i := range m {
			if k == n {
				break
			}
			rg := r.rings[(first+i)%m]
			start := k
			k = rg.get(bufs, frames, k, n, down, &c)
			for j := start; j < k; j++ {
				r.src[j] = rg
			}
		}
	}
	for i := 0; i < len(r.rings); i++ {
		rg := r.rings[i]
		if rg.closed().Load() != 0 && rg.empty() {
			rg.unmap()
			r.rings = append(r.rings[:i], r.rings[i+1:]...)
			e.stats.ringsIn.Store(int64(len(r.rings)))
			i--
		}
	}
	if c.bad > 0 {
		e.stats.rxBadFrame.Add(c.bad)
	}
	if c.big > 0 {
		e.stats.rxTooBig.Add(c.big)
	}
	if c.down > 0 {
		e.stats.rxLinkDown.Add(c.down)
	}
	if k > k0 {
		e.stats.rxFrames.Add(uint64(k - k0))
		e.stats.rxBytes.Add(c.bytes)
		e.stats.ringRxFrames.Add(uint64(k - k0))
		e.stats.ringRxBytes.Add(c.bytes)
	}
	return k
}

// readSocket receives datagrams into bufs[k:n], waiting for one if block,
// handles control datagrams, and returns the new k.
func (e *Endpoint) readSocket(bufs [][]byte, frames []Frame, k, n int, block bool) (int, error) {
	r := &e.rx
	m := n - k
	for j := range m {
		setIov(&r.iovs[j][1], bufs[k+j])
		r.msgs[j].hdr.Flags = 0
		r.msgs[j].hdr.Name = (*byte)(unsafe.Pointer(&r.names[j]))
		r.msgs[j].hdr.Namelen = unix.SizeofSockaddrUnix
	}
	r.vlen = m
	var err error
	if block {
		err = e.rc.Read(r.fn)
	} else {
		err = e.rc.Control(r.tryFn)
	}
	if err != nil {
		return 0, ErrClosed
	}
	if r.errno != 0 {
		if errors.Is(r.errno, unix.EBADF) {
			return 0, ErrClosed
		}
		return 0, r.errno
	}
	down := e.down.Load()
	w := k
	var bytes uint64
	var bad, big, dropped uint64
	for j := range r.got {
		i := k + j
		msg := &r.msgs[j]
		ln := int(msg.len)
		switch {
		case msg.hdr.Flags&unix.MSG_TRUNC != 0:
			big++
			continue
		case ln < HeaderLen:
			bad++
			continue
		case r.hdrs[j][1] == flagControl:
			if !e.controlIn(&r.hdrs[j], bufs[i][:ln-HeaderLen]) {
				bad++
			}
			continue
		}
		g, err := parseHeader(&r.hdrs[j], ln-HeaderLen)
		if err != nil {
			bad++
			continue
		}
		if down {
			dropped++
			continue
		}
		if w != i {
			bufs[w], bufs[i] = bufs[i], bufs[w]
		}
		frames[w] = Frame{GSO: g, Packet: bufs[w][:ln-HeaderLen]}
		r.order[w] = j
		r.src[w] = nil
		bytes += uint64(ln - HeaderLen)
		w++
	}
	if bad > 0 {
		e.stats.rxBadFrame.Add(bad)
	}
	if big > 0 {
		e.stats.rxTooBig.Add(big)
	}
	if dropped > 0 {
		e.stats.rxLinkDown.Add(dropped)
	}
	if w > k {
		e.stats.rxFrames.Add(uint64(w - k))
		e.stats.rxBytes.Add(bytes)
	}
	return w, nil
}

// controlIn handles a control datagram: a doorbell (the wakeup was the
// point) or an announce of a ring. False means malformed.
func (e *Endpoint) controlIn(h *[HeaderLen]byte, payload []byte) bool {
	if h[0] != Version || int(binary.BigEndian.Uint32(h[12:])) != len(payload) {
		return false
	}
	switch h[2] {
	case ctlDoorbell:
		return len(payload) == 0
	case ctlAnnounce:
		e.acceptRing(string(payload))
		e.rx.newRing = true
		return true
	}
	return false
}

// Sender returns the node that sent frames[k] of the last ReadBatch, from
// the ring it came through or the address of its socket. It must be
// called by the goroutine that called ReadBatch, before it calls it again.
// It may allocate: it is meant for rare uses, such as sending an ICMP
// error back to the neighbour a packet came from.
func (e *Endpoint) Sender(k int) (string, bool) {
	r := &e.rx
	if k < 0 || k >= r.last || k >= len(r.order) {
		return "", false
	}
	if rg := r.src[k]; rg != nil {
		return rg.peer, true
	}
	i := r.order[k]
	if i >= r.got {
		return "", false
	}
	sa := &r.names[i]
	n := int(r.msgs[i].hdr.Namelen) - 2 // after sun_family
	if sa.Family != unix.AF_UNIX || n <= 0 {
		return "", false
	}
	path := make([]byte, 0, n)
	for _, c := range sa.Path[:min(n, len(sa.Path))] {
		if c == 0 {
			break
		}
		path = append(path, byte(c))
	}
	name, ok := strings.CutSuffix(filepath.Base(string(path)), ".sock")
	if !ok || name == "" {
		return "", false
	}
	return name, true
}

// Close detaches the endpoint: it stops its goroutines, drops what waits
// in the delay queue, wakes a blocked ReadBatch (which returns ErrClosed),
// closes the sockets, drops its rings (outbound ones marked closed,
// inbound ones gone) and removes the socket file, the ring files, and the
// network's directory if nothing else is left in it.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.closing.Store(true)
	e.mu.Unlock()
	close(e.done)
	e.wg.Wait()
	err := e.file.Close()
	if e.tapFD >= 0 {
		unix.Close(e.tapFD)
	}
	e.closeRings()
	e.removeFiles()
	return err
}

// removeFiles removes the socket file, if it is still ours, and the empty
// directories above it.
func (e *Endpoint) removeFiles() {
	if e.ino != 0 && sameFile(e.path, e.ino) {
		_ = os.Remove(e.path)
	}
	removeEmptyDirs(filepath.Join(e.netDir, tapsDir), e.netDir)
}

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"golang.org/x/sys/unix"
)

// Port IDs the engine reserves; workload ports take the IDs above them.
// A router's extra interfaces (EngineConfig.Interfaces) k = 1, 2, ... have
// their host side at firstExtraHost+k and their underlay side at
// firstExtraUnderlay+k.
const (
	hostPortID         PortID = 0
	underlayPortID     PortID = 1
	tunnelPortID       PortID = 2
	firstExtraHost     PortID = 8
	firstExtraUnderlay PortID = 16
	firstWorkload      PortID = 24
)

// MaxInterfaces is the most underlay interfaces an engine has: the
// primary one and up to MaxInterfaces-1 in EngineConfig.Interfaces.
const MaxInterfaces = int(firstExtraUnderlay - firstExtraHost)

// headroom is the space kept before every packet in the engine's buffers:
// TUN reads and writes put the virtio-net header there.
const headroom = 64

// vnetLen is the length of the virtio_net_hdr before every packet read from
// or written to a TUN device opened with IFF_VNET_HDR.
const vnetLen = fabric.VirtioNetHdrLen

// bufSize is the size of one packet buffer: headroom and the largest IPv4
// packet (a GSO super-packet is at most 64 KB).
const bufSize = headroom + 65536

// batch is how many packets one read moves at most.
const batch = 64

// Queue-full policy: when a neighbour's fabric queue is full, the frames
// it refused are retried after a short sleep, at most queueFullRetries
// times (a bounded backpressure of a few hundred microseconds), then
// dropped and counted as a NIC drops when its ring is full. Measured
// (docs/benchmarks.md, iperf3 -P 4 across two engines): dropping at once
// cost 1170-3204 TCP retransmits in 5 s, the bounded retry 45-435, at the
// same throughput within the noise. Every refused attempt is counted in
// the fabric's TxDrops.QueueFull, retried or not.
const (
	queueFullRetries = 8
	queueFullWait    = 50 * time.Microsecond
)

// EngineConfig describes the ports of one node's engine.
type EngineConfig struct {
	FIB       *fib.Table
	Host      Device           // the node's underlay interface as its kernel sees it
	HostName  string           // port name of Host, e.g. "host"
	Underlay  *fabric.Endpoint // the node's link to the underlay network
	Interface string           // the underlay's name in routes, e.g. "ens33"
	MTU       int              // the underlay MTU
	Address   netip.Addr       // the node address
	Logger    *slog.Logger
	// Tunnel adds the IPIP port tunl0 (MTU: the underlay's minus the outer
	// header): routes with dev tunl0 are encapsulated toward their
	// gateway, and IPIP packets to Address from one of Nodes are
	// decapsulated and routed as if received on tunl0. Others are dropped
	// and counted.
	Tunnel        bool
	TunnelAddress netip.Addr // tunl0's own address, if any: handed to Host
	// ErrorsToIngress sends ICMP errors the engine has no route for back
	// to the neighbour the offending packet came from (a lab router
	// between networks; see Config.ErrorsToIngress).
	ErrorsToIngress bool
	Nodes           []netip.Addr // the outer sources tunl0 accepts
	// Interfaces are more underlay interfaces, for a router joining
	// several networks: each is a host side (a TUN device in the
	// router's namespace carrying its address) and a fabric endpoint,
	// like the primary Host and Underlay.
	Interfaces []Interface
}

// Interface is one more underlay interface of an engine.
type Interface struct {
	Name     string           // the name in routes, e.g. "eth1"
	Host     Device           // the interface as the namespace's kernel sees it
	Underlay *fabric.Endpoint // the link to the interface's network
	MTU      int
	Address  netip.Addr // the router's address on the network
}

// Engine moves packets between a node's ports: it reads from every TUN
// device and the fabric, decides with a Forwarder and writes the result out.
//
// TUN devices must be opened with IFF_VNET_HDR and TCP offloads (as
// netns.OpenTUN does): the engine reads and writes their file descriptors
// itself, one virtio_net_hdr and one packet per read or write, so a 64 KB
// GSO super-packet the kernel hands over is routed once, by its first
// header, crosses the fabric whole with its GSO metadata and is written
// whole to the receiving TUN device, whose kernel segments it. Only where
// a packet must be fragmented is a super-packet cut into segments here.
type Engine struct {
	fwd  *Forwarder
	host *tunPort
	log  *slog.Logger
	// hosts are the host ports (the primary's first), underlays the
	// fabric endpoints (the primary's first, then in the order of
	// EngineConfig.Interfaces; see underlayIndex) with their port IDs.
	// They do not change after NewEngine.
	hosts     []*tunPort
	underlays []underlay
	// localPort is the host port whose interface has the address: a
	// packet for one of the router's addresses is handed to the
	// kernel by that interface.
	localPort map[netip.Addr]PortID
	addr      netip.Addr
	mtu       int
	tunnel    atomic.Bool // tunl0 is up: encapsulation and decapsulation
	decap     *encap.Decapsulator

	mu      sync.Mutex
	ports   map[string]*tunPort // workload ports by name
	nextID  PortID
	outputs atomic.Pointer[[]*tunPort] // TUN port by PortID; nil where none
	ctx     context.Context
	wg      sync.WaitGroup
	closed  atomic.Bool

	batches batchPool // the TUN readers' buffers

	segDrops   atomic.Uint64 // super-packets that could not be segmented
	encapDrops atomic.Uint64 // packets for tunl0 that could not be encapsulated
}

// Device is a TUN device the engine reads and writes through its
// descriptor: opened with IFF_VNET_HDR and TCP offloads, nonblocking (as
// netns.OpenTUN does). Its owner closes it.
type Device interface {
	File() *os.File
}

type tunPort struct {
	id   PortID
	file *os.File
	rc   syscall.RawConn
}

func newTUNPort(id PortID, dev Device) (*tunPort, error) {
	f := dev.File()
	if f == nil {
		return nil, errors.New("engine: TUN device has no file")
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return &tunPort{id: id, file: f, rc: rc}, nil
}

// The engine's TUN reads and writes never block (the descriptors are
// nonblocking), so they are raw system calls: the Go scheduler is not told,
// and does not hand the goroutine's P to another thread when a write that
// runs the receiving kernel's TCP takes tens of microseconds. That hand-off
// (futex wakeups, sysmon polling) cost more than the copy itself; see
// docs/benchmarks.md. gVisor's rawfile does the same.

// rawRead is read(2) on a nonblocking descriptor.
func rawRead(fd uintptr, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// write writes one virtio_net_hdr and packet to the port's device.
func (p *tunPort) write(b []byte) error {
	var errno unix.Errno
	err := p.rc.Write(func(fd uintptr) bool {
		for {
			_, _, errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			if errno != unix.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// TunnelName is the IPIP port's name in routes, as Calico's tunl0.
const TunnelName = "tunl0"

// NewEngine builds an engine with the host and underlay ports; workloads are
// added with AddWorkload.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if len(cfg.Interfaces) >= MaxInterfaces {
		return nil, fmt.Errorf("engine: %d interfaces; at most %d", len(cfg.Interfaces)+1, MaxInterfaces)
	}
	ports := []Port{
		{ID: hostPortID, Name: cfg.HostName, Kind: PortHost, MTU: cfg.MTU, Addr: cfg.Address},
		{ID: underlayPortID, Name: cfg.Interface, Kind: PortUnderlay, MTU: cfg.MTU, Addr: cfg.Address},
	}
	decap, err := encap.NewDecapsulator(cfg.Nodes...)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	fwd, err := New(cfg.FIB, Config{Ports: ports, DefaultSource: cfg.Address, ErrorsToIngress: cfg.ErrorsToIngress})
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	host, err := newTUNPort(hostPortID, cfg.Host)
	if err != nil {
		return nil, err
	}
	e := &Engine{fwd: fwd, host: host, log: cfg.Logger, addr: cfg.Address, mtu: cfg.MTU, decap: decap,
		ports: map[string]*tunPort{}, nextID: firstWorkload,
		hosts:     []*tunPort{host},
		underlays: []underlay{{id: underlayPortID, ep: cfg.Underlay}},
		localPort: map[netip.Addr]PortID{},
	}
	e.batches.init(runtime.GOMAXPROCS(0))
	out := make([]*tunPort, firstWorkload)
	out[hostPortID] = host
	for k, x := range cfg.Interfaces {
		hid, uid := firstExtraHost+PortID(k+1), firstExtraUnderlay+PortID(k+1)
		hp, err := newTUNPort(hid, x.Host)
		if err != nil {
			return nil, err
		}
		if err := fwd.AddPort(Port{ID: hid, Name: "@" + x.Name, Kind: PortHost, MTU: x.MTU}); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		if err := fwd.AddPort(Port{ID: uid, Name: x.Name, Kind: PortUnderlay, MTU: x.MTU, Addr: x.Address}); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		out[hid] = hp
		e.hosts = append(e.hosts, hp)
		e.underlays = append(e.underlays, underlay{id: uid, ep: x.Underlay})
		e.localPort[x.Address] = hid
	}
	if cfg.Tunnel {
		if err := e.EnableTunnel(cfg.TunnelAddress); err != nil {
			return nil, err
		}
	}
	e.outputs.Store(&out)
	return e, nil
}

// underlay is one fabric endpoint of the engine and its port's ID.
type underlay struct {
	id PortID
	ep *fabric.Endpoint
}

// EnableTunnel brings up tunl0 (MTU: the underlay's minus the outer
// header) with the local address addr (none if invalid), on a running
// engine too; it does nothing when tunl0 is up.
func (e *Engine) EnableTunnel(addr netip.Addr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tunnel.Load() {
		return nil
	}
	p := Port{ID: tunnelPortID, Name: TunnelName, Kind: PortTunnel, MTU: e.mtu - encap.HeaderLen, Addr: addr}
	if err := e.fwd.AddPort(p); err != nil {
		return fmt.Errorf("engine: add %s: %w", TunnelName, err)
	}
	e.tunnel.Store(true)
	return nil
}

// Stats returns the forwarder's and the fabric's counters by name.
func (e *Engine) Stats() map[string]uint64 {
	m := e.fwd.Stats().Map()
	for _, u := range e.underlays {
		f := u.ep.Stats()
		m["fabric_tx_frames"] += f.TxFrames
		m["fabric_rx_frames"] += f.RxFrames
		m["fabric_tx_drops"] += f.TxDrops.Total()
		m["fabric_rx_drops"] += f.RxDrops.Total()
	}
	if n := e.segDrops.Load(); n != 0 {
		m["gso_segment_drops"] = n
	}
	if e.tunnel.Load() {
		for _, c := range e.decap.Counters() {
			if c.Value != 0 || c.Name == "accepted" {
				m["ipip_decap_"+c.Name] = c.Value
			}
		}
		if n := e.encapDrops.Load(); n != 0 {
			m["ipip_encap_drops"] = n
		}
	}
	return m
}

// Run moves packets until ctx ends or Close is called.
func (e *Engine) Run(ctx context.Context) {
	e.mu.Lock()
	e.ctx = ctx
	for _, h := range e.hosts {
		e.wg.Add(1)
		go e.readTUN(h)
	}
	for _, u := range e.underlays {
		e.wg.Add(1)
		go e.readFabric(u)
	}
	for _, p := range e.ports {
		e.wg.Add(1)
		go e.readTUN(p)
	}
	e.mu.Unlock()
	<-ctx.Done()
	e.Close()
}

// AddWorkload adds a workload port named name (caliXXXXXXXXXXX) served by dev.
func (e *Engine) AddWorkload(name string, dev Device, mtu int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.ports[name]; ok {
		return fmt.Errorf("port %s exists", name)
	}
	id := e.nextID
	p, err := newTUNPort(id, dev)
	if err != nil {
		return err
	}
	e.nextID++
	if err := e.fwd.AddPort(Port{ID: id, Name: name, Kind: PortWorkload, MTU: mtu}); err != nil {
		return err
	}
	old := *e.outputs.Load()
	out := make([]*tunPort, max(len(old), int(id)+1))
	copy(out, old)
	out[id] = p
	e.outputs.Store(&out)
	e.ports[name] = p
	if e.ctx != nil {
		e.wg.Add(1)
		go e.readTUN(p)
	}
	return nil
}

// RemoveWorkload removes a workload port; the caller closes its device,
// which ends the port's reader.
func (e *Engine) RemoveWorkload(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.ports[name]
	if !ok {
		return
	}
	delete(e.ports, name)
	e.fwd.RemovePort(p.id)
	old := *e.outputs.Load()
	out := make([]*tunPort, len(old))
	copy(out, old)
	out[p.id] = nil
	e.outputs.Store(&out)
}

// Close stops the readers of the fabric; TUN readers end when their devices
// are closed by their owners.
func (e *Engine) Close() {
	if e.closed.Swap(true) {
		return
	}
	for _, u := range e.underlays {
		u.ep.Close()
	}
}

// pending is one packet waiting to be written to a TUN device: buf holds
// the virtio_net_hdr and the packet.
type pending struct {
	port PortID
	buf  []byte
}

// sender routes the packets of one read batch and sends the results: one
// WriteBatch to the fabric and one write per packet to TUN devices, after
// the whole batch is routed.
type sender struct {
	e      *Engine
	icmp   [][]byte // one ICMP error buffer (with headroom) per packet of a batch
	frag   []byte   // fragments, vnetLen bytes in
	seg    []byte   // segments of a super-packet, vnetLen bytes in
	tunBuf []byte   // an encapsulated fragment

	tun  []pending
	fab  []fabricQueue // one per underlay, as e.underlays
	errs []error
	// rx is the endpoint the batch being routed came from (nil for a
	// TUN device's), rxIndex the packet's index in it: an ICMP error
	// without a next hop goes back to that frame's sender.
	rx      *fabric.Endpoint
	rxIndex int
}

// fabricQueue holds the frames waiting for one WriteBatch to an underlay.
type fabricQueue struct {
	ep       *fabric.Endpoint
	nextHops []netip.Addr
	frames   []fabric.Frame
}

func newSender(e *Engine) *sender {
	s := &sender{
		e:      e,
		frag:   make([]byte, vnetLen+65536),
		seg:    make([]byte, vnetLen+65536),
		tunBuf: make([]byte, encap.HeaderLen+65536),
		tun:    make([]pending, 0, batch),
		errs:   make([]error, batch),
	}
	for _, u := range e.underlays {
		s.fab = append(s.fab, fabricQueue{ep: u.ep, nextHops: make([]netip.Addr, 0, batch), frames: make([]fabric.Frame, 0, batch)})
	}
	s.icmp = make([][]byte, batch)
	for i := range s.icmp {
		s.icmp[i] = make([]byte, headroom+MaxICMPErrorLen)
	}
	return s
}

// handle routes one packet, which sits at buf[headroom:headroom+n] with
// its offload metadata g, and queues what is to be sent. i is the
// packet's index in the batch.
func (s *sender) handle(buf []byte, n int, g fabric.GSO, in PortID, i int) {
	s.handleAt(buf, headroom, n, g, in, i)
}

// handleAt is handle for a packet at buf[off:off+n]; at least vnetLen
// bytes (HeaderLen for tunl0) must precede it.
func (s *sender) handleAt(buf []byte, off, n int, g fabric.GSO, in PortID, i int) {
	pkt := buf[off : off+n]
	var d Decision
	if g.IsGSO() {
		hl := gsoHeadersLen(pkt)
		if hl == 0 {
			s.e.segDrops.Add(1)
			return
		}
		g.HdrLen = uint16(hl)
		d = s.e.fwd.ForwardGSO(pkt, in, hl+int(g.GSOSize), s.icmp[i][headroom:])
	} else {
		d = s.e.fwd.Forward(pkt, in, s.icmp[i][headroom:])
	}
	switch d.Action {
	case Drop:
		return
	case Local:
		s.queueTUN(s.e.hostFor(d.Packet), d.Packet, buf, g)
	case Deliver, ICMPError:
		if d.Action == ICMPError {
			buf, g = s.icmp[i], fabric.GSO{}
		}
		if d.Fragment {
			s.fragment(d, g)
			return
		}
		s.emit(d.Port, d.NextHop, d.Packet, buf, g)
	case Encap:
		if d.Fragment {
			s.fragment(d, g)
			return
		}
		s.emit(d.Port, d.NextHop, d.Packet, buf, g)
	}
}

// offsetIn returns where pkt, a subslice of owner, starts in it. (Not
// from their capacities: a subslice may have had its capacity cut.)
func offsetIn(owner, pkt []byte) int {
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(pkt))) - uintptr(unsafe.Pointer(unsafe.SliceData(owner))))
}

// encapsulate wraps pkt, which sits in owner with at least HeaderLen bytes
// before it, in an IPIP header toward nextHop, in place, and returns the
// outer packet and its offload metadata.
func (s *sender) encapsulate(nextHop netip.Addr, pkt, owner []byte, g fabric.GSO) ([]byte, fabric.GSO, bool) {
	off := offsetIn(owner, pkt)
	segs := 1
	if g.IsGSO() && g.GSOSize > 0 && len(pkt) > int(g.HdrLen) {
		segs = (len(pkt) - int(g.HdrLen) + int(g.GSOSize) - 1) / int(g.GSOSize)
	}
	out, err := encap.EncapsulateSegments(owner[:off+len(pkt)], off, s.e.addr, nextHop, segs)
	if err != nil {
		s.e.encapDrops.Add(1)
		return nil, g, false
	}
	if g.IsGSO() {
		g.HdrLen += encap.HeaderLen
	}
	if g.Flags&fabric.FlagNeedsCsum != 0 {
		g.CsumStart += encap.HeaderLen
	}
	return out, g, true
}

// hostFor returns the host port a packet for one of the router's own
// addresses is handed to: that of the interface with the packet's
// destination, or the primary one.
func (e *Engine) hostFor(pkt []byte) PortID {
	if len(e.localPort) == 0 || len(pkt) < ipHeaderLen {
		return hostPortID
	}
	if id, ok := e.localPort[netip.AddrFrom4([4]byte(pkt[offDst:offDst+4]))]; ok {
		return id
	}
	return hostPortID
}

// underlayIndex returns the index in e.underlays of underlay port id.
func underlayIndex(id PortID) int {
	if id == underlayPortID {
		return 0
	}
	return int(id - firstExtraUnderlay)
}

// outerRoute returns the underlay (an index in e.underlays) and the
// neighbour an IPIP packet to dst leaves by: the outer packet is routed
// like one the node sends, so a node on another network is reached through
// the gateway of the route to it, as the kernel routes what leaves tunl0.
func (e *Engine) outerRoute(dst netip.Addr) (int, netip.Addr) {
	r, ok := e.fwd.table.Lookup(dst)
	if !ok || r.Type != fib.Unicast {
		return 0, dst
	}
	p := e.fwd.ports.Load().byName[r.Dev]
	if p == nil || p.Kind != PortUnderlay {
		return 0, dst
	}
	if r.Gateway.IsValid() {
		return underlayIndex(p.ID), r.Gateway
	}
	return underlayIndex(p.ID), dst
}

// emit sends pkt, a subslice of owner, out of port p.
func (s *sender) emit(p *Port, nextHop netip.Addr, pkt, owner []byte, g fabric.GSO) {
	k := 0
	switch p.Kind {
	case PortTunnel:
		var ok bool
		if pkt, g, ok = s.encapsulate(nextHop, pkt, owner, g); !ok {
			return
		}
		k, nextHop = s.e.outerRoute(nextHop)
	case PortUnderlay:
		k = underlayIndex(p.ID)
		if !nextHop.IsValid() {
			// an ICMP error back to the sender of the packet
			if s.rx != nil {
				if node, ok := s.rx.Sender(s.rxIndex); ok {
					_ = s.e.underlays[k].ep.SendToNode(node, fabric.Frame{GSO: g, Packet: pkt})
				}
			}
			return
		}
	default:
		s.queueTUN(p.ID, pkt, owner, g)
		return
	}
	q := &s.fab[k]
	q.nextHops = append(q.nextHops, nextHop)
	q.frames = append(q.frames, fabric.Frame{GSO: g, Packet: pkt})
	if len(q.frames) == cap(q.frames) {
		s.flushQueue(q)
	}
}

// queueTUN queues pkt (a subslice of owner, at least vnetLen bytes in)
// for TUN port id with the virtio_net_hdr g.
func (s *sender) queueTUN(id PortID, pkt, owner []byte, g fabric.GSO) {
	off := offsetIn(owner, pkt)
	_ = g.PutVirtioNetHdr(owner[off-vnetLen:])
	s.tun = append(s.tun, pending{port: id, buf: owner[off-vnetLen : off+len(pkt)]})
	if len(s.tun) == cap(s.tun) {
		s.flushTUN()
	}
}

// fragment sends the fragments of d.Packet (of each of its segments when
// it is a GSO super-packet) out of d.Port. Fragments are sent at once: to
// the fabric one by one, to a TUN device from a copy.
func (s *sender) fragment(d Decision, g fabric.GSO) {
	s.flush()
	emitFrag := func(f []byte) error {
		if d.Port.Kind == PortUnderlay {
			_ = s.e.underlays[underlayIndex(d.Port.ID)].ep.SendTo(d.NextHop, fabric.Frame{Packet: f})
			return nil
		}
		if d.Port.Kind == PortTunnel {
			// f is in frag or seg, vnetLen bytes in: copy it behind
			// room for the outer header.
			n, err := encap.Encapsulate(s.tunBuf, f, s.e.addr, d.NextHop)
			if err != nil {
				s.e.encapDrops.Add(1)
				return nil
			}
			k, hop := s.e.outerRoute(d.NextHop)
			_ = s.e.underlays[k].ep.SendTo(hop, fabric.Frame{Packet: s.tunBuf[:n]})
			return nil
		}
		outs := *s.e.outputs.Load()
		if int(d.Port.ID) >= len(outs) || outs[d.Port.ID] == nil {
			return nil
		}
		// f is in frag or seg, vnetLen bytes in: the header goes before it
		var w []byte
		switch &f[0] {
		case &s.frag[vnetLen]:
			w = s.frag[:vnetLen+len(f)]
		case &s.seg[vnetLen]:
			w = s.seg[:vnetLen+len(f)]
		default:
			w = append(make([]byte, vnetLen, vnetLen+len(f)), f...)
		}
		clear(w[:vnetLen])
		_ = outs[d.Port.ID].write(w)
		return nil
	}
	if g.IsGSO() {
		if err := segment(d.Packet, g, s.seg[vnetLen:], func(seg []byte) {
			_ = Fragment(seg, d.Port.MTU, s.frag[vnetLen:], emitFrag)
		}); err != nil {
			s.e.segDrops.Add(1)
		}
		return
	}
	if g.Flags&fabric.FlagNeedsCsum != 0 {
		completeChecksum(d.Packet, g)
	}
	_ = Fragment(d.Packet, d.Port.MTU, s.frag[vnetLen:], emitFrag)
}

func (s *sender) flush() {
	s.flushFabric()
	s.flushTUN()
}

// flushFabric sends the queued frames of every underlay.
func (s *sender) flushFabric() {
	for i := range s.fab {
		s.flushQueue(&s.fab[i])
	}
}

// flushQueue sends q's frames with WriteBatch, retrying those a full queue
// refused as the queue-full policy says.
func (s *sender) flushQueue(q *fabricQueue) {
	n := len(q.frames)
	if n == 0 {
		return
	}
	hops, frames := q.nextHops, q.frames
	for try := 0; ; try++ {
		q.ep.WriteBatch(hops[:n], frames[:n], s.errs[:n])
		if try == queueFullRetries {
			break
		}
		// keep the refused frames, in order, and retry them
		m := 0
		for i := range n {
			if errors.Is(s.errs[i], fabric.ErrQueueFull) {
				hops[m], frames[m] = hops[i], frames[i]
				m++
			}
		}
		if m == 0 {
			break
		}
		n = m
		time.Sleep(queueFullWait)
	}
	clear(q.frames[:len(q.frames)])
	q.nextHops, q.frames = q.nextHops[:0], q.frames[:0]
}

func (s *sender) flushTUN() {
	if len(s.tun) == 0 {
		return
	}
	outs := *s.e.outputs.Load()
	for _, p := range s.tun {
		if int(p.port) < len(outs) && outs[p.port] != nil {
			if err := outs[p.port].write(p.buf); err != nil {
				s.e.log.Debug("tun write", "port", p.port, "err", err)
			}
		}
	}
	clear(s.tun)
	s.tun = s.tun[:0]
}

// readTUN reads p's device until it is closed: each read returns one
// virtio_net_hdr and one packet; the packets available at once (up to
// batch) are routed together and sent with one flush. The buffers come
// from the engine's pool only while there are packets to move: an idle
// port holds none (see batchPool).
func (e *Engine) readTUN(p *tunPort) {
	defer e.wg.Done()
	var b *tunBatch
	var n int
	var rerr error
	read := func(fd uintptr) bool {
		for n < batch {
			if b == nil {
				b = e.batches.get(e)
			}
			m, err := rawRead(fd, b.bufs[n][headroom-vnetLen:])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				if n == 0 {
					// nothing to read: wait for the device holding no buffers
					e.batches.put(b)
					b = nil
					return false
				}
				return true
			case err != nil:
				rerr = err
				return true
			case m == 0:
				rerr = os.ErrClosed
				return true
			}
			b.sizes[n] = m
			n++
		}
		return true
	}
	for {
		n, rerr = 0, nil
		if err := p.rc.Read(read); err != nil && rerr == nil {
			rerr = err
		}
		if b != nil {
			for i := range n {
				buf := b.bufs[i]
				if b.sizes[i] < vnetLen {
					continue
				}
				g, _ := fabric.DecodeVirtioNetHdr(buf[headroom-vnetLen:])
				b.s.handle(buf, b.sizes[i]-vnetLen, g, p.id, i)
			}
			b.s.flush()
			e.batches.put(b)
			b = nil
		}
		if rerr != nil {
			if !e.closed.Load() {
				e.log.Debug("tun read ended", "port", p.id, "err", rerr)
			}
			return
		}
	}
}

// readFabric reads underlay u's frames and routes them as received on u.
func (e *Engine) readFabric(u underlay) {
	defer e.wg.Done()
	// ReadBatch fills bufs[i] = raw[j][headroom:] and may reorder them;
	// index finds each one's full buffer (with headroom) again.
	raw := make([][]byte, batch)
	bufs := make([][]byte, batch)
	index := make(map[*byte]int, batch)
	for i := range bufs {
		raw[i] = make([]byte, bufSize)
		bufs[i] = raw[i][headroom:]
		index[&bufs[i][0]] = i
	}
	frames := make([]fabric.Frame, batch)
	s := newSender(e)
	s.rx = u.ep
	for {
		n, err := u.ep.ReadBatch(bufs, frames)
		if err != nil {
			return
		}
		for i := range n {
			f := &frames[i]
			b := raw[index[&bufs[i][0]]]
			s.rxIndex = i
			if u.id == underlayPortID && e.tunnel.Load() && isIPIPTo(f.Packet, e.addr) {
				e.receiveTunnel(s, b, f, i)
				continue
			}
			s.handle(b, len(f.Packet), f.GSO, u.id, i)
		}
		s.flush()
	}
}

// isIPIPTo reports whether pkt is an IPIP packet addressed to addr.
func isIPIPTo(pkt []byte, addr netip.Addr) bool {
	return len(pkt) >= ipHeaderLen && pkt[0]>>4 == 4 && pkt[offProto] == 4 &&
		netip.AddrFrom4([4]byte(pkt[offDst:offDst+4])) == addr
}

// receiveTunnel decapsulates the IPIP frame f, held at headroom in b, and
// routes the inner packet as received on tunl0; a frame from an unknown
// source or malformed is dropped and counted by the decapsulator.
func (e *Engine) receiveTunnel(s *sender, b []byte, f *fabric.Frame, i int) {
	inner, _, r := e.decap.Decapsulate(f.Packet)
	if r != encap.Accepted {
		return
	}
	outer := offsetIn(f.Packet, inner)
	g := f.GSO
	if g.IsGSO() {
		if int(g.HdrLen) <= outer {
			e.segDrops.Add(1)
			return
		}
		g.HdrLen -= uint16(outer)
	}
	if g.Flags&fabric.FlagNeedsCsum != 0 {
		if int(g.CsumStart) < outer {
			g.Flags &^= fabric.FlagNeedsCsum
		} else {
			g.CsumStart -= uint16(outer)
		}
	}
	s.handleAt(b, headroom+outer, len(inner), g, tunnelPortID, i)
}

// gsoHeadersLen returns the length of the headers before the payload a
// super-packet's segments share: IPv4 and TCP or UDP, or for an IPIP
// super-packet (one crossing a router between two nodes' tunl0) the outer
// header and the inner packet's. 0 when it is none of these or malformed.
func gsoHeadersLen(pkt []byte) int {
	if len(pkt) >= ipHeaderLen && pkt[0]>>4 == 4 && pkt[offProto] == 4 {
		ihl := int(pkt[0]&0xf) * 4
		if ihl < ipHeaderLen || len(pkt) < ihl {
			return 0
		}
		if inner := headersLen(pkt[ihl:]); inner != 0 {
			return ihl + inner
		}
		return 0
	}
	return headersLen(pkt)
}

// headersLen returns the length of the IPv4 and TCP or UDP headers of a
// super-packet, or 0 when it is neither or malformed.
func headersLen(pkt []byte) int {
	if len(pkt) < ipHeaderLen || pkt[0]>>4 != 4 {
		return 0
	}
	ihl := int(pkt[0]&0xf) * 4
	if ihl < ipHeaderLen || len(pkt) < ihl {
		return 0
	}
	switch pkt[offProto] {
	case unix.IPPROTO_TCP:
		if len(pkt) < ihl+20 {
			return 0
		}
		thl := int(pkt[ihl+12]>>4) * 4
		if thl < 20 || len(pkt) < ihl+thl {
			return 0
		}
		return ihl + thl
	case unix.IPPROTO_UDP:
		if len(pkt) < ihl+8 {
			return 0
		}
		return ihl + 8
	}
	return 0
}

// errSegment is returned by segment for a super-packet it cannot cut.
var errSegment = errors.New("engine: cannot segment super-packet")

// segment cuts an IPv4 TCP or UDP super-packet into the packets its
// GSO metadata describes, as the kernel's GSO would: each gets a copy of
// the headers, GSOSize bytes of payload (the last the rest), its own total
// length, IP ID, sequence number (TCP) or length (UDP) and complete
// checksums. Each is written into buf and passed to emit, which must be
// done with it before returning.
func segment(pkt []byte, g fabric.GSO, buf []byte, emit func(seg []byte)) error {
	hl := headersLen(pkt)
	if hl == 0 || g.GSOSize == 0 {
		return errSegment
	}
	tot := int(be16(pkt[offTotalLen:]))
	if tot < hl || tot > len(pkt) {
		return errSegment
	}
	pkt = pkt[:tot]
	ihl := int(pkt[0]&0xf) * 4
	tcp := pkt[offProto] == unix.IPPROTO_TCP
	mss := int(g.GSOSize)
	payload := pkt[hl:]
	id := be16(pkt[offID:])
	var seq uint32
	var flags byte
	if tcp {
		seq = be32(pkt[ihl+4:])
		flags = pkt[ihl+13]
	}
	if len(buf) < hl+min(mss, len(payload)) {
		return errSegment
	}
	for pos, k := 0, 0; pos < len(payload) || k == 0; pos, k = pos+mss, k+1 {
		n := min(mss, len(payload)-pos)
		copy(buf, pkt[:hl])
		copy(buf[hl:], payload[pos:pos+n])
		s := buf[:hl+n]
		put16(s[offTotalLen:], uint16(hl+n))
		put16(s[offID:], id+uint16(k))
		setHeaderChecksum(s[:ihl])
		l4 := s[ihl:]
		var off int
		if tcp {
			put32(l4[4:], seq+uint32(pos))
			f := flags
			if pos+n < len(payload) {
				f &^= 0x01 | 0x08 // FIN, PSH only on the last
			}
			if k > 0 {
				f &^= 0x80 // CWR only on the first
			}
			l4[13] = f
			off = 16
		} else {
			put16(l4[4:], uint16(len(l4)))
			off = 6
		}
		l4[off], l4[off+1] = 0, 0
		acc := sum(s[offSrc:offSrc+8], uint64(pkt[offProto])+uint64(len(l4)))
		c := ^fold(sum(l4, acc))
		if !tcp && c == 0 {
			c = 0xffff
		}
		put16(l4[off:], c)
		emit(s)
		if n <= 0 {
			break
		}
	}
	return nil
}

// completeChecksum computes the checksum a NEEDS_CSUM packet leaves to
// its sender: the one's complement sum from CsumStart to the end, stored
// at CsumStart+CsumOffset (which holds the pseudo-header's sum).
func completeChecksum(pkt []byte, g fabric.GSO) {
	start, at := int(g.CsumStart), int(g.CsumStart)+int(g.CsumOffset)
	if start >= len(pkt) || at+2 > len(pkt) {
		return
	}
	put16(pkt[at:], ^fold(sum(pkt[start:], 0)))
}

package dataplane

import (
	"errors"
	"net/netip"
	"time"
	"unsafe"

	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

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

// pending is one packet waiting to be written to a workload or host port
// (a TUN device or a Link): buf holds the virtio_net_hdr and the packet.
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
	tw   tunWrite      // the sender's writes to TUN devices
	fab  []fabricQueue // one per underlay, as e.underlays
	errs []error
	// rx is the endpoint the batch being routed came from (nil for a
	// TUN device's), rxIndex the packet's index in it: an ICMP error
	// without a next hop goes back to that frame's sender.
	rx      Underlay
	rxIndex int
}

// fabricQueue holds the frames waiting for one WriteBatch to an underlay.
type fabricQueue struct {
	ep       Underlay
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
	s.tw.init()
	s.tw.ring = e.newTunRing()
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
func (s *sender) handle(buf []byte, n int, g header.GSO, in PortID, i int) {
	s.handleAt(buf, headroom, n, g, in, i)
}

// handleAt is handle for a packet at buf[off:off+n]; at least vnetLen
// bytes (HeaderLen for tunl0) must precede it.
func (s *sender) handleAt(buf []byte, off, n int, g header.GSO, in PortID, i int) {
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
	if ps := s.e.pol.state.Load(); ps != nil && (d.Action == Deliver || d.Action == Encap || d.Action == Local) {
		out := PortID(hostPortID)
		if d.Action != Local {
			out = d.Port.ID
		}
		if !s.e.pol.allow(ps, d.Packet, in, out) {
			return
		}
	}
	switch d.Action {
	case Drop:
		return
	case Local:
		s.queueTUN(s.e.hostFor(d.Packet), d.Packet, buf, g)
	case Deliver, ICMPError:
		if d.Action == ICMPError {
			buf, g = s.icmp[i], header.GSO{}
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
func (s *sender) encapsulate(nextHop netip.Addr, pkt, owner []byte, g header.GSO) ([]byte, header.GSO, bool) {
	off := offsetIn(owner, pkt)
	segs := g.Segments(len(pkt))
	out, err := encap.EncapsulateSegments(owner[:off+len(pkt)], off, s.e.addr, nextHop, segs)
	if err != nil {
		s.e.encapDrops.Add(1)
		return nil, g, false
	}
	if g.IsGSO() {
		g.HdrLen += encap.HeaderLen
	}
	if g.Flags&header.FlagNeedsCsum != 0 {
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
	if id, ok := e.localPort[header.IPv4(pkt).DestinationAddress()]; ok {
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
func (s *sender) emit(p *Port, nextHop netip.Addr, pkt, owner []byte, g header.GSO) {
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
func (s *sender) queueTUN(id PortID, pkt, owner []byte, g header.GSO) {
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
func (s *sender) fragment(d Decision, g header.GSO) {
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
		_ = outs[d.Port.ID].output(s, w)
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
	if g.Flags&header.FlagNeedsCsum != 0 {
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
	for i := 0; i < len(s.tun); {
		p := s.tun[i]
		j := i + 1
		if s.tw.ring != nil {
			for j < len(s.tun) && s.tun[j].port == p.port {
				j++
			}
		}
		if int(p.port) < len(outs) && outs[p.port] != nil {
			var err error
			if tp, ok := outs[p.port].(*tunPort); ok && j-i > 1 {
				// io_uring: the run of packets to one TUN device
				// with one io_uring_enter
				err = tp.writeRun(&s.tw, s.tun[i:j])
			} else {
				for _, q := range s.tun[i:j] {
					if err = outs[p.port].output(s, q.buf); err != nil {
						break
					}
				}
			}
			if err != nil {
				s.e.log.Debug("tun write", "port", p.port, "err", err)
			}
		}
		i = j
	}
	clear(s.tun)
	s.tun = s.tun[:0]
}

package dataplane_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// The engine tests run without root: TUN devices are replaced by one end of
// a unix datagram socket pair (one read or write per virtio_net_hdr and
// packet, like a TUN device opened with IFF_VNET_HDR), the fabric by
// memUnderlay.

// fakeTUN is a dataplane.Device whose file is the engine's end of a socket pair;
// the test reads and writes the other end, peer.
type fakeTUN struct {
	file *os.File
	peer *net.UnixConn
}

func newFakeTUN(t *testing.T) *fakeTUN {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds { // room for 64 KB super-packets
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	pf := os.NewFile(uintptr(fds[1]), "faketun-peer")
	c, err := net.FileConn(pf)
	pf.Close()
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeTUN{file: os.NewFile(uintptr(fds[0]), "faketun"), peer: c.(*net.UnixConn)}
	t.Cleanup(func() { d.peer.Close(); d.file.Close() })
	return d
}

func (d *fakeTUN) File() *os.File { return d.file }

// send writes pkt with the virtio_net_hdr g, as the kernel would hand it
// to the engine.
func (d *fakeTUN) send(t *testing.T, g header.GSO, pkt []byte) {
	t.Helper()
	b := make([]byte, header.VirtioNetHdrLen+len(pkt))
	if err := g.PutVirtioNetHdr(b); err != nil {
		t.Fatal(err)
	}
	copy(b[header.VirtioNetHdrLen:], pkt)
	if _, err := d.peer.Write(b); err != nil {
		t.Fatal(err)
	}
}

// recv returns the next packet the engine wrote, and its virtio_net_hdr.
func (d *fakeTUN) recv(t *testing.T) (header.GSO, []byte) {
	t.Helper()
	b := make([]byte, 70000)
	_ = d.peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := d.peer.Read(b)
	if err != nil {
		t.Fatalf("read from the engine: %v", err)
	}
	g, err := header.DecodeVirtioNetHdr(b[:n])
	if err != nil {
		t.Fatal(err)
	}
	return g, b[header.VirtioNetHdrLen:n]
}

// sent is a frame the engine sent on a memUnderlay.
type sent struct {
	nextHop netip.Addr // invalid when sent to a node by name
	node    string
	frame   fabric.Frame // a copy
}

// memUnderlay is an in-memory dataplane.Underlay: frames given to deliver
// come out of ReadBatch, frames the engine sends go to out. The first
// refuse frames given to WriteBatch are refused with ErrQueueFull.
type memUnderlay struct {
	in     chan fabric.Frame
	out    chan sent
	done   chan struct{}
	once   sync.Once
	refuse atomic.Int32
	tx, rx atomic.Uint64
}

var _ dataplane.Underlay = (*memUnderlay)(nil)

func newMemUnderlay() *memUnderlay {
	return &memUnderlay{in: make(chan fabric.Frame, 64), out: make(chan sent, 256), done: make(chan struct{})}
}

func (u *memUnderlay) deliver(g header.GSO, pkt []byte) {
	u.in <- fabric.Frame{GSO: g, Packet: append([]byte(nil), pkt...)}
}

func (u *memUnderlay) ReadBatch(bufs [][]byte, frames []fabric.Frame) (int, error) {
	put := func(i int, f fabric.Frame) {
		n := copy(bufs[i], f.Packet)
		frames[i] = fabric.Frame{GSO: f.GSO, Packet: bufs[i][:n]}
	}
	select {
	case <-u.done:
		return 0, fabric.ErrClosed
	case f := <-u.in:
		put(0, f)
	}
	n := 1
	for n < min(len(bufs), len(frames)) {
		select {
		case f := <-u.in:
			put(n, f)
			n++
		default:
			u.rx.Add(uint64(n))
			return n, nil
		}
	}
	u.rx.Add(uint64(n))
	return n, nil
}

func (u *memUnderlay) Sender(k int) (string, bool) { return "peer", true }

func (u *memUnderlay) record(s sent) error {
	s.frame.Packet = append([]byte(nil), s.frame.Packet...)
	u.tx.Add(1) // before the test can see the frame
	select {
	case u.out <- s:
		return nil
	default:
		u.tx.Add(^uint64(0))
		return fabric.ErrQueueFull
	}
}

func (u *memUnderlay) SendTo(nextHop netip.Addr, f fabric.Frame) error {
	return u.record(sent{nextHop: nextHop, frame: f})
}

func (u *memUnderlay) SendToNode(node string, f fabric.Frame) error {
	return u.record(sent{node: node, frame: f})
}

func (u *memUnderlay) WriteBatch(nextHops []netip.Addr, frames []fabric.Frame, errs []error) int {
	k := 0
	for i := range min(len(nextHops), len(frames)) {
		var err error
		if u.refuse.Add(-1) >= 0 {
			err = fabric.ErrQueueFull
		} else {
			err = u.record(sent{nextHop: nextHops[i], frame: frames[i]})
		}
		if errs != nil {
			errs[i] = err
		}
		if err == nil {
			k++
		}
	}
	return k
}

func (u *memUnderlay) Stats() fabric.Stats {
	return fabric.Stats{TxFrames: u.tx.Load(), RxFrames: u.rx.Load()}
}

func (u *memUnderlay) Close() error {
	u.once.Do(func() { close(u.done) })
	return nil
}

// next returns the next frame the engine sent.
func (u *memUnderlay) next(t *testing.T) sent {
	t.Helper()
	select {
	case s := <-u.out:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the engine sent nothing to the underlay")
		return sent{}
	}
}

var (
	engNode = netip.MustParseAddr("192.168.50.10")
	engPeer = netip.MustParseAddr("192.168.50.11")
)

// engineRig is an engine with a fake host TUN, one workload caliA
// (10.244.1.5) and a memUnderlay.
type engineRig struct {
	e        *dataplane.Engine
	host, wl *fakeTUN
	u        *memUnderlay
}

func newEngineRig(t *testing.T, tunnel bool) *engineRig {
	t.Helper()
	return newEngineRigWith(t, tunnel, nil)
}

// newEngineRigWith is newEngineRig with mod applied to the engine's
// configuration.
func newEngineRigWith(t *testing.T, tunnel bool, mod func(*dataplane.EngineConfig)) *engineRig {
	t.Helper()
	table := fib.NewTable()
	dev := "ens33"
	if tunnel {
		dev = dataplane.TunnelName
	}
	for _, r := range []fib.Route{
		{Dst: netip.MustParsePrefix("192.168.50.0/24"), Type: fib.Unicast, Dev: "ens33", Scope: fib.ScopeLink, PrefSrc: engNode},
		{Dst: netip.MustParsePrefix("10.244.2.0/26"), Type: fib.Unicast, Gateway: engPeer, Dev: dev, OnLink: tunnel},
		{Dst: netip.MustParsePrefix("10.244.1.5/32"), Type: fib.Unicast, Dev: "caliA", Scope: fib.ScopeLink},
	} {
		if err := table.Insert(r); err != nil {
			t.Fatal(err)
		}
	}
	rig := &engineRig{host: newFakeTUN(t), wl: newFakeTUN(t), u: newMemUnderlay()}
	cfg := dataplane.EngineConfig{
		FIB: table, Host: rig.host, HostName: "host", Underlay: rig.u, Interface: "ens33",
		MTU: 1500, Address: engNode, Tunnel: tunnel,
	}
	if tunnel {
		cfg.Nodes = []netip.Addr{engPeer}
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := dataplane.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rig.e = e
	if err := e.AddWorkload("caliA", rig.wl, 1500); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return rig
}

// checkForwarded checks that got is want forwarded once: TTL one less,
// the header checksum valid, the rest unchanged.
func checkForwarded(t *testing.T, got, want []byte) {
	t.Helper()
	ip := header.IPv4(got)
	if !ip.IsValid(len(got)) || len(got) != len(want) {
		t.Fatalf("got %d bytes, not the %d-byte packet", len(got), len(want))
	}
	if ip.TTL() != header.IPv4(want).TTL()-1 {
		t.Errorf("TTL %d, want %d", ip.TTL(), header.IPv4(want).TTL()-1)
	}
	if !ip.IsChecksumValid() {
		t.Errorf("header checksum %#04x does not verify", ip.Checksum())
	}
	if string(got[20:]) != string(want[20:]) || ip.SourceAddress() != header.IPv4(want).SourceAddress() {
		t.Error("packet changed beyond TTL and checksum")
	}
}

func TestEngineWithMemUnderlay(t *testing.T) {
	rig := newEngineRig(t, false)

	// workload → underlay: routed via the peer, TTL decremented
	out := ipSpec{src: "10.244.1.5", dst: "10.244.2.7", payload: []byte("to the peer")}.pkt()
	rig.wl.send(t, header.GSO{}, out)
	s := rig.u.next(t)
	if s.nextHop != engPeer {
		t.Fatalf("sent to %v, want %v", s.nextHop, engPeer)
	}
	checkForwarded(t, s.frame.Packet, out)

	// underlay → workload
	in := ipSpec{src: "10.244.2.7", dst: "10.244.1.5", payload: []byte("from the peer")}.pkt()
	rig.u.deliver(header.GSO{}, in)
	g, got := rig.wl.recv(t)
	if g != (header.GSO{}) {
		t.Errorf("virtio_net_hdr %+v, want zero", g)
	}
	checkForwarded(t, got, in)

	// a GSO super-packet crosses whole, its virtio_net_hdr kept
	tcp := make([]byte, 20+3000)
	tcp[12] = 5 << 4 // data offset: 20 bytes
	super := ipSpec{src: "10.244.2.7", dst: "10.244.1.5", proto: header.TCPProtocolNumber, df: true, payload: tcp}.pkt()
	sg := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	rig.u.deliver(sg, super)
	g, got = rig.wl.recv(t)
	if g != sg {
		t.Errorf("virtio_net_hdr %+v, want %+v", g, sg)
	}
	checkForwarded(t, got, super)

	// no route: ICMP net unreachable back toward the source, via the peer
	bad := ipSpec{src: "10.244.2.7", dst: "10.99.0.1", payload: []byte("nowhere")}.pkt()
	rig.u.deliver(header.GSO{}, bad)
	s = rig.u.next(t)
	ip := header.IPv4(s.frame.Packet)
	if s.nextHop != engPeer || !ip.IsValid(len(ip)) || ip.Protocol() != header.ICMPv4ProtocolNumber {
		t.Fatalf("sent %d bytes to %v, want an ICMP error to %v", len(ip), s.nextHop, engPeer)
	}
	m := header.ICMPv4(ip.Payload())
	if m.Type() != header.ICMPv4DstUnreachable || m.Code() != 0 || !m.IsChecksumValid() || !ip.IsChecksumValid() {
		t.Errorf("ICMP type %d code %d, checksums %v/%v", m.Type(), m.Code(), ip.IsChecksumValid(), m.IsChecksumValid())
	}
	if ip.DestinationAddress() != netip.MustParseAddr("10.244.2.7") || string(m.Payload()[:20]) != string(bad[:20]) {
		t.Error("ICMP error not to the source, or not quoting the packet")
	}

	// a full queue is retried (the queue-full policy), not dropped
	rig.u.refuse.Store(3)
	rig.wl.send(t, header.GSO{}, out)
	s = rig.u.next(t)
	checkForwarded(t, s.frame.Packet, out)
	if n := rig.u.refuse.Load(); n >= 0 {
		t.Errorf("the underlay refused %d fewer frames than it was asked to", n+1)
	}

	st := rig.e.Stats()
	if st["fabric_rx_frames"] != 3 || st["fabric_tx_frames"] != 3 {
		t.Errorf("fabric_rx_frames %d (want 3), fabric_tx_frames %d (want 3)", st["fabric_rx_frames"], st["fabric_tx_frames"])
	}
	// Metrics holds the same counters, structured.
	em := rig.e.Metrics()
	if em.Forwarder.Forwarded != st["forwarded"] || em.Forwarder.Forwarded == 0 || em.Forwarder.Drops[dataplane.ReasonNoRoute] != st["drop_no_route"] {
		t.Errorf("Metrics().Forwarder %+v disagrees with Stats %v", em.Forwarder, st)
	}
	if len(em.Underlays) != 1 || em.Underlays[0].Name != "ens33" || em.Underlays[0].Stats.TxFrames != 3 || em.Underlays[0].Stats.RxFrames != 3 {
		t.Errorf("Metrics().Underlays %+v, want ens33 with 3 frames each way", em.Underlays)
	}
	if em.Tunnel || em.Decap != nil {
		t.Errorf("Metrics() without tunl0: tunnel %v, decap %v", em.Tunnel, em.Decap)
	}
}

func TestEngineTunnelWithMemUnderlay(t *testing.T) {
	rig := newEngineRig(t, true)

	// workload → tunl0: an IPIP packet from the node to the peer
	out := ipSpec{src: "10.244.1.5", dst: "10.244.2.7", payload: []byte("through the tunnel")}.pkt()
	rig.wl.send(t, header.GSO{}, out)
	s := rig.u.next(t)
	outer := header.IPv4(s.frame.Packet)
	if s.nextHop != engPeer || !outer.IsValid(len(outer)) || !outer.IsIPIP() || !outer.IsChecksumValid() {
		t.Fatalf("sent %d bytes to %v, want an IPIP packet to %v", len(outer), s.nextHop, engPeer)
	}
	if outer.SourceAddress() != engNode || outer.DestinationAddress() != engPeer {
		t.Errorf("outer %v → %v, want %v → %v", outer.SourceAddress(), outer.DestinationAddress(), engNode, engPeer)
	}
	checkForwarded(t, outer.Payload(), out)

	// IPIP from the peer: decapsulated and delivered to the workload
	in := ipSpec{src: "10.244.2.7", dst: "10.244.1.5", payload: []byte("back through the tunnel")}.pkt()
	wrap := func(from string) []byte {
		b := make([]byte, 20+len(in))
		copy(b[20:], in)
		f := header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: header.IPIPProtocolNumber,
			Src: netip.MustParseAddr(from).As4(), Dst: engNode.As4()}
		header.IPv4(b).Encode(&f)
		return b
	}
	rig.u.deliver(header.GSO{}, wrap("192.168.50.11"))
	_, got := rig.wl.recv(t)
	checkForwarded(t, got, in)

	// from a node not in the list: dropped and counted
	rig.u.deliver(header.GSO{}, wrap("192.168.50.99"))
	deadline := time.Now().Add(10 * time.Second)
	for rig.e.Stats()["ipip_decap_unknown_source"] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("ipip_decap_unknown_source = %d, want 1", rig.e.Stats()["ipip_decap_unknown_source"])
		}
		time.Sleep(time.Millisecond)
	}
	if n := rig.e.Stats()["ipip_decap_accepted"]; n != 1 {
		t.Errorf("ipip_decap_accepted = %d, want 1", n)
	}
	m := rig.e.Metrics()
	decap := map[string]uint64{}
	for _, c := range m.Decap {
		decap[c.Name] = c.Value
	}
	if !m.Tunnel || m.Forwarder.Encapsulated != 1 || decap["accepted"] != 1 || decap["unknown_source"] != 1 {
		t.Errorf("Metrics(): tunnel %v, encapsulated %d, decap %v; want tunl0 up, 1 encapsulated, 1 accepted, 1 unknown_source", m.Tunnel, m.Forwarder.Encapsulated, decap)
	}
}

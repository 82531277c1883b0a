package netstack_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netstack"
)

// The tests join two engines by an in-memory underlay (memWire) and give
// each a fake host device (one end of a unix datagram socket pair, as the
// engine's own tests do): no root, no namespace, no TUN.

// memWire is one end of an in-memory underlay between two engines:
// frames sent on it come out of the other end's ReadBatch.
type memWire struct {
	peer   *memWire
	in     chan fabric.Frame
	done   chan struct{}
	once   sync.Once
	tx, rx atomic.Uint64
	drops  atomic.Uint64
}

var _ dataplane.Underlay = (*memWire)(nil)

func newWire() (*memWire, *memWire) {
	a := &memWire{in: make(chan fabric.Frame, 1024), done: make(chan struct{})}
	b := &memWire{in: make(chan fabric.Frame, 1024), done: make(chan struct{}), peer: a}
	a.peer = b
	return a, b
}

func (w *memWire) ReadBatch(bufs [][]byte, frames []fabric.Frame) (int, error) {
	put := func(i int, f fabric.Frame) {
		n := copy(bufs[i], f.Packet)
		frames[i] = fabric.Frame{GSO: f.GSO, Packet: bufs[i][:n]}
	}
	select {
	case <-w.done:
		return 0, fabric.ErrClosed
	case f := <-w.in:
		put(0, f)
	}
	n := 1
	for n < min(len(bufs), len(frames)) {
		select {
		case f := <-w.in:
			put(n, f)
			n++
		default:
			w.rx.Add(uint64(n))
			return n, nil
		}
	}
	w.rx.Add(uint64(n))
	return n, nil
}

func (w *memWire) Sender(int) (string, bool) { return "peer", true }

func (w *memWire) send(f fabric.Frame) error {
	f.Packet = append([]byte(nil), f.Packet...)
	select {
	case w.peer.in <- f:
		w.tx.Add(1)
		return nil
	default:
		w.drops.Add(1)
		return fabric.ErrQueueFull
	}
}

func (w *memWire) SendTo(_ netip.Addr, f fabric.Frame) error { return w.send(f) }
func (w *memWire) SendToNode(_ string, f fabric.Frame) error { return w.send(f) }
func (w *memWire) Stats() fabric.Stats {
	return fabric.Stats{TxFrames: w.tx.Load(), RxFrames: w.rx.Load()}
}
func (w *memWire) Close() error { w.once.Do(func() { close(w.done) }); return nil }
func (w *memWire) WriteBatch(_ []netip.Addr, frames []fabric.Frame, errs []error) int {
	k := 0
	for i, f := range frames {
		err := w.send(f)
		if errs != nil {
			errs[i] = err
		}
		if err == nil {
			k++
		}
	}
	return k
}

// fakeDev is a dataplane.Device whose file is the engine's end of a
// socket pair; peer is the test's end.
type fakeDev struct {
	file *os.File
	peer *net.UnixConn
}

func newFakeDev(t testing.TB) *fakeDev {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	pf := os.NewFile(uintptr(fds[1]), "fakedev-peer")
	c, err := net.FileConn(pf)
	pf.Close()
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDev{file: os.NewFile(uintptr(fds[0]), "fakedev"), peer: c.(*net.UnixConn)}
	t.Cleanup(func() { d.peer.Close(); d.file.Close() })
	return d
}

func (d *fakeDev) File() *os.File { return d.file }

var (
	nodeA = netip.MustParseAddr("192.168.50.10")
	nodeB = netip.MustParseAddr("192.168.50.11")
	addrA = netip.MustParseAddr("10.244.1.5")
	addrB = netip.MustParseAddr("10.244.2.7")
)

// node is one engine of the rig.
type node struct {
	e    *dataplane.Engine
	fib  *fib.Table
	host *fakeDev
	mtu  int // the workloads' MTU
}

// newNode starts an engine at addr whose block is block, the other
// node's block reached via peer: directly, or with tunnel through tunl0
// (IPIP, as a pool with ipipMode Always), the workloads' MTU then 1480.
func newNode(t testing.TB, addr, peer netip.Addr, block, peerBlock netip.Prefix, w dataplane.Underlay, tunnel bool, underlayMTU int) *node {
	t.Helper()
	table := fib.NewTable()
	toPeer := fib.Route{Dst: peerBlock, Type: fib.Unicast, Gateway: peer, Dev: "ens33"}
	mtu := 1500
	if tunnel {
		toPeer.Dev, toPeer.OnLink, mtu = dataplane.TunnelName, true, 1480
	}
	for _, r := range []fib.Route{
		{Dst: netip.MustParsePrefix("192.168.50.0/24"), Type: fib.Unicast, Dev: "ens33", Scope: fib.ScopeLink, PrefSrc: addr},
		toPeer,
		{Dst: block, Type: fib.Blackhole},
	} {
		if err := table.Insert(r); err != nil {
			t.Fatal(err)
		}
	}
	n := &node{fib: table, host: newFakeDev(t), mtu: mtu}
	cfg := dataplane.EngineConfig{
		FIB: table, Host: n.host, HostName: "@host", Underlay: w, Interface: "ens33",
		MTU: underlayMTU, Address: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if tunnel {
		cfg.Tunnel, cfg.Nodes = true, []netip.Addr{peer}
	}
	e, err := dataplane.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.e = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// addStack adds a netstack workload to n, as the agent does: the stack,
// its port and the /32 route to it.
func (n *node) addStack(t testing.TB, port, name string, addr netip.Addr, serve ...string) *netstack.Stack {
	t.Helper()
	svcs, err := netstack.ParseServices(serve)
	if err != nil {
		t.Fatal(err)
	}
	st, err := netstack.New(netstack.Config{Name: name, Address: addr, MTU: n.mtu, Serve: svcs})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.e.AddLinkWorkload(port, st, n.mtu); err != nil {
		st.Close()
		t.Fatal(err)
	}
	if err := n.fib.Replace(fib.Route{Dst: netip.PrefixFrom(addr, 32), Type: fib.Unicast, Dev: port, Scope: fib.ScopeLink}); err != nil {
		t.Fatal(err)
	}
	return st
}

// delStack removes what addStack added and closes the stack.
func (n *node) delStack(port string, st *netstack.Stack) {
	n.fib.Delete(netip.PrefixFrom(st.Address(), 32), 0)
	n.e.RemoveWorkload(port)
	st.Close()
}

// pair is two engines joined by a memWire.
type pair struct{ a, b *node }

func newPair(t testing.TB) *pair { return newPairMode(t, false) }

// newPairMode is newPair with the blocks routed through tunl0 (IPIP) if
// tunnel.
func newPairMode(t testing.TB, tunnel bool) *pair { return newPairMTU(t, tunnel, 1500) }

// newPairMTU is newPairMode with an underlay MTU.
func newPairMTU(t testing.TB, tunnel bool, underlayMTU int) *pair {
	t.Helper()
	wa, wb := newWire()
	return &pair{
		a: newNode(t, nodeA, nodeB, netip.MustParsePrefix("10.244.1.0/26"), netip.MustParsePrefix("10.244.2.0/26"), wa, tunnel, underlayMTU),
		b: newNode(t, nodeB, nodeA, netip.MustParsePrefix("10.244.2.0/26"), netip.MustParsePrefix("10.244.1.0/26"), wb, tunnel, underlayMTU),
	}
}

package dataplane

import (
	"encoding/binary"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// countLink is a Link that keeps the last packet delivered to it.
type countLink struct {
	n    atomic.Int64
	last []byte
}

func (l *countLink) Wait() bool      { select {} }
func (l *countLink) Read([]byte) int { return 0 }
func (l *countLink) Deliver(pkt []byte) {
	l.n.Add(1)
	l.last = append(l.last[:0], pkt...)
}

// nullUnderlay takes every frame and sends nothing anywhere.
type nullUnderlay struct{ tx atomic.Uint64 }

func (u *nullUnderlay) ReadBatch([][]byte, []fabric.Frame) (int, error) { return 0, fabric.ErrClosed }
func (u *nullUnderlay) Sender(int) (string, bool)                       { return "", false }
func (u *nullUnderlay) SendTo(netip.Addr, fabric.Frame) error           { u.tx.Add(1); return nil }
func (u *nullUnderlay) SendToNode(string, fabric.Frame) error           { u.tx.Add(1); return nil }
func (u *nullUnderlay) Stats() fabric.Stats                             { return fabric.Stats{TxFrames: u.tx.Load()} }
func (u *nullUnderlay) Close() error                                    { return nil }
func (u *nullUnderlay) WriteBatch(_ []netip.Addr, f []fabric.Frame, errs []error) int {
	clear(errs[:len(f)])
	u.tx.Add(uint64(len(f)))
	return len(f)
}

type fileDev struct{ f *os.File }

func (d fileDev) File() *os.File { return d.f }

// linkEngine is an engine (not running) with a TUN workload port tunW
// (10.0.0.1, a socket pair the test drains), a Link workload port linkW
// (10.0.0.2) and a route to 10.9.0.0/16 via the underlay.
func linkEngine(t *testing.T) (*Engine, *countLink, func()) {
	t.Helper()
	table := fib.NewTable()
	for _, r := range []fib.Route{
		{Dst: netip.MustParsePrefix("192.168.50.0/24"), Type: fib.Unicast, Dev: "ens33", Scope: fib.ScopeLink},
		{Dst: netip.MustParsePrefix("10.9.0.0/16"), Type: fib.Unicast, Gateway: netip.MustParseAddr("192.168.50.11"), Dev: "ens33"},
		{Dst: netip.MustParsePrefix("10.0.0.1/32"), Type: fib.Unicast, Dev: "tunW", Scope: fib.ScopeLink},
		{Dst: netip.MustParsePrefix("10.0.0.2/32"), Type: fib.Unicast, Dev: "linkW", Scope: fib.ScopeLink},
	} {
		if err := table.Insert(r); err != nil {
			t.Fatal(err)
		}
	}
	var files []*os.File
	dev := func() Device {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, b := os.NewFile(uintptr(fds[0]), "dev"), os.NewFile(uintptr(fds[1]), "peer")
		files = append(files, a, b)
		t.Cleanup(func() { a.Close(); b.Close() })
		return fileDev{a}
	}
	e, err := NewEngine(EngineConfig{FIB: table, Host: dev(), HostName: "@host", Underlay: &nullUnderlay{},
		Interface: "ens33", MTU: 1500, Address: netip.MustParseAddr("192.168.50.10")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.AddWorkload("tunW", dev(), 1500); err != nil {
		t.Fatal(err)
	}
	l := &countLink{}
	if err := e.AddLinkWorkload("linkW", l, 1500); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 70000)
	drain := func() { // the TUN peer's queue
		for {
			if _, err := unix.Read(int(files[3].Fd()), buf); err != nil {
				return
			}
		}
	}
	return e, l, drain
}

func udpPacket(src, dst string, n int) []byte {
	b := make([]byte, 28+n)
	f := header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: header.UDPProtocolNumber,
		Src: netip.MustParseAddr(src).As4(), Dst: netip.MustParseAddr(dst).As4()}
	header.IPv4(b).Encode(&f)
	binary.BigEndian.PutUint16(b[20:], 1000)
	binary.BigEndian.PutUint16(b[22:], 53)
	binary.BigEndian.PutUint16(b[24:], uint16(8+n))
	return b
}

// The engine's paths to and from TUN ports and the underlay allocate
// nothing with Link ports among the outputs (a write to a TUN device
// allocated two closures per packet before senders had their tunWrite),
// and a packet routed to or from a Link port allocates nothing in the
// engine either.
func TestLinkPortNoAllocs(t *testing.T) {
	e, l, drain := linkEngine(t)
	s := newSender(e)
	buf := make([]byte, bufSize)
	route := func(src, dst string, in PortID) func() {
		p := udpPacket(src, dst, 64)
		return func() {
			copy(buf[headroom:], p)
			s.handle(buf, len(p), header.GSO{}, in, 0)
			s.flush()
		}
	}
	tunID, linkID := e.ports["tunW"].id(), e.ports["linkW"].id()
	for _, c := range []struct {
		name string
		fn   func()
	}{
		{"tun to underlay", route("10.0.0.1", "10.9.0.5", tunID)},
		{"underlay to tun", route("10.9.0.5", "10.0.0.1", underlayPortID)},
		{"link to underlay", route("10.0.0.2", "10.9.0.5", linkID)},
		{"underlay to link", route("10.9.0.5", "10.0.0.2", underlayPortID)},
		{"tun to link", route("10.0.0.1", "10.0.0.2", tunID)},
		{"link to tun", route("10.0.0.2", "10.0.0.1", linkID)},
	} {
		c.fn()
		if n := testing.AllocsPerRun(100, func() { c.fn(); drain() }); n != 0 {
			t.Errorf("%s: %v allocs per packet, want 0", c.name, n)
		}
	}
	if l.n.Load() < 200 {
		t.Errorf("the link got %d packets, want at least 200", l.n.Load())
	}
}

// A GSO super-packet (a TUN workload's, NEEDS_CSUM) routed to a Link
// port arrives as plain packets with complete checksums.
func TestLinkPortSegments(t *testing.T) {
	e, l, _ := linkEngine(t)
	s := newSender(e)
	const seg, segs = 500, 3
	p := udpPacket("10.0.0.1", "10.0.0.2", seg*segs)
	for i := range seg * segs {
		p[28+i] = byte(i)
	}
	ip := header.IPv4(p)
	// NEEDS_CSUM: the UDP checksum field holds the pseudo-header's sum
	binary.BigEndian.PutUint16(p[26:], header.Fold(ip.PseudoHeaderSum(header.UDPProtocolNumber, len(p)-20)))
	var got [][]byte
	g := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOUDPL4, HdrLen: 28, GSOSize: seg, CsumStart: 20, CsumOffset: 6}
	buf := make([]byte, bufSize)
	copy(buf[headroom:], p)
	deliver := &captureLink{got: &got}
	e.ports["linkW"].link.link = deliver
	s.handle(buf, len(p), g, e.ports["tunW"].id(), 0)
	s.flush()
	if len(got) != segs {
		t.Fatalf("the link got %d packets, want %d", len(got), segs)
	}
	for k, q := range got {
		ip := header.IPv4(q)
		if !ip.IsValid(len(q)) || !ip.IsChecksumValid() || len(q) != 28+seg {
			t.Fatalf("segment %d: %d bytes, header valid %v", k, len(q), ip.IsChecksumValid())
		}
		if c := header.Fold(header.Sum(q[20:], ip.PseudoHeaderSum(header.UDPProtocolNumber, len(q)-20))); c != 0xffff {
			t.Errorf("segment %d: UDP checksum does not verify (%#04x)", k, c)
		}
		if q[28] != byte(k*seg) {
			t.Errorf("segment %d starts with byte %d, want %d", k, q[28], byte(k*seg))
		}
	}
	_ = l
}

type captureLink struct{ got *[][]byte }

func (c *captureLink) Wait() bool         { select {} }
func (c *captureLink) Read([]byte) int    { return 0 }
func (c *captureLink) Deliver(pkt []byte) { *c.got = append(*c.got, append([]byte(nil), pkt...)) }

// Ports added and removed more times than there are port IDs: the IDs of
// removed ports are used again, and the engine's tables do not grow.
func TestPortIDsReused(t *testing.T) {
	e, _, _ := linkEngine(t)
	base := len(*e.outputs.Load())
	for i := range MaxPortID + 100 {
		if err := e.AddLinkWorkload("churn", &countLink{}, 1500); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		e.RemoveWorkload("churn")
	}
	if n := len(*e.outputs.Load()); n > base+1 {
		t.Errorf("outputs grew from %d to %d entries", base, n)
	}
	if _, ok := e.fwd.Port(e.nextID); ok || e.nextID > firstWorkload+3 {
		t.Errorf("next port ID %d after churn", e.nextID)
	}
}

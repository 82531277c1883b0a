package fabric

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/header"
)

var (
	addr1 = netip.MustParseAddr("192.168.50.10")
	addr2 = netip.MustParseAddr("192.168.50.11")
	addr3 = netip.MustParseAddr("192.168.50.12")
	lab   = map[netip.Addr]string{addr1: "node1", addr2: "node2", addr3: "node3"}
)

// attach attaches node to network "lan" under dir and closes it at the
// end of the test.
func attach(t testing.TB, dir, node string, opts Options) *Endpoint {
	t.Helper()
	if opts.Neighbors == nil {
		opts.Neighbors = lab
	}
	if opts.Interface == "" {
		opts.Interface = node + "/ens33"
	}
	e, err := Attach(dir, "lan", node, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// packet returns an n-byte IPv4-looking packet whose bytes encode seq.
func packet(n, seq int) []byte {
	p := make([]byte, n)
	if n > 0 {
		p[0] = 0x45
	}
	for i := 1; i < n; i++ {
		p[i] = byte(seq + i)
	}
	return p
}

// reader receives frames from e in a goroutine until e closes, copying
// them to a channel.
func reader(t testing.TB, e *Endpoint, bufSize int) <-chan Frame {
	t.Helper()
	ch := make(chan Frame, 1024)
	go func() {
		defer close(ch)
		bufs := make([][]byte, 16)
		for i := range bufs {
			bufs[i] = make([]byte, bufSize)
		}
		frames := make([]Frame, 16)
		for {
			n, err := e.ReadBatch(bufs, frames)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("ReadBatch: %v", err)
				}
				return
			}
			for _, f := range frames[:n] {
				ch <- Frame{GSO: f.GSO, Packet: bytes.Clone(f.Packet)}
			}
		}
	}()
	return ch
}

// drain receives and discards frames from e until it closes, without
// allocating.
func drain(t testing.TB, e *Endpoint) {
	bufs := make([][]byte, 16)
	for i := range bufs {
		bufs[i] = make([]byte, 1<<16)
	}
	frames := make([]Frame, 16)
	go func() {
		for {
			if _, err := e.ReadBatch(bufs, frames); err != nil {
				return
			}
		}
	}()
}

func recvFrame(t testing.TB, ch <-chan Frame) Frame {
	t.Helper()
	select {
	case f, ok := <-ch:
		if !ok {
			t.Fatal("reader stopped")
		}
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no frame within 10s")
	}
	return Frame{}
}

func expectNothing(t testing.TB, ch <-chan Frame, d time.Duration) {
	t.Helper()
	select {
	case f := <-ch:
		t.Fatalf("unexpected frame of %d bytes", len(f.Packet))
	case <-time.After(d):
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSendReceive(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	if want := filepath.Join(dir, "lan", "node2.sock"); b.Path() != want {
		t.Errorf("Path = %s, want %s", b.Path(), want)
	}
	rx := reader(t, b, 1<<16)
	var total uint64
	for i, n := range []int{1, 20, 60, 576, 1500, 9000} {
		p := packet(n, i)
		if err := a.SendTo(addr2, Frame{Packet: p}); err != nil {
			t.Fatalf("SendTo %d bytes: %v", n, err)
		}
		f := recvFrame(t, rx)
		if !bytes.Equal(f.Packet, p) || f.GSO != (header.GSO{}) {
			t.Fatalf("frame %d: got %d bytes %+v, want %d bytes", i, len(f.Packet), f.GSO, n)
		}
		total += uint64(n)
	}
	if err := a.SendToNode("node2", Frame{Packet: packet(100, 7)}); err != nil {
		t.Fatal(err)
	}
	if f := recvFrame(t, rx); !bytes.Equal(f.Packet, packet(100, 7)) {
		t.Fatal("SendToNode: wrong frame")
	}
	total += 100
	// A node outside the neighbour table is reachable by name.
	c := attach(t, dir, "node9", Options{})
	rc := reader(t, c, 2048)
	if err := a.SendToNode("node9", Frame{Packet: packet(64, 9)}); err != nil {
		t.Fatal(err)
	}
	recvFrame(t, rc)
	sa, sb := a.Stats(), b.Stats()
	if sa.TxFrames != 8 || sa.TxBytes != total+64 || sa.TxDrops.Total() != 0 {
		t.Errorf("sender stats %+v", sa)
	}
	waitFor(t, "receiver counters", func() bool { return b.Stats().RxFrames == 7 })
	if sb = b.Stats(); sb.RxBytes != total || sb.RxDrops.Total() != 0 {
		t.Errorf("receiver stats %+v", sb)
	}
}

func TestGSORoundTrip(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	rx := reader(t, b, 1<<16)
	g := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4 | header.GSOECN, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	p := packet(65000, 3)
	if err := a.SendTo(addr2, Frame{GSO: g, Packet: p}); err != nil {
		t.Fatal(err)
	}
	f := recvFrame(t, rx)
	if f.GSO != g || !bytes.Equal(f.Packet, p) {
		t.Fatalf("got %+v, %d bytes; want %+v, %d bytes", f.GSO, len(f.Packet), g, len(p))
	}

	// Inconsistent metadata is refused at the sender.
	bad := header.GSO{GSOType: header.GSOTCPv4, GSOSize: 0}
	if err := a.SendTo(addr2, Frame{GSO: bad, Packet: p}); !errors.Is(err, ErrBadFrame) {
		t.Errorf("bad GSO: err %v, want ErrBadFrame", err)
	}
	if err := a.SendTo(addr2, Frame{}); !errors.Is(err, ErrBadFrame) {
		t.Errorf("empty packet: err %v, want ErrBadFrame", err)
	}
	if got := a.Stats().TxDrops.BadFrame; got != 2 {
		t.Errorf("TxDrops.BadFrame = %d, want 2", got)
	}
}

func TestNeighbors(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	unknown := netip.MustParseAddr("192.168.50.99")
	if err := a.SendTo(unknown, Frame{Packet: packet(100, 0)}); err != ErrNoNeighbor {
		t.Errorf("unknown next hop: err %v, want ErrNoNeighbor", err)
	}
	// node3 is in the table but not attached.
	err := a.SendTo(addr3, Frame{Packet: packet(100, 0)})
	if err != ErrNeighborDown || !errors.Is(err, ErrNoNeighbor) {
		t.Errorf("absent neighbour: err %v, want ErrNeighborDown matching ErrNoNeighbor", err)
	}
	if err := a.SendToNode("nobody", Frame{Packet: packet(100, 0)}); !errors.Is(err, ErrNoNeighbor) {
		t.Errorf("SendToNode to nobody: %v", err)
	}
	if err := a.SendToNode("../x", Frame{Packet: packet(100, 0)}); err != ErrNoNeighbor {
		t.Errorf("SendToNode to a bad name: %v", err)
	}
	s := a.Stats()
	if s.TxDrops.NoNeighbor != 2 || s.TxDrops.NeighborDown != 2 || s.TxFrames != 0 {
		t.Errorf("stats %+v", s.TxDrops)
	}

	// The table changes at run time.
	x := attach(t, dir, "nodex", Options{})
	rx := reader(t, x, 2048)
	m := a.Neighbors()
	m[unknown] = "nodex"
	if err := a.SetNeighbors(m); err != nil {
		t.Fatal(err)
	}
	if n, ok := a.Neighbor(unknown); !ok || n != "nodex" {
		t.Errorf("Neighbor(%s) = %q, %v", unknown, n, ok)
	}
	if err := a.SendTo(unknown, Frame{Packet: packet(100, 1)}); err != nil {
		t.Fatal(err)
	}
	recvFrame(t, rx)
	// IPv4-mapped IPv6 next hops resolve too.
	if err := a.SendTo(netip.AddrFrom16(unknown.As16()), Frame{Packet: packet(100, 1)}); err != nil {
		t.Fatal(err)
	}
	recvFrame(t, rx)
	if err := a.SetNeighbors(map[netip.Addr]string{unknown: "a/b"}); err == nil {
		t.Error("SetNeighbors accepted a bad node name")
	}
	if _, ok := a.Neighbor(unknown); !ok {
		t.Error("a failed SetNeighbors changed the table")
	}
}

func TestLinkDown(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	rxA, rxB := reader(t, a, 2048), reader(t, b, 2048)

	// The sender's cable is pulled.
	a.SetUp(false)
	if a.IsUp() {
		t.Fatal("IsUp after SetUp(false)")
	}
	for range 5 {
		if err := a.SendTo(addr2, Frame{Packet: packet(100, 0)}); err != ErrLinkDown {
			t.Fatalf("send while down: %v, want ErrLinkDown", err)
		}
	}
	// Frames to a down endpoint are dropped on arrival.
	for range 3 {
		if err := b.SendTo(addr1, Frame{Packet: packet(100, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "receive-side link-down drops", func() bool { return a.Stats().RxDrops.LinkDown == 3 })
	expectNothing(t, rxA, 50*time.Millisecond)
	expectNothing(t, rxB, 0)
	if s := a.Stats(); s.TxDrops.LinkDown != 5 || s.TxFrames != 0 || s.RxFrames != 0 {
		t.Errorf("stats of the down endpoint: %+v", s)
	}

	// The receiver's cable is pulled.
	a.SetUp(true)
	b.SetUp(false)
	for range 4 {
		if err := a.SendTo(addr2, Frame{Packet: packet(100, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "receive-side link-down drops", func() bool { return b.Stats().RxDrops.LinkDown == 4 })
	expectNothing(t, rxB, 50*time.Millisecond)

	// Both up: traffic flows both ways again.
	b.SetUp(true)
	if err := a.SendTo(addr2, Frame{Packet: packet(100, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := b.SendTo(addr1, Frame{Packet: packet(100, 2)}); err != nil {
		t.Fatal(err)
	}
	if f := recvFrame(t, rxB); !bytes.Equal(f.Packet, packet(100, 1)) {
		t.Error("wrong frame after link up")
	}
	if f := recvFrame(t, rxA); !bytes.Equal(f.Packet, packet(100, 2)) {
		t.Error("wrong frame after link up")
	}
}

// maxQueued is how many datagrams a unix socket created in this
// namespace queues: max_dgram_qlen + 1.
func maxQueued(t testing.TB) int {
	b, err := os.ReadFile("/proc/sys/net/unix/max_dgram_qlen")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n + 1
}

func TestQueueFull(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{NoRing: true}) // the socket's queue (TestRingWrapAndFull: the ring's)
	b := attach(t, dir, "node2", Options{})             // never reads until told
	// Sized to the queue: systemd raises max_dgram_qlen to 512, the
	// kernel's default is 10.
	q := maxQueued(t)
	sends := q + 100
	done := make(chan int)
	go func() {
		full := 0
		for i := range sends {
			switch err := a.SendTo(addr2, Frame{Packet: packet(100, i)}); err {
			case nil:
			case ErrQueueFull:
				full++
			default:
				t.Errorf("send %d: %v", i, err)
			}
		}
		done <- full
	}()
	var full int
	select {
	case full = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sending to a full queue blocked")
	}
	if full != sends-q {
		t.Errorf("%d sends found the queue full, want %d (queue of %d)", full, sends-q, q)
	}
	if s := a.Stats(); s.TxDrops.QueueFull != uint64(full) || s.TxFrames != uint64(q) {
		t.Errorf("stats %+v", s)
	}
	// The queued frames are the first q, in order; then there is room.
	rx := reader(t, b, 2048)
	for i := range q {
		if f := recvFrame(t, rx); !bytes.Equal(f.Packet, packet(100, i)) {
			t.Fatalf("queued frame %d is not the %dth sent", i, i)
		}
	}
	if err := a.SendTo(addr2, Frame{Packet: packet(100, 1)}); err != nil {
		t.Fatalf("send after the queue drained: %v", err)
	}
	recvFrame(t, rx)
}

func TestReadBatchManyAndSmallBuffers(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	q := min(maxQueued(t), 8)
	for i := range q {
		size := 100
		if i%2 == 1 {
			size = 3000 // bigger than the receive buffers below
		}
		if err := a.SendTo(addr2, Frame{Packet: packet(size, i)}); err != nil {
			t.Fatal(err)
		}
	}
	bufs := make([][]byte, 16)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	frames := make([]Frame, 16)
	n, err := b.ReadBatch(bufs, frames)
	if err != nil {
		t.Fatal(err)
	}
	if want := (q + 1) / 2; n != want {
		t.Fatalf("ReadBatch returned %d frames, want %d", n, want)
	}
	for i := range n {
		if !bytes.Equal(frames[i].Packet, packet(100, 2*i)) {
			t.Errorf("frame %d wrong", i)
		}
		if &frames[i].Packet[0] != &bufs[i][0] {
			t.Errorf("frame %d is not in bufs[%d]", i, i)
		}
	}
	if s := b.Stats(); s.RxDrops.TooBig != uint64(q/2) {
		t.Errorf("RxDrops.TooBig = %d, want %d", s.RxDrops.TooBig, q/2)
	}
	if n, err := b.ReadBatch(nil, frames); n != 0 || err != nil {
		t.Errorf("ReadBatch with no buffers: %d, %v", n, err)
	}
}

func TestMalformedFramesDropped(t *testing.T) {
	dir := t.TempDir()
	b := attach(t, dir, "node2", Options{})
	rx := reader(t, b, 4096)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrUnix{Name: b.Path()}
	good, _ := AppendFrame(nil, Frame{Packet: packet(200, 5)})
	bad := [][]byte{
		{},
		{Version},
		good[:HeaderLen-1],
		good[:HeaderLen],             // length says 200, nothing follows
		good[:len(good)-1],           // one byte short
		append(bytes.Clone(good), 0), // one byte long
		func() []byte { g := bytes.Clone(good); g[0] = 2; return g }(),    // version
		func() []byte { g := bytes.Clone(good); g[1] = 1; return g }(),    // flags
		func() []byte { g := bytes.Clone(good); g[2] = 0x40; return g }(), // GSO flags
		func() []byte { g := bytes.Clone(good); g[3] = 9; return g }(),    // GSO type
		func() []byte { g := bytes.Clone(good); g[3] = header.GSOECN; return g }(),
		func() []byte { g := bytes.Clone(good); g[3] = header.GSOTCPv4; return g }(), // no gso_size
		func() []byte { // hdr_len beyond the packet
			f, _ := AppendFrame(nil, Frame{GSO: header.GSO{GSOType: header.GSOTCPv4, GSOSize: 100, HdrLen: 40}, Packet: packet(200, 5)})
			f[4], f[5] = 0x10, 0
			return f
		}(),
		func() []byte { // checksum beyond the packet
			f, _ := AppendFrame(nil, Frame{GSO: header.GSO{Flags: header.FlagNeedsCsum, CsumStart: 20, CsumOffset: 16}, Packet: packet(200, 5)})
			f[8] = 0x10
			return f
		}(),
	}
	for _, d := range bad {
		if err := unix.Sendto(fd, d, 0, to); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Sendto(fd, good, 0, to); err != nil {
		t.Fatal(err)
	}
	if f := recvFrame(t, rx); !bytes.Equal(f.Packet, packet(200, 5)) {
		t.Fatal("the good frame is not the one delivered")
	}
	if s := b.Stats(); s.RxDrops.BadFrame != uint64(len(bad)) || s.RxFrames != 1 {
		t.Errorf("RxDrops.BadFrame = %d, RxFrames = %d; want %d, 1", s.RxDrops.BadFrame, s.RxFrames, len(bad))
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lan", "node1.sock")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// A crashed engine: the socket file stays, nobody is bound to it.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	rx := reader(t, a, 2048)
	if err := b.SendTo(addr1, Frame{Packet: packet(64, 1)}); err != nil {
		t.Fatal(err)
	}
	recvFrame(t, rx)

	// A live one is not taken over.
	if e, err := Attach(dir, "lan", "node1", Options{}); err == nil {
		e.Close()
		t.Fatal("a second node1 attached while the first is running")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q does not say the socket is in use", err)
	}
	// ... and its failure did not remove the live socket.
	if err := b.SendTo(addr1, Frame{Packet: packet(64, 2)}); err != nil {
		t.Fatal(err)
	}
	recvFrame(t, rx)
}

func TestAttachErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ dir, network, node string }{
		{"", "lan", "n"},
		{dir, "", "n"},
		{dir, "a/b", "n"},
		{dir, "lan", ".."},
		{dir, "lan", ""},
		{dir, "lan", strings.Repeat("x", 120)}, // path too long for sockaddr_un
	} {
		if e, err := Attach(c.dir, c.network, c.node, Options{}); err == nil {
			e.Close()
			t.Errorf("Attach(%q, %q, %q) succeeded", c.dir, c.network, c.node)
		}
	}
	if _, err := Attach(dir, "lan", "n", Options{Interface: strings.Repeat("i", 300)}); err == nil {
		t.Error("Attach accepted a 300-byte interface name")
	}
	assertEmpty(t, dir)
}

func assertEmpty(t testing.TB, dir string) {
	t.Helper()
	var left []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if p != dir {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("left behind in %s: %v", dir, left)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	dir := t.TempDir()
	var eps []*Endpoint
	for _, n := range []string{"node1", "node2", "node3"} {
		e, err := Attach(dir, "lan", n, Options{Neighbors: lab})
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, e)
	}
	other, err := Attach(dir, "wan", "node1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	tap, err := OpenTap(dir, "lan")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tap.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := eps[0].SetImpairment(Impairment{Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := eps[0].SendTo(addr2, Frame{Packet: packet(100, 1)}); err != nil {
		t.Fatal(err)
	}
	// Closing in any order, the tap first or last, leaves nothing.
	tap.Close()
	for _, e := range eps {
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal("second Close:", err)
		}
	}
	other.Close()
	assertEmpty(t, dir)

	if err := eps[0].SendTo(addr2, Frame{Packet: packet(100, 1)}); err != ErrClosed {
		t.Errorf("send after Close: %v, want ErrClosed", err)
	}
	if err := eps[0].SetImpairment(Impairment{Delay: time.Second}); err != nil {
		t.Errorf("SetImpairment after Close (delay queue exists): %v", err)
	}
	if err := eps[1].SetImpairment(Impairment{Delay: time.Second}); err != ErrClosed {
		t.Errorf("SetImpairment starting a delay queue after Close: %v, want ErrClosed", err)
	}
}

func TestReadBatchUnblocksOnClose(t *testing.T) {
	dir := t.TempDir()
	e, err := Attach(dir, "lan", "node1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error)
	go func() {
		_, err := e.ReadBatch([][]byte{make([]byte, 100)}, make([]Frame, 1))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	e.Close()
	select {
	case err := <-errc:
		if err != ErrClosed {
			t.Errorf("ReadBatch after Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadBatch still blocked after Close")
	}
	if _, err := e.ReadBatch([][]byte{make([]byte, 100)}, make([]Frame, 1)); err != ErrClosed {
		t.Errorf("ReadBatch on a closed endpoint: %v", err)
	}
	assertEmpty(t, dir)
}

// TestConcurrentUse runs senders, a reader and every setter at once, for
// the race detector.
func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{TapScanInterval: 5 * time.Millisecond})
	b := attach(t, dir, "node2", Options{})
	rx := reader(t, b, 2048)
	go func() {
		for range rx {
		}
	}()
	tap, err := OpenTap(dir, "lan")
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	go func() {
		for {
			if _, err := tap.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = a.SendTo(addr2, Frame{Packet: packet(200, i+g)})
				_ = a.SendToNode("node2", Frame{Packet: packet(200, i+g)})
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a.SetUp(i%3 != 0)
			_ = a.SetImpairment(Impairment{Loss: 0.1, Delay: time.Duration(i%2) * time.Millisecond, Seed: uint64(i)})
			_ = a.SetNeighbors(lab)
			_ = a.Stats()
			_ = a.Impairment()
			time.Sleep(time.Millisecond)
		}
	}()
	// At least 300 ms of everything at once, and until each kind of
	// outcome happened (a busy machine may need longer).
	time.Sleep(300 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for s := a.Stats(); (s.TxFrames == 0 || s.TxDrops.LinkDown == 0 || s.TxDrops.Loss == 0) && time.Now().Before(deadline); s = a.Stats() {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	s := a.Stats()
	if s.TxFrames == 0 || s.TxDrops.LinkDown == 0 || s.TxDrops.Loss == 0 {
		t.Errorf("expected traffic, link-down and loss drops: %+v", s)
	}
}

// ReadBatch remembers who sent each frame: Sender names the node of the
// socket a frame came from, for each frame of a batch from several nodes.
func TestSender(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	c := attach(t, dir, "node3", Options{})
	for i, from := range []*Endpoint{a, c, a} {
		if err := from.SendToNode("node2", Frame{Packet: packet(64, i)}); err != nil {
			t.Fatal(err)
		}
	}
	bufs := [][]byte{make([]byte, 2048), make([]byte, 2048), make([]byte, 2048)}
	frames := make([]Frame, 3)
	var got []string
	for len(got) < 3 {
		n, err := b.ReadBatch(bufs, frames)
		if err != nil {
			t.Fatal(err)
		}
		for k := range n {
			name, ok := b.Sender(k)
			if !ok {
				t.Fatalf("frame %d: no sender", k)
			}
			got = append(got, fmt.Sprintf("%s:%d", name, frames[k].Packet[len(frames[k].Packet)-1]))
		}
	}
	if want := []string{"node1:" + fmt.Sprint(packet(64, 0)[63]), "node3:" + fmt.Sprint(packet(64, 1)[63]), "node1:" + fmt.Sprint(packet(64, 2)[63])}; !slices.Equal(got, want) {
		t.Errorf("senders %v, want %v", got, want)
	}
	if _, ok := b.Sender(5); ok {
		t.Error("Sender of a frame beyond the batch")
	}
}

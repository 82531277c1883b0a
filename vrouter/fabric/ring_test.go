package fabric

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/header"
)

// ringOpts makes a ring at the first frame.
var ringOpts = Options{RingAfter: -1, TapScanInterval: -1}

// outRing returns e's ring to node, or nil.
func outRing(e *Endpoint, node string) *ring {
	e.linksMu.Lock()
	l := e.links[node]
	e.linksMu.Unlock()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r
}

// rpacket is packet with seq readable again by seqOf.
func rpacket(n, seq int) []byte {
	p := packet(n, seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq))
	return p
}

// seqOf reads the sequence number rpacket puts in a packet.
func seqOf(p []byte) int { return int(binary.BigEndian.Uint32(p[4:8])) }

func TestRingSendReceive(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", ringOpts)
	b := attach(t, dir, "node2", ringOpts)
	rx := reader(t, b, 1<<16)
	gso := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	var sent []Frame
	for i := range 300 {
		f := Frame{Packet: rpacket(40+i*97%9000, i)}
		if i%7 == 0 {
			f.GSO = gso
			f.Packet = rpacket(20000+i, i)
		}
		sent = append(sent, f)
	}
	for _, f := range sent[:100] {
		if err := a.SendTo(addr2, f); err != nil {
			t.Fatal(err)
		}
	}
	hops := make([]netip.Addr, 200)
	for i := range hops {
		hops[i] = addr2
	}
	errs := make([]error, 200)
	if n := a.WriteBatch(hops, sent[100:], errs); n != 200 {
		t.Fatalf("WriteBatch sent %d of 200: %v", n, errors.Join(errs...))
	}
	r := outRing(a, "node2")
	if r == nil {
		t.Fatal("no ring from node1 to node2")
	}
	if _, err := os.Stat(filepath.Join(dir, "lan", "rings", "node2", "node1")); err != nil {
		t.Fatal(err)
	}
	for i, want := range sent {
		got := recvFrame(t, rx)
		if got.GSO != want.GSO || !bytes.Equal(got.Packet, want.Packet) {
			t.Fatalf("frame %d: %d bytes seq %d, want %d bytes seq %d", i, len(got.Packet), seqOf(got.Packet), len(want.Packet), i)
		}
	}
	var bytesSent uint64
	for _, f := range sent {
		bytesSent += uint64(len(f.Packet))
	}
	waitFor(t, "receiver's counters", func() bool { return b.Stats().RxFrames == 300 })
	if sa, sb := a.Stats(), b.Stats(); sa.TxFrames != 300 || sa.TxBytes != bytesSent || sb.RxBytes != bytesSent || sa.TxDrops.Total() != 0 || sb.RxDrops.Total() != 0 {
		t.Errorf("stats: sender %+v, receiver %+v", sa, sb)
	}
	// The frames came through the ring, not the socket: its head moved
	// past them all.
	if h := r.head().Load(); h < bytesSent {
		t.Errorf("ring head at %d, less than the %d bytes sent", h, bytesSent)
	}
}

func TestRingSender(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", ringOpts)
	b := attach(t, dir, "node2", ringOpts)
	for i := range 5 {
		if err := a.SendTo(addr2, Frame{Packet: rpacket(100, i)}); err != nil {
			t.Fatal(err)
		}
	}
	if outRing(a, "node2") == nil {
		t.Fatal("no ring")
	}
	bufs := [][]byte{make([]byte, 2048), make([]byte, 2048), make([]byte, 2048), make([]byte, 2048), make([]byte, 2048), make([]byte, 2048)}
	frames := make([]Frame, len(bufs))
	got := 0
	for got < 5 {
		n, err := b.ReadBatch(bufs, frames)
		if err != nil {
			t.Fatal(err)
		}
		for k := range n {
			if name, ok := b.Sender(k); !ok || name != "node1" {
				t.Errorf("Sender(%d) = %q, %v", k, name, ok)
			}
		}
		if _, ok := b.Sender(n); ok {
			t.Errorf("Sender(%d) of %d frames answered", n, n)
		}
		got += n
	}
}

func TestRingEnvDisables(t *testing.T) {
	t.Setenv(RingEnv, "0")
	dir := t.TempDir()
	a := attach(t, dir, "node1", ringOpts)
	b := attach(t, dir, "node2", ringOpts)
	rx := reader(t, b, 2048)
	for i := range 10 {
		if err := a.SendTo(addr2, Frame{Packet: rpacket(100, i)}); err != nil {
			t.Fatal(err)
		}
		recvFrame(t, rx)
	}
	if outRing(a, "node2") != nil {
		t.Error("a ring was made with " + RingEnv + "=0")
	}
	if sa, sb := a.Stats(), b.Stats(); sa.TxFrames != 10 || sb.RxFrames != 10 || sa.Ring != (RingStats{}) || sb.Ring != (RingStats{}) {
		t.Errorf("ring counters with %s=0: sender %+v, receiver %+v", RingEnv, sa, sb)
	}
	if _, err := os.Stat(filepath.Join(dir, "lan", "rings")); err == nil {
		t.Error("rings directory made")
	}
}

func TestRingAfterThreshold(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{RingAfter: 20, TapScanInterval: -1})
	b := attach(t, dir, "node2", ringOpts)
	rx := reader(t, b, 2048)
	send := func(i int) {
		if err := a.SendTo(addr2, Frame{Packet: rpacket(100, i)}); err != nil {
			t.Fatal(err)
		}
		if f := recvFrame(t, rx); seqOf(f.Packet) != i {
			t.Fatalf("seq %d, want %d", seqOf(f.Packet), i)
		}
	}
	for i := range 19 {
		send(i)
	}
	if outRing(a, "node2") != nil {
		t.Fatal("ring made before 20 frames")
	}
	for i := 19; i < 40; i++ {
		send(i)
	}
	if outRing(a, "node2") == nil {
		t.Fatal("no ring after 40 frames in a second")
	}
}

// TestRingWrapAndFull fills a small ring nobody reads (the rest is
// dropped and counted as QueueFull), then reads it, then pushes many
// times its size through it, across the wrap many times, in order.
func TestRingWrapAndFull(t *testing.T) {
	dir := t.TempDir()
	opts := ringOpts
	opts.RingSize = minRingSize
	a := attach(t, dir, "node1", opts)
	b := attach(t, dir, "node2", ringOpts)
	const size = 1000 // 1024 bytes a record
	queued, full := 0, 0
	for i := range 200 {
		switch err := a.SendTo(addr2, Frame{Packet: rpacket(size, i)}); err {
		case nil:
			if full > 0 {
				t.Fatalf("frame %d queued after the ring was full", i)
			}
			queued++
		case ErrQueueFull:
			full++
		default:
			t.Fatal(err)
		}
	}
	if want := minRingSize / 1024; queued != want {
		t.Errorf("%d frames queued in a %d-byte ring, want %d", queued, minRingSize, want)
	}
	if s := a.Stats(); s.TxDrops.QueueFull != uint64(full) || s.TxFrames != uint64(queued) ||
		s.Ring.TxFull != uint64(full) || s.Ring.TxFrames != uint64(queued) || s.Ring.TxBytes != uint64(queued*size) {
		t.Errorf("stats %+v", s)
	}
	rx := reader(t, b, 1<<16)
	for i := range queued {
		if f := recvFrame(t, rx); seqOf(f.Packet) != i {
			t.Fatalf("queued frame %d has seq %d", i, seqOf(f.Packet))
		}
	}
	// Many wraps, with sizes that leave padding at the end.
	errs := make(chan error, 1)
	const total = 3000
	go func() {
		for i := 0; i < total; {
			switch err := a.SendTo(addr2, Frame{Packet: rpacket(60+i*131%3000, i)}); err {
			case nil:
				i++
			case ErrQueueFull:
				time.Sleep(10 * time.Microsecond)
			default:
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	for i := range total {
		f := recvFrame(t, rx)
		if seqOf(f.Packet) != i || len(f.Packet) != 60+i*131%3000 {
			t.Fatalf("frame %d: seq %d, %d bytes", i, seqOf(f.Packet), len(f.Packet))
		}
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if r := outRing(a, "node2"); r == nil || r.tail().Load() < 3*minRingSize {
		t.Error("the frames did not wrap around the ring")
	}
}

// TestRingDoorbell: a reader asleep on an idle ring is woken by the
// producer's doorbell.
func TestRingDoorbell(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", ringOpts)
	b := attach(t, dir, "node2", ringOpts)
	rx := reader(t, b, 2048)
	if err := a.SendTo(addr2, Frame{Packet: rpacket(100, 0)}); err != nil {
		t.Fatal(err)
	}
	recvFrame(t, rx)
	r := outRing(a, "node2")
	if r == nil {
		t.Fatal("no ring")
	}
	for i := 1; i < 20; i++ {
		waitFor(t, "the reader to sleep on the ring", func() bool { return r.sleeping().Load() == 1 })
		start := time.Now()
		if err := a.SendTo(addr2, Frame{Packet: rpacket(100, i)}); err != nil {
			t.Fatal(err)
		}
		if f := recvFrame(t, rx); seqOf(f.Packet) != i {
			t.Fatalf("seq %d, want %d", seqOf(f.Packet), i)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("woken after %v", d)
		}
		if outRing(a, "node2") != r {
			t.Fatal("ring replaced")
		}
	}
	if s := b.Stats(); s.RxFrames != 20 || s.RxDrops.Total() != 0 {
		t.Errorf("receiver stats %+v (doorbells must not count)", s)
	}
}

func TestRingMalformedRecords(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", ringOpts)
	b := attach(t, dir, "node2", ringOpts)
	if err := a.SendTo(addr2, Frame{Packet: rpacket(100, 0)}); err != nil {
		t.Fatal(err)
	}
	rx := reader(t, b, 2048)
	recvFrame(t, rx)
	r := outRing(a, "node2")
	// raw appends a record as a hostile producer would, and publishes it.
	raw := func(typ uint32, payload []byte) {
		ln := len(payload)
		pos := r.pos & r.mask
		binary.NativeEndian.PutUint32(r.data[pos:], uint32(ln))
		binary.NativeEndian.PutUint32(r.data[pos+4:], typ)
		copy(r.data[pos+8:], payload)
		r.pos += ringRecHdr + align8(uint64(ln))
		r.tail().Store(r.pos)
	}
	good := func(seq int) []byte { b, _ := AppendFrame(nil, Frame{Packet: rpacket(100, seq)}); return b }
	a.linksMu.Lock() // keep the producers out
	l := a.links["node2"]
	a.linksMu.Unlock()
	l.mu.Lock()
	raw(7, good(1))          // unknown type
	raw(ringFrame, []byte{}) // shorter than a frame header
	bad := good(2)
	bad[0] = 9 // version
	raw(ringFrame, bad)
	raw(ringPad, nil)
	raw(ringFrame, good(3))
	big := good(4)
	big = append(big, make([]byte, 4000)...) // length field disagrees
	raw(ringFrame, big)
	raw(ringFrame, good(5))
	l.mu.Unlock()
	ring := func() {
		r.sleeping().Store(0)
		if errno := a.control(&l.sa, ctlDoorbell, ""); errno != 0 {
			t.Fatal(errno)
		}
	}
	ring()
	if f := recvFrame(t, rx); seqOf(f.Packet) != 3 {
		t.Fatalf("seq %d, want 3", seqOf(f.Packet))
	}
	if f := recvFrame(t, rx); seqOf(f.Packet) != 5 {
		t.Fatalf("seq %d, want 5", seqOf(f.Packet))
	}
	waitFor(t, "4 bad frames counted", func() bool { return b.Stats().RxDrops.BadFrame == 4 })
	// A record whose length runs past the tail: the rest is dropped and
	// the ring goes on.
	l.mu.Lock()
	pos := r.pos & r.mask
	binary.NativeEndian.PutUint32(r.data[pos:], 1<<30)
	binary.NativeEndian.PutUint32(r.data[pos+4:], ringFrame)
	r.pos += 64
	r.tail().Store(r.pos)
	l.mu.Unlock()
	ring()
	waitFor(t, "a 5th bad frame", func() bool { return b.Stats().RxDrops.BadFrame == 5 })
	if err := a.SendTo(addr2, Frame{Packet: rpacket(100, 6)}); err != nil {
		t.Fatal(err)
	}
	if f := recvFrame(t, rx); seqOf(f.Packet) != 6 {
		t.Fatalf("seq %d, want 6", seqOf(f.Packet))
	}
	// A tail beyond the ring's size.
	l.mu.Lock()
	r.tail().Store(r.pos + 10*r.size())
	l.mu.Unlock()
	ring()
	waitFor(t, "a 6th bad frame", func() bool { return b.Stats().RxDrops.BadFrame == 6 })
	if s := b.Stats(); s.RxFrames != 4 {
		t.Errorf("%d frames delivered, want 4", s.RxFrames)
	}
}

func TestRingTapCapturesOnce(t *testing.T) {
	dir := t.TempDir()
	opts := Options{RingAfter: -1, TapScanInterval: 20 * time.Millisecond}
	a := attach(t, dir, "node1", opts)
	b := attach(t, dir, "node2", opts)
	rx := reader(t, b, 2048)
	tap := openTap(t, dir)
	records := collect(t, tap, 300*time.Millisecond)
	hops := []netip.Addr{addr2, addr2, addr2}
	// Paced, so that the tap's short socket queue keeps up.
	for i := range 30 {
		if i%2 == 0 {
			if err := a.SendTo(addr2, Frame{Packet: rpacket(100, i)}); err != nil {
				t.Fatal(err)
			}
			recvFrame(t, rx)
		} else {
			a.WriteBatch(hops, []Frame{{Packet: rpacket(100, 1000+3*i)}, {Packet: rpacket(100, 1001+3*i)}, {Packet: rpacket(100, 1002+3*i)}}, nil)
			recvFrame(t, rx)
			recvFrame(t, rx)
			recvFrame(t, rx)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if outRing(a, "node2") == nil {
		t.Fatal("no ring")
	}
	recs := records()
	seen := map[int]int{}
	for _, r := range recs {
		if r.From != "node1" || r.To != "node2" {
			t.Errorf("record %s -> %s", r.From, r.To)
		}
		seen[seqOf(r.Packet)]++
	}
	if len(recs) != 60 || len(seen) != 60 {
		t.Errorf("%d records of %d frames, want 60 of 60", len(recs), len(seen))
	}
	if s := a.Stats(); s.TapFrames != 60 || s.TapDrops != 0 {
		t.Errorf("tap copies %d, dropped %d; want 60, 0", s.TapFrames, s.TapDrops)
	}
}

func TestRingImpairmentsAndLinkDown(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", ringOpts)
	b := attach(t, dir, "node2", ringOpts)
	rx := reader(t, b, 2048)
	send := func(seq int) error { return a.SendTo(addr2, Frame{Packet: rpacket(100, seq)}) }
	if err := send(0); err != nil {
		t.Fatal(err)
	}
	recvFrame(t, rx)
	if outRing(a, "node2") == nil {
		t.Fatal("no ring")
	}
	// loss
	if err := a.SetImpairment(Impairment{Loss: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := send(i); err != nil {
			t.Fatal(err)
		}
	}
	expectNothing(t, rx, 50*time.Millisecond)
	if s := a.Stats(); s.TxDrops.Loss != 10 {
		t.Errorf("loss: %+v", s.TxDrops)
	}
	// delay: still delivered, late (over the socket, by the delay queue)
	if err := a.SetImpairment(Impairment{Delay: 30 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := send(1); err != nil {
		t.Fatal(err)
	}
	recvFrame(t, rx)
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("delayed frame after %v", d)
	}
	if err := a.SetImpairment(Impairment{}); err != nil {
		t.Fatal(err)
	}
	// sender down
	a.SetUp(false)
	if err := send(2); err != ErrLinkDown {
		t.Errorf("send while down: %v", err)
	}
	a.SetUp(true)
	// receiver down: frames in the ring are dropped and counted
	b.SetUp(false)
	for i := range 5 {
		if err := send(10 + i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "5 frames dropped by the down receiver", func() bool { return b.Stats().RxDrops.LinkDown == 5 })
	b.SetUp(true)
	if err := send(20); err != nil {
		t.Fatal(err)
	}
	if f := recvFrame(t, rx); seqOf(f.Packet) != 20 {
		t.Errorf("seq %d, want 20", seqOf(f.Packet))
	}
	if s := a.Stats(); s.TxDrops.LinkDown != 1 {
		t.Errorf("sender: %+v", s.TxDrops)
	}
}

func TestRingCloseRemovesFiles(t *testing.T) {
	dir := t.TempDir()
	a, err := Attach(dir, "lan", "node1", Options{RingAfter: -1, Neighbors: lab})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Attach(dir, "lan", "node2", Options{RingAfter: -1, Neighbors: lab})
	if err != nil {
		t.Fatal(err)
	}
	rxa, rxb := reader(t, a, 2048), reader(t, b, 2048)
	for i := range 3 {
		if err := a.SendTo(addr2, Frame{Packet: rpacket(100, i)}); err != nil {
			t.Fatal(err)
		}
		if err := b.SendTo(addr1, Frame{Packet: rpacket(100, i)}); err != nil {
			t.Fatal(err)
		}
		recvFrame(t, rxa)
		recvFrame(t, rxb)
	}
	ents, _ := filepath.Glob(filepath.Join(dir, "lan", "rings", "*", "*"))
	if len(ents) != 2 {
		t.Fatalf("ring files %v, want 2", ents)
	}
	ra := outRing(a, "node2")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// the producer sees its consumer gone and stops using the ring
	if ra.gone().Load() != 1 {
		t.Error("closing the consumer did not mark its ring gone")
	}
	if err := a.SendTo(addr2, Frame{Packet: rpacket(100, 9)}); !errors.Is(err, ErrNoNeighbor) {
		t.Errorf("send to the closed node: %v", err)
	}
	if outRing(a, "node2") != nil {
		t.Error("ring to a closed node kept")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, dir)
}

// TestRingRestart runs node2 in another process (this test binary
// re-executed) that echoes every frame back to its sender, kills it with
// SIGKILL and starts it again: the rings of both directions are replaced,
// nothing stale is read or written into, and frames flow again.
func TestRingRestart(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", ringOpts)
	rx := reader(t, a, 2048)
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRingEchoHelper$", "-test.timeout=60s")
		cmd.Env = append(os.Environ(), "FABRIC_RING_ECHO_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "ready") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper: %q, %v", line, err)
		}
		return cmd
	}
	// echo sends until n echoes come back, each within the deadline
	seq := 0
	echo := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := 0; got < n; {
			seq++
			_ = a.SendTo(addr2, Frame{Packet: rpacket(100, seq)})
			select {
			case f := <-rx:
				if s := seqOf(f.Packet); s > seq {
					t.Fatalf("echo of %d, never sent", s)
				}
				got++
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d echoes of %d", got, n)
			}
		}
	}
	h := start()
	echo(100)
	r1 := outRing(a, "node2")
	if r1 == nil {
		t.Fatal("no ring to the helper")
	}
	h.Process.Kill()
	h.Wait()
	// Dead and not restarted: sending ends in NeighborDown, not
	// QueueFull forever.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := a.SendTo(addr2, Frame{Packet: rpacket(100, 0)})
		if errors.Is(err, ErrNoNeighbor) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sending to the killed node: %v", err)
		}
		time.Sleep(100 * time.Microsecond)
	}
	if n := a.Stats().Ring.Out; n != 0 {
		t.Errorf("%d rings out counted after the consumer died, want 0", n)
	}
	// newRing sends until node1 has a ring to node2 other than old (a
	// failed attempt is retried after a second).
	newRing := func(old *ring) *ring {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if r := outRing(a, "node2"); r != nil && r != old {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatal("no new ring to the restarted node")
			}
			seq++
			_ = a.SendTo(addr2, Frame{Packet: rpacket(100, seq)})
			time.Sleep(5 * time.Millisecond)
		}
	}
	h = start()
	defer func() { h.Process.Kill(); h.Wait() }()
	echo(100)
	r2 := newRing(r1)
	echo(100)
	if outRing(a, "node2") != r2 {
		t.Error("ring replaced again")
	}
	// Restarted while the link was busy, not detected by a send: the new
	// consumer disowns the old ring at attach.
	h.Process.Kill()
	h.Wait()
	h = start()
	echo(100)
	newRing(r2)
	echo(100)
	// The killed helpers' rings to node1 were removed by the next one.
	if ents, _ := os.ReadDir(filepath.Join(dir, "lan", "rings", "node1")); len(ents) != 1 {
		t.Errorf("ring files toward node1: %v, want 1", ents)
	}
	// One ring each way counted, not one per incarnation of the helper
	// (node1's reader drops the disowned inbound rings once read).
	waitFor(t, "one ring in", func() bool { return a.Stats().Ring.In == 1 })
	if st := a.Stats().Ring; st.Out != 1 || st.TxFrames == 0 || st.RxFrames == 0 {
		t.Errorf("ring stats after two restarts: %+v, want one ring out, frames both ways", st)
	}
}

// TestRingEchoHelper is node2 for TestRingRestart.
func TestRingEchoHelper(t *testing.T) {
	dir := os.Getenv("FABRIC_RING_ECHO_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	e, err := Attach(dir, "lan", "node2", Options{RingAfter: -1, TapScanInterval: -1, Neighbors: lab})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	bufs := make([][]byte, 16)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	frames := make([]Frame, 16)
	for {
		n, err := e.ReadBatch(bufs, frames)
		if err != nil {
			os.Exit(1)
		}
		for k := range n {
			if from, ok := e.Sender(k); ok {
				_ = e.SendToNode(from, frames[k])
			}
		}
	}
}

func TestRingWriteBatchAllocs(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", ringOpts)
	b := attach(t, dir, "node2", ringOpts)
	hops := make([]netip.Addr, 64)
	frames := make([]Frame, 64)
	for i := range hops {
		hops[i] = addr2
		frames[i] = Frame{Packet: rpacket(100, i)}
	}
	errs := make([]error, 64)
	a.WriteBatch(hops, frames, errs)
	if outRing(a, "node2") == nil {
		t.Fatal("no ring")
	}
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	out := make([]Frame, 64)
	for got := 0; got < 64; { // accepts the ring
		n, err := b.ReadBatch(bufs, out)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	allocs := testing.AllocsPerRun(50, func() {
		if n := a.WriteBatch(hops, frames, errs); n != 64 {
			t.Fatalf("sent %d: %v", n, errors.Join(errs...))
		}
		for got := 0; got < 64; {
			n, err := b.ReadBatch(bufs, out)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("WriteBatch + ReadBatch over a ring: %.1f allocations", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		_ = a.SendTo(addr2, frames[0])
		_, _ = b.ReadBatch(bufs, out)
	}); allocs != 0 {
		t.Errorf("SendTo + ReadBatch over a ring: %.1f allocations", allocs)
	}
}

// FuzzRingRecords feeds arbitrary ring contents to the consumer: it must
// never panic or read outside the ring, must deliver only well-formed
// frames that fit the buffers, and must leave the head at the tail or
// before it.
func FuzzRingRecords(f *testing.F) {
	mk := func(recs ...[]byte) []byte {
		var b []byte
		for _, r := range recs {
			var h [8]byte
			binary.NativeEndian.PutUint32(h[:], uint32(len(r)))
			binary.NativeEndian.PutUint32(h[4:], ringFrame)
			b = append(b, h[:]...)
			b = append(b, r...)
			for len(b)%8 != 0 {
				b = append(b, 0)
			}
		}
		return b
	}
	good, _ := AppendFrame(nil, Frame{Packet: rpacket(40, 1)})
	gso, _ := AppendFrame(nil, Frame{GSO: header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}, Packet: rpacket(3000, 2)})
	f.Add(mk(good, gso), uint64(0), uint64(0))
	f.Add(mk(good, good, good), uint64(8), uint64(1000))
	f.Add([]byte{1, 2, 3}, uint64(minRingSize-8), uint64(minRingSize+100))
	f.Fuzz(func(t *testing.T, content []byte, head, tail uint64) {
		r := &ring{mem: make([]byte, ringDataOff+minRingSize), mask: minRingSize - 1}
		r.data = r.mem[ringDataOff:]
		pos := head & r.mask
		for i, c := range content {
			r.data[(pos+uint64(i))&r.mask] = c
		}
		r.pos = head
		r.head().Store(head)
		r.tail().Store(tail)
		bufs := make([][]byte, 8)
		for i := range bufs {
			bufs[i] = make([]byte, 1500)
		}
		frames := make([]Frame, 8)
		var c ringCounts
		n := r.get(bufs, frames, 0, len(bufs), false, &c)
		var bytes uint64
		for i, fr := range frames[:n] {
			if len(fr.Packet) == 0 || len(fr.Packet) > 1500 || &fr.Packet[0] != &bufs[i][0] {
				t.Fatalf("frame %d: %d bytes outside its buffer", i, len(fr.Packet))
			}
			if err := checkFrame(&fr.GSO, len(fr.Packet)); err != nil {
				t.Fatalf("frame %d delivered with %v", i, err)
			}
			bytes += uint64(len(fr.Packet))
		}
		if bytes != c.bytes {
			t.Fatalf("counted %d bytes, delivered %d", c.bytes, bytes)
		}
		if h := r.head().Load(); h != r.pos || h-head > tail-head {
			t.Fatalf("head moved from %d to %d, tail %d", head, h, tail)
		}
	})
}

// TestRingTapCopyFirst: a frame's tap copy leaves before the frame enters
// the ring, so a receiver that answers at once never has its answer
// captured before the frame it answers.
func TestRingTapCopyFirst(t *testing.T) {
	dir := t.TempDir()
	opts := Options{RingAfter: -1, TapScanInterval: 20 * time.Millisecond}
	a := attach(t, dir, "node1", opts)
	b := attach(t, dir, "node2", opts)
	rxa := reader(t, a, 2048)
	go func() { // node2 echoes at once
		bufs := [][]byte{make([]byte, 2048)}
		frames := make([]Frame, 1)
		for {
			n, err := b.ReadBatch(bufs, frames)
			if err != nil {
				return
			}
			for _, f := range frames[:n] {
				_ = b.SendTo(addr1, f)
			}
		}
	}()
	tap := openTap(t, dir)
	records := collect(t, tap, 300*time.Millisecond)
	hops := []netip.Addr{addr2}
	const rounds = 40
	for i := range rounds {
		if i%2 == 0 {
			a.WriteBatch(hops, []Frame{{Packet: rpacket(100, i)}}, nil)
		} else if err := a.SendTo(addr2, Frame{Packet: rpacket(100, i)}); err != nil {
			t.Fatal(err)
		}
		recvFrame(t, rxa)
		time.Sleep(2 * time.Millisecond)
	}
	if outRing(a, "node2") == nil || outRing(b, "node1") == nil {
		t.Fatal("no rings")
	}
	recs := records()
	if len(recs) != 2*rounds {
		t.Fatalf("%d records, want %d", len(recs), 2*rounds)
	}
	for i := 0; i < len(recs); i += 2 {
		q, r := recs[i], recs[i+1]
		if q.From != "node1" || r.From != "node2" || seqOf(q.Packet) != i/2 || seqOf(r.Packet) != i/2 {
			t.Fatalf("records %d, %d: %s seq %d, %s seq %d; want node1 then node2, seq %d", i, i+1, q.From, seqOf(q.Packet), r.From, seqOf(r.Packet), i/2)
		}
	}
}

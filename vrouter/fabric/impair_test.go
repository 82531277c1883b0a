package fabric

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// lossPattern sends n frames through an endpoint with imp and returns
// which were lost, as the sender's loss counter saw them.
func lossPattern(t *testing.T, imp Impairment, n int) []bool {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{TapScanInterval: -1})
	attach(t, dir, "node2", Options{TapScanInterval: -1}) // never reads: most frames find the queue full, which is fine here
	if err := a.SetImpairment(imp); err != nil {
		t.Fatal(err)
	}
	if got := a.Impairment(); got != imp {
		t.Fatalf("Impairment() = %+v, want %+v", got, imp)
	}
	lost := make([]bool, n)
	prev := uint64(0)
	for i := range lost {
		err := a.SendTo(addr2, Frame{Packet: packet(64, i)})
		if err != nil && err != ErrQueueFull {
			t.Fatal(err)
		}
		cur := a.Stats().TxDrops.Loss
		lost[i] = cur != prev
		prev = cur
	}
	s := a.Stats()
	if s.TxDrops.Loss+s.TxDrops.QueueFull+s.TxFrames != uint64(n) {
		t.Errorf("frames unaccounted for: %+v", s)
	}
	return lost
}

func count(b []bool) int {
	n := 0
	for _, x := range b {
		if x {
			n++
		}
	}
	return n
}

func TestLoss(t *testing.T) {
	const n = 5000
	for _, p := range []float64{0.01, 0.25, 0.5} {
		lost := count(lossPattern(t, Impairment{Loss: p, Seed: 42}, n))
		// Within 5 standard deviations of n·p: a fixed seed makes this
		// deterministic anyway.
		sd := math.Sqrt(n * p * (1 - p))
		if math.Abs(float64(lost)-n*p) > 5*sd {
			t.Errorf("loss %.2f: lost %d of %d, want about %.0f", p, lost, n, n*p)
		}
	}
	if lost := count(lossPattern(t, Impairment{Loss: 1}, 100)); lost != 100 {
		t.Errorf("loss 1: lost %d of 100", lost)
	}
	// The same seed loses the same frames; another seed others.
	x := lossPattern(t, Impairment{Loss: 0.3, Seed: 7}, 500)
	y := lossPattern(t, Impairment{Loss: 0.3, Seed: 7}, 500)
	z := lossPattern(t, Impairment{Loss: 0.3, Seed: 8}, 500)
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("same seed, different losses at frame %d", i)
		}
	}
	same := true
	for i := range x {
		same = same && x[i] == z[i]
	}
	if same {
		t.Error("different seeds lost the same frames")
	}
}

func TestImpairmentValidation(t *testing.T) {
	a := attach(t, t.TempDir(), "node1", Options{TapScanInterval: -1})
	for _, imp := range []Impairment{
		{Loss: -0.1}, {Loss: 1.5}, {Loss: math.NaN()}, {Delay: -1}, {Jitter: -1}, {Limit: -1},
	} {
		if err := a.SetImpairment(imp); err == nil {
			t.Errorf("SetImpairment(%+v) accepted", imp)
		}
	}
	if err := a.SetImpairment(Impairment{}); err != nil || a.Impairment() != (Impairment{}) || a.imp.Load() != nil {
		t.Error("the zero impairment is not the perfect link")
	}
}

// stamped returns a packet carrying the time it was made.
func stamped(seq int) []byte {
	p := packet(100, seq)
	binary.BigEndian.PutUint64(p[8:], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint32(p[4:], uint32(seq))
	return p
}

func age(p []byte) time.Duration {
	return time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(p[8:]))))
}

func TestDelay(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	rx := reader(t, b, 2048)
	const delay = 40 * time.Millisecond
	if err := a.SetImpairment(Impairment{Delay: delay}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	start := time.Now()
	for i := range n {
		if err := a.SendTo(addr2, Frame{Packet: stamped(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if d := a.Stats().Delayed; d > n || d == 0 && time.Since(start) < delay {
		t.Errorf("Delayed = %d right after sending %d delayed frames", d, n)
	}
	// Constant delay keeps the order; every frame is at least delay late.
	for i := range n {
		f := recvFrame(t, rx)
		if got := int(binary.BigEndian.Uint32(f.Packet[4:])); got != i {
			t.Errorf("frame %d arrived in place %d", got, i)
		}
		if d := age(f.Packet); d < delay {
			t.Errorf("frame %d delayed %v, want at least %v", i, d, delay)
		}
	}
	// The delay goroutine counts a frame just after the receiver may have
	// it.
	waitFor(t, "TxFrames to count the delayed frames", func() bool { return a.Stats().TxFrames == n })
	if s := a.Stats(); s.Delayed != 0 {
		t.Errorf("stats after delivery: %+v", s)
	}

	// Jitter: at least delay-jitter.
	const jitter = 20 * time.Millisecond
	if err := a.SetImpairment(Impairment{Delay: delay, Jitter: jitter, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := a.SendTo(addr2, Frame{Packet: stamped(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if d := age(recvFrame(t, rx).Packet); d < delay-jitter {
			t.Errorf("delayed %v, want at least %v", d, delay-jitter)
		}
	}

	// Removing the impairment: frames go straight through again.
	if err := a.SetImpairment(Impairment{}); err != nil {
		t.Fatal(err)
	}
	p := stamped(99)
	if err := a.SendTo(addr2, Frame{Packet: p}); err != nil {
		t.Fatal(err)
	}
	if f := recvFrame(t, rx); !bytes.Equal(f.Packet, p) {
		t.Error("wrong frame")
	}
}

func TestDelayQueueLimitAndLinkDown(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{TapScanInterval: -1})
	b := attach(t, dir, "node2", Options{TapScanInterval: -1})
	rx := reader(t, b, 2048)
	if err := a.SetImpairment(Impairment{Delay: 50 * time.Millisecond, Limit: 5}); err != nil {
		t.Fatal(err)
	}
	full := 0
	for i := range 8 {
		if err := a.SendTo(addr2, Frame{Packet: packet(64, i)}); err == ErrQueueFull {
			full++
		}
	}
	if full != 3 || a.Stats().TxDrops.QueueFull != 3 {
		t.Errorf("%d frames over the delay queue limit, want 3", full)
	}
	// Pulling the cable drops what is still in the delay queue.
	a.SetUp(false)
	waitFor(t, "delayed frames dropped", func() bool { return a.Stats().TxDrops.LinkDown == 5 })
	expectNothing(t, rx, 20*time.Millisecond)
	if d := a.Stats().Delayed; d != 0 {
		t.Errorf("Delayed = %d after the queue emptied", d)
	}
}

func TestRate(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	rx := reader(t, b, 2048)
	// 1000-byte frames at 800 kbit/s: 10 ms each, so the 10th is out
	// 100 ms after the first went in.
	if err := a.SetImpairment(Impairment{Rate: 800_000}); err != nil {
		t.Fatal(err)
	}
	const n = 10
	start := time.Now()
	for i := range n {
		if err := a.SendTo(addr2, Frame{Packet: packet(1000, i)}); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		recvFrame(t, rx)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("%d frames of 1000 bytes at 800 kbit/s took %v, want at least 100ms", n, d)
	}
	if got := serialization(1500, 1_000_000_000); got != 12*time.Microsecond {
		t.Errorf("serialization(1500 bytes, 1 Gbit/s) = %v, want 12µs", got)
	}
}

func TestDuplicateAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	rx := reader(t, b, 2048)
	if err := a.SetImpairment(Impairment{Duplicate: 1}); err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := range n {
		if err := a.SendTo(addr2, Frame{Packet: packet(100, i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 * n {
		if f := recvFrame(t, rx); !bytes.Equal(f.Packet, packet(100, i/2)) {
			t.Errorf("frame %d of the duplicated ones is not a copy of frame %d", i, i/2)
		}
	}
	expectNothing(t, rx, 20*time.Millisecond)

	if err := a.SetImpairment(Impairment{Corrupt: 1, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		sent := packet(100, i)
		if err := a.SendTo(addr2, Frame{Packet: sent}); err != nil {
			t.Fatal(err)
		}
		got := recvFrame(t, rx).Packet
		if len(got) != len(sent) {
			t.Fatalf("corrupted frame %d has %d bytes, want %d", i, len(got), len(sent))
		}
		flipped := 0
		for j := range got {
			for x := got[j] ^ sent[j]; x != 0; x &= x - 1 {
				flipped++
			}
		}
		if flipped != 1 {
			t.Errorf("frame %d: %d bits flipped, want 1", i, flipped)
		}
	}
	for _, imp := range []Impairment{{Duplicate: 1.5}, {Corrupt: -0.1}, {Corrupt: math.NaN()}} {
		if err := a.SetImpairment(imp); err == nil {
			t.Errorf("SetImpairment(%+v) accepted", imp)
		}
	}
}

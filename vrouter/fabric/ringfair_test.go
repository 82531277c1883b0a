package fabric

import (
	"net/netip"
	"testing"
)

// readUntil calls c.ReadBatch with batches of four up to calls times and
// reports after how many calls a frame with sequence number seq came.
func readUntil(t *testing.T, c *Endpoint, seq, calls int) (int, bool) {
	t.Helper()
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	frames := make([]Frame, 4)
	for call := 1; call <= calls; call++ {
		n, err := c.ReadBatch(bufs, frames)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frames[:n] {
			if seqOf(f.Packet) == seq {
				return call, true
			}
		}
	}
	return 0, false
}

// TestRingNoStarvation: a neighbour whose ring always holds more than a
// batch (a flood) starves neither a neighbour on the socket (BGP
// keepalives of an idle link) nor another ring.
func TestRingNoStarvation(t *testing.T) {
	const flood, lone = 400, 100000
	send := func(from *Endpoint, seq int) {
		t.Helper()
		if err := from.SendTo(addr3, Frame{Packet: rpacket(100, seq)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		other Options
	}{
		{"socket neighbour", Options{NoRing: true, TapScanInterval: -1}},
		{"ring neighbour", ringOpts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := attach(t, dir, "node1", ringOpts)
			b := attach(t, dir, "node2", tc.other)
			c := attach(t, dir, "node3", ringOpts)
			// node1's ring is node3's first, node2's frame (and ring, if
			// any) known before the flood.
			send(a, 0)
			if _, ok := readUntil(t, c, 0, 4); !ok {
				t.Fatal("node1's first frame did not arrive")
			}
			send(b, 1)
			if _, ok := readUntil(t, c, 1, 4); !ok {
				t.Fatal("node2's first frame did not arrive")
			}
			if got, want := c.Stats().Ring.In, uint64(2-btoi(tc.other.NoRing)); got != want {
				t.Fatalf("node3 has %d rings in, want %d", got, want)
			}
			for i := range flood {
				send(a, 2+i)
			}
			send(b, lone)
			// Batches of 4 from node1's 400 would take 100 calls.
			call, ok := readUntil(t, c, lone, 2*socketEvery)
			if !ok {
				t.Fatalf("node2's frame not read in %d calls while node1's ring held %d frames", 2*socketEvery, flood)
			}
			t.Logf("node2's frame came with call %d", call)
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRingCreationKeepsOrder: when a WriteBatch crosses the threshold in
// the middle, the frames it holds for the socket leave before the new
// ring's announce, so a receiver that takes one datagram at a time still
// gets every frame in order.
func TestRingCreationKeepsOrder(t *testing.T) {
	dir := t.TempDir()
	const after, total = 10, 30
	a := attach(t, dir, "node1", Options{RingAfter: after, TapScanInterval: -1})
	b := attach(t, dir, "node2", Options{RingAfter: after, TapScanInterval: -1})
	hops := make([]netip.Addr, total)
	frames := make([]Frame, total)
	for i := range frames {
		hops[i], frames[i] = addr2, Frame{Packet: rpacket(100, i)}
	}
	errs := make([]error, total)
	if n := a.WriteBatch(hops, frames, errs); n != total {
		t.Fatalf("WriteBatch sent %d of %d: %v", n, total, errs)
	}
	if a.Stats().Ring.Out != 1 {
		t.Fatal("no ring made in the batch")
	}
	bufs, got := [][]byte{make([]byte, 2048)}, make([]Frame, 1)
	for want := range total {
		n, err := b.ReadBatch(bufs, got)
		if err != nil || n != 1 {
			t.Fatalf("ReadBatch: %d, %v", n, err)
		}
		if seq := seqOf(got[0].Packet); seq != want {
			t.Fatalf("frame %d came as number %d", seq, want)
		}
	}
}

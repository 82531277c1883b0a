package fabric

import (
	"errors"
	"testing"
)

// TestRingStats: frames over the socket are not ring frames, those through
// a ring are (a subset of the totals); the rings gauges count one ring
// each way and drop back to 0 when the consumer or the endpoint closes.
func TestRingStats(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{RingAfter: 20, TapScanInterval: -1})
	b := attach(t, dir, "node2", Options{RingAfter: 20, TapScanInterval: -1})
	rxa, rxb := reader(t, a, 2048), reader(t, b, 2048)
	const size = 100
	send := func(from *Endpoint, to *Endpoint, rx <-chan Frame, n int) {
		t.Helper()
		hop := addr2
		if to == a {
			hop = addr1
		}
		for i := range n {
			if err := from.SendTo(hop, Frame{Packet: rpacket(size, i)}); err != nil {
				t.Fatal(err)
			}
			recvFrame(t, rx)
		}
	}

	// Below the threshold: all over the socket.
	send(a, b, rxb, 19)
	if sa, sb := a.Stats(), b.Stats(); sa.TxFrames != 19 || sb.RxFrames != 19 || sa.Ring != (RingStats{}) || sb.Ring != (RingStats{}) {
		t.Fatalf("19 frames over the socket: sender %+v, receiver %+v, want no ring counts", sa, sb)
	}
	// The 20th makes the ring and goes through it, as the next 20 do.
	send(a, b, rxb, 21)
	sa, sb := a.Stats(), b.Stats()
	want := RingStats{TxFrames: 21, TxBytes: 21 * size, Out: 1}
	if sa.TxFrames != 40 || sa.TxBytes != 40*size || sa.Ring != want {
		t.Errorf("sender after 40 frames: %+v, want ring %+v", sa, want)
	}
	want = RingStats{RxFrames: 21, RxBytes: 21 * size, In: 1}
	if sb.RxFrames != 40 || sb.RxBytes != 40*size || sb.Ring != want {
		t.Errorf("receiver after 40 frames: %+v, want ring %+v", sb, want)
	}

	// The other way too: each endpoint has one ring out and one in.
	send(b, a, rxa, 40)
	for _, e := range []*Endpoint{a, b} {
		if st := e.Stats().Ring; st.Out != 1 || st.In != 1 || st.TxFrames != 21 || st.RxFrames != 21 {
			t.Errorf("%s: ring stats %+v, want one ring each way, 21 frames each way", e.Node(), st)
		}
	}

	// The consumer closes: its gauges drop at once, the producer's at
	// its next send (it finds the ring gone).
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats().Ring; st.Out != 0 || st.In != 0 {
		t.Errorf("closed endpoint: ring stats %+v, want no rings", st)
	}
	if err := a.SendTo(addr2, Frame{Packet: rpacket(size, 0)}); !errors.Is(err, ErrNoNeighbor) {
		t.Errorf("send to the closed node: %v", err)
	}
	st := a.Stats().Ring
	if st.Out != 0 || st.TxFrames != 21 {
		t.Errorf("after its consumer closed: ring stats %+v, want no ring out, still 21 frames", st)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats().Ring; st.Out != 0 || st.In != 0 {
		t.Errorf("closed endpoint: ring stats %+v, want no rings", st)
	}
	assertEmpty(t, dir)
}

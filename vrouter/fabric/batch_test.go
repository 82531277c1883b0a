package fabric

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/header"
)

func TestWriteBatch(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{})
	b := attach(t, dir, "node2", Options{})
	c := attach(t, dir, "node3", Options{})
	rxB, rxC := reader(t, b, 4096), reader(t, c, 4096)
	unknown := netip.MustParseAddr("10.0.0.1")
	hops := []netip.Addr{addr2, addr3, unknown, addr2, addr3, addr2}
	frames := []Frame{
		{Packet: packet(100, 0)},
		{Packet: packet(200, 1)},
		{Packet: packet(300, 2)},
		{Packet: nil}, // bad
		{GSO: header.GSO{GSOType: header.GSOTCPv4, GSOSize: 1000, HdrLen: 40}, Packet: packet(3000, 4)},
		{Packet: packet(600, 5)},
	}
	errs := make([]error, len(frames))
	if n := a.WriteBatch(hops, frames, errs); n != 4 {
		t.Errorf("WriteBatch sent %d, want 4", n)
	}
	want := []error{nil, nil, ErrNoNeighbor, ErrBadFrame, nil, nil}
	for i := range errs {
		if !errors.Is(errs[i], want[i]) || (want[i] == nil) != (errs[i] == nil) {
			t.Errorf("errs[%d] = %v, want %v", i, errs[i], want[i])
		}
	}
	for _, i := range []int{0, 5} {
		if f := recvFrame(t, rxB); !bytes.Equal(f.Packet, frames[i].Packet) {
			t.Errorf("node2: frame %d wrong", i)
		}
	}
	for _, i := range []int{1, 4} {
		if f := recvFrame(t, rxC); !bytes.Equal(f.Packet, frames[i].Packet) || f.GSO != frames[i].GSO {
			t.Errorf("node3: frame %d wrong", i)
		}
	}
	s := a.Stats()
	if s.TxFrames != 4 || s.TxBytes != 100+200+3000+600 || s.TxDrops.NoNeighbor != 1 || s.TxDrops.BadFrame != 1 {
		t.Errorf("stats %+v", s)
	}
	// Without errs, with a down link.
	a.SetUp(false)
	if n := a.WriteBatch(hops[:2], frames[:2], nil); n != 0 || a.Stats().TxDrops.LinkDown != 2 {
		t.Errorf("down: sent %d", n)
	}
	a.SetUp(true)
	// Delay and loss apply per frame.
	if err := a.SetImpairment(Impairment{Delay: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if n := a.WriteBatch(hops[:2], frames[:2], errs); n != 2 || errs[0] != nil || errs[1] != nil {
		t.Errorf("delayed: sent %d, %v", n, errs[:2])
	}
	recvFrame(t, rxB)
	recvFrame(t, rxC)
}

func TestWriteBatchQueueFull(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{NoRing: true}) // the socket's queue
	attach(t, dir, "node2", Options{})                  // does not read
	c := attach(t, dir, "node3", Options{})
	rxC := reader(t, c, 4096)
	q := maxQueued(t) // sized to it: 11 by the kernel's default, 513 under systemd
	n := 2*q + 10
	hops := make([]netip.Addr, n)
	frames := make([]Frame, n)
	for i := range hops {
		hops[i] = addr2
		frames[i] = Frame{Packet: packet(64, i)}
	}
	hops[n-1] = addr3 // after many failures, the last frame goes elsewhere
	errs := make([]error, n)
	if got := a.WriteBatch(hops, frames, errs); got != q+1 {
		t.Errorf("sent %d, want %d", got, q+1)
	}
	for i, err := range errs {
		switch {
		case i < q || i == n-1:
			if err != nil {
				t.Errorf("frame %d: %v", i, err)
			}
		case err != ErrQueueFull:
			t.Errorf("frame %d: %v, want ErrQueueFull", i, err)
		}
	}
	if f := recvFrame(t, rxC); !bytes.Equal(f.Packet, frames[n-1].Packet) {
		t.Error("wrong frame at node3")
	}
	if s := a.Stats(); s.TxDrops.QueueFull != uint64(n-q-1) {
		t.Errorf("QueueFull = %d, want %d", s.TxDrops.QueueFull, n-q-1)
	}
}

func TestWriteBatchAllocs(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{TapScanInterval: -1})
	drain(t, attach(t, dir, "node2", Options{TapScanInterval: -1}))
	hops := make([]netip.Addr, 100)
	frames := make([]Frame, 100)
	for i := range hops {
		hops[i] = addr2
		frames[i] = Frame{Packet: packet(100, i)}
	}
	errs := make([]error, 100)
	if allocs := testing.AllocsPerRun(20, func() { a.WriteBatch(hops, frames, errs) }); allocs != 0 {
		t.Errorf("WriteBatch: %.1f allocations", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = a.SendTo(addr2, frames[0]) }); allocs != 0 {
		t.Errorf("SendTo: %.1f allocations", allocs)
	}
}

func TestWriteBatchTap(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{TapScanInterval: 10 * time.Millisecond})
	b := attach(t, dir, "node2", Options{TapScanInterval: 10 * time.Millisecond})
	drain(t, b)
	// A burst of copies needs a tap with a deep queue: one in a namespace
	// with a raised max_dgram_qlen when root, else a burst that fits the
	// default queue of 11.
	n := 10
	var topts TapOptions
	if os.Geteuid() == 0 {
		n = 100 // two chunks
		topts.Namespace = labNamespace(t, "wbtap")
		if err := SetMaxDgramQlen(topts.Namespace, 1000); err != nil {
			t.Fatal(err)
		}
	}
	tap, err := OpenTapWithOptions(dir, "lan", topts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tap.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	got := collect(t, tap, 100*time.Millisecond)
	hops := make([]netip.Addr, n)
	frames := make([]Frame, n)
	for i := range hops {
		hops[i] = addr2
		frames[i] = Frame{Packet: packet(100+i, i)}
	}
	hops[7] = netip.MustParseAddr("10.9.9.9") // not on the wire: not captured
	before := time.Now()
	a.WriteBatch(hops, frames, nil)
	after := time.Now()
	recs := got()
	if len(recs) != n-1 {
		t.Fatalf("captured %d frames, want %d", len(recs), n-1)
	}
	j := 0
	for i := range frames {
		if i == 7 {
			continue
		}
		r := recs[j]
		j++
		if !bytes.Equal(r.Packet, frames[i].Packet) || r.From != "node1" || r.To != "node2" || r.Interface != "node1/ens33" || r.Length != len(frames[i].Packet) {
			t.Fatalf("record %d: %s -> %s on %s, %d bytes", i, r.From, r.To, r.Interface, len(r.Packet))
		}
		if r.Time.Before(before) || r.Time.After(after) {
			t.Errorf("record %d: time %v outside [%v, %v]", i, r.Time, before, after)
		}
	}
	if s := a.Stats(); s.TapFrames != uint64(n-1) || s.TapDrops != 0 {
		t.Errorf("TapFrames %d, TapDrops %d", s.TapFrames, s.TapDrops)
	}

	// A tap that stops reading misses copies; the frames still go.
	tap.Close()
	stuck, err := OpenTap(dir, "lan")
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if err := stuck.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	hops[7] = addr2
	before2 := a.Stats()
	sent := 0
	for range 3 {
		sent += a.WriteBatch(hops, frames, nil)
		time.Sleep(5 * time.Millisecond) // let the receiver drain
	}
	s := a.Stats()
	if tf, td := s.TapFrames-before2.TapFrames, s.TapDrops-before2.TapDrops; tf+td != uint64(3*n) || td == 0 {
		t.Errorf("stuck tap: %d copies, %d drops; want some drops, %d in all", tf, td, 3*n)
	}
	if sent == 0 {
		t.Error("no frames sent with a stuck tap")
	}
}

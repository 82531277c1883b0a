package fabric

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vrouter-lab/vrouter/header"
)

// benchNamespace returns, when running as root, a namespace with the queue
// length a lab uses, in which the benchmark's sockets are created; without
// root the sockets get this namespace's (usually 10) and the sender meets
// full queues more often.
func benchNamespace(b *testing.B) string {
	if os.Geteuid() != 0 {
		return ""
	}
	ns := labNamespace(b, "bench")
	if err := SetMaxDgramQlen(ns, DefaultMaxDgramQlen); err != nil {
		b.Fatal(err)
	}
	return ns
}

// benchFrame is a frame of size bytes: a plain packet up to 1500 bytes, a
// TCP GSO super-packet beyond.
func benchFrame(size int) Frame {
	f := Frame{Packet: make([]byte, size)}
	f.Packet[0] = 0x45
	if size > 1500 {
		f.GSO = header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	}
	return f
}

// BenchmarkSendReceive moves frames from one endpoint to another, the
// sender (the benchmark loop: SendTo per frame, or WriteBatch per 32) and
// the receiver (ReadBatch, 64 buffers) in separate goroutines. A sender
// that finds the queue full yields and retries, as TCP would slow down,
// so every frame arrives; full/op counts those retries. fabric=socket is
// the unix datagram path, fabric=ring the shared-memory ring (made at the
// first frame).
func BenchmarkSendReceive(b *testing.B) {
	for _, fabric := range []string{"socket", "ring"} {
		for _, size := range []int{1500, 65535} {
			for _, batch := range []int{1, 32} {
				for _, tap := range []bool{false, true} {
					name := fmt.Sprintf("fabric=%s/size=%d/batch=%d/tap=%v", fabric, size, batch, tap)
					b.Run(name, func(b *testing.B) { benchSendReceive(b, size, batch, tap, fabric == "ring") })
				}
			}
		}
	}
}

func benchSendReceive(b *testing.B, size, batch int, withTap, ring bool) {
	dir := b.TempDir()
	ns := benchNamespace(b)
	opts := Options{Namespace: ns, NoRing: !ring}
	if ring {
		opts.RingAfter = -1
	}
	a := attach(b, dir, "node1", opts)
	r := attach(b, dir, "node2", opts)
	var tapRecords atomic.Int64
	if withTap {
		tap, err := OpenTapWithOptions(dir, "lan", TapOptions{Namespace: ns})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tap.Close() })
		if err := tap.WaitReady(context.Background()); err != nil {
			b.Fatal(err)
		}
		go func() {
			var rec TapRecord
			for tap.ReadInto(context.Background(), &rec) == nil {
				tapRecords.Add(1)
			}
		}()
	}
	target := int64(b.N)
	var received, reads atomic.Int64
	done := make(chan struct{})
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 1<<16)
	}
	rframes := make([]Frame, len(bufs))
	go func() {
		for {
			n, err := r.ReadBatch(bufs, rframes)
			if err != nil {
				return
			}
			reads.Add(1)
			if received.Add(int64(n)) == target {
				close(done)
			}
		}
	}()
	f := benchFrame(size)
	hops, frames := make([]netip.Addr, batch), make([]Frame, batch)
	for i := range batch {
		hops[i], frames[i] = addr2, f
	}
	full := 0
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	if batch == 1 {
		for range b.N {
			for {
				err := a.SendTo(addr2, f)
				if err == nil {
					break
				}
				if err != ErrQueueFull {
					b.Fatal(err)
				}
				full++
				runtime.Gosched()
			}
		}
	} else {
		for sent := 0; sent < b.N; {
			k := min(batch, b.N-sent)
			n := a.WriteBatch(hops[:k], frames[:k], nil)
			sent += n
			if n < k {
				full += k - n
				runtime.Gosched()
			}
		}
	}
	<-done
	b.StopTimer()
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/sec, "frames/s")
	b.ReportMetric(float64(b.N)*float64(size)*8/sec/1e9, "Gbit/s")
	b.ReportMetric(float64(full)/float64(b.N), "full/op")
	b.ReportMetric(float64(b.N)/float64(reads.Load()), "frames/read")
	if withTap {
		s := a.Stats()
		b.ReportMetric(float64(s.TapDrops)/float64(b.N), "tapdrops/op")
	}
}

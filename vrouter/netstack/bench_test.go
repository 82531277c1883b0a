package netstack_test

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TCP throughput from a netstack workload on one engine to the discard
// sink of one on another, through both engines and the in-memory
// underlay: what the engines and gVisor do without a TUN device or a
// system call per packet.
func BenchmarkTCPAcrossEngines(b *testing.B) {
	p := newPair(b)
	sa := p.a.addStack(b, "caliA", "client", addrA)
	b.Cleanup(sa.Close)
	sb := p.b.addStack(b, "caliB", "sink", addrB, "tcp:5201:sink")
	b.Cleanup(sb.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := sa.DialTCP(ctx, netip.AddrPortFrom(addrB, 5201))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// Ping round trips between netstack workloads on two engines.
func BenchmarkPingAcrossEngines(b *testing.B) {
	p := newPair(b)
	sa := p.a.addStack(b, "caliA", "a", addrA)
	b.Cleanup(sa.Close)
	sb := p.b.addStack(b, "caliB", "b", addrB)
	b.Cleanup(sb.Close)
	ctx := context.Background()
	seq := uint16(0)
	for b.Loop() {
		seq++
		if _, err := sa.Ping(ctx, addrB, seq, 56); err != nil {
			b.Fatal(err)
		}
	}
}

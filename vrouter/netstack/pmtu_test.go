package netstack_test

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"testing"
	"time"
)

// Netstack workloads whose MTU (1500) is larger than the tunnel's (1380,
// under a 1400 underlay; gVisor's TCP sends at most 1472-byte packets at
// MTU 1500) learn the path MTU from the engine's ICMP "fragmentation
// needed" (gVisor's TCP sets DF) and TCP still moves 256 KB both ways.
func TestPathMTUThroughTunnel(t *testing.T) {
	p := newPairMTU(t, true, 1400)
	p.a.mtu, p.b.mtu = 1500, 1500
	sa := p.a.addStack(t, "caliA", "api-1", addrA)
	t.Cleanup(sa.Close)
	sb := p.b.addStack(t, "caliB", "api-2", addrB, "tcp:7:echo")
	t.Cleanup(sb.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sa.DialTCP(ctx, netip.AddrPortFrom(addrB, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	data := bytes.Repeat([]byte("0123456789abcdef"), 16<<10)
	go func() { _, _ = c.Write(data) }()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo through a smaller tunnel MTU: %v (engine: %v)", err, p.a.e.Stats())
	}
	if !bytes.Equal(got, data) {
		t.Error("echo changed the bytes")
	}
	if st := p.a.e.Stats(); st["drop_frag_needed"] == 0 || st["icmp_errors"] == 0 {
		t.Errorf("engine counters %v: no ICMP fragmentation needed sent", st)
	}
}

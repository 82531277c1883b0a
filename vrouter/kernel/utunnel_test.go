package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// tunnelPair is two hosts with a pod each whose traffic crosses tunl0
// (ipipMode Always): pa on hosts[0] (10.244.166.129), pb on hosts[1]
// (10.244.104.1).
type tunnelPair struct {
	hosts  []host
	a, b   *Dataplane
	pa, pb string
}

// newTunnelPair builds the lab of TestTunnelPing.
func newTunnelPair(t testing.TB) *tunnelPair {
	t.Helper()
	hosts := newHosts(t, "192.168.50.10/24", "192.168.50.11/24")
	p := &tunnelPair{hosts: hosts, a: newDP(t, hosts[0], Options{}), b: newDP(t, hosts[1], Options{})}
	p.pa, p.pb = newNS(t, "pa"), newNS(t, "pb")
	ctx := context.Background()
	for _, w := range []struct {
		d               *Dataplane
		port            Port
		tunl0, block    string
		remote, nextHop string
	}{
		{p.a, Port{Name: "calia0000000001", Namespace: p.pa, Address: netip.MustParseAddr("10.244.166.129"), MTU: 1480}, "10.244.166.128", "10.244.166.128/26", "10.244.104.0/26", "192.168.50.11"},
		{p.b, Port{Name: "calib0000000001", Namespace: p.pb, Address: netip.MustParseAddr("10.244.104.1"), MTU: 1480}, "10.244.104.0", "10.244.104.0/26", "10.244.166.128/26", "192.168.50.10"},
	} {
		if err := w.d.EnableTunnel(netip.MustParseAddr(w.tunl0)); err != nil {
			t.Fatal(err)
		}
		if err := w.d.AddWorkload(ctx, w.port); err != nil {
			t.Fatal(err)
		}
		replace(t, w.d,
			w.port.Address.String()+" dev "+w.port.Name+" scope link",
			"blackhole "+w.block+" proto bird",
			w.remote+" via "+w.nextHop+" dev tunl0 proto bird onlink")
	}
	return p
}

// bulk sends size random bytes over one TCP connection from pod pa to pod
// pb with Go's net package, and returns the bytes received, the time it
// took and whether the receiver saw exactly what was sent (SHA-256). With
// size 0 it sends zeros for d, and only the byte counts are compared (so
// that a benchmark measures the tunnel, not the hashing).
func (p *tunnelPair) bulk(t testing.TB, size int64, d time.Duration) (n int64, took time.Duration, same bool) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(p.pb, func() (err error) {
		ln, err = net.Listen("tcp4", "10.244.104.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		var w io.Writer = io.Discard
		h := sha256.New()
		if size > 0 {
			w = h
		}
		n, err := io.Copy(w, c)
		var r result
		r.n, r.err = n, err
		copy(r.sum[:], h.Sum(nil))
		got <- r
	}()
	var c net.Conn
	if err := netns.Do(p.pa, func() (err error) {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 128<<10)
	rng := rand.NewChaCha8([32]byte{1})
	start := time.Now()
	deadline := start.Add(d)
	_ = c.SetWriteDeadline(deadline.Add(time.Second))
	var sent int64
	for (size == 0 && time.Now().Before(deadline)) || (size > 0 && sent < size) {
		chunk := buf
		if size > 0 && size-sent < int64(len(chunk)) {
			chunk = chunk[:size-sent]
		}
		if size > 0 {
			_, _ = rng.Read(chunk)
		}
		m, err := c.Write(chunk)
		if size > 0 {
			h.Write(chunk[:m])
		}
		sent += int64(m)
		if err != nil {
			c.Close()
			t.Fatalf("after %d bytes: %v", sent, err)
		}
	}
	c.Close()
	var r result
	select {
	case r = <-got:
	case <-time.After(d + 10*time.Second):
		t.Fatalf("receiver did not finish (%d bytes sent)", sent)
	}
	took = time.Since(start)
	if r.err != nil {
		t.Fatalf("receive: %v", r.err)
	}
	return r.n, took, r.n == sent && bytes.Equal(r.sum[:], h.Sum(nil))
}

// udp sends datagrams of sizes from 1 byte to the MTU from pod pa to pod
// pb, one at a time, each to be received intact within a second.
func (p *tunnelPair) udp(t testing.TB) {
	t.Helper()
	var rc, sc net.PacketConn
	if err := netns.Do(p.pb, func() (err error) {
		rc, err = net.ListenPacket("udp4", "10.244.104.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := netns.Do(p.pa, func() (err error) {
		sc, err = net.ListenPacket("udp4", "10.244.166.129:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	buf := make([]byte, 2000)
	for _, n := range []int{1, 2, 3, 100, 511, 1000, 1451, 1452} { // 1452: 1480 less IP and UDP headers
		msg := testPayload(n)
		msg[0] = byte(n)
		if _, err := sc.WriteTo(msg, rc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = rc.SetReadDeadline(time.Now().Add(time.Second))
		m, _, err := rc.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:m], msg) {
			t.Fatalf("UDP datagram of %d bytes: received %d bytes, %v", n, m, err)
		}
	}
}

// retransmits returns the TCP segments retransmitted in namespace ns
// (RetransSegs of /proc/net/snmp).
func retransmits(t testing.TB, ns string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "RetransSegs" && i < len(f) {
				n, _ := strconv.Atoi(f[i])
				return n
			}
		}
	}
	t.Fatalf("no RetransSegs in %s's /proc/net/snmp", ns)
	return 0
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A 20 MB TCP transfer between pods on two hosts through tunl0 (the
// userspace one on a kernel without ipip) arrives whole and in time; UDP
// datagrams of every size up to the MTU cross too (their checksums, left
// to tunl0 by the kernel, completed by the tunnel).
func TestTunnelBulkTCP(t *testing.T) {
	guard(t)
	p := newTunnelPair(t)
	const size = 20 << 20
	n, took, same := p.bulk(t, size, 30*time.Second)
	t.Logf("%d bytes in %v (%.2f Gbit/s), %d retransmitted segments; tunl0: %s", n, took,
		float64(n)*8/took.Seconds()/1e9, retransmits(t, p.pa), p.a.Tunnel())
	if n != size || !same {
		t.Fatalf("received %d bytes of %d, same data: %v", n, size, same)
	}
	p.udp(t)
	if p.a.Tunnel() == TunnelUserspace {
		for _, d := range []*Dataplane{p.a, p.b} {
			s := d.Stats()
			t.Logf("counters: %v", s)
			if s["ipip_encap_packets"] == 0 || s["ipip_decap_accepted"] == 0 {
				t.Errorf("userspace tunl0 counters: %v", s)
			}
		}
		// The data went as super-packets, cut by a's tunl0 and joined
		// again by b's.
		if a, b := p.a.Stats(), p.b.Stats(); a["ipip_encap_gso_packets"] == 0 || b["ipip_decap_gro_packets"] == 0 {
			t.Errorf("no super-packets: %d cut by the sender's tunl0, %d joined by the receiver's",
				a["ipip_encap_gso_packets"], b["ipip_decap_gro_packets"])
		}
	}
}

// BenchmarkTunnelTCP measures one TCP stream (Go's net, 5 s) between pods
// on two hosts through tunl0 (the userspace one on a kernel without
// ipip), with the sender's retransmissions:
//
//	sudo go test -run '^$' -bench TunnelTCP -benchtime 1x ./vrouter/kernel/
func BenchmarkTunnelTCP(b *testing.B) {
	guard(b)
	p := newTunnelPair(b)
	before := retransmits(b, p.pa)
	cpu0 := cpuTime(b)
	n, took, same := p.bulk(b, 0, 5*time.Second)
	if !same {
		b.Fatal("data received differs from data sent")
	}
	cpu := cpuTime(b) - cpu0
	re := retransmits(b, p.pa) - before
	gbps := float64(n) * 8 / took.Seconds() / 1e9
	b.ReportMetric(gbps, "Gbit/s")
	b.ReportMetric(float64(re), "retrans")
	// The process's CPU time (both tunnels, the sender's and receiver's
	// system calls, and the kernel work they do) per GB: on a loaded
	// machine steadier than the rate.
	b.ReportMetric(cpu.Seconds()/(float64(n)/1e9), "cpu-s/GB")
	b.Logf("tunl0 %s: %.2f Gbit/s, %d retransmitted segments in %v, %.2f CPU s/GB\n%s\n%s", p.a.Tunnel(), gbps, re, took.Round(time.Millisecond),
		cpu.Seconds()/(float64(n)/1e9),
		fmt.Sprint(p.a.Stats()), fmt.Sprint(p.b.Stats()))
	for _, h := range p.hosts {
		out, _ := exec.Command("ip", "-n", h.ns, "-s", "-s", "link", "show", "tunl0").CombinedOutput()
		b.Logf("%s:\n%s", h.ns, out)
	}
}

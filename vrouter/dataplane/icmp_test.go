package dataplane_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
)

func TestQuoteLength(t *testing.T) {
	tests := []struct {
		name    string
		in      dataplane.PortID
		src     string
		size    int // UDP bytes
		quote   int // bytes of the offending packet quoted
		port    dataplane.PortID
		nextHop string
		from    string
		bufLen  int
	}{
		// 576 - 20 (IP) - 8 (ICMP) = 548 bytes of the original.
		{"large packet: 576 bytes in all", idCali, web1, 1400, 548, idCali, web1, defaultSrc, 576},
		{"exactly 548", idCali, web1, 548 - 20, 548, idCali, web1, defaultSrc, 576},
		{"small packet quoted whole", idCali, web1, 100, 120, idCali, web1, defaultSrc, 576},
		{"larger buffer changes nothing", idCali, web1, 1400, 548, idCali, web1, defaultSrc, 2000},
		// The error leaves by a port of MTU 300: 300 - 28.
		{"small MTU of the error's port", idSmall, small, 1000, 272, idSmall, small, defaultSrc, 576},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newLab(t, nil)
			orig := ipSpec{ttl: 1, src: tc.src, dst: remote, payload: udp(tc.size)}.pkt()
			buf := make([]byte, tc.bufLen)
			d := f.Forward(bytes.Clone(orig), tc.in, buf)
			checkError(t, d, wantError{
				typ: 11, code: 0, src: tc.from, dst: tc.src, tos: icmpTOS(0),
				quote: orig[:tc.quote], port: tc.port, nextHop: tc.nextHop, reason: dataplane.ReasonTTLExceeded,
			})
			if len(d.Packet) != 28+tc.quote {
				t.Errorf("error is %d bytes, want %d", len(d.Packet), 28+tc.quote)
			}
			if &d.Packet[0] != &buf[0] {
				t.Error("error not built in the caller's buffer")
			}
		})
	}
	t.Run("buffer too small for header and 8 bytes", func(t *testing.T) {
		f, _ := newLab(t, nil)
		d := f.Forward(ipSpec{ttl: 1, src: web1, dst: remote, payload: udp(100)}.pkt(), idCali, make([]byte, 55))
		if d.Action != dataplane.Drop || d.Reason != dataplane.ReasonTTLExceeded {
			t.Fatalf("%v %v", d.Action, d.Reason)
		}
		if s := f.Stats(); s.ICMPUnroutable != 1 {
			t.Errorf("stats %v", s.Map())
		}
	})
	t.Run("short buffer truncates the quote", func(t *testing.T) {
		f, _ := newLab(t, nil)
		orig := ipSpec{ttl: 1, src: web1, dst: remote, payload: udp(100)}.pkt()
		d := f.Forward(bytes.Clone(orig), idCali, make([]byte, 56))
		checkError(t, d, wantError{
			typ: 11, src: defaultSrc, dst: web1, tos: icmpTOS(0),
			quote: orig[:28], port: idCali, nextHop: web1, reason: dataplane.ReasonTTLExceeded,
		})
	})
}

func TestFragNeeded(t *testing.T) {
	f, _ := newLab(t, nil) // default rate limits: frag-needed is exempt
	buf := make([]byte, 576)
	for i := range 20 {
		orig := ipSpec{tos: 0x08, id: uint16(i), df: true, src: web1, dst: remoteTun, payload: udp(1480)}.pkt() // 1500 > tunl0's 1480
		d := f.Forward(bytes.Clone(orig), idCali, buf)
		e := checkError(t, d, wantError{
			typ: 3, code: 4, src: defaultSrc, dst: web1, tos: icmpTOS(0x08), info: 1480,
			quote: orig[:548], port: idCali, nextHop: web1, reason: dataplane.ReasonFragNeeded,
		})
		if e.icmp.Seq != 1480 { // gopacket's view of the next-hop MTU field
			t.Fatalf("next-hop MTU %d", e.icmp.Seq)
		}
	}
	// Exactly the MTU passes.
	d := f.Forward(ipSpec{df: true, src: web1, dst: remoteTun, payload: udp(1460)}.pkt(), idCali, buf)
	if d.Action != dataplane.Encap || d.Fragment {
		t.Fatalf("1480 bytes to MTU 1480: %v fragment=%v", d.Action, d.Fragment)
	}
	if s := f.Stats(); s.ICMPErrors != 20 || s.ICMPRateLimited != 0 || s.Drops[dataplane.ReasonFragNeeded] != 20 {
		t.Errorf("stats %v", s.Map())
	}
}

// TestCheckOrder follows ip_forward: route, then TTL, then MTU.
func TestCheckOrder(t *testing.T) {
	f, _ := newLab(t, noRateLimit)
	buf := make([]byte, 576)
	d := f.Forward(ipSpec{ttl: 1, df: true, src: web1, dst: remoteTun, payload: udp(1600)}.pkt(), idCali, buf)
	if d.Action != dataplane.ICMPError || d.Reason != dataplane.ReasonTTLExceeded || d.Packet[20] != 11 {
		t.Errorf("TTL 1 and too big: %v %v, want time exceeded", d.Action, d.Reason)
	}
	d = f.Forward(ipSpec{ttl: 1, df: true, src: web1, dst: "10.98.0.1", payload: udp(1600)}.pkt(), idCali, buf)
	if d.Action != dataplane.ICMPError || d.Reason != dataplane.ReasonProhibit {
		t.Errorf("TTL 1 to prohibit: %v %v, want prohibit", d.Action, d.Reason)
	}
}

func TestNoErrorAbout(t *testing.T) {
	tests := []struct {
		name string
		spec ipSpec
		sent bool
	}{
		{"ICMP destination unreachable", ipSpec{proto: 1, payload: icmpMsg(3, 1, 28)}, false},
		{"ICMP time exceeded", ipSpec{proto: 1, payload: icmpMsg(11, 0, 28)}, false},
		{"ICMP parameter problem", ipSpec{proto: 1, payload: icmpMsg(12, 0, 28)}, false},
		{"ICMP redirect", ipSpec{proto: 1, payload: icmpMsg(5, 1, 28)}, false},
		{"ICMP source quench", ipSpec{proto: 1, payload: icmpMsg(4, 0, 28)}, false},
		{"ICMP type 1 (reserved, an error for Linux)", ipSpec{proto: 1, payload: icmpMsg(1, 0, 8)}, false},
		{"ICMP type 42 (unknown: assumed an error)", ipSpec{proto: 1, payload: icmpMsg(42, 0, 8)}, false},
		{"ICMP without a type byte", ipSpec{proto: 1}, false},
		{"non-first fragment", ipSpec{off: 1480, payload: payload(100)}, false},
		{"non-first last fragment of ICMP echo", ipSpec{proto: 1, off: 8, payload: payload(100)}, false},
		{"ICMP echo request", ipSpec{proto: 1, payload: icmpMsg(8, 0, 56)}, true},
		{"ICMP echo reply", ipSpec{proto: 1, payload: icmpMsg(0, 0, 56)}, true},
		{"ICMP timestamp request", ipSpec{proto: 1, payload: icmpMsg(13, 0, 12)}, true},
		{"ICMP address mask request", ipSpec{proto: 1, payload: icmpMsg(17, 0, 4)}, true},
		{"ICMP echo, first fragment", ipSpec{proto: 1, mf: true, payload: icmpMsg(8, 0, 56)}, true},
		{"UDP first fragment", ipSpec{mf: true, payload: udp(64)}, true},
		{"TCP-ish payload", ipSpec{proto: 6, payload: payload(40)}, true},
	}
	for _, tc := range tests {
		for _, ttl := range []bool{true, false} { // time exceeded, and no route (a route error)
			name := tc.name + "/ttl"
			spec := tc.spec
			spec.src = web1
			if ttl {
				spec.ttl, spec.dst = 1, remote
			} else {
				name = tc.name + "/noroute"
				spec.dst = "203.0.113.1"
			}
			t.Run(name, func(t *testing.T) {
				f, _ := newLab(t, noRateLimit)
				orig := spec.pkt()
				d := f.Forward(bytes.Clone(orig), idCali, make([]byte, 576))
				s := f.Stats()
				if !tc.sent {
					if d.Action != dataplane.Drop || s.ICMPSuppressed != 1 || s.ICMPErrors != 0 {
						t.Fatalf("%v %v, stats %v: want a silent drop", d.Action, d.Reason, s.Map())
					}
					return
				}
				typ, code, reason := byte(11), byte(0), dataplane.ReasonTTLExceeded
				if !ttl {
					typ, code, reason = 3, 0, dataplane.ReasonNoRoute
				}
				checkError(t, d, wantError{
					typ: typ, code: code, src: defaultSrc, dst: web1, tos: icmpTOS(0),
					quote: orig, port: idCali, nextHop: web1, reason: reason,
				})
			})
		}
	}
}

func TestRateLimit(t *testing.T) {
	ttlExpired := func(src string) []byte { return ipSpec{ttl: 1, src: src, dst: web1, payload: udp(20)}.pkt() }
	noRoute := func(src string) []byte { return ipSpec{src: src, dst: "203.0.113.1", payload: udp(20)}.pkt() }
	sent := func(f *dataplane.Forwarder, pkt []byte) bool {
		d := f.Forward(pkt, idEns33, make([]byte, 576))
		if d.Action != dataplane.ICMPError && d.Action != dataplane.Drop {
			t.Fatalf("%v %v", d.Action, d.Reason)
		}
		return d.Action == dataplane.ICMPError
	}
	burst := func(f *dataplane.Forwarder, pkt func(string) []byte, src string, n int) int {
		k := 0
		for range n {
			if sent(f, pkt(src)) {
				k++
			}
		}
		return k
	}

	t.Run("icmp_ratelimit: burst 6, then one a second", func(t *testing.T) {
		f, clk := newLab(t, nil)
		if n := burst(f, ttlExpired, remote, 10); n != 6 {
			t.Fatalf("burst: %d errors, want 6", n)
		}
		clk.Advance(999 * time.Millisecond)
		if sent(f, ttlExpired(remote)) {
			t.Fatal("error after 999 ms")
		}
		clk.Advance(time.Millisecond) // tokens accumulate: 1 s since the burst
		if !sent(f, ttlExpired(remote)) {
			t.Fatal("no error after 1 s")
		}
		if sent(f, ttlExpired(remote)) {
			t.Fatal("second error within the same second")
		}
		clk.Advance(500 * time.Millisecond)
		if sent(f, ttlExpired(remote)) {
			t.Fatal("error after 0.5 s")
		}
		clk.Advance(500 * time.Millisecond)
		if !sent(f, ttlExpired(remote)) {
			t.Fatal("no error after another 0.5 s")
		}
		// Another destination has its own bucket.
		if n := burst(f, ttlExpired, node2, 10); n != 6 {
			t.Fatalf("second destination: %d errors, want 6", n)
		}
		// A long pause refills to the burst, not beyond.
		clk.Advance(time.Hour)
		if n := burst(f, ttlExpired, remote, 10); n != 6 {
			t.Fatalf("after an hour: %d errors, want 6", n)
		}
		s := f.Stats()
		if s.ICMPErrors != 6+1+1+6+6 || s.ICMPRateLimited != 4+1+1+1+4+4 {
			t.Errorf("stats %v", s.Map())
		}
		if s.Drops[dataplane.ReasonTTLExceeded] != s.ICMPErrors+s.ICMPRateLimited {
			t.Errorf("every expired packet is a drop: %v", s.Map())
		}
	})

	t.Run("route errors pay ip_error and icmp_send on one peer", func(t *testing.T) {
		f, clk := newLab(t, nil)
		// Fresh peer: ip_error takes 5 s of credit to 4, icmp_send to 3;
		// then 2 and 1; then ip_error takes the last and icmp_send has none.
		if n := burst(f, noRoute, remote, 10); n != 2 {
			t.Fatalf("burst: %d errors, want 2", n)
		}
		clk.Advance(time.Second) // ip_error spends it, icmp_send finds none
		if sent(f, noRoute(remote)) {
			t.Fatal("error after 1 s")
		}
		clk.Advance(2 * time.Second) // 2 s: one for each
		if !sent(f, noRoute(remote)) {
			t.Fatal("no error after 2 s")
		}
		// The two limits share the peer with time-exceeded errors.
		if sent(f, ttlExpired(remote)) {
			t.Fatal("time exceeded sent with no tokens left")
		}
		// A steady stream of one packet a second gets no more errors.
		for i := range 10 {
			clk.Advance(time.Second)
			if sent(f, noRoute(remote)) {
				t.Fatalf("error at second %d of a 1/s stream", i+1)
			}
		}
		// Packets every 1.5 s get every other one answered.
		n := 0
		for range 10 {
			clk.Advance(1500 * time.Millisecond)
			if sent(f, noRoute(remote)) {
				n++
			}
		}
		if n != 5 {
			t.Fatalf("%d errors for 10 packets 1.5 s apart, want 5", n)
		}
	})

	t.Run("route errors with ip_error disabled", func(t *testing.T) {
		f, _ := newLab(t, func(c *dataplane.Config) { c.RouteErrorCost = -1 })
		if n := burst(f, noRoute, remote, 10); n != 6 {
			t.Fatalf("burst: %d errors, want 6", n)
		}
	})

	t.Run("route errors with icmp_ratelimit disabled", func(t *testing.T) {
		f, clk := newLab(t, func(c *dataplane.Config) { c.ICMPRateLimit = -1 })
		if n := burst(f, noRoute, remote, 10); n != 5 {
			t.Fatalf("burst: %d errors, want 5 (error_burst / error_cost)", n)
		}
		clk.Advance(time.Second)
		if n := burst(f, noRoute, remote, 3); n != 1 {
			t.Fatalf("after 1 s: %d errors, want 1", n)
		}
		if n := burst(f, ttlExpired, remote, 10); n != 10 {
			t.Fatalf("time exceeded unlimited: %d, want 10", n)
		}
	})

	t.Run("custom limits", func(t *testing.T) {
		f, clk := newLab(t, func(c *dataplane.Config) {
			c.ICMPRateLimit = 100 * time.Millisecond
			c.RouteErrorCost = -1
		})
		if n := burst(f, ttlExpired, remote, 10); n != 6 {
			t.Fatalf("burst: %d, want 6", n)
		}
		clk.Advance(250 * time.Millisecond)
		if n := burst(f, ttlExpired, remote, 10); n != 2 {
			t.Fatalf("after 250 ms at 100 ms a token: %d, want 2", n)
		}
	})

	t.Run("disabled", func(t *testing.T) {
		f, _ := newLab(t, noRateLimit)
		if n := burst(f, noRoute, remote, 100); n != 100 {
			t.Fatalf("%d errors, want 100", n)
		}
	})

	t.Run("many sources", func(t *testing.T) {
		// More sources than the limiter keeps peers for: each still gets
		// its first error.
		f, _ := newLab(t, func(c *dataplane.Config) { c.RouteErrorCost = -1 })
		n := 0
		for i := range 3000 {
			src := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}).String()
			if sent(f, ttlExpired(src)) {
				n++
			}
		}
		if n != 3000 {
			t.Fatalf("%d first errors to 3000 sources", n)
		}
	})
}

// With ErrorsToIngress, an error the router has no route back for (a lab
// router that knows no workload addresses) goes back out of the underlay
// port the packet came in by, to its sender (no next hop), from that
// port's address; without, it is dropped and counted, as Linux does. An
// error for a packet from a workload port has no neighbour to go back to.
func TestErrorsToIngress(t *testing.T) {
	const stranger, nowhere = "203.0.113.9", "198.51.100.1" // no routes to either
	orig := ipSpec{src: stranger, dst: nowhere, payload: udp(40)}.pkt()

	f, _ := newLab(t, noRateLimit)
	if d := f.Forward(bytes.Clone(orig), idEns33, make([]byte, 576)); d.Action != dataplane.Drop || d.Reason != dataplane.ReasonNoRoute {
		t.Fatalf("without ErrorsToIngress: %v %v", d.Action, d.Reason)
	}
	if s := f.Stats(); s.ICMPUnroutable != 1 || s.ICMPErrors != 0 {
		t.Errorf("stats %v", s.Map())
	}

	f, _ = newLab(t, func(c *dataplane.Config) { noRateLimit(c); c.ErrorsToIngress = true })
	d := f.Forward(bytes.Clone(orig), idEns33, make([]byte, 576))
	if d.Action != dataplane.ICMPError || d.Port == nil || d.Port.ID != idEns33 || d.NextHop.IsValid() {
		t.Fatalf("with ErrorsToIngress: %v port %v next hop %v", d.Action, d.Port, d.NextHop)
	}
	e := decodeICMP(t, d.Packet)
	if e.ip.SrcIP.String() != nodeAddr || e.ip.DstIP.String() != stranger || e.icmp.TypeCode.Type() != 3 || e.icmp.TypeCode.Code() != 0 {
		t.Errorf("error %s -> %s type %d code %d, want net unreachable from %s to %s",
			e.ip.SrcIP, e.ip.DstIP, e.icmp.TypeCode.Type(), e.icmp.TypeCode.Code(), nodeAddr, stranger)
	}
	// A workload's packet: the error still needs a route.
	w := ipSpec{src: stranger, dst: nowhere, payload: udp(40)}.pkt()
	if d := f.Forward(w, idCali, make([]byte, 576)); d.Action != dataplane.Drop {
		t.Errorf("from a workload port: %v, want drop", d.Action)
	}
}

package dataplane_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
)

// forwarded builds the bytes a forwarded packet must have: orig with TTL
// decremented and a header checksum computed from scratch by the test.
func forwarded(orig []byte) []byte {
	want := bytes.Clone(orig)
	hl := int(want[0]&0xf) * 4
	want[8]--
	want[10], want[11] = 0, 0
	binary.BigEndian.PutUint16(want[10:], rfc1071(want[:hl]))
	return want
}

func TestDeliver(t *testing.T) {
	tests := []struct {
		name    string
		in      dataplane.PortID
		src     string
		dst     string
		action  dataplane.Action
		port    dataplane.PortID
		nextHop string
	}{
		{"workload to remote block over the underlay", idCali, web1, remote, dataplane.Deliver, idEns33, node2},
		{"workload to remote block over tunl0", idCali, web1, remoteTun, dataplane.Encap, idTunl, node3},
		{"underlay to local workload (connected)", idEns33, remote, web1, dataplane.Deliver, idCali, web1},
		{"tunnel to local workload", idTunl, remoteTun, web1, dataplane.Deliver, idCali, web1},
		{"workload to node on the LAN (connected)", idCali, web1, node2, dataplane.Deliver, idEns33, node2},
		{"route without device resolves its gateway", idCali, web1, "10.95.1.2", dataplane.Deliver, idEns33, "192.168.50.1"},
		{"tunnel route without gateway", idCali, web1, "10.90.1.2", dataplane.Encap, idTunl, "10.90.1.2"},
		{"hairpin back out of the ingress port", idEns33, node2, "10.96.3.4", dataplane.Deliver, idEns33, "192.168.50.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newLab(t, nil)
			orig := ipSpec{tos: 0x10, id: 0xbeef, df: true, ttl: 64, src: tc.src, dst: tc.dst, payload: udp(100)}.pkt()
			pkt := bytes.Clone(orig)
			d := f.Forward(pkt, tc.in, make([]byte, dataplane.MaxICMPErrorLen))
			if d.Action != tc.action || d.Reason != dataplane.ReasonNone {
				t.Fatalf("decision %v/%v, want %v", d.Action, d.Reason, tc.action)
			}
			if d.Port == nil || d.Port.ID != tc.port {
				t.Fatalf("port %v, want id %d", d.Port, tc.port)
			}
			if d.NextHop != netip.MustParseAddr(tc.nextHop) {
				t.Errorf("next hop %v, want %s", d.NextHop, tc.nextHop)
			}
			if d.Fragment {
				t.Error("Fragment set for a small packet")
			}
			want := forwarded(orig)
			if !bytes.Equal(d.Packet, want) {
				t.Errorf("packet\n got %x\nwant %x", d.Packet, want)
			}
			if &d.Packet[0] != &pkt[0] {
				t.Error("packet not modified in place")
			}
			if d.Packet[8] != 63 || rfc1071(d.Packet[:20]) != 0 {
				t.Errorf("TTL %d, checksum verifies: %v", d.Packet[8], rfc1071(d.Packet[:20]) == 0)
			}
			s := f.Stats()
			if s.Forwarded+s.Encapsulated != 1 || s.Dropped() != 0 {
				t.Errorf("stats %v", s.Map())
			}
		})
	}
}

// TestTTLChecksum decrements the TTL of headers with every possible
// checksum (every ID, for a few TTLs and TOS values) and checks each result
// byte by byte against a checksum recomputed from scratch, so the corners
// of one's complement arithmetic (results 0x0000 and 0xffff, carries) are
// all covered.
func TestTTLChecksum(t *testing.T) {
	f, _ := newLab(t, nil)
	n, zero := 0, 0
	for _, ttl := range []byte{2, 64, 255} {
		for _, tos := range []byte{0, 0xff} {
			orig := ipSpec{tos: tos, ttl: ttl, src: web1, dst: remote, payload: udp(8)}.pkt()
			pkt := make([]byte, len(orig))
			for id := range 0x10000 {
				binary.BigEndian.PutUint16(orig[4:], uint16(id))
				orig[10], orig[11] = 0, 0
				binary.BigEndian.PutUint16(orig[10:], rfc1071(orig[:20]))
				copy(pkt, orig)
				d := f.Forward(pkt, idCali, nil)
				if d.Action != dataplane.Deliver {
					t.Fatalf("ttl %d id %#x: %v %v", ttl, id, d.Action, d.Reason)
				}
				want := forwarded(orig)
				if !bytes.Equal(d.Packet[:20], want[:20]) {
					t.Fatalf("ttl %d id %#x tos %#x: header\n got %x\nwant %x", ttl, id, tos, d.Packet[:20], want[:20])
				}
				if want[10] == 0 && want[11] == 0 {
					zero++
				}
				n++
			}
		}
	}
	if zero == 0 {
		t.Fatalf("none of %d cases has a zero checksum after the decrement", n)
	}
}

// TestNonCanonicalChecksum forwards a header whose checksum is 0xffff where
// recomputation gives 0x0000 (both verify): the result must still verify.
func TestNonCanonicalChecksum(t *testing.T) {
	f, _ := newLab(t, nil)
	found := false
	for id := 0; id < 0x10000 && !found; id++ {
		orig := ipSpec{id: uint16(id), ttl: 9, src: web1, dst: remote, payload: udp(8)}.pkt()
		if orig[10] != 0 || orig[11] != 0 {
			continue
		}
		found = true
		orig[10], orig[11] = 0xff, 0xff
		if rfc1071(orig[:20]) != 0 {
			t.Fatal("test bug: 0xffff should verify too")
		}
		d := f.Forward(orig, idCali, nil)
		if d.Action != dataplane.Deliver || rfc1071(d.Packet[:20]) != 0 || d.Packet[8] != 8 {
			t.Fatalf("%v %v, checksum verifies %v", d.Action, d.Reason, rfc1071(d.Packet[:20]) == 0)
		}
	}
	if !found {
		t.Fatal("no header with a zero checksum found")
	}
}

func TestTrailingBytesTrimmed(t *testing.T) {
	f, _ := newLab(t, nil)
	orig := ipSpec{src: web1, dst: remote, payload: udp(40)}.pkt()
	pkt := append(bytes.Clone(orig), 0xde, 0xad, 0xbe, 0xef, 0, 0) // Ethernet padding, say
	d := f.Forward(pkt, idCali, nil)
	if d.Action != dataplane.Deliver || len(d.Packet) != len(orig) {
		t.Fatalf("%v, %d bytes, want deliver of %d", d.Action, len(d.Packet), len(orig))
	}
	if !bytes.Equal(d.Packet, forwarded(orig)) {
		t.Error("trimmed packet differs")
	}
	if !bytes.Equal(pkt[len(orig):], []byte{0xde, 0xad, 0xbe, 0xef, 0, 0}) {
		t.Error("bytes beyond the total length were written")
	}
}

func TestLocal(t *testing.T) {
	f, _ := newLab(t, nil)
	tests := []struct {
		name string
		in   dataplane.PortID
		src  string
		dst  string
		ttl  byte
	}{
		{"node address from a workload", idCali, web1, nodeAddr, 64},
		{"node address with TTL 1 (not forwarded, no TTL check)", idEns33, node2, nodeAddr, 1},
		{"tunl0 address", idTunl, remoteTun, tunlAddr, 64},
		{"extra local address", idCali, web1, defaultSrc, 64},
		{"limited broadcast", idCali, web1, "255.255.255.255", 1},
		{"DHCP discover: 0.0.0.0 to 255.255.255.255", idCali, "0.0.0.0", "255.255.255.255", 64},
		{"local route type", idCali, web1, "10.92.0.1", 64},
		{"host to itself", idHost, nodeAddr, nodeAddr, 64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := ipSpec{ttl: tc.ttl, src: tc.src, dst: tc.dst, payload: udp(20)}.pkt()
			d := f.Forward(append(bytes.Clone(orig), 0, 0), tc.in, nil)
			if d.Action != dataplane.Local {
				t.Fatalf("%v %v, want local", d.Action, d.Reason)
			}
			if d.Port == nil || d.Port.ID != idHost {
				t.Errorf("port %v, want the host port", d.Port)
			}
			if !bytes.Equal(d.Packet, orig) {
				t.Errorf("local packet modified or not trimmed:\n got %x\nwant %x", d.Packet, orig)
			}
		})
	}
	if got := f.Stats().Local; got != uint64(len(tests)) {
		t.Errorf("Local counter %d, want %d", got, len(tests))
	}
}

func TestLocalWithoutHostPort(t *testing.T) {
	f, _ := newLab(t, func(c *dataplane.Config) {
		c.Ports = c.Ports[:2]
	})
	d := f.Forward(ipSpec{src: web1, dst: nodeAddr}.pkt(), idCali, nil)
	if d.Action != dataplane.Local || d.Port != nil {
		t.Fatalf("%v port %v, want local with no port", d.Action, d.Port)
	}
}

// TestHostOriginated checks packets the router's own stack sends through
// the host port: routed without TTL check or decrement.
func TestHostOriginated(t *testing.T) {
	f, _ := newLab(t, noRateLimit)
	for _, ttl := range []byte{64, 1} {
		orig := ipSpec{ttl: ttl, src: nodeAddr, dst: node2, payload: udp(30)}.pkt()
		d := f.Forward(bytes.Clone(orig), idHost, nil)
		if d.Action != dataplane.Deliver || d.Port.ID != idEns33 {
			t.Fatalf("ttl %d: %v %v", ttl, d.Action, d.Reason)
		}
		if !bytes.Equal(d.Packet, orig) {
			t.Errorf("ttl %d: host packet modified", ttl)
		}
	}
	// Too big with DF: the error goes back to the host port, from the
	// node address to itself (a local route's source is its destination).
	orig := ipSpec{df: true, src: nodeAddr, dst: remoteTun, payload: udp(1480)}.pkt()
	d := f.Forward(bytes.Clone(orig), idHost, make([]byte, 576))
	checkError(t, d, wantError{
		typ: 3, code: 4, src: nodeAddr, dst: nodeAddr, tos: icmpTOS(0), info: 1480,
		quote: orig[:548], port: idHost, nextHop: nodeAddr, reason: dataplane.ReasonFragNeeded,
	})

	// Errors to the router's own addresses are not rate limited (Linux:
	// loopback), even with the default limits.
	f, _ = newLab(t, nil)
	for i := range 20 {
		orig := ipSpec{id: uint16(i), src: nodeAddr, dst: "203.0.113.1", payload: udp(10)}.pkt()
		d := f.Forward(bytes.Clone(orig), idHost, make([]byte, 576))
		checkError(t, d, wantError{
			typ: 3, code: 0, src: nodeAddr, dst: nodeAddr, tos: icmpTOS(0),
			quote: orig, port: idHost, nextHop: nodeAddr, reason: dataplane.ReasonNoRoute,
		})
	}
}

func TestMalformed(t *testing.T) {
	good := ipSpec{src: web1, dst: remote, payload: udp(40)}.pkt()
	mod := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(good)) }
	fix := func(b []byte) []byte { // recompute the checksum over the claimed header
		hl := int(b[0]&0xf) * 4
		b[10], b[11] = 0, 0
		binary.BigEndian.PutUint16(b[10:], rfc1071(b[:hl]))
		return b
	}
	tests := []struct {
		name   string
		pkt    []byte
		reason dataplane.Reason
	}{
		{"empty", nil, dataplane.ReasonTruncated},
		{"one byte", []byte{0x45}, dataplane.ReasonTruncated},
		{"19 bytes", good[:19], dataplane.ReasonTruncated},
		{"IPv6", mod(func(b []byte) []byte { b[0] = 0x65; return fix(b) }), dataplane.ReasonBadVersion},
		{"version 0", mod(func(b []byte) []byte { b[0] = 0x05; return fix(b) }), dataplane.ReasonBadVersion},
		{"IHL 4", mod(func(b []byte) []byte { b[0] = 0x44; return b }), dataplane.ReasonBadIHL},
		{"IHL 0", mod(func(b []byte) []byte { b[0] = 0x40; return b }), dataplane.ReasonBadIHL},
		{"IHL beyond the buffer", mod(func(b []byte) []byte { b[0] = 0x4f; return b[:40] }), dataplane.ReasonTruncated},
		{"bad checksum", ipSpec{src: web1, dst: remote, payload: udp(40), badSum: true}.pkt(), dataplane.ReasonBadChecksum},
		{"flipped bit", mod(func(b []byte) []byte { b[13] ^= 1; return b }), dataplane.ReasonBadChecksum},
		{"total length beyond the buffer", mod(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)+1))
			return fix(b)
		}), dataplane.ReasonBadLength},
		{"buffer cut short", good[:len(good)-1], dataplane.ReasonBadLength},
		{"total length below the header", mod(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], 19)
			return fix(b)
		}), dataplane.ReasonBadLength},
		{"total length zero (TSO-style)", mod(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], 0)
			return fix(b)
		}), dataplane.ReasonBadLength},
	}
	f, _ := newLab(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.Stats().Drops[tc.reason]
			pkt := bytes.Clone(tc.pkt)
			d := f.Forward(pkt, idCali, make([]byte, 576))
			if d.Action != dataplane.Drop || d.Reason != tc.reason {
				t.Fatalf("%v %v, want drop %v", d.Action, d.Reason, tc.reason)
			}
			if d.Packet != nil || d.Port != nil {
				t.Error("drop carries a packet or port")
			}
			if !bytes.Equal(pkt, tc.pkt) {
				t.Error("dropped packet was modified")
			}
			if got := f.Stats().Drops[tc.reason]; got != before+1 {
				t.Errorf("counter %v: %d, want %d", tc.reason, got, before+1)
			}
		})
	}
	if s := f.Stats(); s.ICMPErrors != 0 || s.Forwarded != 0 {
		t.Errorf("malformed packets produced %v", s.Map())
	}
}

func TestMartians(t *testing.T) {
	tests := []struct {
		name   string
		in     dataplane.PortID
		src    string
		dst    string
		reason dataplane.Reason
	}{
		{"source 0.0.0.0", idCali, "0.0.0.0", remote, dataplane.ReasonMartianSource},
		{"source in 0/8", idCali, "0.1.2.3", remote, dataplane.ReasonMartianSource},
		{"source loopback", idCali, "127.0.0.1", remote, dataplane.ReasonMartianSource},
		{"source multicast", idCali, "224.0.0.5", remote, dataplane.ReasonMartianSource},
		{"source broadcast", idCali, "255.255.255.255", remote, dataplane.ReasonMartianSource},
		{"source is our address", idEns33, nodeAddr, web1, dataplane.ReasonMartianSource},
		{"source is our address, to us", idEns33, nodeAddr, nodeAddr, dataplane.ReasonMartianSource},
		{"destination in 0/8", idCali, web1, "0.0.0.9", dataplane.ReasonMartianDestination},
		{"destination loopback", idCali, web1, "127.0.0.1", dataplane.ReasonMartianDestination},
		{"destination multicast", idCali, web1, "239.1.1.1", dataplane.ReasonMulticast},
		{"mDNS", idCali, web1, "224.0.0.251", dataplane.ReasonMulticast},
	}
	f, _ := newLab(t, noRateLimit)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := f.Forward(ipSpec{ttl: 1, src: tc.src, dst: tc.dst, payload: udp(20)}.pkt(), tc.in, make([]byte, 576))
			if d.Action != dataplane.Drop || d.Reason != tc.reason {
				t.Fatalf("%v %v, want drop %v", d.Action, d.Reason, tc.reason)
			}
		})
	}
	if s := f.Stats(); s.ICMPErrors != 0 || s.Dropped() != uint64(len(tests)) {
		t.Errorf("stats %v", s.Map())
	}
}

func TestRouteErrors(t *testing.T) {
	tests := []struct {
		name      string
		dst       string
		typ, code byte
		reason    dataplane.Reason
	}{
		{"no route: network unreachable", "203.0.113.9", 3, 0, dataplane.ReasonNoRoute},
		{"throw route: network unreachable", "10.91.2.3", 3, 0, dataplane.ReasonNoRoute},
		{"unreachable route: host unreachable (EHOSTUNREACH)", "10.99.1.1", 3, 1, dataplane.ReasonUnreachable},
		{"prohibit route: administratively prohibited (EACCES)", "10.98.1.1", 3, 13, dataplane.ReasonProhibit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newLab(t, nil)
			orig := ipSpec{tos: 0xb8, ttl: 1, src: web1, dst: tc.dst, payload: udp(64)}.pkt()
			d := f.Forward(bytes.Clone(orig), idCali, make([]byte, 576))
			// The route is looked up before the TTL is checked, so TTL 1
			// still gets the routing error; the quote is the packet as
			// received. The error to the workload leaves by its cali
			// port, which has no address: the default source.
			checkError(t, d, wantError{
				typ: tc.typ, code: tc.code, src: defaultSrc, dst: web1, tos: icmpTOS(0xb8),
				quote: orig, port: idCali, nextHop: web1, reason: tc.reason,
			})
			s := f.Stats()
			if s.ICMPErrors != 1 || s.Drops[tc.reason] != 1 || s.Dropped() != 1 {
				t.Errorf("stats %v", s.Map())
			}
		})
	}
}

func TestSilentDrops(t *testing.T) {
	tests := []struct {
		name   string
		dst    string
		reason dataplane.Reason
	}{
		{"blackhole", "10.244.166.150", dataplane.ReasonBlackhole},
		{"route to a device that is not a port", "10.94.0.1", dataplane.ReasonUnknownEgress},
		{"route of type none", "10.93.0.1", dataplane.ReasonRouteType},
		{"gateway that resolves to no connected route", "10.89.0.7", dataplane.ReasonUnknownEgress},
	}
	f, _ := newLab(t, noRateLimit)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := f.Forward(ipSpec{src: web1, dst: tc.dst}.pkt(), idCali, make([]byte, 576))
			if d.Action != dataplane.Drop || d.Reason != tc.reason {
				t.Fatalf("%v %v, want drop %v", d.Action, d.Reason, tc.reason)
			}
		})
	}
	d := f.Forward(ipSpec{src: web1, dst: remote}.pkt(), 99, make([]byte, 576))
	if d.Action != dataplane.Drop || d.Reason != dataplane.ReasonUnknownIngress {
		t.Fatalf("unknown ingress: %v %v", d.Action, d.Reason)
	}
	if s := f.Stats(); s.ICMPErrors != 0 || s.Dropped() != uint64(len(tests)+1) {
		t.Errorf("stats %v", s.Map())
	}
}

func TestTTL(t *testing.T) {
	f, _ := newLab(t, noRateLimit)
	buf := make([]byte, 576)
	for _, ttl := range []byte{1, 0} {
		orig := ipSpec{tos: 0x02, id: 7, ttl: ttl, ttl0: ttl == 0, src: remote, dst: web1, payload: udp(32)}.pkt()
		d := f.Forward(bytes.Clone(orig), idEns33, buf)
		// Back to 10.244.104.5 via node2 on ens33: source is ens33's
		// address; the quote keeps the TTL as received.
		checkError(t, d, wantError{
			typ: 11, code: 0, src: nodeAddr, dst: remote, tos: icmpTOS(0x02),
			quote: orig, port: idEns33, nextHop: node2, reason: dataplane.ReasonTTLExceeded,
		})
	}
	d := f.Forward(ipSpec{ttl: 2, src: remote, dst: web1}.pkt(), idEns33, buf)
	if d.Action != dataplane.Deliver || d.Packet[8] != 1 {
		t.Fatalf("TTL 2: %v, TTL %d", d.Action, d.Packet[8])
	}
}

func TestICMPErrorSource(t *testing.T) {
	tests := []struct {
		name    string
		in      dataplane.PortID
		src     string
		wantSrc string
		port    dataplane.PortID
		nextHop string
	}{
		{"route's preferred source", idEns33, "10.96.7.7", prefSrc, idEns33, "192.168.50.1"},
		{"connected route's preferred source", idEns33, node2, nodeAddr, idEns33, node2},
		{"egress port's address", idEns33, remote, nodeAddr, idEns33, node2},
		{"tunnel port's address, via the tunnel", idTunl, remoteTun, tunlAddr, idTunl, node3},
		{"port without address: default source", idCali, web1, defaultSrc, idCali, web1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newLab(t, nil)
			orig := ipSpec{ttl: 1, src: tc.src, dst: "10.244.104.9", payload: udp(16)}.pkt()
			if tc.src == remote {
				orig = ipSpec{ttl: 1, src: tc.src, dst: web1, payload: udp(16)}.pkt()
			}
			d := f.Forward(bytes.Clone(orig), tc.in, make([]byte, 576))
			checkError(t, d, wantError{
				typ: 11, code: 0, src: tc.wantSrc, dst: tc.src, tos: icmpTOS(0),
				quote: orig, port: tc.port, nextHop: tc.nextHop, reason: dataplane.ReasonTTLExceeded,
			})
		})
	}
	t.Run("no address at all: INADDR_DUMMY", func(t *testing.T) {
		f, _ := newLab(t, func(c *dataplane.Config) {
			c.DefaultSource = netip.Addr{}
			c.Local = nil
		})
		orig := ipSpec{ttl: 1, src: web1, dst: remote, payload: udp(16)}.pkt()
		d := f.Forward(bytes.Clone(orig), idCali, make([]byte, 576))
		checkError(t, d, wantError{
			typ: 11, code: 0, src: "192.0.0.8", dst: web1, tos: icmpTOS(0),
			quote: orig, port: idCali, nextHop: web1, reason: dataplane.ReasonTTLExceeded,
		})
	})
	t.Run("no route back", func(t *testing.T) {
		f, _ := newLab(t, nil)
		for _, src := range []string{"198.51.100.1", "10.99.0.1", "10.244.166.150", "10.94.0.1", "10.87.0.1"} {
			d := f.Forward(ipSpec{ttl: 1, src: src, dst: web1}.pkt(), idEns33, make([]byte, 576))
			if d.Action != dataplane.Drop || d.Reason != dataplane.ReasonTTLExceeded {
				t.Errorf("from %s: %v %v, want drop ttl_exceeded", src, d.Action, d.Reason)
			}
		}
		if s := f.Stats(); s.ICMPUnroutable != 5 || s.ICMPErrors != 0 {
			t.Errorf("stats %v", s.Map())
		}
	})
}

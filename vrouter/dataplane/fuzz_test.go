package dataplane_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
)

type fuzzSeed struct {
	name string
	pkt  []byte
	in   uint8
	fix  bool // FuzzForward recomputes the header checksum first
}

// fuzzSeeds are the seed corpus of FuzzForward; TestWriteFuzzCorpus writes
// them to testdata/fuzz/FuzzForward.
func fuzzSeeds() []fuzzSeed {
	valid := ipSpec{src: web1, dst: remote, payload: udp(64)}.pkt()
	bad := func(fn func(b []byte)) []byte { b := bytes.Clone(valid); fn(b); return b }
	return []fuzzSeed{
		{"valid-udp", valid, uint8(idCali), false},
		{"valid-tunnel", ipSpec{src: web1, dst: remoteTun, payload: udp(64)}.pkt(), uint8(idCali), false},
		{"valid-inbound", ipSpec{src: remote, dst: web1, payload: udp(64)}.pkt(), uint8(idEns33), false},
		{"host-originated", ipSpec{ttl: 1, src: nodeAddr, dst: node2, payload: udp(20)}.pkt(), uint8(idHost), false},
		{"to-local", ipSpec{src: web1, dst: nodeAddr, payload: udp(20)}.pkt(), uint8(idCali), false},
		{"broadcast", ipSpec{src: "0.0.0.0", dst: "255.255.255.255", payload: udp(20)}.pkt(), uint8(idCali), false},
		{"multicast", ipSpec{src: web1, dst: "224.0.0.251", payload: udp(20)}.pkt(), uint8(idCali), false},
		{"ttl-1", ipSpec{ttl: 1, src: web1, dst: remote, payload: udp(64)}.pkt(), uint8(idCali), false},
		{"no-route", ipSpec{src: web1, dst: "203.0.113.1", payload: udp(64)}.pkt(), uint8(idCali), false},
		{"unreachable", ipSpec{src: web1, dst: "10.99.0.1", payload: udp(64)}.pkt(), uint8(idCali), false},
		{"prohibit", ipSpec{src: web1, dst: "10.98.0.1", payload: udp(64)}.pkt(), uint8(idCali), false},
		{"blackhole", ipSpec{src: remote, dst: "10.244.166.150", payload: udp(64)}.pkt(), uint8(idEns33), false},
		{"frag-needed", ipSpec{df: true, src: web1, dst: remoteTun, payload: udp(1480)}.pkt(), uint8(idCali), false},
		{"needs-fragmenting", ipSpec{src: web1, dst: remoteTun, payload: udp(1480)}.pkt(), uint8(idCali), false},
		{"small-mtu", ipSpec{src: remote, dst: small, payload: udp(400)}.pkt(), uint8(idEns33), false},
		{"first-fragment", ipSpec{mf: true, ttl: 1, src: web1, dst: remote, payload: udp(64)}.pkt(), uint8(idCali), false},
		{"middle-fragment", ipSpec{mf: true, off: 1480, ttl: 1, src: web1, dst: remote, payload: payload(64)}.pkt(), uint8(idCali), false},
		{"last-fragment-big", ipSpec{off: 64000, src: web1, dst: remoteTun, payload: payload(1480)}.pkt(), uint8(idCali), false},
		{"icmp-echo-ttl-1", ipSpec{proto: 1, ttl: 1, src: web1, dst: remote, payload: icmpMsg(8, 0, 56)}.pkt(), uint8(idCali), false},
		{"icmp-error-ttl-1", ipSpec{proto: 1, ttl: 1, src: web1, dst: remote, payload: icmpMsg(3, 3, 28)}.pkt(), uint8(idCali), false},
		{"icmp-empty", ipSpec{proto: 1, src: web1, dst: "203.0.113.1"}.pkt(), uint8(idCali), false},
		{"opt-rr", ipSpec{src: web1, dst: remote, opts: pad([]byte{7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0}), payload: udp(8)}.pkt(), uint8(idCali), false},
		{"opt-ts", ipSpec{src: web1, dst: remote, opts: []byte{68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0}, payload: udp(8)}.pkt(), uint8(idCali), false},
		{"opt-bad", ipSpec{src: web1, dst: remote, opts: []byte{1, 1, 1, 68}, payload: udp(8)}.pkt(), uint8(idCali), false},
		{"opt-lsrr", ipSpec{src: web1, dst: remote, opts: pad([]byte{131, 7, 4, 10, 0, 0, 1}), payload: udp(8)}.pkt(), uint8(idCali), false},
		{"bad-short", valid[:19], uint8(idCali), false},
		{"bad-ihl", bad(func(b []byte) { b[0] = 0x44 }), uint8(idCali), false},
		{"bad-version", bad(func(b []byte) { b[0] = 0x65 }), uint8(idCali), false},
		{"bad-checksum", bad(func(b []byte) { b[10] ^= 0xff }), uint8(idCali), false},
		{"bad-total-length", valid[:len(valid)-3], uint8(idCali), false},
		{"trailing-bytes", append(bytes.Clone(valid), 0, 0, 0, 0), uint8(idCali), false},
		{"unknown-port", valid, 200, false},
		{"fix-tcp-short", bad(func(b []byte) { b[9] = 6; b[3] = 37 })[:37], uint8(idCali), true},
		{"fix-ttl-1-options", ipSpec{ttl: 1, src: web1, dst: remote, opts: pad([]byte{7, 7, 4, 0, 0, 0, 0}), payload: udp(30)}.pkt(), uint8(idCali), true},
		{"empty", nil, 0, false},
	}
}

// TestWriteFuzzCorpus rewrites testdata/fuzz/FuzzForward from fuzzSeeds
// when DATAPLANE_WRITE_CORPUS is set.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("DATAPLANE_WRITE_CORPUS") == "" {
		t.Skip("set DATAPLANE_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzForward")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range fuzzSeeds() {
		text := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\nbool(%v)\n", s.pkt, s.in, s.fix)
		if err := os.WriteFile(filepath.Join(dir, s.name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzForward feeds any bytes from any port: Forward must not panic,
// must not write outside its buffers, and its decisions must be
// consistent. When fix is set the header checksum (over the header length
// the bytes claim, if they hold it) is recomputed first, so that mutated
// headers get past validation and reach the deeper paths.
func FuzzForward(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.pkt, s.in, s.fix)
	}
	fwd, clk := newLab(f, nil)
	ports := map[dataplane.PortID]dataplane.Port{}
	for _, p := range fwd.Ports() {
		ports[p.ID] = p
	}
	const guard = 32
	f.Fuzz(func(t *testing.T, data []byte, in uint8, fix bool) {
		clk.Advance(300 * time.Millisecond) // let the rate limiters refill now and then
		if fix && len(data) >= 20 {
			data = bytes.Clone(data)
			if hl := int(data[0]&0xf) * 4; hl >= 20 && hl <= len(data) {
				data[10], data[11] = 0, 0
				binary.BigEndian.PutUint16(data[10:], rfc1071(data[:hl]))
			}
		}
		mem := make([]byte, len(data)+guard)
		copy(mem, data)
		for i := len(data); i < len(mem); i++ {
			mem[i] = 0xa5
		}
		icmpMem := make([]byte, dataplane.MaxICMPErrorLen+guard)
		for i := range icmpMem {
			icmpMem[i] = 0x5a
		}
		pkt := mem[:len(data):len(data)]
		icmp := icmpMem[:dataplane.MaxICMPErrorLen:dataplane.MaxICMPErrorLen]
		before := fwd.Stats()

		d := fwd.Forward(pkt, dataplane.PortID(in), icmp)

		for i := len(data); i < len(mem); i++ {
			if mem[i] != 0xa5 {
				t.Fatalf("wrote past the packet at %d", i)
			}
		}
		for i := dataplane.MaxICMPErrorLen; i < len(icmpMem); i++ {
			if icmpMem[i] != 0x5a {
				t.Fatalf("wrote past the ICMP buffer at %d", i)
			}
		}
		after := fwd.Stats()
		total := func(s dataplane.Stats) uint64 { return s.Forwarded + s.Encapsulated + s.Local + s.Dropped() }
		if total(after) != total(before)+1 {
			t.Fatalf("counters moved by %d for one packet", total(after)-total(before))
		}

		checkPort := func() {
			if d.Port == nil {
				t.Fatalf("%v without a port", d.Action)
			}
			if p, ok := ports[d.Port.ID]; !ok || p != *d.Port {
				t.Fatalf("%v on unknown port %v", d.Action, d.Port)
			}
			if !d.NextHop.Is4() {
				t.Fatalf("%v with next hop %v", d.Action, d.NextHop)
			}
		}
		switch d.Action {
		case dataplane.Deliver, dataplane.Encap:
			checkPort()
			if d.Reason != dataplane.ReasonNone {
				t.Fatalf("%v with reason %v", d.Action, d.Reason)
			}
			if (d.Action == dataplane.Encap) != (d.Port.Kind == dataplane.PortTunnel) {
				t.Fatalf("%v on a %v port", d.Action, d.Port.Kind)
			}
			if len(d.Packet) < 20 || &d.Packet[0] != &pkt[0] || len(d.Packet) > len(data) {
				t.Fatal("forwarded packet is not a prefix of the input")
			}
			hl := int(d.Packet[0]&0xf) * 4
			if d.Packet[0]>>4 != 4 || hl < 20 || hl > len(d.Packet) || rfc1071(d.Packet[:hl]) != 0 {
				t.Fatalf("forwarded header does not verify: %x", d.Packet[:min(len(d.Packet), 60)])
			}
			if int(d.Packet[2])<<8|int(d.Packet[3]) != len(d.Packet) {
				t.Fatal("forwarded packet length differs from its total length")
			}
			if !bytes.Equal(d.Packet[hl:], data[hl:len(d.Packet)]) || !bytes.Equal(d.Packet[12:20], data[12:20]) {
				t.Fatal("forwarding changed the payload or the addresses")
			}
			wantTTL := data[8] - 1
			if dataplane.PortID(in) == idHost { // originated by the router: no decrement
				wantTTL = data[8]
			}
			if d.Packet[8] != wantTTL {
				t.Fatalf("TTL %d, was %d", d.Packet[8], data[8])
			}
			if d.Fragment != (len(d.Packet) > d.Port.MTU) {
				t.Fatalf("Fragment %v for %d bytes on MTU %d", d.Fragment, len(d.Packet), d.Port.MTU)
			}
			if d.Fragment {
				var got []byte
				buf := make([]byte, d.Port.MTU)
				err := dataplane.Fragment(d.Packet, d.Port.MTU, buf, func(b []byte) error {
					fh := int(b[0]&0xf) * 4
					if len(b) > d.Port.MTU || rfc1071(b[:fh]) != 0 {
						t.Fatalf("bad fragment of %d bytes", len(b))
					}
					got = append(got, b[fh:]...)
					return nil
				})
				if err != nil {
					t.Fatalf("Fragment: %v", err)
				}
				if !bytes.Equal(got, d.Packet[hl:]) {
					t.Fatal("fragments do not carry the payload")
				}
			}
		case dataplane.ICMPError:
			checkPort()
			if d.Reason == dataplane.ReasonNone {
				t.Fatal("ICMP error without a reason")
			}
			if len(d.Packet) < 28 || &d.Packet[0] != &icmp[0] || len(d.Packet) > min(576, d.Port.MTU) {
				t.Fatalf("ICMP error of %d bytes", len(d.Packet))
			}
			e := decodeICMP(t, d.Packet)
			if typ := e.icmp.TypeCode.Type(); typ != 3 && typ != 11 && typ != 12 {
				t.Fatalf("ICMP type %d", typ)
			}
			if !bytes.HasPrefix(data, e.icmp.Payload) || !bytes.Equal(pkt, data) {
				t.Fatal("quote is not the packet as received, or the packet changed")
			}
			if !slices.Equal(d.Packet[16:20], data[12:16]) {
				t.Fatal("ICMP error not addressed to the source")
			}
		case dataplane.Local:
			if d.Reason != dataplane.ReasonNone || &d.Packet[0] != &pkt[0] || !bytes.Equal(pkt, data) {
				t.Fatal("local decision with a reason or a changed packet")
			}
			if d.Port == nil || d.Port.Kind != dataplane.PortHost {
				t.Fatalf("local to %v", d.Port)
			}
		case dataplane.Drop:
			if d.Reason == dataplane.ReasonNone || d.Packet != nil || d.Port != nil {
				t.Fatalf("drop %+v", d)
			}
			if !bytes.Equal(pkt, data) {
				t.Fatal("dropped packet was modified")
			}
		default:
			t.Fatalf("action %v", d.Action)
		}
	})
}

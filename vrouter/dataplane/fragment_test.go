package dataplane_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
)

// frag is one fragment as gopacket decodes it.
type frag struct {
	ip  *layers.IPv4
	raw []byte
}

// fragments runs Fragment and collects copies of the fragments.
func fragments(t *testing.T, pkt []byte, mtu int) []frag {
	t.Helper()
	buf := make([]byte, mtu)
	var out []frag
	err := dataplane.Fragment(pkt, mtu, buf, func(b []byte) error {
		raw := bytes.Clone(b)
		p := gopacket.NewPacket(raw, layers.LayerTypeIPv4, gopacket.DecodeOptions{})
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil {
			t.Fatalf("fragment %d does not decode: %v", len(out), p)
		}
		out = append(out, frag{ip: ip, raw: raw})
		return nil
	})
	if err != nil {
		t.Fatalf("Fragment: %v", err)
	}
	return out
}

// reassemble checks the fragments of orig against RFC 791 and returns the
// payload they carry, starting at byte offset base.
func reassemble(t *testing.T, orig []byte, frags []frag, mtu int, lastMF bool) []byte {
	t.Helper()
	ohl := int(orig[0]&0xf) * 4
	origIP := gopacket.NewPacket(orig, layers.LayerTypeIPv4, gopacket.DecodeOptions{}).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	base := int(origIP.FragOffset) * 8
	var data []byte
	next := base
	for i, f := range frags {
		ip := f.ip
		hl := int(ip.IHL) * 4
		if len(f.raw) > mtu {
			t.Errorf("fragment %d: %d bytes > MTU %d", i, len(f.raw), mtu)
		}
		if int(ip.Length) != len(f.raw) {
			t.Errorf("fragment %d: total length %d, %d bytes", i, ip.Length, len(f.raw))
		}
		if rfc1071(f.raw[:hl]) != 0 {
			t.Errorf("fragment %d: header checksum does not verify", i)
		}
		if ip.Id != origIP.Id || ip.TTL != origIP.TTL || ip.Protocol != origIP.Protocol ||
			ip.TOS != origIP.TOS || !ip.SrcIP.Equal(origIP.SrcIP) || !ip.DstIP.Equal(origIP.DstIP) || hl != ohl {
			t.Errorf("fragment %d: header fields differ from the original", i)
		}
		if ip.Flags&layers.IPv4DontFragment != 0 {
			t.Errorf("fragment %d: DF set", i)
		}
		last := i == len(frags)-1
		wantMF := !last || lastMF
		if got := ip.Flags&layers.IPv4MoreFragments != 0; got != wantMF {
			t.Errorf("fragment %d: MF %v, want %v", i, got, wantMF)
		}
		off := int(ip.FragOffset) * 8
		if off != next {
			t.Errorf("fragment %d: offset %d, want %d", i, off, next)
		}
		n := len(f.raw) - hl
		if !last && n%8 != 0 {
			t.Errorf("fragment %d: %d bytes of payload, not a multiple of 8", i, n)
		}
		if !last && len(f.raw) < mtu-7 {
			t.Errorf("fragment %d: %d bytes, could fill more of MTU %d", i, len(f.raw), mtu)
		}
		data = append(data, f.raw[hl:]...)
		next += n
	}
	return data
}

func TestFragment(t *testing.T) {
	tests := []struct {
		name  string
		spec  ipSpec
		mtu   int
		count int
	}{
		{"1500 into 576", ipSpec{payload: udp(1480)}, 576, 3},
		{"1500 into 1480 (tunl0)", ipSpec{payload: udp(1480)}, 1480, 2},
		{"9000 into 1500", ipSpec{payload: udp(8980)}, 1500, 7},
		{"into the minimum MTU", ipSpec{payload: udp(200)}, 68, 5},
		{"payload an exact multiple", ipSpec{payload: udp(1024)}, 532, 2},
		{"fragment of a first fragment (MF set)", ipSpec{mf: true, payload: payload(1480)}, 576, 3},
		{"fragment of a middle fragment", ipSpec{mf: true, off: 1480, payload: payload(1480)}, 576, 3},
		{"fragment of a last fragment", ipSpec{off: 2960, payload: payload(1000)}, 576, 2},
		{"reserved flag cleared", ipSpec{evil: true, payload: payload(1000)}, 576, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.src, spec.dst, spec.id, spec.tos, spec.ttl = web1, remote, 0x4242, 0x28, 17
			orig := spec.pkt()
			frags := fragments(t, orig, tc.mtu)
			if len(frags) != tc.count {
				t.Fatalf("%d fragments, want %d", len(frags), tc.count)
			}
			for i, f := range frags {
				if f.ip.Flags&layers.IPv4EvilBit != 0 {
					t.Errorf("fragment %d keeps the reserved flag", i)
				}
			}
			got := reassemble(t, orig, frags, tc.mtu, tc.spec.mf)
			if !bytes.Equal(got, orig[20:]) {
				t.Errorf("reassembled payload differs from the original")
			}
		})
	}
}

func TestFragmentOptions(t *testing.T) {
	// Record route (type 7, copied flag clear) and router alert (148,
	// copied flag set), then END.
	opts := []byte{
		7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, // RR with room for 2 addresses
		148, 4, 0, 0, // router alert
		0, // END
	}
	opts = append(opts, make([]byte, (4-len(opts)%4)%4)...)
	orig := ipSpec{id: 9, src: web1, dst: remote, opts: opts, payload: udp(600)}.pkt()
	hl := 20 + len(opts)
	frags := fragments(t, orig, 300)
	if len(frags) < 3 {
		t.Fatalf("%d fragments", len(frags))
	}
	if !bytes.Equal(frags[0].raw[20:hl], opts) {
		t.Errorf("first fragment options %x, want %x", frags[0].raw[20:hl], opts)
	}
	want := append([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, opts[11:]...) // RR becomes NOPs
	for i, f := range frags[1:] {
		if !bytes.Equal(f.raw[20:hl], want) {
			t.Errorf("fragment %d options %x, want %x", i+1, f.raw[20:hl], want)
		}
	}
	if got := reassemble(t, orig, frags, 300, false); !bytes.Equal(got, orig[hl:]) {
		t.Error("reassembled payload differs")
	}
}

func TestFragmentErrors(t *testing.T) {
	big := ipSpec{src: web1, dst: remote, payload: udp(1000)}.pkt()
	emitNone := func([]byte) error { t.Fatal("emit called"); return nil }
	tests := []struct {
		name string
		pkt  []byte
		mtu  int
		buf  int
		want error
	}{
		{"DF set", ipSpec{df: true, src: web1, dst: remote, payload: udp(1000)}.pkt(), 576, 576, dataplane.ErrDontFragment},
		{"MTU below header + 8", big, 27, 576, dataplane.ErrMTU},
		{"buffer too small", big, 576, 100, dataplane.ErrShortBuffer},
		{"offset overflow", ipSpec{off: 65528, src: web1, dst: remote, payload: udp(1000)}.pkt(), 576, 576, dataplane.ErrFragOverflow},
		{"not IPv4", []byte{0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 576, 576, dataplane.ErrMalformed},
		{"short", big[:10], 576, 576, dataplane.ErrMalformed},
		{"total length beyond buffer", big[:500], 576, 576, dataplane.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := dataplane.Fragment(tc.pkt, tc.mtu, make([]byte, tc.buf), emitNone); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("fits: emitted as is", func(t *testing.T) {
		n := 0
		err := dataplane.Fragment(append(bytes.Clone(big), 1, 2, 3), 1500, nil, func(b []byte) error {
			n++
			if !bytes.Equal(b, big) {
				t.Error("packet changed")
			}
			return nil
		})
		if err != nil || n != 1 {
			t.Fatalf("err %v, %d emits", err, n)
		}
	})
	t.Run("emit error stops", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := dataplane.Fragment(big, 300, make([]byte, 300), func([]byte) error { n++; return stop })
		if err != stop || n != 1 {
			t.Fatalf("err %v after %d emits", err, n)
		}
	})
}

// TestForwardFragment checks the decision for a packet too big for its
// egress port without DF, and fragments the forwarded packet.
func TestForwardFragment(t *testing.T) {
	f, _ := newLab(t, nil)
	orig := ipSpec{id: 77, ttl: 20, src: web1, dst: remoteTun, payload: udp(1480)}.pkt() // 1500 > 1480
	d := f.Forward(bytes.Clone(orig), idCali, make([]byte, 576))
	if d.Action != dataplane.Encap || !d.Fragment || d.Port.ID != idTunl {
		t.Fatalf("%v fragment=%v port %v", d.Action, d.Fragment, d.Port)
	}
	if !bytes.Equal(d.Packet, forwarded(orig)) {
		t.Error("packet to fragment is not the forwarded packet")
	}
	frags := fragments(t, d.Packet, d.Port.MTU)
	if len(frags) != 2 {
		t.Fatalf("%d fragments", len(frags))
	}
	for _, fr := range frags {
		if fr.ip.TTL != 19 {
			t.Errorf("fragment TTL %d, want 19", fr.ip.TTL)
		}
	}
	if got := reassemble(t, d.Packet, frags, 1480, false); !bytes.Equal(got, orig[20:]) {
		t.Error("reassembled payload differs")
	}
	if s := f.Stats(); s.NeedFragment != 1 || s.Encapsulated != 1 {
		t.Errorf("stats %v", s.Map())
	}

	// A fragment whose pieces would need offsets past 65535 is dropped.
	d = f.Forward(ipSpec{off: 65000, src: web1, dst: remoteTun, payload: udp(1480)}.pkt(), idCali, nil)
	if d.Action != dataplane.Drop || d.Reason != dataplane.ReasonFragOverflow {
		t.Errorf("overflowing fragment: %v %v", d.Action, d.Reason)
	}
}

func TestForwardGSO(t *testing.T) {
	f, _ := newLab(t, nil)
	// A 64 KB TCP super-packet with DF whose segments are 1480 bytes fits
	// tunl0; with 1500-byte segments it does not.
	spec := ipSpec{df: true, proto: 6, src: web1, dst: remoteTun, payload: payload(64000)}
	d := f.ForwardGSO(spec.pkt(), idCali, 1480, make([]byte, 576))
	if d.Action != dataplane.Encap || d.Fragment {
		t.Fatalf("segments of 1480: %v %v fragment=%v", d.Action, d.Reason, d.Fragment)
	}
	orig := spec.pkt()
	d = f.ForwardGSO(bytes.Clone(orig), idCali, 1500, make([]byte, 576))
	checkError(t, d, wantError{
		typ: 3, code: 4, src: defaultSrc, dst: web1, tos: icmpTOS(0), info: 1480,
		quote: orig[:548], port: idCali, nextHop: web1, reason: dataplane.ReasonFragNeeded,
	})
	spec.df = false
	d = f.ForwardGSO(spec.pkt(), idCali, 1500, nil)
	if d.Action != dataplane.Encap || !d.Fragment {
		t.Fatalf("segments of 1500 without DF: %v fragment=%v", d.Action, d.Fragment)
	}
}

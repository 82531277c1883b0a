package encap_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/vrouter-lab/vrouter/encap"
)

// fixSum rewrites the checksum of the IPv4 header at the start of b using
// the test's own RFC 1071 sum.
func fixSum(b []byte) []byte {
	ihl := int(b[0]&0x0f) * 4
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], rfc1071(b[:ihl]))
	return b
}

func TestDecapsulateValid(t *testing.T) {
	d := mustDecapsulator(t, node1, node2)
	tests := []struct {
		name  string
		in    innerSpec
		out   outerSpec
		extra int // link padding after the outer total length
	}{
		{"icmp echo", innerSpec{payload: 56}, outerSpec{}, 0},
		{"outer DF", innerSpec{flags: layers.IPv4DontFragment}, outerSpec{flags: layers.IPv4DontFragment}, 0},
		{"outer options", innerSpec{}, outerSpec{options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}}, 0},
		{"inner options", innerSpec{options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}}, outerSpec{}, 0},
		{"inner fragment", innerSpec{flags: layers.IPv4MoreFragments, payload: 64}, outerSpec{}, 0},
		{"link padding", innerSpec{}, outerSpec{}, 18},
		{"from node2", innerSpec{}, outerSpec{src: node2, dst: node1}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := tc.in.build(t)
			pkt := tc.out.build(t, inner)
			outerLen := len(pkt)
			pkt = append(pkt, make([]byte, tc.extra)...)
			before := d.Accepted()
			got, from, r := d.Decapsulate(pkt)
			if r != encap.Accepted {
				t.Fatalf("dropped: %v", r)
			}
			wantFrom := tc.out.src
			if !wantFrom.IsValid() {
				wantFrom = node1
			}
			if from != wantFrom {
				t.Errorf("from = %v, want %v", from, wantFrom)
			}
			if !bytes.Equal(got, inner) {
				t.Fatalf("inner\n got % x\nwant % x", got, inner)
			}
			ihl := int(pkt[0]&0x0f) * 4
			if &got[0] != &pkt[ihl] || len(got) != outerLen-ihl {
				t.Fatal("inner is not the subslice pkt[ihl:total]")
			}
			if d.Accepted() != before+1 {
				t.Fatal("accepted counter not incremented")
			}
		})
	}
}

func TestDecapsulateDropReasons(t *testing.T) {
	inner := innerSpec{payload: 8}.build(t)
	valid := outerSpec{}.build(t, inner)
	mod := func(f func(b []byte) []byte) []byte { return f(slices.Clone(valid)) }
	tests := []struct {
		pkt  []byte
		want encap.Reason
	}{
		{nil, encap.ReasonOuterTruncated},
		{valid[:19], encap.ReasonOuterTruncated},
		{mod(func(b []byte) []byte { b[0] = 0x65; return fixSum(b) }), encap.ReasonOuterVersion},
		{mod(func(b []byte) []byte { b[0] = 0x44; return b }), encap.ReasonOuterHeaderLength},
		{mod(func(b []byte) []byte { b[0] = 0x4f; return b[:40] }), encap.ReasonOuterTruncated},
		{mod(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], 19); return fixSum(b) }), encap.ReasonOuterTotalLength},
		{valid[:len(valid)-1], encap.ReasonOuterTruncated},
		{mod(func(b []byte) []byte { b[10] ^= 0xff; return b }), encap.ReasonOuterChecksum},
		{mod(func(b []byte) []byte { b[8]--; return b }), encap.ReasonOuterChecksum}, // TTL changed, checksum stale
		{outerSpec{proto: layers.IPProtocolUDP}.build(t, inner), encap.ReasonNotIPIP},
		{outerSpec{proto: layers.IPProtocolIPv6}.build(t, inner), encap.ReasonNotIPIP},
		{outerSpec{flags: layers.IPv4MoreFragments}.build(t, inner), encap.ReasonOuterFragment},
		{outerSpec{fragOff: 185}.build(t, inner), encap.ReasonOuterFragment},
		{outerSpec{src: node3}.build(t, inner), encap.ReasonUnknownSource},
		{outerSpec{src: netip.MustParseAddr("10.0.0.1")}.build(t, inner), encap.ReasonUnknownSource},
		{outerSpec{}.build(t, inner[:19]), encap.ReasonInnerTruncated},
		{outerSpec{}.build(t, nil), encap.ReasonInnerTruncated},
		{outerSpec{}.build(t, func() []byte { b := slices.Clone(inner); b[0] = 0x65; return fixSum(b) }()), encap.ReasonInnerVersion},
		{outerSpec{}.build(t, func() []byte { b := slices.Clone(inner); b[0] = 0x43; return b }()), encap.ReasonInnerHeaderLength},
		{outerSpec{}.build(t, func() []byte { b := slices.Clone(inner); b[0] = 0x4f; return b }()), encap.ReasonInnerTruncated},
		{outerSpec{}.build(t, inner[:len(inner)-1]), encap.ReasonInnerTotalLength},
		{outerSpec{}.build(t, append(slices.Clone(inner), 0)), encap.ReasonInnerTotalLength},
		{outerSpec{}.build(t, func() []byte { b := slices.Clone(inner); b[11] ^= 1; return b }()), encap.ReasonInnerChecksum},
		{outerSpec{tos: 0x03}.build(t, inner), encap.ReasonECNNotECT},
	}
	d := mustDecapsulator(t, node1, node2)
	counts := map[encap.Reason]uint64{}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%d_%v", i, tc.want), func(t *testing.T) {
			pkt := slices.Clone(tc.pkt)
			got, _, r := d.Decapsulate(pkt)
			if r != tc.want {
				t.Fatalf("reason = %v, want %v", r, tc.want)
			}
			if got != nil {
				t.Fatal("a dropped packet returned an inner packet")
			}
			counts[tc.want]++
		})
	}
	for _, r := range encap.Reasons() {
		if counts[r] == 0 {
			t.Errorf("no test case for %v", r)
		}
		if d.Dropped(r) != counts[r] {
			t.Errorf("Dropped(%v) = %d, want %d", r, d.Dropped(r), counts[r])
		}
	}
	if d.Accepted() != 0 {
		t.Errorf("accepted %d", d.Accepted())
	}
	byName := map[string]uint64{}
	for _, c := range d.Counters() {
		byName[c.Name] = c.Value
	}
	if byName["outer_checksum"] != 2 || byName["unknown_source"] != 2 || byName["accepted"] != 0 || byName["ecn_ce_not_ect"] != 1 {
		t.Errorf("counters %v", d.Counters())
	}
}

// TestDecapsulateECN walks RFC 6040's decapsulation table (Figure 4), as
// Linux's INET_ECN_decapsulate implements it.
func TestDecapsulateECN(t *testing.T) {
	const (
		notECT = 0
		ect1   = 1
		ect0   = 2
		ce     = 3
		drop   = -1
	)
	names := []string{"Not-ECT", "ECT(1)", "ECT(0)", "CE"}
	// want[inner][outer] = inner ECN after decapsulation.
	want := [4][4]int{
		notECT: {notECT: notECT, ect1: notECT, ect0: notECT, ce: drop},
		ect1:   {notECT: ect1, ect1: ect1, ect0: ect1, ce: ce},
		ect0:   {notECT: ect0, ect1: ect1, ect0: ect0, ce: ce},
		ce:     {notECT: ce, ect1: ce, ect0: ce, ce: ce},
	}
	for in := 0; in < 4; in++ {
		for out := 0; out < 4; out++ {
			t.Run(names[in]+" under "+names[out], func(t *testing.T) {
				d := mustDecapsulator(t, node1)
				inner := innerSpec{tos: 0xb8 | uint8(in)}.build(t)
				pkt := outerSpec{tos: uint8(out)}.build(t, inner)
				got, _, r := d.Decapsulate(pkt)
				if want[in][out] == drop {
					if r != encap.ReasonECNNotECT {
						t.Fatalf("reason %v, want %v", r, encap.ReasonECNNotECT)
					}
					return
				}
				if r != encap.Accepted {
					t.Fatalf("dropped: %v", r)
				}
				if e := int(got[1] & 3); e != want[in][out] {
					t.Fatalf("inner ECN %s, want %s", names[e], names[want[in][out]])
				}
				if got[1]&^3 != 0xb8 {
					t.Fatalf("inner DSCP changed: %#02x", got[1])
				}
				if !headerValid(got) {
					t.Fatal("inner header checksum not updated")
				}
				_, il := decode(t, append(slices.Clone(pkt[:20]), got...)) // gopacket agrees
				if il.TOS != got[1] {
					t.Fatalf("gopacket reads TOS %#02x", il.TOS)
				}
				wantCE := uint64(0)
				if out == ce && in != ce {
					wantCE = 1
				}
				wantAnomaly := uint64(0)
				if in == notECT && (out == ect0 || out == ect1) {
					wantAnomaly = 1
				}
				for _, c := range d.Counters() {
					if c.Name == "ecn_ce_marked" && c.Value != wantCE || c.Name == "ecn_not_ect_outer_ect" && c.Value != wantAnomaly {
						t.Errorf("counter %s = %d", c.Name, c.Value)
					}
				}
			})
		}
	}
}

func TestRoundTrip(t *testing.T) {
	d := mustDecapsulator(t, node1)
	for _, spec := range []innerSpec{
		{payload: 0}, {payload: 1}, {payload: 1472, flags: layers.IPv4DontFragment},
		{tos: 0x03, ttl: 1}, {tos: 0x01}, {tos: 0x02}, {tos: 0xfc},
	} {
		inner := spec.build(t)
		buf := make([]byte, 20+len(inner))
		copy(buf[20:], inner)
		out, err := encap.EncapsulateInPlace(buf, 20, node1, node2)
		if err != nil {
			t.Fatal(err)
		}
		got, from, r := d.Decapsulate(out)
		if r != encap.Accepted || from != node1 {
			t.Fatalf("%+v: reason %v from %v", spec, r, from)
		}
		if !bytes.Equal(got, inner) {
			t.Fatalf("%+v: round trip changed the packet\n got % x\nwant % x", spec, got, inner)
		}
	}
}

func TestAllowlist(t *testing.T) {
	var d encap.Decapsulator // the zero value knows no nodes
	if d.Allowed(node1) || d.Nodes() != nil {
		t.Fatal("zero Decapsulator allows a node")
	}
	if err := d.RemoveNodes(node1); err != nil {
		t.Fatal(err)
	}
	if err := d.AddNodes(node2, node1, node2); err != nil {
		t.Fatal(err)
	}
	if got := d.Nodes(); !slices.Equal(got, []netip.Addr{node1, node2}) {
		t.Fatalf("nodes %v", got)
	}
	if !d.Allowed(netip.AddrFrom16(node1.As16())) {
		t.Fatal("an IPv4-mapped node address is not allowed")
	}
	if err := d.AddNodes(node3); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveNodes(node1, netip.MustParseAddr("1.2.3.4")); err != nil {
		t.Fatal(err)
	}
	if got := d.Nodes(); !slices.Equal(got, []netip.Addr{node2, node3}) {
		t.Fatalf("nodes %v", got)
	}
	if err := d.SetNodes([]netip.Addr{node1}); err != nil {
		t.Fatal(err)
	}
	if got := d.Nodes(); !slices.Equal(got, []netip.Addr{node1}) {
		t.Fatalf("nodes %v", got)
	}
	v6 := netip.MustParseAddr("2001:db8::1")
	for _, err := range []error{d.SetNodes([]netip.Addr{v6}), d.AddNodes(netip.Addr{}), d.RemoveNodes(v6)} {
		if !errors.Is(err, encap.ErrNotIPv4Node) {
			t.Fatalf("err = %v, want ErrNotIPv4Node", err)
		}
	}
	if _, err := encap.NewDecapsulator(v6); !errors.Is(err, encap.ErrNotIPv4Node) {
		t.Fatalf("NewDecapsulator(v6): %v", err)
	}
	if got := d.Nodes(); !slices.Equal(got, []netip.Addr{node1}) {
		t.Fatalf("a failed update changed the nodes: %v", got)
	}
	if d.Allowed(v6) || d.Allowed(node2) {
		t.Fatal("unexpected node allowed")
	}
}

// TestAllowlistConcurrentUpdates decapsulates on several goroutines while
// another rewrites the allowlist. node1 is always allowed and must always
// be accepted; node3 comes and goes and is either accepted or dropped as
// an unknown source. Run with -race.
func TestAllowlistConcurrentUpdates(t *testing.T) {
	d := mustDecapsulator(t, node1)
	inner := innerSpec{}.build(t)
	from1 := outerSpec{src: node1}.build(t, inner)
	from3 := outerSpec{src: node3}.build(t, inner)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var seen3 [2]atomic.Int64 // [0] dropped, [1] accepted
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b1, b3 := slices.Clone(from1), slices.Clone(from3)
			for i := 0; !stop.Load() || i < 1000; i++ {
				if _, _, r := d.Decapsulate(b1); r != encap.Accepted {
					errs <- fmt.Errorf("node1 dropped: %v", r)
					return
				}
				switch _, _, r := d.Decapsulate(b3); r {
				case encap.Accepted:
					seen3[1].Add(1)
				case encap.ReasonUnknownSource:
					seen3[0].Add(1)
				default:
					errs <- fmt.Errorf("node3: %v", r)
					return
				}
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		var err error
		switch i % 4 {
		case 0:
			err = d.AddNodes(node3)
		case 1:
			err = d.RemoveNodes(node3)
		case 2:
			err = d.SetNodes([]netip.Addr{node1, node2, node3})
		case 3:
			err = d.SetNodes([]netip.Addr{node2, node1})
		}
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed(node1) {
			t.Fatal("node1 vanished from the allowlist")
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d.Dropped(encap.ReasonUnknownSource) != uint64(seen3[0].Load()) {
		t.Fatalf("unknown_source counter %d, goroutines saw %d", d.Dropped(encap.ReasonUnknownSource), seen3[0].Load())
	}
}

// TestDecapsulateNeverPanics feeds every truncation and every single-byte
// corruption of a valid packet.
func TestDecapsulateNeverPanics(t *testing.T) {
	d := mustDecapsulator(t, node1)
	valid := outerSpec{options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}}.build(t, innerSpec{payload: 4}.build(t))
	for n := 0; n <= len(valid); n++ {
		d.Decapsulate(slices.Clone(valid[:n]))
	}
	for i := range valid {
		for _, v := range []byte{0x00, 0xff, valid[i] ^ 0x01, valid[i] ^ 0x80} {
			b := slices.Clone(valid)
			b[i] = v
			d.Decapsulate(b)
		}
	}
	var sum uint64
	for _, c := range d.Counters()[:len(encap.Reasons())+1] {
		sum += c.Value
	}
	if want := uint64(len(valid) + 1 + 4*len(valid)); sum != want {
		t.Fatalf("counters sum to %d, want one per call (%d)", sum, want)
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range append([]encap.Reason{encap.Accepted}, encap.Reasons()...) {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Fatalf("reason %d has name %q", r, s)
		}
		seen[s] = true
	}
	if encap.Reason(200).String() != "unknown" {
		t.Fatal("out-of-range reason")
	}
	if encap.Accepted.String() != "accepted" || encap.ReasonOuterFragment.String() != "outer_fragment" {
		t.Fatal("names changed")
	}
}

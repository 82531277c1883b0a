package policy

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestIndexAgreesWithScan: on random chains long enough to be indexed,
// with values drawn from small sets so that rules overlap, the index
// picks the same rule as checking every rule in order.
func TestIndexAgreesWithScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	protos := []uint8{0, ProtoTCP, ProtoUDP, ProtoICMP, 47}
	addr := func() netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(2)), byte(r.IntN(4))}) }
	prefix := func() []netip.Prefix {
		if r.IntN(3) == 0 {
			return nil
		}
		ps := []netip.Prefix{netip.PrefixFrom(addr(), 30+r.IntN(3)).Masked()}
		if r.IntN(4) == 0 {
			ps = append(ps, netip.PrefixFrom(addr(), 32))
		}
		return ps
	}
	ports := func() []PortRange {
		if r.IntN(2) == 0 {
			return nil
		}
		lo := uint16(78 + r.IntN(5))
		return []PortRange{{lo, lo + uint16(r.IntN(3))}}
	}
	actions := []Action{Allow, Deny, Log, Pass}
	for round := 0; round < 200; round++ {
		var rules []CompiledRule
		for i := 0; i < 32+r.IntN(100); i++ {
			cr := CompiledRule{Policy: "p", Index: i, Action: actions[r.IntN(4)], Protocol: protos[r.IntN(len(protos))],
				ICMPType: -1, ICMPCode: -1, NotICMPType: -1, NotICMPCode: -1}
			if r.IntN(6) == 0 {
				cr.NotProtocol = protos[1+r.IntN(len(protos)-1)]
			}
			if hasPorts(cr.Protocol) {
				cr.Dst.Ports, cr.Src.Ports = ports(), ports()
				if r.IntN(5) == 0 {
					cr.Dst.NotPorts = ports()
				}
			}
			if cr.Protocol == ProtoICMP && r.IntN(2) == 0 {
				cr.ICMPType = int16(r.IntN(2) * 8)
			}
			cr.Src.Nets, cr.Dst.Nets = prefix(), prefix()
			if r.IntN(5) == 0 {
				cr.Src.NotNets = prefix()
			}
			if r.IntN(5) == 0 {
				cr.Src.Selected = true
				cr.Src.Addrs = []netip.Addr{addr(), addr()}
			}
			rules = append(rules, cr)
		}
		ch := &Chain{Policed: true, Rules: rules}
		indexed := NewMatcher(ch, Ingress, nil)
		if indexed.idx == nil {
			t.Fatal("no index")
		}
		scan := NewMatcher(ch, Ingress, nil)
		scan.idx = nil
		for k := 0; k < 200; k++ {
			f := Flow{Src: U32(addr()), Dst: U32(addr()), Proto: protos[1+r.IntN(len(protos)-1)],
				SrcPort: uint16(77 + r.IntN(8)), DstPort: uint16(77 + r.IntN(8)), ICMPType: uint8(r.IntN(2) * 8)}
			v1, i1 := indexed.Evaluate(&f)
			v2, i2 := scan.Evaluate(&f)
			if v1 != v2 || i1 != i2 {
				t.Fatalf("round %d flow %+v: index %v rule %d, scan %v rule %d", round, f, v1, i1, v2, i2)
			}
		}
	}
}

// A chain too diverse to index within bounds still evaluates right.
func TestIndexBounded(t *testing.T) {
	var rules []CompiledRule
	for i := 0; i < 20000; i++ {
		rules = append(rules, CompiledRule{Policy: "p", Index: i, Action: Allow, Protocol: ProtoTCP, ICMPType: -1, ICMPCode: -1, NotICMPType: -1, NotICMPCode: -1,
			Src: Match{Nets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)}}})
	}
	m := NewMatcher(&Chain{Policed: true, Rules: rules}, Ingress, nil)
	if got := len(m.idx.fields[2].starts); got != 1 {
		t.Errorf("source field has %d intervals, want 1 (over the bound)", got)
	}
	f := Flow{Src: U32(netip.AddrFrom4([4]byte{10, 1, 48, 57})), Dst: 1, Proto: ProtoTCP}
	if v, i := m.Evaluate(&f); v != Allowed || i != 12345 {
		t.Errorf("%v rule %d, want allowed by rule 12345", v, i)
	}
}

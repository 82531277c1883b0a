package nftpolicy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// Fields of the IPv4 and transport headers the rules load (offsets from
// the start of the header; the table's family is ip, so the network
// header is IPv4).
const (
	offSrcAddr  = 12
	offDstAddr  = 16
	offSrcPort  = 0
	offDstPort  = 2
	offICMPType = 0
)

// reg is the register every match loads into and compares from.
const reg = 1

// builder accumulates the expressions of one rule. The anonymous sets it
// looks up go into the batch as they are made, before the rule.
type builder struct {
	conn  *nftables.Conn
	table *nftables.Table
	exprs []expr.Any
	err   error
}

// cmp appends a comparison of the register with data.
func (b *builder) cmp(op expr.CmpOp, data []byte) {
	b.exprs = append(b.exprs, &expr.Cmp{Op: op, Register: reg, Data: data})
}

// payload appends a load of n bytes at off of a header.
func (b *builder) payload(base expr.PayloadBase, off, n uint32) {
	b.exprs = append(b.exprs, &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n})
}

// meta appends a load of a meta key.
func (b *builder) meta(k expr.MetaKey) {
	b.exprs = append(b.exprs, &expr.Meta{Key: k, Register: reg})
}

// ifname matches the input or output interface name; a name ending in
// "*" matches by prefix, as nft's "cali*".
func (b *builder) ifname(k expr.MetaKey, name string) {
	b.meta(k)
	if n := len(name); n > 0 && name[n-1] == '*' {
		b.cmp(expr.CmpOpEq, []byte(name[:n-1]))
		return
	}
	data := make([]byte, 16) // IFNAMSIZ, NUL padded
	copy(data, name)
	b.cmp(expr.CmpOpEq, data)
}

// lookup appends a lookup of the register in a new constant anonymous
// interval set of the given key type; invert negates it.
func (b *builder) lookup(key nftables.SetDatatype, elems []nftables.SetElement, invert bool) {
	s := &nftables.Set{Table: b.table, Anonymous: true, Constant: true, Interval: true, KeyType: key}
	if err := b.conn.AddSet(s, elems); err != nil && b.err == nil {
		b.err = fmt.Errorf("add set: %w", err)
	}
	b.exprs = append(b.exprs, &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, Invert: invert})
}

// ctState appends "ct state <bits>": the rule goes on when the packet's
// conntrack state has one of the bits.
func (b *builder) ctState(bits uint32) {
	b.exprs = append(b.exprs,
		&expr.Ct{Register: reg, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
	)
	b.cmp(expr.CmpOpNeq, make([]byte, 4))
}

// ctReply appends "ct direction reply".
func (b *builder) ctReply() {
	b.exprs = append(b.exprs, &expr.Ct{Register: reg, Key: expr.CtKeyDIRECTION})
	b.cmp(expr.CmpOpEq, []byte{1}) // IP_CT_DIR_REPLY
}

// counter appends a counter.
func (b *builder) counter() { b.exprs = append(b.exprs, &expr.Counter{}) }

// verdict appends a verdict; jumps and gotos name their chain.
func (b *builder) verdict(k expr.VerdictKind, chain string) {
	b.exprs = append(b.exprs, &expr.Verdict{Kind: k, Chain: chain})
}

// rule matches one compiled rule. It reports false when the rule can
// match no packet (a selector that selects no endpoint): such a rule is
// left out.
func (b *builder) rule(r *policy.CompiledRule) bool {
	if r.Src.Selected && len(r.Src.Addrs) == 0 || r.Dst.Selected && len(r.Dst.Addrs) == 0 {
		return false
	}
	if r.Protocol != 0 {
		b.meta(expr.MetaKeyL4PROTO)
		b.cmp(expr.CmpOpEq, []byte{r.Protocol})
	}
	if r.NotProtocol != 0 {
		b.meta(expr.MetaKeyL4PROTO)
		b.cmp(expr.CmpOpNeq, []byte{r.NotProtocol})
	}
	b.addrs(offSrcAddr, &r.Src)
	b.addrs(offDstAddr, &r.Dst)
	b.ports(offSrcPort, &r.Src)
	b.ports(offDstPort, &r.Dst)
	if r.ICMPType >= 0 {
		b.payload(expr.PayloadBaseTransportHeader, offICMPType, 1)
		b.cmp(expr.CmpOpEq, []byte{byte(r.ICMPType)})
	}
	if r.ICMPCode >= 0 {
		b.payload(expr.PayloadBaseTransportHeader, offICMPType+1, 1)
		b.cmp(expr.CmpOpEq, []byte{byte(r.ICMPCode)})
	}
	switch {
	case r.NotICMPType >= 0 && r.NotICMPCode >= 0:
		// Not this (type, code): compare both bytes at once.
		b.payload(expr.PayloadBaseTransportHeader, offICMPType, 2)
		b.cmp(expr.CmpOpNeq, []byte{byte(r.NotICMPType), byte(r.NotICMPCode)})
	case r.NotICMPType >= 0:
		b.payload(expr.PayloadBaseTransportHeader, offICMPType, 1)
		b.cmp(expr.CmpOpNeq, []byte{byte(r.NotICMPType)})
	}
	return true
}

// addrs matches a source or destination's nets and selected addresses.
func (b *builder) addrs(off uint32, m *policy.Match) {
	load := func() { b.payload(expr.PayloadBaseNetworkHeader, off, 4) }
	if len(m.Nets) > 0 {
		load()
		b.lookup(nftables.TypeIPAddr, addrIntervals(m.Nets, nil), false)
	}
	if len(m.NotNets) > 0 {
		load()
		b.lookup(nftables.TypeIPAddr, addrIntervals(m.NotNets, nil), true)
	}
	if m.Selected {
		load()
		b.lookup(nftables.TypeIPAddr, addrIntervals(nil, m.Addrs), false)
	}
	if len(m.NotAddrs) > 0 {
		load()
		b.lookup(nftables.TypeIPAddr, addrIntervals(nil, m.NotAddrs), true)
	}
}

// ports matches a source or destination's ports.
func (b *builder) ports(off uint32, m *policy.Match) {
	if len(m.Ports) > 0 {
		b.payload(expr.PayloadBaseTransportHeader, off, 2)
		b.lookup(nftables.TypeInetService, portIntervals(m.Ports), false)
	}
	if len(m.NotPorts) > 0 {
		b.payload(expr.PayloadBaseTransportHeader, off, 2)
		b.lookup(nftables.TypeInetService, portIntervals(m.NotPorts), true)
	}
}

// span is an inclusive range of unsigned values.
type span struct{ lo, hi uint64 }

// intervals turns spans into an interval set's elements: each merged run
// [lo, hi] becomes lo and an interval end at hi+1 (none when hi is the
// largest value of the key's width), as nft writes them.
func intervals(spans []span, width int, max uint64) []nftables.SetElement {
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && (s.lo <= merged[n-1].hi || merged[n-1].hi != max && s.lo == merged[n-1].hi+1) {
			merged[n-1].hi = max64(merged[n-1].hi, s.hi)
			continue
		}
		merged = append(merged, s)
	}
	key := func(v uint64) []byte {
		b := binary.BigEndian.AppendUint64(nil, v)
		return b[8-width:]
	}
	var elems []nftables.SetElement
	for _, s := range merged {
		elems = append(elems, nftables.SetElement{Key: key(s.lo)})
		if s.hi != max {
			elems = append(elems, nftables.SetElement{Key: key(s.hi + 1), IntervalEnd: true})
		}
	}
	return elems
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// addrIntervals are the elements of an IPv4 address set holding the
// prefixes and the single addresses.
func addrIntervals(nets []netip.Prefix, addrs []netip.Addr) []nftables.SetElement {
	var spans []span
	for _, p := range nets {
		p = p.Masked()
		lo := uint64(policy.U32(p.Addr()))
		spans = append(spans, span{lo, lo | (1<<(32-p.Bits()) - 1)})
	}
	for _, a := range addrs {
		v := uint64(policy.U32(a))
		spans = append(spans, span{v, v})
	}
	return intervals(spans, 4, 1<<32-1)
}

// portIntervals are the elements of a port set holding the ranges.
func portIntervals(rs []policy.PortRange) []nftables.SetElement {
	spans := make([]span, 0, len(rs))
	for _, r := range rs {
		spans = append(spans, span{uint64(r.First), uint64(r.Last)})
	}
	return intervals(spans, 2, 1<<16-1)
}

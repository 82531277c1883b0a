package encap

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/vrouter-lab/vrouter/header"
)

// Reason says why [Decapsulator.Decapsulate] dropped a packet; Accepted
// (the zero value) means it did not.
type Reason uint8

// Decapsulation outcomes, in the order the checks run.
const (
	// Accepted: the packet was decapsulated.
	Accepted Reason = iota
	// ReasonOuterTruncated: shorter than 20 bytes, than its outer header
	// length, or than its outer total length.
	ReasonOuterTruncated
	// ReasonOuterVersion: the outer version is not 4.
	ReasonOuterVersion
	// ReasonOuterHeaderLength: the outer IHL is below 5 (20 bytes).
	ReasonOuterHeaderLength
	// ReasonOuterTotalLength: the outer total length is shorter than the
	// outer header.
	ReasonOuterTotalLength
	// ReasonOuterChecksum: the outer header checksum is wrong.
	ReasonOuterChecksum
	// ReasonNotIPIP: the outer protocol is not 4.
	ReasonNotIPIP
	// ReasonOuterFragment: the outer packet is a fragment (MF set or a
	// non-zero offset). Linux reassembles before ipip_rcv; this engine
	// does not reassemble, so fragments are dropped.
	ReasonOuterFragment
	// ReasonUnknownSource: the outer source is not a known node.
	ReasonUnknownSource
	// ReasonInnerTruncated: the outer payload is shorter than 20 bytes or
	// than the inner header length.
	ReasonInnerTruncated
	// ReasonInnerVersion: the inner version is not 4.
	ReasonInnerVersion
	// ReasonInnerHeaderLength: the inner IHL is below 5.
	ReasonInnerHeaderLength
	// ReasonInnerTotalLength: the inner total length differs from the
	// outer payload length.
	ReasonInnerTotalLength
	// ReasonInnerChecksum: the inner header checksum is wrong.
	ReasonInnerChecksum
	// ReasonECNNotECT: the outer ECN field is CE but the inner packet is
	// not ECN-capable, so the congestion mark cannot be propagated; RFC
	// 6040 section 4.2 and Linux's __INET_ECN_decapsulate drop it.
	ReasonECNNotECT

	numReasons
)

var reasonNames = [numReasons]string{
	Accepted:                "accepted",
	ReasonOuterTruncated:    "outer_truncated",
	ReasonOuterVersion:      "outer_version",
	ReasonOuterHeaderLength: "outer_header_length",
	ReasonOuterTotalLength:  "outer_total_length",
	ReasonOuterChecksum:     "outer_checksum",
	ReasonNotIPIP:           "not_ipip",
	ReasonOuterFragment:     "outer_fragment",
	ReasonUnknownSource:     "unknown_source",
	ReasonInnerTruncated:    "inner_truncated",
	ReasonInnerVersion:      "inner_version",
	ReasonInnerHeaderLength: "inner_header_length",
	ReasonInnerTotalLength:  "inner_total_length",
	ReasonInnerChecksum:     "inner_checksum",
	ReasonECNNotECT:         "ecn_ce_not_ect",
}

// String returns the reason's counter name, e.g. "outer_checksum".
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons returns every drop reason (Accepted excluded) in check order.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := Accepted + 1; r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// ErrNotIPv4Node is returned when a node address given to a Decapsulator is
// not an IPv4 address.
var ErrNotIPv4Node = errors.New("encap: node address is not an IPv4 address")

// nodeSet is an immutable, sorted set of IPv4 addresses.
type nodeSet struct {
	addrs []uint32
}

func (s *nodeSet) contains(a uint32) bool {
	if s == nil {
		return false
	}
	_, ok := slices.BinarySearch(s.addrs, a)
	return ok
}

// Counter is one named decapsulation counter.
type Counter struct {
	Name  string // "accepted", a Reason's name, "ecn_ce_marked" or "ecn_not_ect_outer_ect"
	Value uint64
}

// A Decapsulator decapsulates IPIP packets from known nodes. Readers never
// block: the allowlist is an immutable set behind an atomic pointer, which
// the update methods replace (copy on write). The zero value is ready to
// use and knows no nodes. A Decapsulator must not be copied after first use.
type Decapsulator struct {
	nodes atomic.Pointer[nodeSet]
	mu    sync.Mutex // serialises writers of nodes

	counts [numReasons]atomic.Uint64 // Accepted and every drop reason
	// ceMarked counts accepted packets whose inner ECN became CE from the
	// outer header; notECTOuterECT counts accepted packets with an
	// ECN-capable outer and a not-ECT inner header (Linux logs these as
	// "non-ECT from ... with TOS=..." and delivers them).
	ceMarked       atomic.Uint64
	notECTOuterECT atomic.Uint64
}

// NewDecapsulator returns a Decapsulator accepting the given node
// addresses as outer sources.
func NewDecapsulator(nodes ...netip.Addr) (*Decapsulator, error) {
	d := &Decapsulator{}
	if err := d.SetNodes(nodes); err != nil {
		return nil, err
	}
	return d, nil
}

// SetNodes replaces the allowlist of outer sources with nodes.
func (d *Decapsulator) SetNodes(nodes []netip.Addr) error {
	set, err := toSet(nodes)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.nodes.Store(&nodeSet{addrs: set})
	d.mu.Unlock()
	return nil
}

// AddNodes adds nodes to the allowlist.
func (d *Decapsulator) AddNodes(nodes ...netip.Addr) error {
	add, err := toSet(nodes)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var cur []uint32
	if s := d.nodes.Load(); s != nil {
		cur = s.addrs
	}
	merged := append(slices.Clone(cur), add...)
	slices.Sort(merged)
	d.nodes.Store(&nodeSet{addrs: slices.Compact(merged)})
	return nil
}

// RemoveNodes removes nodes from the allowlist; addresses not in it are
// ignored.
func (d *Decapsulator) RemoveNodes(nodes ...netip.Addr) error {
	del, err := toSet(nodes)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.nodes.Load()
	if s == nil {
		return nil
	}
	kept := make([]uint32, 0, len(s.addrs))
	for _, a := range s.addrs {
		if _, found := slices.BinarySearch(del, a); !found {
			kept = append(kept, a)
		}
	}
	d.nodes.Store(&nodeSet{addrs: kept})
	return nil
}

// Nodes returns the allowlist, sorted.
func (d *Decapsulator) Nodes() []netip.Addr {
	s := d.nodes.Load()
	if s == nil {
		return nil
	}
	out := make([]netip.Addr, len(s.addrs))
	for i, a := range s.addrs {
		out[i] = addrFromUint32(a)
	}
	return out
}

// Allowed reports whether a is in the allowlist.
func (d *Decapsulator) Allowed(a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return false
	}
	b := a.As4()
	return d.nodes.Load().contains(binary.BigEndian.Uint32(b[:]))
}

// Decapsulate validates the IPIP packet pkt and returns the inner IPv4
// packet (a subslice of pkt, not a copy), the outer source address and
// Accepted; or nil, the outer source if the header got far enough to have
// one, and the drop reason. Each call increments exactly one of the
// Accepted and drop-reason counters.
//
// Bytes after the outer total length (link padding) are ignored. When the
// outer header carries a congestion mark the inner header is modified in
// place as RFC 6040 prescribes (inner ECT → CE, inner ECT(0) → ECT(1) under
// an ECT(1) outer, as Linux's INET_ECN_decapsulate does) and its checksum
// is updated.
func (d *Decapsulator) Decapsulate(pkt []byte) (inner []byte, from netip.Addr, r Reason) {
	inner, from, r = d.decapsulate(pkt)
	d.counts[r].Add(1)
	if r != Accepted {
		return nil, from, r
	}
	return inner, from, Accepted
}

func (d *Decapsulator) decapsulate(pkt []byte) ([]byte, netip.Addr, Reason) {
	// Outer header.
	ip := header.IPv4(pkt)
	if len(pkt) < header.IPv4MinimumSize {
		return nil, netip.Addr{}, ReasonOuterTruncated
	}
	if ip.Version() != header.IPv4Version {
		return nil, netip.Addr{}, ReasonOuterVersion
	}
	ihl := ip.HeaderLength()
	if ihl < header.IPv4MinimumSize {
		return nil, netip.Addr{}, ReasonOuterHeaderLength
	}
	if ihl > len(pkt) {
		return nil, netip.Addr{}, ReasonOuterTruncated
	}
	tot := int(ip.TotalLength())
	if tot < ihl {
		return nil, netip.Addr{}, ReasonOuterTotalLength
	}
	if tot > len(pkt) {
		return nil, netip.Addr{}, ReasonOuterTruncated
	}
	if !ip.IsChecksumValid() {
		return nil, netip.Addr{}, ReasonOuterChecksum
	}
	src := ip.SourceUint32()
	from := addrFromUint32(src)
	if ip.Protocol() != ProtocolIPIP {
		return nil, from, ReasonNotIPIP
	}
	if ip.IsFragment() {
		return nil, from, ReasonOuterFragment
	}
	if !d.nodes.Load().contains(src) {
		return nil, from, ReasonUnknownSource
	}

	// Inner header.
	in := header.IPv4(pkt[ihl:tot:tot])
	if len(in) < header.IPv4MinimumSize {
		return nil, from, ReasonInnerTruncated
	}
	if in.Version() != header.IPv4Version {
		return nil, from, ReasonInnerVersion
	}
	iihl := in.HeaderLength()
	if iihl < header.IPv4MinimumSize {
		return nil, from, ReasonInnerHeaderLength
	}
	if iihl > len(in) {
		return nil, from, ReasonInnerTruncated
	}
	if int(in.TotalLength()) != len(in) {
		return nil, from, ReasonInnerTotalLength
	}
	if !in.IsChecksumValid() {
		return nil, from, ReasonInnerChecksum
	}

	// ECN (RFC 6040 section 4.2; Linux __INET_ECN_decapsulate and
	// INET_ECN_decapsulate in include/net/inet_ecn.h).
	outerECN, innerECN := ip.TOS()&ecnMask, in.TOS()&ecnMask
	switch {
	case innerECN == ecnNotECT:
		switch outerECN {
		case ecnCE:
			return nil, from, ReasonECNNotECT
		case ecnECT0, ecnECT1:
			d.notECTOuterECT.Add(1) // delivered unchanged
		}
	case outerECN == ecnCE && innerECN != ecnCE:
		in.SetTOS(in.TOS() | ecnCE)
		in.UpdateChecksum()
		d.ceMarked.Add(1)
	case outerECN == ecnECT1 && innerECN == ecnECT0:
		in.SetTOS(in.TOS()&^ecnMask | ecnECT1)
		in.UpdateChecksum()
	}
	return in, from, Accepted
}

// Accepted returns how many packets Decapsulate accepted.
func (d *Decapsulator) Accepted() uint64 { return d.counts[Accepted].Load() }

// Dropped returns how many packets Decapsulate dropped for reason r.
func (d *Decapsulator) Dropped(r Reason) uint64 {
	if r == Accepted || r >= numReasons {
		return 0
	}
	return d.counts[r].Load()
}

// Counters returns every counter by name: "accepted", one per drop reason
// (see [Reason.String]), then "ecn_ce_marked" (accepted packets whose
// inner header was marked CE from the outer) and "ecn_not_ect_outer_ect"
// (accepted packets with an ECN-capable outer over a not-ECT inner header).
func (d *Decapsulator) Counters() []Counter {
	out := make([]Counter, 0, numReasons+2)
	for r := Accepted; r < numReasons; r++ {
		out = append(out, Counter{Name: r.String(), Value: d.counts[r].Load()})
	}
	out = append(out,
		Counter{Name: "ecn_ce_marked", Value: d.ceMarked.Load()},
		Counter{Name: "ecn_not_ect_outer_ect", Value: d.notECTOuterECT.Load()})
	return out
}

func toSet(nodes []netip.Addr) ([]uint32, error) {
	set := make([]uint32, 0, len(nodes))
	for _, a := range nodes {
		a = a.Unmap()
		if !a.Is4() {
			return nil, ErrNotIPv4Node
		}
		b := a.As4()
		set = append(set, binary.BigEndian.Uint32(b[:]))
	}
	slices.Sort(set)
	return slices.Compact(set), nil
}

func addrFromUint32(a uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], a)
	return netip.AddrFrom4(b)
}

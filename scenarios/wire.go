package scenarios

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/vrouter-lab/vrouter/pcap"
)

// filter matches packets of a capture. Unset fields match anything.
type filter struct {
	text               string // as written, for messages
	iface              string
	proto              *uint8
	src, dst           *netip.Prefix
	ttl                *uint8
	df                 *bool
	icmpType, icmpCode *uint8
	port               *uint16 // TCP or UDP source or destination port
	mtu                *uint16 // next-hop MTU of a frag-needed (RFC 1191)
	inner              *filter // the packet inside IPIP
	quoted             *filter // the header an ICMP error quotes
}

// ipPacket is one decoded IPv4 packet of a capture (or the inner packet of
// an IPIP one).
type ipPacket struct {
	index              int // 1-based frame number, as tshark counts
	iface              string
	time               time.Time
	src, dst           netip.Addr
	proto, ttl         uint8
	df                 bool
	icmp               bool
	icmpType, icmpCode uint8
	sport, dport       uint16
	mtu                uint16 // next-hop MTU of ICMP type 3 code 4
	inner              *ipPacket
	quoted             *ipPacket // what an ICMP error quotes
}

// decodeIPv4 decodes a raw IPv4 packet (LINKTYPE_RAW); ok is false for
// anything else.
func decodeIPv4(data []byte, depth int) (*ipPacket, bool) {
	var ip layers.IPv4
	if err := ip.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
		return nil, false
	}
	src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
	dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
	p := &ipPacket{src: src, dst: dst, proto: uint8(ip.Protocol), ttl: ip.TTL, df: ip.Flags&layers.IPv4DontFragment != 0}
	payload := ip.Payload
	if ip.FragOffset != 0 {
		return p, true // a later fragment: no transport header
	}
	switch ip.Protocol {
	case layers.IPProtocolICMPv4:
		if len(payload) >= 2 {
			p.icmp, p.icmpType, p.icmpCode = true, payload[0], payload[1]
		}
		if len(payload) >= 8 && p.icmpType == 3 && p.icmpCode == 4 {
			p.mtu = binary.BigEndian.Uint16(payload[6:8])
		}
		if len(payload) > 8 && isICMPError(p.icmpType) && depth < 2 {
			p.quoted, _ = decodeIPv4(payload[8:], depth+1)
		}
	case layers.IPProtocolTCP, layers.IPProtocolUDP:
		if len(payload) >= 4 {
			p.sport, p.dport = binary.BigEndian.Uint16(payload), binary.BigEndian.Uint16(payload[2:])
		}
	case layers.IPProtocolIPv4:
		if depth < 2 {
			p.inner, _ = decodeIPv4(payload, depth+1)
		}
	}
	return p, true
}

// isICMPError reports whether an ICMP type is an error that quotes the
// offending packet's header: unreachable, source quench, redirect, time
// exceeded, parameter problem.
func isICMPError(t uint8) bool { return t == 3 || t == 4 || t == 5 || t == 11 || t == 12 }

// decodeCapture decodes every IPv4 packet of a capture.
func decodeCapture(pkts []pcap.Packet) []*ipPacket {
	var out []*ipPacket
	for i, pk := range pkts {
		if pk.LinkType != layers.LinkTypeRaw && pk.LinkType != layers.LinkTypeIPv4 {
			continue
		}
		ip, ok := decodeIPv4(pk.Data, 0)
		if !ok {
			continue
		}
		ip.index, ip.iface, ip.time = i+1, pk.Interface, pk.Time
		out = append(out, ip)
	}
	return out
}

var protoText = map[uint8]string{1: "icmp", 4: "ipip", 6: "tcp", 17: "udp"}

func protoName(p uint8) string {
	if s, ok := protoText[p]; ok {
		return s
	}
	return fmt.Sprintf("proto %d", p)
}

// String summarises a packet, tshark-like.
func (p *ipPacket) String() string {
	var b strings.Builder
	if p.index > 0 {
		fmt.Fprintf(&b, "#%d ", p.index)
	}
	if p.iface != "" {
		fmt.Fprintf(&b, "%s ", p.iface)
	}
	fmt.Fprintf(&b, "%s > %s %s ttl %d", p.src, p.dst, protoName(p.proto), p.ttl)
	if p.df {
		b.WriteString(" DF")
	}
	if p.icmp {
		fmt.Fprintf(&b, " type %d code %d", p.icmpType, p.icmpCode)
		if p.icmpType == 3 && p.icmpCode == 4 {
			fmt.Fprintf(&b, " mtu %d", p.mtu)
		}
	}
	if p.sport != 0 || p.dport != 0 {
		fmt.Fprintf(&b, " ports %d > %d", p.sport, p.dport)
	}
	if p.inner != nil {
		fmt.Fprintf(&b, " [%s]", p.inner)
	}
	if p.quoted != nil {
		fmt.Fprintf(&b, " quoting [%s]", p.quoted)
	}
	return b.String()
}

// mismatch returns "" when p matches f, else what differs: the first
// field, observed vs expected.
func (f *filter) mismatch(p *ipPacket) string {
	if f == nil {
		return ""
	}
	switch {
	case f.iface != "" && p.iface != f.iface:
		return fmt.Sprintf("interface %s, want %s", p.iface, f.iface)
	case f.proto != nil && p.proto != *f.proto:
		return fmt.Sprintf("protocol %d (%s), want %d (%s)", p.proto, protoName(p.proto), *f.proto, protoName(*f.proto))
	case f.src != nil && !f.src.Contains(p.src):
		return fmt.Sprintf("src %s, want %s", p.src, prefixText(*f.src))
	case f.dst != nil && !f.dst.Contains(p.dst):
		return fmt.Sprintf("dst %s, want %s", p.dst, prefixText(*f.dst))
	case f.ttl != nil && p.ttl != *f.ttl:
		return fmt.Sprintf("ttl %d, want %d", p.ttl, *f.ttl)
	case f.df != nil && p.df != *f.df:
		return fmt.Sprintf("DF %v, want %v", p.df, *f.df)
	case f.icmpType != nil && (!p.icmp || p.icmpType != *f.icmpType):
		if !p.icmp {
			return fmt.Sprintf("not ICMP, want ICMP type %d", *f.icmpType)
		}
		return fmt.Sprintf("ICMP type %d, want %d", p.icmpType, *f.icmpType)
	case f.icmpCode != nil && (!p.icmp || p.icmpCode != *f.icmpCode):
		if !p.icmp {
			return fmt.Sprintf("not ICMP, want ICMP code %d", *f.icmpCode)
		}
		return fmt.Sprintf("ICMP code %d, want %d", p.icmpCode, *f.icmpCode)
	case f.port != nil && p.sport != *f.port && p.dport != *f.port:
		return fmt.Sprintf("ports %d > %d, want port %d", p.sport, p.dport, *f.port)
	case f.mtu != nil && (!p.icmp || p.icmpType != 3 || p.icmpCode != 4):
		return fmt.Sprintf("not a frag-needed (ICMP 3/4), want one with mtu %d", *f.mtu)
	case f.mtu != nil && p.mtu != *f.mtu:
		return fmt.Sprintf("next-hop mtu %d, want %d", p.mtu, *f.mtu)
	}
	if f.quoted != nil {
		if p.quoted == nil {
			return "quotes no IPv4 header, want an ICMP error quoting one"
		}
		if m := f.quoted.mismatch(p.quoted); m != "" {
			return "quoted " + m
		}
	}
	if f.inner != nil {
		if p.inner == nil {
			return "no inner IPv4 packet, want one"
		}
		if m := f.inner.mismatch(p.inner); m != "" {
			return "inner " + m
		}
	}
	return ""
}

func prefixText(p netip.Prefix) string {
	if p.Bits() == 32 {
		return p.Addr().String()
	}
	return p.String()
}

// evalPackets checks a packets assertion against decoded packets; nil when
// it holds.
func evalPackets(a packetsAssert, pkts []*ipPacket) error {
	var matched []*ipPacket
	for _, p := range pkts {
		if a.match.mismatch(p) == "" {
			matched = append(matched, p)
		}
	}
	what := fmt.Sprintf("packets matching %s in capture %s", a.match.text, a.capture)
	if a.match.text == "" {
		what = "packets in capture " + a.capture
	}
	if err := checkCount(a.count, len(matched), len(pkts), what, func(i int) string { return matched[i].String() }); err != nil {
		return err
	}
	if a.check != nil {
		for _, p := range matched {
			if m := a.check.mismatch(p); m != "" {
				return fmt.Errorf("%s: packet %s: %s (check %s)", what, p, m, a.check.text)
			}
		}
	}
	return nil
}

// checkCount checks n matches against c; show renders match i.
func checkCount(c countSpec, n, total int, what string, show func(int) string) error {
	first := func() string {
		if n == 0 {
			return ""
		}
		return "; first: " + show(0)
	}
	switch {
	case c.absent && n > 0:
		return fmt.Errorf("expected no %s, found %d%s", what, n, first())
	case c.exact >= 0 && n != c.exact:
		return fmt.Errorf("expected %d %s, found %d (of %d)%s", c.exact, what, n, total, first())
	case c.exact < 0 && n < c.min:
		return fmt.Errorf("expected at least %d %s, found %d (of %d)", c.min, what, n, total)
	}
	return nil
}

// BGP messages.

type (
	msgFilter struct {
		text         string
		typ          uint8 // 0: any
		from, to     *netip.Addr
		open         *openFilter
		update       *updateFilter
		notification *notificationFilter
	}
	openFilter struct {
		as       *uint32
		holdTime *uint16
		routerID *netip.Addr
		caps     []string
	}
	updateFilter struct {
		nlri, withdrawn []netip.Prefix
		nextHop         *netip.Addr
		asPath          *[]uint32
		originatorID    *netip.Addr
		clusterList     *[]netip.Addr
		endOfRib        *bool
	}
	notificationFilter struct{ code, subcode *uint8 }
)

// bgpMsg is one BGP message decoded from a captured TCP stream.
type bgpMsg struct {
	time     time.Time
	src, dst netip.Addr
	msg      *bgp.BGPMessage
}

var msgTypeText = map[uint8]string{1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE", 5: "ROUTE-REFRESH"}

func (m *bgpMsg) String() string {
	t := msgTypeText[m.msg.Header.Type]
	if t == "" {
		t = fmt.Sprintf("type %d", m.msg.Header.Type)
	}
	s := fmt.Sprintf("%s %s > %s at %s", t, m.src, m.dst, m.time.UTC().Format("15:04:05.000"))
	if d := m.detail(); d != "" {
		s += " (" + d + ")"
	}
	return s
}

// detail renders the fields a filter checks.
func (m *bgpMsg) detail() string {
	switch b := m.msg.Body.(type) {
	case *bgp.BGPOpen:
		o := openFields(b)
		return fmt.Sprintf("AS %d, hold time %ds, router ID %s, capabilities %s", o.as, o.hold, o.id, strings.Join(o.caps, " "))
	case *bgp.BGPUpdate:
		u := updateFields(b)
		if u.eor {
			return "End-of-RIB"
		}
		var parts []string
		if len(u.nlri) > 0 {
			parts = append(parts, "nlri "+prefixesText(u.nlri))
		}
		if len(u.withdrawn) > 0 {
			parts = append(parts, "withdrawn "+prefixesText(u.withdrawn))
		}
		if u.nextHop.IsValid() {
			parts = append(parts, "next hop "+u.nextHop.String())
		}
		if u.hasPath {
			parts = append(parts, fmt.Sprintf("as path %v", u.asPath))
		}
		if u.originator.IsValid() {
			parts = append(parts, "originator "+u.originator.String())
		}
		if u.clusters != nil {
			parts = append(parts, fmt.Sprintf("cluster list %v", u.clusters))
		}
		return strings.Join(parts, ", ")
	case *bgp.BGPNotification:
		return fmt.Sprintf("code %d, subcode %d", b.ErrorCode, b.ErrorSubcode)
	}
	return ""
}

func prefixesText(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

type openInfo struct {
	as   uint32
	hold uint16
	id   netip.Addr
	caps []string
}

func openFields(o *bgp.BGPOpen) openInfo {
	info := openInfo{as: uint32(o.MyAS), hold: o.HoldTime}
	info.id, _ = netip.AddrFromSlice(o.ID.To4())
	for _, p := range o.OptParams {
		pc, ok := p.(*bgp.OptionParameterCapability)
		if !ok {
			continue
		}
		for _, c := range pc.Capability {
			code := c.Code()
			info.caps = append(info.caps, code.String())
			switch v := c.(type) {
			case *bgp.CapFourOctetASNumber:
				info.as = v.CapValue
			case *bgp.CapMultiProtocol:
				info.caps = append(info.caps, "multiprotocol:"+v.CapValue.String())
			}
		}
	}
	return info
}

type updateInfo struct {
	nlri, withdrawn []netip.Prefix
	nextHop         netip.Addr
	hasPath         bool
	asPath          []uint32
	originator      netip.Addr
	clusters        []netip.Addr
	eor             bool
}

func ipPrefix(ip net.IP, bits uint8) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a.Unmap(), int(bits)), true
}

func updateFields(u *bgp.BGPUpdate) updateInfo {
	var info updateInfo
	for _, p := range u.NLRI {
		if pf, ok := ipPrefix(p.Prefix, p.Length); ok {
			info.nlri = append(info.nlri, pf)
		}
	}
	for _, p := range u.WithdrawnRoutes {
		if pf, ok := ipPrefix(p.Prefix, p.Length); ok {
			info.withdrawn = append(info.withdrawn, pf)
		}
	}
	for _, a := range u.PathAttributes {
		switch v := a.(type) {
		case *bgp.PathAttributeNextHop:
			info.nextHop, _ = netip.AddrFromSlice(v.Value.To4())
		case *bgp.PathAttributeAsPath:
			info.hasPath = true
			info.asPath = []uint32{}
			for _, seg := range v.Value {
				info.asPath = append(info.asPath, seg.GetAS()...)
			}
		case *bgp.PathAttributeOriginatorId:
			info.originator, _ = netip.AddrFromSlice(v.Value.To4())
		case *bgp.PathAttributeClusterList:
			info.clusters = []netip.Addr{}
			for _, c := range v.Value {
				a, _ := netip.AddrFromSlice(c.To4())
				info.clusters = append(info.clusters, a)
			}
		case *bgp.PathAttributeMpReachNLRI:
			for _, p := range v.Value {
				if pf, err := netip.ParsePrefix(p.String()); err == nil {
					info.nlri = append(info.nlri, pf)
				}
			}
			if nh, ok := netip.AddrFromSlice(v.Nexthop); ok && !info.nextHop.IsValid() {
				info.nextHop = nh.Unmap()
			}
		case *bgp.PathAttributeMpUnreachNLRI:
			for _, p := range v.Value {
				if pf, err := netip.ParsePrefix(p.String()); err == nil {
					info.withdrawn = append(info.withdrawn, pf)
				}
			}
		}
	}
	info.eor = len(u.NLRI) == 0 && len(u.WithdrawnRoutes) == 0 && len(u.PathAttributes) == 0
	return info
}

// mismatch returns "" when m matches f, else what differs.
func (f *msgFilter) mismatch(m *bgpMsg) string {
	if f.from != nil && m.src != *f.from {
		return fmt.Sprintf("from %s, want %s", m.src, *f.from)
	}
	if f.to != nil && m.dst != *f.to {
		return fmt.Sprintf("to %s, want %s", m.dst, *f.to)
	}
	if f.typ != 0 && m.msg.Header.Type != f.typ {
		return fmt.Sprintf("type %s, want %s", msgTypeText[m.msg.Header.Type], msgTypeText[f.typ])
	}
	switch b := m.msg.Body.(type) {
	case *bgp.BGPOpen:
		if o := f.open; o != nil {
			info := openFields(b)
			switch {
			case o.as != nil && info.as != *o.as:
				return fmt.Sprintf("AS %d, want %d", info.as, *o.as)
			case o.holdTime != nil && info.hold != *o.holdTime:
				return fmt.Sprintf("hold time %ds, want %ds", info.hold, *o.holdTime)
			case o.routerID != nil && info.id != *o.routerID:
				return fmt.Sprintf("router ID %s, want %s", info.id, *o.routerID)
			}
			for _, c := range o.caps {
				if !slices.Contains(info.caps, c) {
					return fmt.Sprintf("capabilities %s, want %s among them", strings.Join(info.caps, " "), c)
				}
			}
		}
	case *bgp.BGPUpdate:
		if u := f.update; u != nil {
			info := updateFields(b)
			for _, p := range u.nlri {
				if !slices.Contains(info.nlri, p) {
					return fmt.Sprintf("nlri [%s], want %s", prefixesText(info.nlri), p)
				}
			}
			for _, p := range u.withdrawn {
				if !slices.Contains(info.withdrawn, p) {
					return fmt.Sprintf("withdrawn [%s], want %s", prefixesText(info.withdrawn), p)
				}
			}
			switch {
			case u.nextHop != nil && info.nextHop != *u.nextHop:
				return fmt.Sprintf("next hop %v, want %s", info.nextHop, *u.nextHop)
			case u.asPath != nil && (!info.hasPath || !slices.Equal(info.asPath, *u.asPath)):
				return fmt.Sprintf("as path %v, want %v", info.asPath, *u.asPath)
			case u.originatorID != nil && info.originator != *u.originatorID:
				return fmt.Sprintf("originator ID %v, want %s", info.originator, *u.originatorID)
			case u.clusterList != nil && !slices.Equal(info.clusters, *u.clusterList):
				return fmt.Sprintf("cluster list %v, want %v", info.clusters, *u.clusterList)
			case u.endOfRib != nil && info.eor != *u.endOfRib:
				return fmt.Sprintf("End-of-RIB %v, want %v", info.eor, *u.endOfRib)
			}
		}
	case *bgp.BGPNotification:
		if n := f.notification; n != nil {
			if n.code != nil && b.ErrorCode != *n.code || n.subcode != nil && b.ErrorSubcode != *n.subcode {
				want := "code " + optU8(n.code) + ", subcode " + optU8(n.subcode)
				return fmt.Sprintf("code %d, subcode %d, want %s", b.ErrorCode, b.ErrorSubcode, want)
			}
		}
	}
	return ""
}

func optU8(p *uint8) string {
	if p == nil {
		return "any"
	}
	return fmt.Sprint(*p)
}

// evalBGP checks a bgpMessages assertion against decoded messages.
func evalBGP(a bgpMessagesAssert, msgs []*bgpMsg) error {
	var matched []*bgpMsg
	var near string // the closest miss: right type and direction
	for _, m := range msgs {
		if d := a.match.mismatch(m); d == "" {
			matched = append(matched, m)
		} else if near == "" && !strings.HasPrefix(d, "from ") && !strings.HasPrefix(d, "to ") && !strings.HasPrefix(d, "type ") {
			near = fmt.Sprintf("; closest: %s: %s", m, d)
		}
	}
	what := fmt.Sprintf("BGP messages matching %s in capture %s", a.match.text, a.capture)
	if err := checkCount(a.count, len(matched), len(msgs), what, func(i int) string { return matched[i].String() }); err != nil {
		if len(matched) == 0 && near != "" {
			return fmt.Errorf("%w%s", err, near)
		}
		return err
	}
	if a.interval != nil {
		type dir struct{ src, dst netip.Addr }
		last := map[dir]time.Time{}
		pairs := 0
		for _, m := range matched {
			d := dir{m.src, m.dst}
			if t, ok := last[d]; ok {
				gap := m.time.Sub(t)
				pairs++
				if gap < a.interval.min || gap > a.interval.max {
					return fmt.Errorf("%s: %s came %s after the previous one, want %s-%s", what, m, gap.Round(time.Millisecond), a.interval.min, a.interval.max)
				}
			}
			last[d] = m.time
		}
		if pairs == 0 {
			return fmt.Errorf("%s: no two in one direction to measure an interval (found %d)", what, len(matched))
		}
	}
	return nil
}

// decodeBGP reassembles the TCP streams to or from port 179 in pkts and
// returns every BGP message in them, in time order. A stream caught
// mid-message starts at the first BGP marker.
func decodeBGP(pkts []pcap.Packet) []*bgpMsg {
	f := &bgpFactory{}
	asm := reassembly.NewAssembler(reassembly.NewStreamPool(f))
	for _, pk := range pkts {
		if pk.LinkType != layers.LinkTypeRaw && pk.LinkType != layers.LinkTypeIPv4 {
			continue
		}
		packet := gopacket.NewPacket(pk.Data, layers.LayerTypeIPv4, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
		tl, ok := packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || tl == nil || (tl.SrcPort != 179 && tl.DstPort != 179) || packet.NetworkLayer() == nil {
			continue
		}
		ctx := &asmContext{ci: gopacket.CaptureInfo{Timestamp: pk.Time, CaptureLength: len(pk.Data), Length: pk.Length}}
		asm.AssembleWithContext(packet.NetworkLayer().NetworkFlow(), tl, ctx)
	}
	asm.FlushAll()
	var out []*bgpMsg
	for _, s := range f.streams {
		for _, h := range s.halves {
			if h != nil {
				out = append(out, h.msgs...)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].time.Before(out[j].time) })
	return out
}

type asmContext struct{ ci gopacket.CaptureInfo }

func (c *asmContext) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

type bgpFactory struct{ streams []*bgpStream }

func (f *bgpFactory) New(netFlow, _ gopacket.Flow, tcp *layers.TCP, _ reassembly.AssemblerContext) reassembly.Stream {
	src, _ := netip.AddrFromSlice(netFlow.Src().Raw())
	dst, _ := netip.AddrFromSlice(netFlow.Dst().Raw())
	s := &bgpStream{}
	// halves[0] is the client-to-server direction of the first packet seen
	s.halves[dirIndex(reassembly.TCPDirClientToServer)] = &bgpHalf{src: src, dst: dst}
	s.halves[dirIndex(reassembly.TCPDirServerToClient)] = &bgpHalf{src: dst, dst: src}
	f.streams = append(f.streams, s)
	return s
}

type bgpStream struct{ halves [2]*bgpHalf }

// dirIndex is 0 for the direction of the session's first packet seen, 1
// for the other.
func dirIndex(d reassembly.TCPFlowDirection) int {
	if d == reassembly.TCPDirClientToServer {
		return 0
	}
	return 1
}

// bgpHalf is one direction of a BGP session: bytes not yet parsed and the
// messages parsed so far.
type bgpHalf struct {
	src, dst netip.Addr
	buf      []byte
	synced   bool
	msgs     []*bgpMsg
}

func (s *bgpStream) Accept(_ *layers.TCP, _ gopacket.CaptureInfo, _ reassembly.TCPFlowDirection, _ reassembly.Sequence, start *bool, _ reassembly.AssemblerContext) bool {
	*start = true // a capture may begin mid-session
	return true
}

func (s *bgpStream) ReassembledSG(sg reassembly.ScatterGather, ac reassembly.AssemblerContext) {
	n, _ := sg.Lengths()
	if n == 0 {
		return
	}
	dir, _, _, skip := sg.Info()
	h := s.halves[dirIndex(dir)]
	if skip != 0 {
		// bytes missing: resynchronise on the next marker
		h.buf, h.synced = nil, false
	}
	h.buf = append(h.buf, sg.Fetch(n)...)
	h.parse(ac.GetCaptureInfo().Timestamp)
}

func (s *bgpStream) ReassemblyComplete(reassembly.AssemblerContext) bool { return true }

var marker = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// maxBGPMessage is the largest BGP message (RFC 8654's extended messages).
const maxBGPMessage = 65535

func (h *bgpHalf) parse(ts time.Time) {
	for {
		if !h.synced {
			i := strings.Index(string(h.buf), string(marker))
			if i < 0 {
				if len(h.buf) > len(marker) {
					h.buf = h.buf[len(h.buf)-len(marker):]
				}
				return
			}
			h.buf, h.synced = h.buf[i:], true
		}
		if len(h.buf) < bgp.BGP_HEADER_LENGTH {
			return
		}
		l := int(binary.BigEndian.Uint16(h.buf[16:18]))
		if l < bgp.BGP_HEADER_LENGTH || l > maxBGPMessage || string(h.buf[:16]) != string(marker) {
			h.buf, h.synced = h.buf[1:], false
			continue
		}
		if len(h.buf) < l {
			return
		}
		data := h.buf[:l]
		m, err := bgp.ParseBGPMessage(data, &bgp.MarshallingOption{})
		if err == nil {
			h.msgs = append(h.msgs, &bgpMsg{time: ts, src: h.src, dst: h.dst, msg: m})
		}
		h.buf = h.buf[l:]
	}
}

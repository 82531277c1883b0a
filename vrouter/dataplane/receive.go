package dataplane

import (
	"net/netip"

	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
)

// readFabric reads underlay u's frames and routes them as received on u.
func (e *Engine) readFabric(u underlay) {
	defer e.wg.Done()
	// ReadBatch fills bufs[i] = raw[j][headroom:] and may reorder them;
	// index finds each one's full buffer (with headroom) again.
	raw := make([][]byte, batch)
	bufs := make([][]byte, batch)
	index := make(map[*byte]int, batch)
	for i := range bufs {
		raw[i] = make([]byte, bufSize)
		bufs[i] = raw[i][headroom:]
		index[&bufs[i][0]] = i
	}
	frames := make([]fabric.Frame, batch)
	s := newSender(e)
	s.rx = u.ep
	for {
		n, err := u.ep.ReadBatch(bufs, frames)
		if err != nil {
			return
		}
		for i := range n {
			f := &frames[i]
			b := raw[index[&bufs[i][0]]]
			s.rxIndex = i
			if u.id == underlayPortID && e.tunnel.Load() && isIPIPTo(f.Packet, e.addr) {
				e.receiveTunnel(s, b, f, i)
				continue
			}
			s.handle(b, len(f.Packet), f.GSO, u.id, i)
		}
		s.flush()
	}
}

// isIPIPTo reports whether pkt is an IPIP packet addressed to addr.
func isIPIPTo(pkt []byte, addr netip.Addr) bool {
	ip := header.IPv4(pkt)
	return ip.IsIPIP() && ip.DestinationAddress() == addr
}

// receiveTunnel decapsulates the IPIP frame f, held at headroom in b, and
// routes the inner packet as received on tunl0; a frame from an unknown
// source or malformed is dropped and counted by the decapsulator.
func (e *Engine) receiveTunnel(s *sender, b []byte, f *fabric.Frame, i int) {
	inner, _, r := e.decap.Decapsulate(f.Packet)
	if r != encap.Accepted {
		return
	}
	outer := offsetIn(f.Packet, inner)
	g := f.GSO
	if g.IsGSO() {
		if int(g.HdrLen) <= outer {
			e.segDrops.Add(1)
			return
		}
		g.HdrLen -= uint16(outer)
	}
	if g.Flags&header.FlagNeedsCsum != 0 {
		if int(g.CsumStart) < outer {
			g.Flags &^= header.FlagNeedsCsum
		} else {
			g.CsumStart -= uint16(outer)
		}
	}
	s.handleAt(b, headroom+outer, len(inner), g, tunnelPortID, i)
}

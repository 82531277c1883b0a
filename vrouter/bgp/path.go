package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// newPath builds the GoBGP path that originates prefix with origin IGP and
// the given next hop (the unspecified address, next-hop-self, if nextHop
// is the zero Addr).
func newPath(prefix netip.Prefix, nextHop netip.Addr) (*api.Path, error) {
	if !prefix.IsValid() {
		return nil, errors.New("bgp: invalid prefix")
	}
	addr := prefix.Addr()
	if addr.Is4In6() {
		return nil, fmt.Errorf("bgp: %v: IPv4-mapped prefixes are not routable", prefix)
	}
	nextHop = nextHop.Unmap()
	if !nextHop.IsValid() {
		nextHop = netip.IPv4Unspecified()
		if addr.Is6() {
			nextHop = netip.IPv6Unspecified()
		}
	}
	if nextHop.Is4() != addr.Is4() {
		return nil, fmt.Errorf("bgp: %v: next hop %v is not of the prefix's family", prefix, nextHop)
	}
	origin := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)
	var (
		nlri  bgp.AddrPrefixInterface
		attrs []bgp.PathAttributeInterface
	)
	if addr.Is4() {
		nlri = bgp.NewIPAddrPrefix(uint8(prefix.Bits()), addr.String())
		attrs = []bgp.PathAttributeInterface{origin, bgp.NewPathAttributeNextHop(nextHop.String())}
	} else {
		nlri = bgp.NewIPv6AddrPrefix(uint8(prefix.Bits()), addr.String())
		attrs = []bgp.PathAttributeInterface{origin, bgp.NewPathAttributeMpReachNLRI(nextHop.String(), []bgp.AddrPrefixInterface{nlri})}
	}
	p, err := apiutil.NewPath(nlri, false, attrs, time.Now())
	if err != nil {
		return nil, fmt.Errorf("bgp: %v: %w", prefix, err)
	}
	return p, nil
}

// decodePath reads a GoBGP path: its prefix, its next hop and, if it was
// learned from a peer, the peer's address (the zero Addr for paths this
// speaker originates).
func decodePath(p *api.Path) (RouteUpdate, error) {
	var u RouteUpdate
	switch f := p.GetFamily(); {
	case f.GetSafi() != api.Family_SAFI_UNICAST || (f.GetAfi() != api.Family_AFI_IP && f.GetAfi() != api.Family_AFI_IP6):
		return u, fmt.Errorf("unexpected address family %v", f)
	}
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return u, err
	}
	if u.Prefix, err = netip.ParsePrefix(nlri.String()); err != nil {
		return u, err
	}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		return u, err
	}
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			u.NextHop, _ = netip.AddrFromSlice(a.Value)
		case *bgp.PathAttributeMpReachNLRI:
			u.NextHop, _ = netip.AddrFromSlice(a.Nexthop)
		}
	}
	u.NextHop = u.NextHop.Unmap()
	// GoBGP names the peer a path came from; paths originated locally
	// have no peer ("<nil>").
	if peer, err := netip.ParseAddr(p.GetNeighborIp()); err == nil && !peer.IsUnspecified() {
		u.Peer = peer.Unmap()
	}
	return u, nil
}

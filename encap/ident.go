package encap

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
)

// identBuckets is the number of outer-ID counters. Linux sizes its
// ip_idents table by memory (at least 2048); a lab has a handful of tunnel
// endpoints, so 256 keeps collisions between tunnels rare.
const identBuckets = 256

// idents are the outer IPv4 ID generators, one per hash bucket of
// (source, destination), like Linux's __ip_select_ident (net/ipv4/route.c)
// which iptunnel_xmit calls for every outer header.
var (
	idents   [identBuckets]atomic.Uint32
	identKey uint32
)

func init() {
	identKey = rand.Uint32()
	for i := range idents {
		idents[i].Store(rand.Uint32())
	}
}

// nextID reserves segs consecutive IDs for the tunnel src→dst and returns
// the first. A GSO super-packet that will be cut into segs segments
// reserves one per segment, as Linux passes gso_segs to __ip_select_ident;
// the segmenter then numbers the segments first, first+1, ...
func nextID(src, dst uint32, segs uint32) uint16 {
	h := (src ^ bits.RotateLeft32(dst, 16) ^ identKey) * 0x9e3779b1
	return uint16(idents[h>>24].Add(segs) - segs)
}

package bgp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// A peer with KeepOriginalNextHop gets every route, over eBGP too, with the
// next hop it was learned with (the owning node's), as BIRD does on a
// shared subnet; another eBGP peer still gets this speaker as next hop.
func TestKeepOriginalNextHop(t *testing.T) {
	// Every speaker starts before any session: see Start.
	n1 := startNode(t, "node1", "127.0.0.21", 64512)
	n2 := startNode(t, "node2", "127.0.0.22", 64512)
	keep := startNode(t, "keep", "127.0.0.23", 64600)
	self := startNode(t, "self", "127.0.0.24", 64601)
	checkStopped(t, n1, n2, keep, self)
	n1.meshWith(t, n2)
	n2.meshWith(t, n1)
	for _, p := range []struct {
		ext  *node
		asn  uint32
		keep bool
	}{{keep, 64600, true}, {self, 64601, false}} {
		if err := n1.AddPeer(t.Context(), Peer{Address: p.ext.addr, ASN: p.asn, Type: Global, Port: testPort, LocalAddr: n1.addr, KeepOriginalNextHop: p.keep}); err != nil {
			t.Fatal(err)
		}
		if err := p.ext.AddPeer(t.Context(), Peer{Address: n1.addr, ASN: 64512, Type: Global, Port: testPort, LocalAddr: p.ext.addr}); err != nil {
			t.Fatal(err)
		}
	}
	b1, b2 := netip.MustParsePrefix("10.244.166.128/26"), netip.MustParsePrefix("10.244.104.0/26")
	if err := n1.Announce(t.Context(), b1, n1.addr); err != nil {
		t.Fatal(err)
	}
	if err := n2.Announce(t.Context(), b2, n2.addr); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() string {
		k, s := keep.learned(), self.learned()
		switch {
		case k[b1].NextHop != n1.addr || k[b2].NextHop != n2.addr:
			return fmt.Sprintf("keep learned %v; want %v via %v, %v via %v", k, b1, n1.addr, b2, n2.addr)
		case s[b1].NextHop != n1.addr || s[b2].NextHop != n1.addr:
			return fmt.Sprintf("self learned %v; want both via %v", s, n1.addr)
		}
		return ""
	})
}

package bgp

import "testing"

// ParsePeerType reads back what String writes; anything else is the mesh.
func TestParsePeerType(t *testing.T) {
	for _, pt := range []PeerType{Mesh, Global, NodeSpecific} {
		if got := ParsePeerType(pt.String()); got != pt {
			t.Errorf("ParsePeerType(%q) = %v, want %v", pt.String(), got, pt)
		}
	}
	if got := ParsePeerType(""); got != Mesh {
		t.Errorf("ParsePeerType(\"\") = %v, want the mesh", got)
	}
}

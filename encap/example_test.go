package encap_test

import (
	"fmt"
	"net/netip"

	"github.com/vrouter-lab/vrouter/encap"
)

// A packet buffer reserves HeaderLen bytes of headroom, so that node1 can
// encapsulate in place; node2 decapsulates it, accepting only known nodes.
func Example() {
	node1 := netip.MustParseAddr("192.168.50.10")
	node2 := netip.MustParseAddr("192.168.50.11")

	// An (empty) IPv4 packet 10.244.166.129 → 10.244.104.1, TTL 63, DF,
	// after the headroom.
	inner := []byte{
		0x45, 0x00, 0x00, 0x14, 0x00, 0x01, 0x40, 0x00, 0x3f, 0xfd, 0x00, 0x00,
		10, 244, 166, 129, 10, 244, 104, 1,
	}
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(inner[i])<<8 | uint32(inner[i+1])
	}
	sum = sum&0xffff + sum>>16
	inner[10], inner[11] = byte(^sum>>8), byte(^sum)
	buf := append(make([]byte, encap.HeaderLen), inner...)

	outer, err := encap.EncapsulateInPlace(buf, encap.HeaderLen, node1, node2)
	if err != nil {
		panic(err)
	}
	fmt.Printf("outer: %d bytes, protocol %d, TTL %d, DF %v\n", len(outer), outer[9], outer[8], outer[6]&0x40 != 0)

	d, err := encap.NewDecapsulator(node1, netip.MustParseAddr("192.168.50.12"))
	if err != nil {
		panic(err)
	}
	got, from, reason := d.Decapsulate(outer)
	fmt.Printf("%v from %v: %d-byte inner packet to %v\n", reason, from, len(got), netip.AddrFrom4([4]byte(got[16:20])))

	d.RemoveNodes(node1)
	_, _, reason = d.Decapsulate(outer)
	fmt.Println(reason)
	// Output:
	// outer: 40 bytes, protocol 4, TTL 63, DF true
	// accepted from 192.168.50.10: 20-byte inner packet to 10.244.104.1
	// unknown_source
}

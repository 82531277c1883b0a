package encap_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/vrouter-lab/vrouter/encap"
)

var benchSizes = []int{64, 1480}

// BenchmarkEncapsulateInPlace measures the engine's form: the outer header
// is written into headroom the packet buffer reserves.
func BenchmarkEncapsulateInPlace(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			inner := innerSpec{payload: size - 28}.build(b)
			buf := make([]byte, encap.HeaderLen+len(inner))
			copy(buf[encap.HeaderLen:], inner)
			b.SetBytes(int64(len(inner)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encap.EncapsulateInPlace(buf, encap.HeaderLen, node1, node2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncapsulateCopy measures Encapsulate into a separate buffer,
// which includes copying the inner packet.
func BenchmarkEncapsulateCopy(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			inner := innerSpec{payload: size - 28}.build(b)
			dst := make([]byte, encap.HeaderLen+len(inner))
			b.SetBytes(int64(len(inner)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encap.Encapsulate(dst, inner, node1, node2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecapsulate measures full validation of an IPIP packet from an
// allowed node among 100.
func BenchmarkDecapsulate(b *testing.B) {
	nodes := []netip.Addr{}
	for a, i := node1, 0; i < 100; a, i = a.Next(), i+1 {
		nodes = append(nodes, a)
	}
	d := mustDecapsulator(b, nodes...)
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			pkt := outerSpec{}.build(b, innerSpec{payload: size - 28}.build(b))
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, r := d.Decapsulate(pkt); r != encap.Accepted {
					b.Fatal(r)
				}
			}
		})
	}
}

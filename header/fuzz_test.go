package header_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/vrouter-lab/vrouter/header"
)

// FuzzIPv4 feeds arbitrary bytes to the IPv4 view's validation. It must
// never panic; once IsValid holds every accessor must be safe, Payload
// must be the bytes between the header and the total length, the
// incremental checksum update of DecrementTTL must agree with a full
// recomputation, and UpdateChecksum must make the header verify.
//
// The seed corpus is in testdata/fuzz/FuzzIPv4.
func FuzzIPv4(f *testing.F) {
	f.Add(sample(nil, []byte("payload")))
	f.Add(sample([]byte{1, 1, 1, 0}, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		ip := header.IPv4(slices.Clone(data))
		hv := ip.IsHeaderValid()
		if !hv {
			if ip.IsValid(len(ip)) {
				t.Fatal("IsValid without IsHeaderValid")
			}
			return
		}
		ihl := ip.HeaderLength()
		if ihl < header.IPv4MinimumSize || ihl > len(ip) || ip.Version() != 4 {
			t.Fatalf("IsHeaderValid with IHL %d, length %d", ihl, len(ip))
		}
		_ = ip.Options()
		_, _ = ip.SourceAddress(), ip.DestinationAddress()
		valid := ip.CalculateChecksum() == ip.Checksum()
		if valid != ip.IsChecksumValid() {
			// both forms agree except for the one's complement's two
			// zeros: a stored 0x0000 where 0xffff is computed (or the
			// reverse) verifies but differs
			if !(ip.Checksum() == 0 && ip.CalculateChecksum() == 0xffff || ip.Checksum() == 0xffff && ip.CalculateChecksum() == 0) {
				t.Fatalf("checksum %#04x, calculated %#04x, IsChecksumValid %v", ip.Checksum(), ip.CalculateChecksum(), ip.IsChecksumValid())
			}
		}
		if ip.IsValid(len(ip)) {
			tot := int(ip.TotalLength())
			if p := ip.Payload(); len(p) != tot-ihl || (len(p) > 0 && &p[0] != &ip[ihl]) {
				t.Fatalf("payload of %d bytes, want ip[%d:%d]", len(p), ihl, tot)
			}
		}
		if ip.TTL() > 0 {
			ip.UpdateChecksum()
			ip.DecrementTTL()
			if !ip.IsChecksumValid() {
				t.Fatalf("DecrementTTL left checksum %#04x, want %#04x", ip.Checksum(), ip.CalculateChecksum())
			}
		}
		ip.UpdateChecksum()
		if !ip.IsChecksumValid() {
			t.Fatal("UpdateChecksum did not make the header verify")
		}
	})
}

// FuzzICMPv4 checks the ICMP view: it must never panic once IsValid
// holds, and a computed checksum must verify.
//
// The seed corpus is in testdata/fuzz/FuzzICMPv4.
func FuzzICMPv4(f *testing.F) {
	f.Add([]byte{3, 4, 0, 0, 0, 0, 5, 120, 'a', 'b', 'c'})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := header.ICMPv4(slices.Clone(data))
		if !m.IsValid() {
			if len(m) >= header.ICMPv4MinimumSize {
				t.Fatalf("%d bytes not valid", len(m))
			}
			return
		}
		_, _, _, _, _ = m.Type(), m.Code(), m.Rest(), m.Ident(), m.Sequence()
		if len(m.Payload()) != len(m)-header.ICMPv4MinimumSize {
			t.Fatal("payload length wrong")
		}
		m.SetChecksum(m.CalculateChecksum())
		if !m.IsChecksumValid() {
			t.Fatalf("computed checksum %#04x does not verify", m.Checksum())
		}
	})
}

// FuzzChecksum compares Checksum with a plain reference, and the sum of
// two pieces with the sum of the whole.
//
// The seed corpus is in testdata/fuzz/FuzzChecksum.
func FuzzChecksum(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		if got, want := header.Checksum(data), refChecksum(data); got != want {
			t.Fatalf("checksum %#04x, want %#04x", got, want)
		}
		c := min(int(cut)&^1, len(data))
		acc := header.Sum(data[c:], header.Sum(data[:c], 0))
		if got, want := ^header.Fold(acc), refChecksum(data); got != want {
			t.Fatalf("split at %d: %#04x, want %#04x", c, got, want)
		}
		if len(data) >= 2 {
			// change the first word and update incrementally
			old := uint16(data[0])<<8 | uint16(data[1])
			hc := header.Checksum(data)
			d := slices.Clone(data)
			d[0], d[1] = ^d[0], d[1]+cut
			nw := uint16(d[0])<<8 | uint16(d[1])
			inc, full := header.ChecksumUpdate16(hc, old, nw), header.Checksum(d)
			if inc != full && !(inc^full == 0xffff && (inc == 0 || full == 0)) {
				t.Fatalf("incremental %#04x, full %#04x", inc, full)
			}
		}
	})
}

// FuzzVirtioNetHdr decodes arbitrary bytes as a virtio_net_hdr and as
// network-order GSO fields: short input is refused, anything else
// encodes back to the same bytes.
//
// The seed corpus is in testdata/fuzz/FuzzVirtioNetHdr.
func FuzzVirtioNetHdr(f *testing.F) {
	f.Add([]byte{1, 1, 52, 0, 168, 5, 20, 0, 16, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := header.DecodeVirtioNetHdr(data)
		if len(data) < header.VirtioNetHdrLen {
			if err == nil {
				t.Fatalf("%d bytes accepted", len(data))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var out [header.VirtioNetHdrLen]byte
		if err := g.PutVirtioNetHdr(out[:]); err != nil || !bytes.Equal(out[:], data[:header.VirtioNetHdrLen]) {
			t.Fatalf("virtio round trip % x → % x (%v)", data[:header.VirtioNetHdrLen], out, err)
		}
		w := header.DecodeGSO(data)
		w.Put(out[:])
		if !bytes.Equal(out[:], data[:header.VirtioNetHdrLen]) {
			t.Fatalf("network-order round trip % x → % x", data[:header.VirtioNetHdrLen], out)
		}
		if n := g.Segments(65535); n < 1 {
			t.Fatalf("Segments = %d", n)
		}
	})
}

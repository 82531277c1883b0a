package fabric

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vrouter-lab/vrouter/header"
)

// FuzzDecodeFrame feeds arbitrary datagrams to the decoder: it must never
// panic, must reject with ErrBadFrame, and what it accepts must encode back
// to the same bytes and satisfy the receive path's checks.
func FuzzDecodeFrame(f *testing.F) {
	good, _ := AppendFrame(nil, Frame{Packet: packet(40, 1)})
	gso, _ := AppendFrame(nil, Frame{GSO: header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}, Packet: packet(3000, 2)})
	f.Add(good)
	f.Add(gso)
	f.Add([]byte{})
	f.Add(good[:HeaderLen])
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not match ErrBadFrame", err)
			}
			return
		}
		if len(fr.Packet) != len(b)-HeaderLen || len(fr.Packet) == 0 {
			t.Fatalf("packet of %d bytes from a %d-byte datagram", len(fr.Packet), len(b))
		}
		if fr.GSO.IsGSO() && int(fr.GSO.HdrLen) > len(fr.Packet) {
			t.Fatal("accepted a GSO header length beyond the packet")
		}
		if fr.GSO.Flags&header.FlagNeedsCsum != 0 && int(fr.GSO.CsumStart)+int(fr.GSO.CsumOffset)+2 > len(fr.Packet) {
			t.Fatal("accepted a checksum offset beyond the packet")
		}
		again, err := AppendFrame(nil, fr)
		if err != nil {
			t.Fatalf("re-encoding an accepted frame: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed the datagram:\n%x\n%x", b, again)
		}
	})
}

package dataplane

import (
	"errors"

	"github.com/vrouter-lab/vrouter/header"
)

// Errors from Fragment.
var (
	// ErrMalformed: the packet's header or total length is invalid.
	ErrMalformed = errors.New("dataplane: malformed IPv4 packet")
	// ErrDontFragment: the packet has DF set and may not be fragmented.
	ErrDontFragment = errors.New("dataplane: packet has DF set")
	// ErrMTU: the MTU leaves less than 8 bytes of payload after the header.
	ErrMTU = errors.New("dataplane: MTU too small for the header and 8 bytes of payload")
	// ErrFragOverflow: the fragments would need offsets beyond 65535.
	ErrFragOverflow = errors.New("dataplane: fragment offset beyond 65535")
	// ErrShortBuffer: the buffer cannot hold the largest fragment.
	ErrShortBuffer = errors.New("dataplane: fragment buffer too small")
)

// Fragment splits pkt, an IPv4 packet with DF clear, into fragments of at
// most mtu bytes, as Linux's ip_do_fragment does (RFC 791): each fragment
// carries a copy of the header with its own total length, offset, MF flag
// and checksum, and a slice of the payload, 8-byte aligned except the
// last; a fragment of a fragment keeps its offsets relative to the
// original datagram, and every piece of a fragment that was not the last
// keeps MF. The first fragment keeps every option; in the others, options
// whose copied flag is clear are overwritten with NOPs (ip_options_fragment),
// so every header has the same length.
//
// Each fragment is written into buf, which must hold mtu bytes (or the
// largest fragment) and must not overlap pkt, and passed to emit, which must be done with it
// before returning; Fragment stops at the first error emit returns. A
// packet that fits in mtu is passed to emit as it is. Fragment does not
// allocate.
func Fragment(pkt []byte, mtu int, buf []byte, emit func(frag []byte) error) error {
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) {
		return ErrMalformed
	}
	ihl, tot := ip.HeaderLength(), int(ip.TotalLength())
	pkt = pkt[:tot]
	if tot <= mtu {
		return emit(pkt)
	}
	if ip.DontFragment() {
		return ErrDontFragment
	}
	chunk := (mtu - ihl) &^ 7
	if chunk < 8 {
		return ErrMTU
	}
	payload := pkt[ihl:]
	base := ip.FragmentOffset()
	if base+len(payload) > 65535 {
		return ErrFragOverflow
	}
	if len(buf) < ihl+min(chunk, len(payload)) {
		return ErrShortBuffer
	}
	moreAfter := ip.MoreFragments()

	for pos := 0; pos < len(payload); pos += chunk {
		n := min(chunk, len(payload)-pos)
		copy(buf, pkt[:ihl])
		if pos > 0 && ihl > ipHeaderLen {
			fragmentOptions(buf[:ihl])
		}
		copy(buf[ihl:], payload[pos:pos+n])
		frag := uint16((base + pos) / 8)
		if pos+n < len(payload) || moreAfter {
			frag |= header.IPv4FlagMoreFragments
		}
		h := header.IPv4(buf)
		h.SetTotalLength(uint16(ihl + n))
		h.SetFlagsFragmentOffset(frag)
		h.UpdateChecksum()
		if err := emit(buf[:ihl+n]); err != nil {
			return err
		}
	}
	return nil
}

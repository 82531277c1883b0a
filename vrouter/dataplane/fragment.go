package dataplane

import "errors"

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
	if len(pkt) < ipHeaderLen || pkt[0]>>4 != 4 {
		return ErrMalformed
	}
	ihl := int(pkt[0]&0xf) * 4
	if ihl < ipHeaderLen || len(pkt) < ihl {
		return ErrMalformed
	}
	tot := int(be16(pkt[offTotalLen:]))
	if tot < ihl || tot > len(pkt) {
		return ErrMalformed
	}
	pkt = pkt[:tot]
	if tot <= mtu {
		return emit(pkt)
	}
	fo := be16(pkt[offFrag:])
	if fo&ipFlagDF != 0 {
		return ErrDontFragment
	}
	chunk := (mtu - ihl) &^ 7
	if chunk < 8 {
		return ErrMTU
	}
	payload := pkt[ihl:]
	base := int(fo&ipOffMask) * 8
	if base+len(payload) > 65535 {
		return ErrFragOverflow
	}
	if len(buf) < ihl+min(chunk, len(payload)) {
		return ErrShortBuffer
	}
	moreAfter := fo&ipFlagMF != 0

	for pos := 0; pos < len(payload); pos += chunk {
		n := min(chunk, len(payload)-pos)
		copy(buf, pkt[:ihl])
		if pos > 0 && ihl > ipHeaderLen {
			fragmentOptions(buf[:ihl])
		}
		copy(buf[ihl:], payload[pos:pos+n])
		frag := uint16((base + pos) / 8)
		if pos+n < len(payload) || moreAfter {
			frag |= ipFlagMF
		}
		put16(buf[offTotalLen:], uint16(ihl+n))
		put16(buf[offFrag:], frag)
		setHeaderChecksum(buf[:ihl])
		if err := emit(buf[:ihl+n]); err != nil {
			return err
		}
	}
	return nil
}

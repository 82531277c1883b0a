package encap

import "encoding/binary"

// checksum returns the RFC 1071 Internet checksum of b (even length, as
// IPv4 headers are): the ones' complement of the ones' complement sum of
// its 16-bit big-endian words. Over a header whose checksum field is
// correct it returns 0.
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 4 {
		sum += uint32(binary.BigEndian.Uint16(b)) + uint32(binary.BigEndian.Uint16(b[2:]))
		b = b[4:]
	}
	if len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	sum = sum>>16 + sum&0xffff
	sum += sum >> 16
	return ^uint16(sum)
}

// setChecksum recomputes the checksum field (bytes 10 and 11) of the IPv4
// header hdr (the whole header, options included).
func setChecksum(hdr []byte) {
	hdr[10], hdr[11] = 0, 0
	binary.BigEndian.PutUint16(hdr[10:], checksum(hdr))
}

package header

import "encoding/binary"

// Sum adds the 16-bit big-endian words of b to acc, a one's complement sum
// (RFC 1071) kept unfolded in 64 bits; an odd final byte is padded with a
// zero byte. Sums of consecutive pieces add up, as long as every piece
// but the last has even length. Fold the result with [Fold].
func Sum(b []byte, acc uint64) uint64 {
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// Fold folds a sum from [Sum] to 16 bits with end-around carry.
func Fold(acc uint64) uint16 {
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// Checksum returns the Internet checksum of b: the one's complement of the
// one's complement sum of its 16-bit words. Over data that holds a correct
// checksum it returns 0.
func Checksum(b []byte) uint16 { return ^Fold(Sum(b, 0)) }

// ChecksumUpdate16 returns the checksum hc of some data after one of its
// 16-bit words changed from old to new, by RFC 1624 equation 3:
// HC' = ~(~HC + ~m + m').
func ChecksumUpdate16(hc, old, new uint16) uint16 {
	return ^Fold(uint64(^hc) + uint64(^old) + uint64(new))
}

package ipam

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
)

// Default block sizes, as in Calico: a /26 (64 addresses) for IPv4 pools and
// a /122 (64 addresses) for IPv6 pools.
const (
	DefaultBlockSizeIPv4 = 26
	DefaultBlockSizeIPv6 = 122
)

// maxBlockIndexBits bounds the number of blocks in one pool (2^32), so that
// a block index fits in a uint64 shifted by the block's host bits.
const maxBlockIndexBits = 32

// Pool is an IP pool: a CIDR that IPAM carves into blocks of BlockSize bits
// (a /26 by default), each of which is claimed by one node at a time.
//
// A BlockSize of zero means the default for the pool's address family. Like
// Calico, IPv4 block sizes range from 20 to 32 and IPv6 ones from 116 to
// 128; every address of a block is assignable (nothing is reserved for a
// network or broadcast address).
type Pool struct {
	Name      string
	CIDR      netip.Prefix
	BlockSize int
}

// String returns the pool as "NAME (CIDR)", the form errors use.
func (p Pool) String() string {
	return fmt.Sprintf("%s (%s)", p.Name, p.CIDR)
}

// Validate reports whether p is usable: a name, a canonical CIDR (no host
// bits set) and a block size within the family's range that is not shorter
// than the CIDR. A zero BlockSize is valid and means the default.
func (p Pool) Validate() error {
	_, err := p.normalize()
	return err
}

// normalize validates p and returns it with its default block size filled in.
func (p Pool) normalize() (Pool, error) {
	if p.Name == "" {
		return p, fmt.Errorf("ipam: pool %s has no name", p.CIDR)
	}
	if !p.CIDR.IsValid() {
		return p, fmt.Errorf("ipam: pool %s has no valid cidr", p.Name)
	}
	if p.CIDR.Addr().Is4In6() || p.CIDR.Addr().Zone() != "" {
		return p, fmt.Errorf("ipam: pool %s: cidr %s is not a plain IPv4 or IPv6 prefix", p.Name, p.CIDR)
	}
	if p.CIDR.Masked() != p.CIDR {
		return p, fmt.Errorf("ipam: pool %s: cidr %s has host bits set (want %s)", p.Name, p.CIDR, p.CIDR.Masked())
	}
	lo, hi := 20, 32
	if p.CIDR.Addr().Is6() {
		lo, hi = 116, 128
	}
	if p.BlockSize == 0 {
		p.BlockSize = DefaultBlockSizeIPv4
		if p.CIDR.Addr().Is6() {
			p.BlockSize = DefaultBlockSizeIPv6
		}
	}
	if p.BlockSize < lo || p.BlockSize > hi {
		return p, fmt.Errorf("ipam: pool %s: blockSize %d out of range %d-%d", p, p.BlockSize, lo, hi)
	}
	if p.BlockSize < p.CIDR.Bits() {
		return p, fmt.Errorf("ipam: pool %s: blockSize %d is shorter than the pool's /%d", p, p.BlockSize, p.CIDR.Bits())
	}
	if p.BlockSize-p.CIDR.Bits() > maxBlockIndexBits {
		return p, fmt.Errorf("ipam: pool %s: a /%d in /%d blocks is 2^%d blocks; at most 2^%d are supported",
			p, p.CIDR.Bits(), p.BlockSize, p.BlockSize-p.CIDR.Bits(), maxBlockIndexBits)
	}
	return p, nil
}

// numBlocks returns how many blocks of BlockSize the pool holds. p must be
// valid with its BlockSize set.
func (p Pool) numBlocks() uint64 {
	return 1 << uint(p.BlockSize-p.CIDR.Bits())
}

// block returns the pool's i'th block (0 is the lowest). p must be valid
// with its BlockSize set, and i < p.numBlocks().
func (p Pool) block(i uint64) netip.Prefix {
	hostBits := p.CIDR.Addr().BitLen() - p.BlockSize
	return netip.PrefixFrom(addrAdd(p.CIDR.Addr(), i, hostBits), p.BlockSize)
}

// containsBlock reports whether block b lies inside the pool.
func (p Pool) containsBlock(b netip.Prefix) bool {
	return b.Bits() >= p.CIDR.Bits() && p.CIDR.Contains(b.Addr())
}

// startBlock returns the index of the block where a node starts looking for
// a free block: the 64-bit FNV-1a hash of the node name modulo the number of
// blocks. It spreads nodes over the pool like Calico's per-host seeded
// choice does, and is the same on every run, so labs are reproducible.
func (p Pool) startBlock(node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	return h.Sum64() % p.numBlocks()
}

// addrAdd returns a + n<<shift, where n<<shift stays below 2^(shift+32) and
// shift+32 <= 128. Carries propagate through the whole address.
func addrAdd(a netip.Addr, n uint64, shift int) netip.Addr {
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) + uint32(n<<uint(shift))
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	// n<<shift as a 128-bit number (addHi, addLo).
	var addHi, addLo uint64
	switch {
	case shift == 0:
		addLo = n
	case shift < 64:
		addHi, addLo = n>>(64-uint(shift)), n<<uint(shift)
	default:
		addHi = n << uint(shift-64)
	}
	sum := lo + addLo
	if sum < lo {
		hi++
	}
	hi += addHi
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], sum)
	return netip.AddrFrom16(b)
}

// addrOffset returns a - base for two addresses of one family where
// base <= a and a - base < 2^64.
func addrOffset(a, base netip.Addr) uint64 {
	if a.Is4() {
		x, y := a.As4(), base.As4()
		return uint64(binary.BigEndian.Uint32(x[:]) - binary.BigEndian.Uint32(y[:]))
	}
	x, y := a.As16(), base.As16()
	return binary.BigEndian.Uint64(x[8:]) - binary.BigEndian.Uint64(y[8:])
}

package fabric

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/header"
)

// A ring is a single-producer single-consumer queue of frames in a file of
// the network's directory, <dir>/<network>/rings/<receiver>/<sender>,
// mapped MAP_SHARED by both endpoints (the lab's state directory is a
// tmpfs, so the file is memory). The layout:
//
//	offset size field
//	     0    4 magic (ringMagic)
//	     4    4 version (ringVersion)
//	     8    8 size of the data area in bytes, a power of two
//	    64    8 tail: bytes ever written (the producer's, published last)
//	   128    8 head: bytes ever consumed (the consumer's)
//	   192    4 sleeping: the consumer waits on its socket for a doorbell
//	   256    4 gone: the consumer has left; the producer must stop
//	   320    4 closed: the producer has left; the consumer drops the
//	              ring once it is empty
//	  4096 size data: records
//
// The counters are on separate cache lines and accessed with atomic
// operations; multi-byte fields are in the machine's byte order (both ends
// are on one machine). A record is an 8-byte header, the payload's length
// (4 bytes) and its type (4 bytes: ringFrame or ringPad), then the payload,
// padded to a multiple of 8. A frame's payload is its wire datagram: the
// HeaderLen-byte frame header and the packet. A record never wraps: when
// it does not fit before the end of the data area a ringPad record fills
// the rest and the frame starts again at offset 0.
const (
	ringMagic       = 0x47525256 // "VRRG" in little-endian memory
	ringVersion     = 1
	ringDataOff     = 4096
	ringTailOff     = 64
	ringHeadOff     = 128
	ringSleepOff    = 192
	ringGoneOff     = 256
	ringClosedOff   = 320
	ringRecHdr      = 8
	ringFrame       = 1
	ringPad         = 2
	minRingSize     = 64 << 10
	maxRingSize     = 1 << 30
	ringsDir        = "rings"
	DefaultRingSize = 4 << 20 // as much as a socket's DefaultSocketBuffer: 2 MiB overflowed under TCP bursts
)

// DefaultRingAfter is Options.RingAfter's default: an endpoint makes a ring
// to a neighbour once it has sent it this many frames within a second over
// the socket, so that a busy link gets one and an idle one (BGP
// keepalives) never pays its memory.
const DefaultRingAfter = 64

// Control datagrams travel on the sockets beside frames: a frame header
// with flagControl in the flags byte and the kind in the byte after it.
const (
	flagControl = 0x80
	ctlDoorbell = 1 // wake up: a ring has frames
	ctlAnnounce = 2 // the payload names a sender that made a ring to you
)

// ring is a mapping of a ring file, by either end.
type ring struct {
	mem  []byte // the whole file
	data []byte // mem[ringDataOff:]
	mask uint64
	ino  uint64 // of the file, to remove only ours
	path string
	peer string // the other end's node name
	pos  uint64 // the producer's tail or the consumer's head (private copy)
}

func (r *ring) u64(off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&r.mem[off])) }
func (r *ring) u32(off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&r.mem[off])) }
func (r *ring) tail() *atomic.Uint64       { return r.u64(ringTailOff) }
func (r *ring) head() *atomic.Uint64       { return r.u64(ringHeadOff) }
func (r *ring) sleeping() *atomic.Uint32   { return r.u32(ringSleepOff) }
func (r *ring) gone() *atomic.Uint32       { return r.u32(ringGoneOff) }
func (r *ring) closed() *atomic.Uint32     { return r.u32(ringClosedOff) }
func (r *ring) size() uint64               { return uint64(len(r.data)) }

// maxRecord is the largest packet put in the ring: larger ones go over the
// socket, so that one frame never holds more than a quarter of the ring.
func (r *ring) maxPacket() int { return len(r.data)/4 - ringRecHdr - HeaderLen }

func align8(n uint64) uint64 { return (n + 7) &^ 7 }

// put appends one frame; false means the ring is full. The caller is the
// only producer (it holds the link's mutex).
func (r *ring) put(g *header.GSO, pkt []byte) bool {
	need := ringRecHdr + align8(uint64(HeaderLen+len(pkt)))
	tail := r.pos
	head := r.head().Load()
	if tail-head > r.size() {
		return false // the consumer wrote garbage: treat as full
	}
	pos := tail & r.mask
	pad := uint64(0)
	if room := r.size() - pos; need > room {
		pad = room
	}
	if tail+pad+need-head > r.size() {
		return false
	}
	if pad > 0 {
		binary.NativeEndian.PutUint32(r.data[pos:], uint32(pad-ringRecHdr))
		binary.NativeEndian.PutUint32(r.data[pos+4:], ringPad)
		tail += pad
		pos = 0
	}
	rec := r.data[pos : pos+need]
	binary.NativeEndian.PutUint32(rec, uint32(HeaderLen+len(pkt)))
	binary.NativeEndian.PutUint32(rec[4:], ringFrame)
	putHeader((*[HeaderLen]byte)(rec[ringRecHdr:]), g, len(pkt))
	copy(rec[ringRecHdr+HeaderLen:], pkt)
	r.pos = tail + need
	r.tail().Store(r.pos)
	return true
}

// ringCounts are what one drain dropped, by reason.
type ringCounts struct {
	bad, big, down, bytes uint64
}

// get copies frames from the ring into bufs[k:n] and frames[k:n] and
// returns the new k. Everything in the ring is untrusted: each length and
// offset is checked, a malformed record is dropped and counted, and a
// record whose length makes no sense drops the rest of what is queued (it
// cannot be resynchronized).
func (r *ring) get(bufs [][]byte, frames []Frame, k, n int, down bool, c *ringCounts) int {
	head := r.pos
	tail := r.tail().Load()
	if tail-head > r.size() {
		c.bad++
		r.pos = tail
		r.head().Store(tail)
		return k
	}
	for head != tail && k < n {
		pos := head & r.mask
		if tail-head < ringRecHdr || pos+ringRecHdr > r.size() {
			c.bad++
			head = tail
			break
		}
		ln := uint64(binary.NativeEndian.Uint32(r.data[pos:]))
		typ := binary.NativeEndian.Uint32(r.data[pos+4:])
		rec := ringRecHdr + align8(ln)
		if rec > tail-head || pos+rec > r.size() {
			c.bad++
			head = tail
			break
		}
		head += rec
		switch {
		case typ == ringPad:
			continue
		case typ != ringFrame || ln < HeaderLen:
			c.bad++
			continue
		}
		var h [HeaderLen]byte
		copy(h[:], r.data[pos+ringRecHdr:])
		plen := int(ln) - HeaderLen
		g, err := parseHeader(&h, plen)
		switch {
		case err != nil:
			c.bad++
			continue
		case plen > len(bufs[k]):
			c.big++
			continue
		case down:
			c.down++
			continue
		}
		start := pos + ringRecHdr + HeaderLen
		copy(bufs[k], r.data[start:start+uint64(plen)])
		frames[k] = Frame{GSO: g, Packet: bufs[k][:plen]}
		c.bytes += uint64(plen)
		k++
	}
	r.pos = head
	r.head().Store(head)
	return k
}

// empty reports whether the consumer has read everything published.
func (r *ring) empty() bool { return r.tail().Load() == r.pos }

func (r *ring) unmap() {
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem, r.data = nil, nil
	}
}

// remove unmaps the ring and removes its file if it is still this one.
func (r *ring) remove() {
	r.unmap()
	if r.ino != 0 && sameFile(r.path, r.ino) {
		_ = os.Remove(r.path)
	}
}

// createRing makes a ring file of size data bytes at path, through a
// temporary file renamed into place so that the consumer never maps a
// half-made one.
func createRing(path, peer string, size int) (*ring, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer f.Close()
	fail := func(err error) (*ring, error) {
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := f.Truncate(int64(ringDataOff + size)); err != nil {
		return fail(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, ringDataOff+size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(err)
	}
	r := &ring{mem: mem, data: mem[ringDataOff:], mask: uint64(size - 1), path: path, peer: peer}
	binary.NativeEndian.PutUint64(mem[8:], uint64(size))
	binary.NativeEndian.PutUint32(mem[4:], ringVersion)
	r.u32(0).Store(ringMagic)
	if err := os.Rename(tmp, path); err != nil {
		r.unmap()
		return fail(err)
	}
	r.ino = inode(path)
	return r, nil
}

var errNotRing = errors.New("not a ring file")

// openRing maps the ring file at path, made by peer, after checking its
// header and size.
func openRing(path, peer string) (*ring, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < ringDataOff+minRingSize || st.Size > ringDataOff+maxRingSize {
		return nil, errNotRing
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	size := binary.NativeEndian.Uint64(mem[8:])
	r := &ring{mem: mem, ino: st.Ino, path: path, peer: peer}
	if r.u32(0).Load() != ringMagic || binary.NativeEndian.Uint32(mem[4:]) != ringVersion ||
		size < minRingSize || size&(size-1) != 0 || ringDataOff+size != uint64(st.Size) {
		r.unmap()
		return nil, fmt.Errorf("%s: %w", path, errNotRing)
	}
	r.data = mem[ringDataOff:]
	r.mask = size - 1
	r.pos = r.head().Load()
	if r.tail().Load()-r.pos > size {
		r.pos = r.tail().Load()
		r.head().Store(r.pos)
	}
	return r, nil
}

// markRing sets a flag word (ringGoneOff, ringClosedOff) in the ring file
// at path and removes the file: what an endpoint does at Attach to the
// rings a previous incarnation of it left.
func markRing(path string, off int) {
	if r, err := openRing(path, ""); err == nil {
		r.u32(off).Store(1)
		r.unmap()
	}
	_ = os.Remove(path)
}

// putControl writes a control datagram's header: kind, and a payload of n
// bytes.
func putControl(h *[HeaderLen]byte, kind byte, n int) {
	*h = [HeaderLen]byte{}
	h[0] = Version
	h[1] = flagControl
	h[2] = kind
	binary.BigEndian.PutUint32(h[12:], uint32(n))
}

package kernel

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of sendmmsg(2) and recvmmsg(2), which
// golang.org/x/sys/unix does not define: a msghdr and the bytes moved.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// txBatch gathers IPIP packets for one sendmmsg(2) on the raw socket: each
// packet is up to two pieces (its headers in one of the batch's slots, its
// payload where the caller keeps it), sent to its outer destination. It is
// an ipipSink; flush sends what it holds. A txBatch is used by one
// goroutine.
type txBatch struct {
	slots []byte // len(msgs) slots of maxSegHeaders bytes
	msgs  []mmsghdr
	iovs  []unix.Iovec // two per message
	addrs []unix.RawSockaddrInet4
	n     int
	// send sends msgs (all of them, or counts what it could not) and is
	// called by flush, and by push when the batch is full.
	send func(msgs []mmsghdr)
}

func newTxBatch(size int, send func([]mmsghdr)) *txBatch {
	return &txBatch{
		slots: make([]byte, size*maxSegHeaders),
		msgs:  make([]mmsghdr, size),
		iovs:  make([]unix.Iovec, 2*size),
		addrs: make([]unix.RawSockaddrInet4, size),
		send:  send,
	}
}

// slot returns the header slot of the next packet, flushing a full batch
// first.
func (b *txBatch) slot() []byte {
	if b.n == len(b.msgs) {
		b.flush()
	}
	return b.slots[b.n*maxSegHeaders : (b.n+1)*maxSegHeaders]
}

// push queues the packet hdr+payload to remote.
func (b *txBatch) push(hdr, payload []byte, remote netip.Addr) {
	if b.n == len(b.msgs) {
		b.flush() // hdr is not from a slot: push after an ordinary packet
	}
	i := b.n
	a := &b.addrs[i]
	a.Family = unix.AF_INET
	a.Addr = remote.As4()
	iov := b.iovs[2*i : 2*i+2]
	iov[0].Base = &hdr[0]
	iov[0].SetLen(len(hdr))
	m := &b.msgs[i]
	m.hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(a)), Namelen: unix.SizeofSockaddrInet4, Iov: &iov[0]}
	m.n = 0
	if len(payload) > 0 {
		iov[1].Base = &payload[0]
		iov[1].SetLen(len(payload))
		m.hdr.SetIovlen(2)
	} else {
		m.hdr.SetIovlen(1)
	}
	b.n++
}

// flush sends the batch.
func (b *txBatch) flush() {
	if b.n > 0 {
		b.send(b.msgs[:b.n])
	}
	b.n = 0
}

// sendmmsg is sendmmsg(2) without blocking: the number of messages sent.
func sendmmsg(fd uintptr, msgs []mmsghdr) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

// recvmmsg is recvmmsg(2) without blocking: the number of messages
// received.
func recvmmsg(fd uintptr, msgs []mmsghdr) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

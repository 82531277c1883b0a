// Package uring is a small io_uring binding without cgo: enough to queue
// READ and WRITE requests on descriptors, submit them with one
// io_uring_enter and reap their completions. The engine uses it to read
// and write its TUN devices in batches (vrouter/dataplane, tun.go).
//
// A Ring is the kernel's submission and completion queues mapped into the
// process (io_uring_setup(2), the IORING_OFF_* mmaps): the submission
// queue entries (SQE) are filled here, their indices published in the
// submission ring and the tail stored with release semantics; the kernel
// posts a completion entry (CQE) per request, read here after an acquire
// load of the completion ring's tail. No submission polling thread
// (SQPOLL: it costs a CPU), no registered buffers or files.
//
// A Ring is not safe for concurrent use, and Close must not run while
// another method does: its owner serialises them.
package uring

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opcodes (enum io_uring_op).
const (
	OpNop         uint8 = 0
	OpAsyncCancel uint8 = 14
	OpRead        uint8 = 22
	OpWrite       uint8 = 23
)

// NoWait is the RWF_NOWAIT request flag for PrepRead and PrepWrite: the
// request completes at once with EAGAIN where it would wait, instead of
// waiting for the descriptor in the kernel. Files that cannot honour it
// (without FMODE_NOWAIT: a TUN device) complete it with EOPNOTSUPP; for
// those, a nonblocking descriptor (O_NONBLOCK) gives the EAGAIN.
const NoWait = unix.RWF_NOWAIT

const (
	cancelAll = 1 << 0
	cancelFD  = 1 << 1
)

// Setup flags (io_uring_params.flags) and enter flags.
const (
	setupClamp       = 1 << 4
	setupSubmitAll   = 1 << 7
	setupCoopTaskrun = 1 << 8

	enterGetEvents = 1 << 0

	featSingleMmap = 1 << 0

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// SQE is a submission queue entry (struct io_uring_sqe, 64 bytes), for
// the requests this package makes.
type SQE struct {
	Opcode      uint8
	Flags       uint8
	IOPrio      uint16
	FD          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32 // rw_flags
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFDIn  int32
	Addr3       uint64
	_           uint64
}

// CQE is a completion queue entry (struct io_uring_cqe, 16 bytes): the
// request's user data, its result (bytes moved, or a negated errno) and
// flags.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Err returns the completion's error, nil if Res is not negative.
func (c CQE) Err() error {
	if c.Res >= 0 {
		return nil
	}
	return unix.Errno(-c.Res)
}

type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type params struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFD uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  sqringOffsets
	CQOff                                                                  cqringOffsets
}

// Ring is one io_uring instance.
type Ring struct {
	fd int

	sqMem, cqMem, sqeMem []byte // the mappings (cqMem may alias sqMem)

	sqHead, sqTail *uint32 // kernel-owned head, our tail
	sqMask         uint32
	sqArray        []uint32
	sqes           []SQE
	sqTailLocal    uint32 // the tail including queued, unpublished entries

	cqHead, cqTail *uint32 // our head, kernel-owned tail
	cqMask         uint32
	cqes           []CQE

	inflight int // submitted (or queued) and not yet reaped
}

// ErrClosed is returned by a closed Ring's methods.
var ErrClosed = errors.New("uring: ring closed")

// New sets up a ring with at least entries submission entries (rounded up
// to a power of two by the kernel; twice as many completion entries).
func New(entries uint32) (*Ring, error) {
	p := params{Flags: setupClamp | setupSubmitAll | setupCoopTaskrun}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno == unix.EINVAL {
		// an older kernel without COOP_TASKRUN or SUBMIT_ALL
		p = params{Flags: setupClamp}
		fd, _, errno = unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	}
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd)}
	if err := r.mmap(&p); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ring) mmap(p *params) error {
	sqSize := int(p.SQOff.Array + p.SQEntries*4)
	cqSize := int(p.CQOff.CQEs + p.CQEntries*uint32(unsafe.Sizeof(CQE{})))
	single := p.Features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring mmap sq ring: %w", err)
	}
	if single {
		r.cqMem = r.sqMem
	} else {
		r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("io_uring mmap cq ring: %w", err)
		}
	}
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.SQEntries)*int(unsafe.Sizeof(SQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring mmap sqes: %w", err)
	}
	sq, cq := unsafe.Pointer(&r.sqMem[0]), unsafe.Pointer(&r.cqMem[0])
	r.sqHead = (*uint32)(unsafe.Add(sq, p.SQOff.Head))
	r.sqTail = (*uint32)(unsafe.Add(sq, p.SQOff.Tail))
	r.sqMask = *(*uint32)(unsafe.Add(sq, p.SQOff.RingMask))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(sq, p.SQOff.Array)), p.SQEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.SQEntries)
	r.sqTailLocal = *r.sqTail
	r.cqHead = (*uint32)(unsafe.Add(cq, p.CQOff.Head))
	r.cqTail = (*uint32)(unsafe.Add(cq, p.CQOff.Tail))
	r.cqMask = *(*uint32)(unsafe.Add(cq, p.CQOff.RingMask))
	r.cqes = unsafe.Slice((*CQE)(unsafe.Add(cq, p.CQOff.CQEs)), p.CQEntries)
	return nil
}

// Close releases the ring. Requests still in the kernel are cancelled as
// the kernel tears the ring down, which may end after Close returns: reap
// every request (PrepCancelFD those that wait) before closing a ring
// whose buffers will be used again.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return ErrClosed
	}
	if r.sqMem != nil && r.cqMem != nil && &r.cqMem[0] == &r.sqMem[0] {
		r.cqMem = nil
	}
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.sqMem} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	r.sqMem, r.cqMem, r.sqeMem = nil, nil, nil
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Entries returns how many requests can be queued at once.
func (r *Ring) Entries() int { return len(r.sqes) }

// Queued returns how many requests are queued or in the kernel and not
// yet reaped.
func (r *Ring) Queued() int { return r.inflight }

// get returns the next free SQE, zeroed, or nil when the submission queue
// is full or as many requests as the completion queue holds are pending.
func (r *Ring) get() *SQE {
	if r.fd < 0 || r.sqTailLocal-atomic.LoadUint32(r.sqHead) >= uint32(len(r.sqes)) || r.inflight >= len(r.cqes) {
		return nil
	}
	i := r.sqTailLocal & r.sqMask
	r.sqTailLocal++
	r.inflight++
	e := &r.sqes[i]
	*e = SQE{}
	r.sqArray[i] = i
	return e
}

// PrepRead queues a read of up to len(b) bytes from fd into b (at the
// file's current position: off -1) with the RWF_* flags rwFlags (0 or
// NoWait), with userData in its completion. It returns false if the ring
// is full. b must stay valid until the completion is reaped.
//
// A read of a pollable file (a pipe, a socket, a TUN device) that has
// nothing to read waits in the kernel (io_uring arms a poll) unless
// NoWait is given or the descriptor is nonblocking and the file cannot
// honour NoWait; see NoWait and CancelFD.
func (r *Ring) PrepRead(fd int, b []byte, rwFlags uint32, userData uint64) bool {
	return r.prepRW(OpRead, fd, b, rwFlags, userData)
}

// PrepWrite queues a write of b to fd, as PrepRead.
func (r *Ring) PrepWrite(fd int, b []byte, rwFlags uint32, userData uint64) bool {
	return r.prepRW(OpWrite, fd, b, rwFlags, userData)
}

func (r *Ring) prepRW(op uint8, fd int, b []byte, rwFlags uint32, userData uint64) bool {
	e := r.get()
	if e == nil {
		return false
	}
	e.Opcode, e.FD, e.Off, e.OpFlags, e.UserData = op, int32(fd), ^uint64(0), rwFlags, userData
	if len(b) > 0 {
		e.Addr, e.Len = uint64(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b))
	}
	return true
}

// PrepNop queues a request that does nothing and completes with 0.
func (r *Ring) PrepNop(userData uint64) bool {
	e := r.get()
	if e == nil {
		return false
	}
	e.Opcode, e.UserData = OpNop, userData
	return true
}

// PrepCancelFD queues the cancellation of every request on fd still
// waiting in the kernel (IORING_OP_ASYNC_CANCEL with
// IORING_ASYNC_CANCEL_FD|ALL): each completes with ECANCELED, and the
// cancellation itself with the number cancelled (or ENOENT: none).
func (r *Ring) PrepCancelFD(fd int, userData uint64) bool {
	e := r.get()
	if e == nil {
		return false
	}
	e.Opcode, e.FD, e.OpFlags, e.UserData = OpAsyncCancel, int32(fd), cancelAll|cancelFD, userData
	return true
}

// SubmitAndWait publishes the queued requests, submits them and waits
// until at least wait completions can be reaped (wait is capped at
// Queued), with as few io_uring_enter calls as it takes: one, unless a
// signal interrupts it (Go's preemption signal: EINTR is retried). The
// call is a raw system call: the Go scheduler is not told, so use it for
// requests that complete at once (nonblocking descriptors), not to wait
// for traffic.
func (r *Ring) SubmitAndWait(wait int) error {
	if r.fd < 0 {
		return ErrClosed
	}
	atomic.StoreUint32(r.sqTail, r.sqTailLocal)
	wait = min(wait, r.inflight)
	for {
		toSubmit := r.sqTailLocal - atomic.LoadUint32(r.sqHead)
		ready := int(atomic.LoadUint32(r.cqTail) - *r.cqHead)
		if toSubmit == 0 && ready >= wait {
			return nil
		}
		var flags uintptr
		var minComplete int
		if ready < wait {
			flags, minComplete = enterGetEvents, wait-ready
		}
		_, _, errno := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), flags, 0, 0)
		switch errno {
		case 0, unix.EINTR:
		case unix.EAGAIN, unix.EBUSY:
			// no room for more completions: the caller must reap
			if ready > 0 {
				return nil
			}
			return fmt.Errorf("io_uring_enter: %w", errno)
		default:
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
}

// Reap copies up to len(dst) completions into dst, frees their entries
// and returns how many it copied.
func (r *Ring) Reap(dst []CQE) int {
	if r.fd < 0 {
		return 0
	}
	head := *r.cqHead
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for head != tail && n < len(dst) {
		dst[n] = r.cqes[head&r.cqMask]
		head++
		n++
	}
	atomic.StoreUint32(r.cqHead, head)
	r.inflight -= n
	return n
}

// Supported reports whether io_uring can be used here: the kernel has it
// and it is not disabled (/proc/sys/kernel/io_uring_disabled), by setting
// up and closing a small ring; the error says why not.
func Supported() error {
	if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil && len(b) > 0 && b[0] == '2' {
		return errors.New("io_uring disabled (kernel.io_uring_disabled = 2)")
	}
	r, err := New(2)
	if err != nil {
		return err
	}
	return r.Close()
}

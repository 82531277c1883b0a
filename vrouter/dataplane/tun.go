package dataplane

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/uring"
	"golang.org/x/sys/unix"
)

// Device is a TUN device the engine reads and writes through its
// descriptor: opened with IFF_VNET_HDR and TCP offloads, nonblocking (as
// netns.OpenTUN does). Its owner closes it.
type Device interface {
	File() *os.File
}

type tunPort struct {
	id   PortID
	file *os.File
	rc   syscall.RawConn
	// rwFlags are the RWF_* flags of the port's io_uring reads and
	// writes: RWF_NOWAIT, or none where the device cannot honour it.
	rwFlags atomic.Uint32
}

func newTUNPort(id PortID, dev Device) (*tunPort, error) {
	f := dev.File()
	if f == nil {
		return nil, errors.New("engine: TUN device has no file")
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	p := &tunPort{id: id, file: f, rc: rc}
	p.rwFlags.Store(uring.NoWait)
	return p, nil
}

// The engine's TUN reads and writes never block (the descriptors are
// nonblocking), so they are raw system calls: the Go scheduler is not told,
// and does not hand the goroutine's P to another thread when a write that
// runs the receiving kernel's TCP takes tens of microseconds. That hand-off
// (futex wakeups, sysmon polling) cost more than the copy itself; see
// docs/benchmarks.md. gVisor's rawfile does the same.

// rawRead is read(2) on a nonblocking descriptor.
func rawRead(fd uintptr, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// tunWrite is what a write to a TUN device needs besides the device: the
// buffer, the result and the function the device's RawConn calls, made
// once (by init) so a write allocates nothing. A sender has one.
type tunWrite struct {
	b     []byte
	errno unix.Errno
	fn    func(fd uintptr) bool

	// With io_uring (ring not nil): the packets to one port written
	// with one io_uring_enter by fnRing (ringWrite), and the outcome.
	ring            *tunRing
	port            *tunPort
	run             []pending
	written, failed int
	fnRing          func(fd uintptr) bool
}

func (w *tunWrite) init() {
	w.fnRing = w.ringWrite
	w.fn = func(fd uintptr) bool {
		for {
			_, _, w.errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&w.b[0])), uintptr(len(w.b)))
			if w.errno != unix.EINTR {
				return true
			}
		}
	}
}

// writeWith writes b, one virtio_net_hdr and packet, to the port's device
// with w.
func (p *tunPort) writeWith(w *tunWrite, b []byte) error {
	w.b, w.errno = b, 0
	err := p.rc.Write(w.fn)
	w.b = nil
	if err != nil {
		return err
	}
	if w.errno != 0 {
		return w.errno
	}
	return nil
}

// writeRun writes run, packets all for p, with w's ring: one
// io_uring_enter for all of them (or write(2) each when the ring is
// closed).
func (p *tunPort) writeRun(w *tunWrite, run []pending) error {
	w.run, w.port, w.written, w.failed, w.errno = run, p, 0, 0, 0
	err := p.rc.Write(w.fnRing)
	written, failed := w.written, w.failed
	w.run, w.port = nil, nil
	if err != nil {
		return err
	}
	if written == 0 {
		for _, q := range run {
			if err := p.writeWith(w, q.buf); err != nil {
				return err
			}
		}
		return nil
	}
	if failed > 0 {
		return errRingWrite
	}
	return nil
}

var errRingWrite = errors.New("io_uring write failed")

// readTUN reads p's device until it is closed: each read returns one
// virtio_net_hdr and one packet; the packets available at once (up to
// batch) are routed together and sent with one flush. The buffers come
// from the engine's pool only while there are packets to move: an idle
// port holds none (see batchPool).
func (e *Engine) readTUN(p *tunPort) {
	defer e.wg.Done()
	var b *tunBatch
	var n int
	var rerr error
	ahead, last := readAhead, readAhead
	read := func(fd uintptr) bool {
		for n < batch {
			if b == nil {
				b = e.batches.get(e)
			}
			// io_uring when the last round read more than one packet: a
			// port with lone packets (pings, BGP keepalives) is read
			// with read(2), which measured quicker for them
			if t := b.s.tw.ring; t != nil && last > 1 {
				m, again, ok, err := p.ringRead(t, fd, b, n, min(ahead, batch-n))
				if ok {
					n += m
					switch {
					case err != nil:
						rerr = err
						return true
					case again:
						ahead = min(2*ahead, batch)
						continue
					case n == 0:
						e.batches.put(b)
						b = nil
						return false
					}
					return true
				}
				// the ring is closed (the engine is): system calls
			}
			m, err := rawRead(fd, b.bufs[n][headroom-vnetLen:])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				if n == 0 {
					// nothing to read: wait for the device holding no buffers
					e.batches.put(b)
					b = nil
					return false
				}
				return true
			case err != nil:
				rerr = err
				return true
			case m == 0:
				rerr = os.ErrClosed
				return true
			}
			b.sizes[n] = m
			n++
		}
		return true
	}
	for {
		// the first enter reads as many as the last round found, and one
		// more (a lone packet, a ping, costs one enter)
		n, rerr, ahead = 0, nil, min(max(last+1, 2), batch)
		if err := p.rc.Read(read); err != nil && rerr == nil {
			rerr = err
		}
		if n > 0 {
			last = n
		}
		if b != nil {
			for i := range n {
				buf := b.bufs[i]
				if b.sizes[i] < vnetLen {
					continue
				}
				g, _ := header.DecodeVirtioNetHdr(buf[headroom-vnetLen:])
				b.s.handle(buf, b.sizes[i]-vnetLen, g, p.id, i)
			}
			b.s.flush()
			e.batches.put(b)
			b = nil
		}
		if rerr != nil {
			if !e.closed.Load() {
				e.log.Debug("tun read ended", "port", p.id, "err", rerr)
			}
			return
		}
	}
}

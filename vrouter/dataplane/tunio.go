package dataplane

import (
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/vrouter-lab/vrouter/vrouter/uring"
	"golang.org/x/sys/unix"
)

// TUN I/O modes (EngineConfig.TUNIO, or the VROUTER_TUN_IO environment
// variable when that is empty; DefaultTUNIO when both are).
const (
	// TUNIORead reads and writes TUN devices with one system call per
	// packet (read(2), write(2)), plus one read that finds nothing per
	// batch; where io_uring is missing or disabled.
	TUNIORead = "read"
	// TUNIOUring reads and writes them through io_uring: up to batch
	// reads of a port with one io_uring_enter (one more than the last
	// round found, doubling while every one finds a packet; see
	// readAhead), and all the packets a batch sends to one port with one
	// more. Where io_uring is missing or disabled
	// the engine uses TUNIORead and logs why, once.
	TUNIOUring = "uring"
)

// TUNIOEnv is the environment variable that selects the TUN I/O mode
// when EngineConfig.TUNIO is empty.
const TUNIOEnv = "VROUTER_TUN_IO"

// DefaultTUNIO is the mode when neither the configuration nor the
// environment chooses; see docs/benchmarks.md (io_uring TUN I/O) for why.
const DefaultTUNIO = TUNIORead

// resolveTUNIO returns the mode the engine uses: mode, or the
// environment's, or the default; TUNIORead where io_uring is not usable.
func resolveTUNIO(mode string, log *slog.Logger) (string, error) {
	if mode == "" {
		mode = os.Getenv(TUNIOEnv)
	}
	switch mode {
	case "":
		mode = DefaultTUNIO
	case TUNIORead, TUNIOUring:
	default:
		return "", fmt.Errorf("engine: TUN I/O %q: want %q or %q", mode, TUNIORead, TUNIOUring)
	}
	if mode == TUNIOUring {
		if err := uringSupported(); err != nil {
			if log == nil {
				log = slog.Default()
			}
			log.Warn("io_uring unavailable: TUN devices read and written with plain system calls", "err", err)
			return TUNIORead, nil
		}
		if log != nil {
			log.Info("TUN devices read and written through io_uring")
		}
	}
	return mode, nil
}

// uringSupported is uring.Supported; tests replace it.
var uringSupported = uring.Supported

// ringEntries is the size of a sender's ring: a whole batch of reads or
// of writes at once.
const ringEntries = batch

// readAhead is how many reads of a port the first io_uring_enter of a
// port's reader submits; after that, as many as the last round read and
// one more, doubling (up to what the batch has left) while every read
// finds a packet. The spike: about 8 reads at once paid, 64-128
// on one TUN device lost; here, requests that find nothing complete at
// once with EAGAIN, but each still costs the kernel a request.
const readAhead = 8

// tunRing is a sender's io_uring: its TUN reads (when the sender is a
// tunBatch's) and its TUN writes go through it. Every request completes
// within the io_uring_enter that submits it (RWF_NOWAIT, nonblocking
// descriptors: a read with nothing to read completes with EAGAIN), so no
// request, buffer or descriptor reference outlives a call, the submitting
// goroutine needs no locked thread, and an idle port holds nothing. mu
// serialises the owner's use with the engine's Close, which closes the
// ring; a closed ring (r nil) sends its owner back to plain system calls.
type tunRing struct {
	mu  sync.Mutex
	r   *uring.Ring
	cq  [ringEntries]uring.CQE
	res [ringEntries]int32 // results by request index
}

// newTunRing makes a ring for a sender of e, or returns nil (plain system
// calls) when e does not use io_uring, is closed, or the ring cannot be
// set up.
func (e *Engine) newTunRing() *tunRing {
	if e.tunIO != TUNIOUring {
		return nil
	}
	e.ringsMu.Lock()
	defer e.ringsMu.Unlock()
	if e.closed.Load() {
		return nil
	}
	r, err := uring.New(ringEntries)
	if err != nil {
		if e.log != nil {
			e.log.Warn("io_uring ring: plain TUN system calls for this reader", "err", err)
		}
		return nil
	}
	t := &tunRing{r: r}
	e.rings = append(e.rings, t)
	return t
}

// closeRings closes every ring of e; their owners go on with plain system
// calls.
func (e *Engine) closeRings() {
	e.ringsMu.Lock()
	defer e.ringsMu.Unlock()
	for _, t := range e.rings {
		t.mu.Lock()
		if t.r != nil {
			_ = t.r.Close()
			t.r = nil
		}
		t.mu.Unlock()
	}
	e.rings = nil
}

// run submits the requests queued on t.r (k of them, indices 0..k-1 as
// user data) and leaves each one's result in t.res. It returns false if
// the ring failed. t.mu is held.
func (t *tunRing) run(fd, k int) bool {
	if err := t.r.SubmitAndWait(0); err != nil {
		return false
	}
	for i := range k {
		t.res[i] = -int32(unix.EAGAIN)
	}
	got := 0
	for {
		n := t.r.Reap(t.cq[:])
		for _, c := range t.cq[:n] {
			if c.UserData < uint64(k) {
				t.res[c.UserData] = c.Res
				got++
			}
		}
		if got >= k || t.r.Queued() == 0 {
			return true
		}
		// A request waits in the kernel (a file that ignored RWF_NOWAIT):
		// cancel it, so its buffer is free when run returns.
		t.r.PrepCancelFD(fd, ringEntries)
		if err := t.r.SubmitAndWait(t.r.Queued()); err != nil {
			return false
		}
	}
}

// ringRead reads up to k packets of p (descriptor fd) into b.bufs[n:] with
// one io_uring_enter, the packets moved to the front in arrival order.
// It returns how many it read; again when the caller should read again at
// once (every read found a packet, or RWF_NOWAIT was refused); ok
// false when the ring is closed (read with system calls instead). err is
// the device's error (os.ErrClosed at end of file).
func (p *tunPort) ringRead(t *tunRing, fd uintptr, b *tunBatch, n, k int) (m int, full, ok bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.r == nil {
		return 0, false, false, nil
	}
	flags := p.rwFlags.Load()
	retry := false
	for i := range k {
		t.r.PrepRead(int(fd), b.bufs[n+i][headroom-vnetLen:], flags, uint64(i))
	}
	if !t.run(int(fd), k) {
		return 0, false, false, nil
	}
	for i := range k {
		switch r := t.res[i]; {
		case r > 0:
			b.bufs[n+m], b.bufs[n+i] = b.bufs[n+i], b.bufs[n+m]
			b.sizes[n+m] = int(r)
			m++
		case r == 0:
			err = os.ErrClosed
		case r == -int32(unix.EOPNOTSUPP) && flags != 0:
			// a kernel whose TUN cannot honour RWF_NOWAIT: its
			// nonblocking descriptor gives the EAGAIN instead
			p.rwFlags.Store(0)
			retry = true
		case r == -int32(unix.EAGAIN), r == -int32(unix.ECANCELED), r == -int32(unix.EINTR):
		default:
			err = unix.Errno(-r)
		}
	}
	return m, m == k || retry, true, err
}

// ringWrite writes the queued packets s.tw.run (all to port p) through
// t with one io_uring_enter; it is the RawConn.Write function of s.tw
// (fnRing), so p's descriptor stays open meanwhile. A packet the ring
// could not write goes out with write(2).
func (w *tunWrite) ringWrite(fd uintptr) bool {
	t, p := w.ring, w.port
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.r == nil {
		w.errno = unix.EBADF // closed: the caller writes them one by one
		return true
	}
	k := len(w.run)
	flags := p.rwFlags.Load()
	for i, q := range w.run {
		t.r.PrepWrite(int(fd), q.buf, flags, uint64(i))
	}
	if !t.run(int(fd), k) {
		w.errno = unix.EBADF
		return true
	}
	w.written = k
	for i := range k {
		r := t.res[i]
		if r == -int32(unix.EOPNOTSUPP) && flags != 0 {
			p.rwFlags.Store(0)
		}
		if r == -int32(unix.EOPNOTSUPP) || r == -int32(unix.ECANCELED) {
			// again with write(2)
			w.b = w.run[i].buf
			w.fn(fd)
			w.b = nil
		} else if r < 0 {
			w.failed++
		}
	}
	return true
}

package fabric

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writeChunk is how many frames WriteBatch hands to one sendmmsg; its
// vectors live on the caller's stack.
const writeChunk = 64

// WriteBatch sends frames[i] to nextHops[i] for each i, as SendTo would,
// but puts the frames on the wire with one sendmmsg system call per 64
// frames instead of one sendmsg each. The receiver then finds several
// frames per wakeup, and wakeups are where most of the time goes: on a
// 2-core VM it moves about twice the 1500-byte frames per second that
// SendTo does. If errs is not nil it must be at least as long as
// frames, and errs[i] is set to SendTo's result for frames[i]. It returns
// how many frames were put in a receiver's queue (or, when delayed, in
// the delay queue). It is safe for concurrent use and does not allocate.
func (e *Endpoint) WriteBatch(nextHops []netip.Addr, frames []Frame, errs []error) int {
	n := min(len(nextHops), len(frames))
	if errs != nil {
		errs = errs[:len(frames)]
		clear(errs)
	}
	sent := 0
	for start := 0; start < n; start += writeChunk {
		sent += e.writeChunk(nextHops[start:min(n, start+writeChunk)], frames[start:min(n, start+writeChunk)], errs, start)
	}
	return sent
}

func (e *Endpoint) writeChunk(nextHops []netip.Addr, frames []Frame, errs []error, base int) int {
	var (
		msgs  [writeChunk]mmsghdr
		iovs  [writeChunk][2]unix.Iovec
		hdrs  [writeChunk][HeaderLen]byte
		idx   [writeChunk]uint8 // message slot to frame index
		tapN  int               // frames to copy to taps
		tapTo [writeChunk]string
		tapF  [writeChunk]*Frame
	)
	setErr := func(i int, err error) {
		if errs != nil {
			errs[base+i] = err
		}
	}
	k, sent := 0, 0
	tl := e.taps.Load()
	// flush copies the frames held for the socket to the taps and sends
	// them with one sendmmsg: at the end, and before a new ring's announce.
	flush := func() {
		if tapN > 0 {
			e.mirrorBatch(tl, &tapTo, &tapF, tapN)
			tapN = 0
		}
		if k == 0 {
			return
		}
		e.mu.RLock()
		defer e.mu.RUnlock()
		if e.closed {
			for j := range k {
				setErr(int(idx[j]), ErrClosed)
			}
			k = 0
			return
		}
		for j := 0; j < k; {
			r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(e.fd), uintptr(unsafe.Pointer(&msgs[j])), uintptr(k-j), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
			switch {
			case errno == unix.EINTR:
			case errno != 0:
				// sendmmsg reports an error only when the first message
				// fails; skip that one and go on.
				i := int(idx[j])
				setErr(i, e.txResult(errno, len(frames[i].Packet)))
				j++
			default:
				var bytes uint64
				for _, m := range msgs[j : j+int(r)] {
					bytes += uint64(m.len) - HeaderLen
				}
				e.stats.txFrames.Add(uint64(r))
				e.stats.txBytes.Add(bytes)
				sent += int(r)
				j += int(r)
			}
		}
		k = 0
	}
	nt := e.neigh.Load()
	imp := e.imp.Load()
	down := e.down.Load()
	for i := range frames {
		f := &frames[i]
		p := nt.byAddr[nextHops[i]]
		if p == nil && nextHops[i].Is4In6() {
			p = nt.byAddr[nextHops[i].Unmap()]
		}
		if p == nil {
			e.stats.txNoNeighbor.Add(1)
			setErr(i, ErrNoNeighbor)
			continue
		}
		if err := checkFrame(&f.GSO, len(f.Packet)); err != nil {
			e.stats.txBadFrame.Add(1)
			setErr(i, err)
			continue
		}
		if uint64(len(f.Packet)) > maxPacket {
			e.stats.txBadFrame.Add(1)
			setErr(i, ErrTooLarge)
			continue
		}
		if down {
			e.stats.txLinkDown.Add(1)
			setErr(i, ErrLinkDown)
			continue
		}
		if tl != nil {
			if p.link != nil && (imp == nil || !imp.delays) {
				// It may go into a ring at once, below: the copy must
				// leave first, or the receiver's answer could reach the
				// taps before it.
				e.mirror(tl, p.name, f)
			} else {
				tapTo[tapN], tapF[tapN] = p.name, f
				tapN++
			}
		}
		if imp != nil {
			if imp.lose() {
				e.stats.txLoss.Add(1)
				continue
			}
			if imp.delays {
				if err := e.delay.push(e, imp, p, f); err != nil {
					setErr(i, err)
				} else {
					sent++
				}
				continue
			}
		}
		if p.link != nil {
			if handled, err := e.ringSend(p.link, &f.GSO, f.Packet, flush); handled {
				if err != nil {
					setErr(i, err)
				} else {
					sent++
				}
				continue
			}
		}
		putHeader(&hdrs[k], &f.GSO, len(f.Packet))
		iovs[k][0].Base = &hdrs[k][0]
		iovs[k][0].SetLen(HeaderLen)
		setIov(&iovs[k][1], f.Packet)
		// Stored by index, not through a pointer, so that the vectors
		// stay on the stack.
		msgs[k].hdr.Name = (*byte)(unsafe.Pointer(&p.sa.raw))
		msgs[k].hdr.Namelen = p.sa.len
		msgs[k].hdr.Iov = &iovs[k][0]
		msgs[k].hdr.SetIovlen(2)
		idx[k] = uint8(i)
		k++
	}
	flush()
	return sent
}

// mirrorBatch copies n frames to every tap, one sendmmsg per tap, as
// mirror does one by one. The copies share one timestamp.
func (e *Endpoint) mirrorBatch(tl *tapList, to *[writeChunk]string, fs *[writeChunk]*Frame, n int) {
	var (
		msgs [writeChunk]mmsghdr
		iovs [writeChunk][5]unix.Iovec
		hdrs [writeChunk][tapHeaderLen]byte
	)
	now := nanotime()
	for i := range n {
		f := fs[i]
		putTapHeader(&hdrs[i], tapFrame, e.tapMeta[0], e.tapMeta[1], to[i], now, &f.GSO, len(f.Packet))
		iovs[i][0].Base = &hdrs[i][0]
		iovs[i][0].SetLen(tapHeaderLen)
		setIovString(&iovs[i][1], e.tapMeta[0])
		setIovString(&iovs[i][2], e.tapMeta[1])
		setIovString(&iovs[i][3], to[i])
		setIov(&iovs[i][4], f.Packet)
		msgs[i].hdr.Iov = &iovs[i][0]
		msgs[i].hdr.SetIovlen(5)
	}
	var sent, dropped uint64
	e.mu.RLock()
	if !e.closed {
		for _, t := range tl.taps {
			if t.dead.Load() {
				continue
			}
			for i := range n {
				msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&t.sa.raw))
				msgs[i].hdr.Namelen = t.sa.len
			}
		send:
			for j := 0; j < n; {
				r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(e.tapFD), uintptr(unsafe.Pointer(&msgs[j])), uintptr(n-j), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
				switch errno {
				case 0:
					sent += uint64(r)
					j += int(r)
				case unix.EINTR:
				case unix.ECONNREFUSED, unix.ENOENT, unix.ENOTDIR:
					t.dead.Store(true)
					dropped += uint64(n - j)
					break send
				case unix.EAGAIN, unix.ENOBUFS:
					// The tap's queue is full: the rest would only fail
					// one by one.
					dropped += uint64(n - j)
					break send
				default:
					dropped++
					j++
				}
			}
		}
	}
	e.mu.RUnlock()
	if sent > 0 {
		e.stats.tapFrames.Add(sent)
	}
	if dropped > 0 {
		e.stats.tapDrops.Add(dropped)
	}
}

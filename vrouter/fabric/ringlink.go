package fabric

import (
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/header"
)

// link is the sending side's state toward one neighbour: the ring to it,
// if one is made, and what decides when to make one. Neighbour tables
// rebuilt by SetNeighbors keep the same link per node name.
type link struct {
	name string
	sa   sockaddr

	mu      sync.Mutex // serializes the producers of this process
	r       *ring
	count   int           // frames sent over the socket since since
	since   time.Duration // since Endpoint.epoch
	retry   time.Duration // no new ring before then (after a failure)
	checked time.Duration // last liveness check
	head    uint64        // the consumer's head then
	puts    uint          // frames put in the ring
}

// livenessEvery is how often at most a producer checks that the consumer
// of its ring is alive, when the ring is full or the consumer seems stuck.
const livenessEvery = 5 * time.Millisecond

// linkFor returns the endpoint's link to node, making it.
func (e *Endpoint) linkFor(node string) *link {
	e.linksMu.Lock()
	defer e.linksMu.Unlock()
	l := e.links[node]
	if l == nil {
		l = &link{name: node}
		l.sa.setJoin(e.netDir, node)
		e.links[node] = l
	}
	return l
}

// ringPath is the file of the ring from node from to node to.
func (e *Endpoint) ringPath(to, from string) string {
	return filepath.Join(e.netDir, ringsDir, to, from)
}

// ringSend puts one frame in the ring to l's node, making the ring when
// the link has become busy. handled false means "use the socket".
//
// before, if not nil, runs before a new ring is announced: WriteBatch
// sends the frames it holds for the socket then, so that the announce
// (and the frames behind it in the ring) cannot overtake them.
func (e *Endpoint) ringSend(l *link, g *header.GSO, pkt []byte, before func()) (handled bool, err error) {
	l.mu.Lock()
	r := l.r
	if r == nil {
		if r = e.maybeRing(l, before); r == nil {
			l.mu.Unlock()
			return false, nil
		}
	}
	if r.gone().Load() != 0 {
		// the consumer left (closed, or restarted and disowned it)
		l.r = nil
		e.stats.ringsOut.Add(-1)
		r.remove()
		l.count, l.since = 0, time.Since(e.epoch)
		l.mu.Unlock()
		return false, nil
	}
	if len(pkt) > r.maxPacket() {
		l.mu.Unlock()
		return false, nil
	}
	ok := r.put(g, pkt)
	wake := ok && r.sleeping().Load() != 0 && r.sleeping().CompareAndSwap(1, 0)
	if l.puts++; !ok || l.puts%64 == 0 {
		// Is anyone still reading? When the ring is full, or the consumer
		// has not moved for a while though there is something to read,
		// send a doorbell anyway: it wakes a consumer that missed one, and
		// the kernel refuses it if the consumer is dead. At most every
		// few milliseconds.
		if now := time.Since(e.epoch); now-l.checked >= livenessEvery {
			h := r.head().Load()
			if !ok || h == l.head && h != r.pos {
				wake = true
			}
			l.checked, l.head = now, h
		}
	}
	l.mu.Unlock()
	if wake {
		if errno := e.control(&l.sa, ctlDoorbell, ""); errno == unix.ECONNREFUSED || errno == unix.ENOENT || errno == unix.ENOTDIR {
			l.mu.Lock()
			if l.r == r {
				l.r = nil
				e.stats.ringsOut.Add(-1)
				r.remove()
				l.count, l.since = 0, time.Since(e.epoch)
			}
			l.mu.Unlock()
			if !ok {
				e.stats.txNeighborDown.Add(1)
				return true, ErrNeighborDown
			}
		}
	}
	if !ok {
		e.stats.txQueueFull.Add(1)
		e.stats.ringTxFull.Add(1)
		return true, ErrQueueFull
	}
	e.stats.txFrames.Add(1)
	e.stats.txBytes.Add(uint64(len(pkt)))
	e.stats.ringTxFrames.Add(1)
	e.stats.ringTxBytes.Add(uint64(len(pkt)))
	return true, nil
}

// maybeRing counts a frame about to go over the socket and makes the ring
// once the link is busy enough. It is called with l.mu held.
func (e *Endpoint) maybeRing(l *link, before func()) *ring {
	if e.ringSize == 0 {
		return nil
	}
	l.count++
	if l.count < e.ringAfter {
		return nil
	}
	now := time.Since(e.epoch)
	if now-l.since > time.Second && e.ringAfter > 0 {
		l.count, l.since = 1, now
		return nil
	}
	if now < l.retry || e.closing.Load() {
		return nil
	}
	if before != nil {
		before()
	}
	r, err := createRing(e.ringPath(l.name, e.node), l.name, e.ringSize)
	if err == nil {
		// The announce names us; the consumer maps the file when it
		// reads it (frames put in the ring meanwhile wait there).
		if errno := e.control(&l.sa, ctlAnnounce, e.node); errno != 0 {
			r.remove()
			removeEmptyDirs(filepath.Dir(r.path), filepath.Join(e.netDir, ringsDir))
			r, err = nil, errno
		}
	}
	if err != nil {
		e.log("ring", l.name, err)
		l.retry = now + time.Second
		return nil
	}
	l.r = r
	e.stats.ringsOut.Add(1)
	return r
}

// control sends a control datagram (a doorbell or an announce with its
// payload) to sa.
func (e *Endpoint) control(sa *sockaddr, kind byte, payload string) unix.Errno {
	var h [HeaderLen]byte
	putControl(&h, kind, len(payload))
	var iov [2]unix.Iovec
	iov[0].Base = &h[0]
	iov[0].SetLen(HeaderLen)
	setIovString(&iov[1], payload)
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return unix.EBADF
	}
	return sendmsg(e.fd, sa, iov[:])
}

// closeRings drops this endpoint's rings at Close: outbound ones are
// marked closed (the consumer drops each once it has read it), inbound
// ones gone (the producer stops using it), and their files removed.
func (e *Endpoint) closeRings() {
	e.linksMu.Lock()
	for _, l := range e.links {
		l.mu.Lock()
		if l.r != nil {
			l.r.closed().Store(1)
			l.r.remove()
			l.r = nil
			e.stats.ringsOut.Add(-1)
		}
		l.mu.Unlock()
	}
	e.linksMu.Unlock()
	e.rx.mu.Lock()
	for _, r := range e.rx.rings {
		r.gone().Store(1)
		r.remove()
	}
	e.rx.rings = nil
	e.stats.ringsIn.Store(0)
	e.rx.mu.Unlock()
	removeEmptyDirs(filepath.Join(e.netDir, ringsDir, e.node), filepath.Join(e.netDir, ringsDir))
}

// disownRings runs at Attach: rings a previous incarnation of this node
// left (it was killed) are marked, gone the inbound ones so their
// producers stop and make new ones, closed the outbound ones so their
// consumers drop them, and removed.
func (e *Endpoint) disownRings() {
	base := filepath.Join(e.netDir, ringsDir)
	if ents, err := os.ReadDir(filepath.Join(base, e.node)); err == nil {
		for _, d := range ents {
			markRing(filepath.Join(base, e.node, d.Name()), ringGoneOff)
		}
	}
	if ents, err := os.ReadDir(base); err == nil {
		for _, d := range ents {
			if d.IsDir() && d.Name() != e.node {
				p := filepath.Join(base, d.Name(), e.node)
				if _, err := os.Lstat(p); err == nil {
					markRing(p, ringClosedOff)
				}
			}
		}
	}
}

// acceptRing maps the ring that node from announced, replacing an older
// one from it. Called by ReadBatch (rx.mu held).
func (e *Endpoint) acceptRing(from string) {
	if checkName("node", from) != nil {
		e.stats.rxBadFrame.Add(1)
		return
	}
	path := e.ringPath(e.node, from)
	rx := &e.rx
	for i, old := range rx.rings {
		if old.peer != from {
			continue
		}
		if sameFile(path, old.ino) {
			return // announced twice
		}
		old.unmap()
		rx.rings = append(rx.rings[:i], rx.rings[i+1:]...)
		e.stats.ringsIn.Store(int64(len(rx.rings)))
		break
	}
	r, err := openRing(path, from)
	if err != nil {
		e.log("ring from", from, err)
		return
	}
	rx.rings = append(rx.rings, r)
	e.stats.ringsIn.Store(int64(len(rx.rings)))
}

// log reports a ring problem, rare: a ring that could not be made falls
// back to the socket.
func (e *Endpoint) log(what, peer string, err error) {
	slog.Debug("fabric: "+what, "network", e.network, "node", e.node, "peer", peer, "err", err)
}

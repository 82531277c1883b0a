package fabric

import (
	"github.com/fsnotify/fsnotify"

	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/header"
)

// tapsDir is the directory, inside a network's, where taps bind.
const tapsDir = "taps"

// A tap datagram is a copy of one frame with its metadata, or a hello an
// endpoint sends when it starts copying frames to a tap:
//
//	offset size field
//	     0    1 version (tapVersion)
//	     1    1 kind (tapFrame, tapHello)
//	     2    1 length of the sender node name
//	     3    1 length of the sender interface name
//	     4    1 length of the receiver node name
//	     5    3 reserved, 0
//	     8    8 time sent, ns since the Unix epoch
//	    16    4 packet length as sent
//	    20   10 GSO: flags, type, hdr_len, gso_size, csum_start, csum_offset
//	    30    2 reserved, 0
//	    32    . sender node, sender interface, receiver node, packet
//
// Multi-byte fields are big-endian.
const (
	tapVersion   = 1
	tapHeaderLen = 32
	tapFrame     = 0
	tapHello     = 1
)

func putTapHeader(h *[tapHeaderLen]byte, kind byte, from, iface, to string, now int64, g *header.GSO, n int) {
	h[0] = tapVersion
	h[1] = kind
	h[2] = byte(len(from))
	h[3] = byte(len(iface))
	h[4] = byte(len(to))
	binary.BigEndian.PutUint64(h[8:], uint64(now))
	binary.BigEndian.PutUint32(h[16:], uint32(n))
	g.Put(h[20:30])
}

// TapRecord is one frame a tap captured: a copy of a frame as its sender
// put it on the network.
type TapRecord struct {
	Time      time.Time // when it was sent
	From      string    // sender node
	To        string    // receiver node
	Interface string    // sender's interface (Options.Interface), e.g. "node1/ens33"
	Length    int       // packet length as sent; more than len(Packet) if the record was truncated
	GSO       header.GSO
	Packet    []byte
}

var errTapRecord = errors.New("fabric: malformed tap record")

// decodeTapRecord decodes a tap datagram into r, reusing r.Packet's
// storage; name turns name bytes into strings.
func decodeTapRecord(b []byte, r *TapRecord, name func([]byte) string) (byte, error) {
	if len(b) < tapHeaderLen || b[0] != tapVersion || b[1] > tapHello {
		return 0, errTapRecord
	}
	nf, ni, nt := int(b[2]), int(b[3]), int(b[4])
	names := b[tapHeaderLen:]
	if len(names) < nf+ni+nt {
		return 0, errTapRecord
	}
	pkt := names[nf+ni+nt:]
	length := int(binary.BigEndian.Uint32(b[16:]))
	if len(pkt) > length {
		return 0, errTapRecord
	}
	r.Time = time.Unix(0, int64(binary.BigEndian.Uint64(b[8:])))
	r.From = name(names[:nf])
	r.Interface = name(names[nf : nf+ni])
	r.To = name(names[nf+ni : nf+ni+nt])
	r.Length = length
	r.GSO = header.DecodeGSO(b[20:30])
	r.Packet = append(r.Packet[:0], pkt...)
	return b[1], nil
}

// tapTarget is a tap an endpoint copies frames to.
type tapTarget struct {
	name    string
	ino     uint64
	sa      sockaddr
	greeted bool        // hello delivered; scanner goroutine only
	dead    atomic.Bool // refused: the capture is gone
}

// tapList is the immutable list of live taps senders copy to.
type tapList struct{ taps []*tapTarget }

// scanTaps looks for taps until the endpoint closes: when inotify reports
// a change in the network's directory or its taps directory, and every
// interval in case it missed one (or is unavailable). An idle lab then
// wakes for taps every few seconds instead of several times a second per
// node, which at a few hundred nodes was a CPU's worth of polling.
func (e *Endpoint) scanTaps(interval time.Duration) {
	defer e.wg.Done()
	known := map[string]*tapTarget{}
	t := time.NewTicker(interval)
	defer t.Stop()
	var events <-chan fsnotify.Event
	taps := filepath.Join(e.netDir, tapsDir)
	if w, err := fsnotify.NewWatcher(); err == nil {
		defer w.Close()
		if w.Add(e.netDir) == nil {
			events = w.Events
			_ = w.Add(taps) // not there until the first capture
		}
		go func() { // ends when Close closes Errors
			for range w.Errors {
			}
		}()
		// The taps directory appears with the first capture: watch it then.
		watchTaps := func(ev fsnotify.Event) {
			if ev.Name == taps && ev.Has(fsnotify.Create) {
				_ = w.Add(taps)
			}
		}
		for {
			e.rescanTaps(known)
			select {
			case <-e.done:
				return
			case ev, ok := <-events:
				if !ok {
					events = nil
					continue
				}
				watchTaps(ev)
			case <-t.C:
			}
		}
	}
	for {
		e.rescanTaps(known)
		select {
		case <-e.done:
			return
		case <-t.C:
		}
	}
}

// rescanTaps brings the endpoint's tap list up to date with the taps
// directory. A tap that refused a copy stays ignored until its file is
// replaced.
func (e *Endpoint) rescanTaps(known map[string]*tapTarget) {
	dir := filepath.Join(e.netDir, tapsDir)
	ents, _ := os.ReadDir(dir) // none yet: no taps
	seen := make(map[string]bool, len(ents))
	for _, de := range ents {
		name := de.Name()
		if de.Type() != fs.ModeSocket || !strings.HasSuffix(name, sockSuffix) {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		seen[name] = true
		if t := known[name]; t != nil && t.ino == st.Ino {
			continue
		}
		t := &tapTarget{name: name, ino: st.Ino}
		if t.sa.set(filepath.Join(dir, name)) != nil {
			t.dead.Store(true)
		}
		known[name] = t
	}
	var live []*tapTarget
	for name, t := range known {
		if !seen[name] {
			delete(known, name)
			continue
		}
		if !t.dead.Load() {
			live = append(live, t)
		}
	}
	slices.SortFunc(live, func(a, b *tapTarget) int { return strings.Compare(a.name, b.name) })
	var cur []*tapTarget
	if old := e.taps.Load(); old != nil {
		cur = old.taps
	}
	switch {
	case slices.Equal(live, cur):
	case len(live) == 0:
		e.taps.Store(nil)
	default:
		e.taps.Store(&tapList{taps: live})
	}
	// Greet new taps only now that frames are being copied to them: a
	// tap that has its hello misses nothing sent afterwards.
	for _, t := range live {
		if !t.greeted {
			e.greet(t)
		}
	}
}

// greet sends a tap the hello that tells it this endpoint copies frames
// to it (Tap.WaitReady waits for those).
func (e *Endpoint) greet(t *tapTarget) {
	var h [tapHeaderLen]byte
	putTapHeader(&h, tapHello, e.tapMeta[0], e.tapMeta[1], "", nanotime(), &header.GSO{}, 0)
	var iov [3]unix.Iovec
	iov[0].Base = &h[0]
	iov[0].SetLen(tapHeaderLen)
	setIovString(&iov[1], e.tapMeta[0])
	setIovString(&iov[2], e.tapMeta[1])
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return
	}
	switch sendmsg(e.tapFD, &t.sa, iov[:]) {
	case 0:
		t.greeted = true
	case unix.ECONNREFUSED, unix.ENOENT, unix.ENOTDIR:
		t.dead.Store(true)
	}
}

// mirror copies one frame, with its metadata, to every tap. It never
// waits: a tap whose queue is full misses the copy (TapDrops), one that
// refuses it is gone and is forgotten.
func (e *Endpoint) mirror(tl *tapList, to string, f *Frame) {
	var h [tapHeaderLen]byte
	putTapHeader(&h, tapFrame, e.tapMeta[0], e.tapMeta[1], to, nanotime(), &f.GSO, len(f.Packet))
	var iov [5]unix.Iovec
	iov[0].Base = &h[0]
	iov[0].SetLen(tapHeaderLen)
	setIovString(&iov[1], e.tapMeta[0])
	setIovString(&iov[2], e.tapMeta[1])
	setIovString(&iov[3], to)
	setIov(&iov[4], f.Packet)
	var sent, dropped uint64
	e.mu.RLock()
	if !e.closed {
		for _, t := range tl.taps {
			if t.dead.Load() {
				continue
			}
			switch sendmsg(e.tapFD, &t.sa, iov[:]) {
			case 0:
				sent++
			case unix.ECONNREFUSED, unix.ENOENT, unix.ENOTDIR:
				t.dead.Store(true)
				dropped++
			default:
				dropped++
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

// setIovString points an iovec at the bytes of s, which the kernel only
// reads.
func setIovString(iov *unix.Iovec, s string) {
	if len(s) == 0 {
		iov.Base = &zeroByte
		iov.SetLen(0)
		return
	}
	iov.Base = unsafe.StringData(s)
	iov.SetLen(len(s))
}

// TapOptions configures a tap.
type TapOptions struct {
	// Namespace, if not empty, is a named network namespace to create the
	// tap's socket in, so that its net.unix.max_dgram_qlen (see
	// SetMaxDgramQlen) sets how many records may wait for Read; in the
	// root namespace that is usually 10, and a capture under load misses
	// copies. Needs root.
	Namespace string
	// SocketBuffer is the SO_RCVBUF/SO_SNDBUF to ask for; zero means
	// DefaultSocketBuffer.
	SocketBuffer int
	// MaxRecord is the largest record Read takes whole (longer packets are
	// truncated: TapRecord.Length tells the original length); zero means
	// DefaultMaxRecord.
	MaxRecord int
}

// DefaultMaxRecord is TapOptions.MaxRecord's default: room for a 64 KB GSO
// super-packet and its metadata.
const DefaultMaxRecord = 1<<16 + 1024

// Tap captures what crosses an underlay network: every endpoint of the
// network sends it a copy of every frame it sends (see the package
// documentation for exactly which). Any process may open taps; each is a
// socket at <dir>/<network>/taps/<id>.sock.
type Tap struct {
	network string
	netDir  string
	path    string
	ino     uint64
	file    *os.File
	rc      syscall.RawConn

	mu      sync.Mutex // serializes Read and WaitReady
	buf     []byte
	n       int
	trunc   bool
	errno   unix.Errno
	fn      func(fd uintptr) bool
	pending []TapRecord
	heard   map[string]bool   // nodes known to copy frames here
	names   map[string]string // interned node and interface names
	closed  atomic.Bool
}

// OpenTap opens a tap on the network with default options.
func OpenTap(dir, network string) (*Tap, error) {
	return OpenTapWithOptions(dir, network, TapOptions{})
}

// OpenTapWithOptions opens a tap on the network. Tap sockets left by
// captures that were killed are removed first. Endpoints notice the new
// tap within their TapScanInterval; WaitReady waits until they have.
func OpenTapWithOptions(dir, network string, opts TapOptions) (*Tap, error) {
	if dir == "" {
		return nil, errors.New("fabric: open tap: empty directory")
	}
	if err := checkName("network", network); err != nil {
		return nil, err
	}
	size := opts.SocketBuffer
	if size == 0 {
		size = DefaultSocketBuffer
	}
	maxRec := opts.MaxRecord
	if maxRec <= 0 {
		maxRec = DefaultMaxRecord
	}
	netDir := filepath.Join(dir, network)
	tdir := filepath.Join(netDir, tapsDir)
	removeStaleTaps(tdir)
	t := &Tap{
		network: network,
		netDir:  netDir,
		path:    filepath.Join(tdir, fmt.Sprintf("%d-%08x%s", os.Getpid(), rand.Uint32(), sockSuffix)),
		buf:     make([]byte, tapHeaderLen+3*maxName+maxRec),
		heard:   map[string]bool{},
		names:   map[string]string{},
	}
	fd, err := newSocket(opts.Namespace, size)
	if err != nil {
		return nil, fmt.Errorf("fabric: open tap on %s: %w", network, err)
	}
	if err := bindSocket(fd, t.path); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fabric: open tap on %s: %w", network, err)
	}
	t.ino = inode(t.path)
	t.file = os.NewFile(uintptr(fd), t.path)
	if t.rc, err = t.file.SyscallConn(); err != nil {
		t.Close()
		return nil, fmt.Errorf("fabric: open tap on %s: %w", network, err)
	}
	t.fn = t.recv
	return t, nil
}

// removeStaleTaps removes the tap sockets in dir nobody is bound to.
func removeStaleTaps(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, de := range ents {
		if de.Type() != fs.ModeSocket || !strings.HasSuffix(de.Name(), sockSuffix) {
			continue
		}
		p := filepath.Join(dir, de.Name())
		var sa sockaddr
		if sa.set(p) != nil {
			continue
		}
		ino := inode(p)
		if !alive(&sa) && sameFile(p, ino) {
			_ = os.Remove(p)
		}
	}
}

// Path returns the tap's socket path.
func (t *Tap) Path() string { return t.path }

func (t *Tap) recv(fd uintptr) bool {
	var iov unix.Iovec
	iov.Base = &t.buf[0]
	iov.SetLen(len(t.buf))
	var msg unix.Msghdr
	msg.Iov = &iov
	msg.SetIovlen(1)
	for {
		n, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		t.n, t.errno, t.trunc = int(n), errno, msg.Flags&unix.MSG_TRUNC != 0
		return true
	}
}

// aLongTimeAgo is a deadline in the past, to interrupt a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// name interns a node or interface name, so that reading records does not
// allocate a string per record.
func (t *Tap) name(b []byte) string {
	if s, ok := t.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(t.names) < 4096 {
		t.names[s] = s
	}
	return s
}

// next reads one record (hello or frame) into r and notes its sender.
func (t *Tap) next(ctx context.Context, r *TapRecord) (byte, error) {
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if t.closed.Load() {
			return 0, ErrClosed
		}
		_ = t.file.SetReadDeadline(time.Time{})
		var stop func() bool
		if ctx.Done() != nil {
			stop = context.AfterFunc(ctx, t.interrupt)
		}
		err := t.rc.Read(t.fn)
		if stop != nil {
			stop()
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue // ctx ended (checked above), or a late deadline from a previous call
			}
			return 0, ErrClosed
		}
		if t.errno != 0 {
			return 0, t.errno
		}
		kind, err := decodeTapRecord(t.buf[:t.n], r, t.name)
		if err != nil {
			continue
		}
		t.heard[r.From] = true
		return kind, nil
	}
}

// interrupt makes a blocked read return.
func (t *Tap) interrupt() { _ = t.file.SetReadDeadline(aLongTimeAgo) }

// Read returns the next frame captured, waiting until one arrives, ctx
// ends (its error is returned) or the tap is closed (ErrClosed). Records
// from one endpoint arrive in the order it sent them; records from
// different endpoints in the order they arrived (sort by Time for the
// order they were sent). Calls are serialized.
func (t *Tap) Read(ctx context.Context) (TapRecord, error) {
	var r TapRecord
	err := t.ReadInto(ctx, &r)
	return r, err
}

// ReadInto is Read storing the record in r and reusing r.Packet's
// storage (and the name strings of earlier records), so a capture loop
// need not allocate per record; a ctx that can be done costs a few small
// allocations per call (context.AfterFunc).
func (t *Tap) ReadInto(ctx context.Context, r *TapRecord) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) > 0 {
		p := t.pending[0]
		t.pending = t.pending[1:]
		pkt := append(r.Packet[:0], p.Packet...)
		*r = p
		r.Packet = pkt
		return nil
	}
	for {
		kind, err := t.next(ctx, r)
		if err != nil {
			return err
		}
		if kind == tapFrame {
			return nil
		}
	}
}

// WaitReady waits until every endpoint attached to the network (a live
// socket in its directory) copies its frames to this tap, so that nothing
// sent afterwards is missed. Frames captured meanwhile are kept for Read.
// It returns ctx's error if ctx ends first (endpoints with taps disabled
// never get ready).
func (t *Tap) WaitReady(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		missing := t.unheard()
		if len(missing) == 0 {
			return nil
		}
		// Wait a little at a time: an endpoint may go away meanwhile.
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		var r TapRecord
		kind, err := t.next(wctx, &r)
		cancel()
		switch {
		case err == nil:
			if kind == tapFrame {
				t.pending = append(t.pending, r)
			}
		case ctx.Err() != nil:
			return fmt.Errorf("fabric: tap on %s: waiting for %s: %w", t.network, strings.Join(missing, ", "), ctx.Err())
		case errors.Is(err, context.DeadlineExceeded):
		default:
			return err
		}
	}
}

// unheard lists the live endpoints of the network not yet known to copy
// frames to the tap.
func (t *Tap) unheard() []string {
	ents, _ := os.ReadDir(t.netDir)
	var out []string
	for _, de := range ents {
		node, ok := strings.CutSuffix(de.Name(), sockSuffix)
		if !ok || de.Type() != fs.ModeSocket || t.heard[node] {
			continue
		}
		var sa sockaddr
		if sa.set(filepath.Join(t.netDir, de.Name())) == nil && alive(&sa) {
			out = append(out, node)
		}
	}
	return out
}

// Close closes the tap and removes its socket file, and the taps and
// network directories if nothing else is left in them. A blocked Read
// returns ErrClosed.
func (t *Tap) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	err := t.file.Close()
	if t.ino != 0 && sameFile(t.path, t.ino) {
		_ = os.Remove(t.path)
	}
	removeEmptyDirs(filepath.Dir(t.path), t.netDir)
	return err
}

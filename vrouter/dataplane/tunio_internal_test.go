package dataplane

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/vrouter/uring"
)

// requireUring fails (CI) or skips a test that needs io_uring.
func requireUring(t *testing.T) {
	t.Helper()
	if err := uring.Supported(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("io_uring not usable: %v", err)
		}
		t.Skipf("io_uring not usable: %v", err)
	}
}

func TestResolveTUNIO(t *testing.T) {
	requireUring(t)
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	t.Setenv(TUNIOEnv, "")
	for _, c := range []struct{ cfg, env, want string }{
		{"", "", DefaultTUNIO},
		{"", "uring", TUNIOUring},
		{"", "read", TUNIORead},
		{"read", "uring", TUNIORead},
		{"uring", "read", TUNIOUring},
	} {
		t.Setenv(TUNIOEnv, c.env)
		got, err := resolveTUNIO(c.cfg, log)
		if err != nil || got != c.want {
			t.Errorf("config %q, env %q: %q %v, want %q", c.cfg, c.env, got, err, c.want)
		}
	}
	if _, err := resolveTUNIO("epoll", log); err == nil {
		t.Error("an unknown mode was accepted")
	}
	want := 2
	if DefaultTUNIO == TUNIOUring {
		want = 3
	}
	if n := strings.Count(logBuf.String(), "through io_uring"); n != want {
		t.Errorf("logged %q, want a line for each engine using io_uring", logBuf.String())
	}
	logBuf.Reset()
	// Where io_uring is missing or disabled: plain reads, one log line.
	uringSupported = func() error { return errors.New("io_uring disabled (kernel.io_uring_disabled = 2)") }
	defer func() { uringSupported = uring.Supported }()
	got, err := resolveTUNIO(TUNIOUring, log)
	if err != nil || got != TUNIORead {
		t.Errorf("without io_uring: %q %v, want %q", got, err, TUNIORead)
	}
	if n := strings.Count(logBuf.String(), "\n"); n != 1 || !strings.Contains(logBuf.String(), "io_uring_disabled") {
		t.Errorf("without io_uring logged %d lines: %q", n, logBuf.String())
	}
}

// ringRig is a TUN port on one end of a unix datagram socket pair (one
// message per read or write, as a TUN device), the test holding the
// other, and a batch of an engine using io_uring.
type ringRig struct {
	e    *Engine
	p    *tunPort
	peer int
	b    *tunBatch

	// read's call, made once so that reading allocates nothing
	k, n   int
	ok     bool
	err    error
	readFn func(fd uintptr)
}

func newRingRig(t *testing.T) *ringRig {
	t.Helper()
	requireUring(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "faketun")
	t.Cleanup(func() { f.Close(); unix.Close(fds[1]) })
	p, err := newTUNPort(firstWorkload, fileDevice{f})
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{tunIO: TUNIOUring, log: slog.Default()}
	e.batches.init(1)
	t.Cleanup(e.closeRings)
	b := newTUNBatch(e)
	if b.s.tw.ring == nil {
		t.Fatal("the batch's sender has no ring")
	}
	r := &ringRig{e: e, p: p, peer: fds[1], b: b}
	r.readFn = func(fd uintptr) {
		r.n, _, r.ok, r.err = r.p.ringRead(r.b.s.tw.ring, fd, r.b, 0, r.k)
	}
	return r
}

type fileDevice struct{ f *os.File }

func (d fileDevice) File() *os.File { return d.f }

// read reads the port through the ring as readTUN does and returns the
// packets read and whether the ring was used.
func (r *ringRig) read(t *testing.T, k int) (n int, ok bool) {
	t.Helper()
	r.k = k
	if err := r.p.rc.Control(r.readFn); err != nil {
		t.Fatal(err)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.n, r.ok
}

// The ring reads the packets queued on a port in one call, in order, and
// finds the empty port empty (EAGAIN: nothing waits in the kernel); the
// batch's writes to one port go out in one call, in order; neither
// allocates.
func TestRingReadWrite(t *testing.T) {
	r := newRingRig(t)
	msg := func(i int) []byte { return []byte(strings.Repeat(string(rune('a'+i)), 10+i)) }
	for i := range 5 {
		if _, err := unix.Write(r.peer, msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	n, ok := r.read(t, 8)
	if !ok || n != 5 {
		t.Fatalf("read %d packets (ring used: %v), want 5", n, ok)
	}
	for i := range n {
		got := r.b.bufs[i][headroom-vnetLen:][:r.b.sizes[i]]
		if !bytes.Equal(got, msg(i)) {
			t.Errorf("packet %d: %q, want %q", i, got, msg(i))
		}
	}
	if n, _ := r.read(t, 8); n != 0 {
		t.Errorf("read %d packets from an empty port", n)
	}
	run := make([]pending, 3)
	for i := range run {
		run[i] = pending{port: r.p.id, buf: msg(i)}
	}
	if err := r.p.writeRun(&r.b.s.tw, run); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	for i := range run {
		m, err := unix.Read(r.peer, buf)
		if err != nil || !bytes.Equal(buf[:m], msg(i)) {
			t.Fatalf("written packet %d: %q %v, want %q", i, buf[:max(m, 0)], err, msg(i))
		}
	}

	pkt := msg(3)
	allocs := testing.AllocsPerRun(100, func() {
		for range 3 {
			_, _ = unix.Write(r.peer, pkt)
		}
		if n, _ := r.read(t, 8); n != 3 {
			t.Fatalf("read %d", n)
		}
		if err := r.p.writeRun(&r.b.s.tw, run); err != nil {
			t.Fatal(err)
		}
		for range run {
			_, _ = unix.Read(r.peer, buf)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per round of ring reads and writes", allocs)
	}
}

// Once the engine's rings are closed (Close), a reader holding a batch
// is told to use system calls, and writes still go out.
func TestRingClosed(t *testing.T) {
	r := newRingRig(t)
	r.e.closeRings()
	if _, err := unix.Write(r.peer, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.read(t, 8); ok {
		t.Error("a closed ring read")
	}
	run := []pending{{buf: []byte("one")}, {buf: []byte("two")}}
	if err := r.p.writeRun(&r.b.s.tw, run); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	var m int
	var err error
	_ = r.p.rc.Control(func(fd uintptr) { m, err = rawRead(fd, buf) })
	if err != nil || string(buf[:m]) != "x" {
		t.Errorf("the packet the closed ring did not read: %q %v", buf[:max(m, 0)], err)
	}
	for _, want := range []string{"one", "two"} {
		m, err := unix.Read(r.peer, buf)
		if err != nil || string(buf[:m]) != want {
			t.Fatalf("got %q %v, want %q", buf[:max(m, 0)], err, want)
		}
	}
	// no ring is made after Close
	r.e.closed.Store(true)
	if r.e.newTunRing() != nil {
		t.Error("a closed engine made a ring")
	}
}

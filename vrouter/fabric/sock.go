package fabric

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// DefaultSocketBuffer is the SO_SNDBUF and SO_RCVBUF an endpoint asks for
// when Options.SocketBuffer is zero. For unix datagram sockets the send
// buffer is what counts: every datagram a socket has sent and its receiver
// has not yet read is charged to it, so it bounds the bytes one endpoint
// can have in flight (the kernel doubles the figure for bookkeeping).
const DefaultSocketBuffer = 4 << 20

// maxSunPath is the room for a path in struct sockaddr_un, the terminating
// NUL included.
const maxSunPath = len(unix.RawSockaddrUnix{}.Path)

// sockaddr is a prebuilt struct sockaddr_un, so that sending needs neither
// a conversion nor an allocation.
type sockaddr struct {
	raw unix.RawSockaddrUnix
	len uint32
}

// set fills sa with path, which must fit.
func (sa *sockaddr) set(path string) error {
	if len(path) >= maxSunPath {
		return fmt.Errorf("socket path %s is %d bytes, longer than the %d a unix socket address allows", path, len(path), maxSunPath-1)
	}
	sa.raw = unix.RawSockaddrUnix{Family: unix.AF_UNIX}
	for i := 0; i < len(path); i++ {
		sa.raw.Path[i] = int8(path[i])
	}
	sa.len = uint32(unsafe.Offsetof(sa.raw.Path)) + uint32(len(path)) + 1
	return nil
}

// setJoin fills sa with dir + "/" + name + ".sock" without allocating.
func (sa *sockaddr) setJoin(dir, name string) bool {
	n := len(dir) + 1 + len(name) + len(sockSuffix)
	if n >= maxSunPath {
		return false
	}
	sa.raw = unix.RawSockaddrUnix{Family: unix.AF_UNIX}
	i := 0
	for j := 0; j < len(dir); j++ {
		sa.raw.Path[i] = int8(dir[j])
		i++
	}
	sa.raw.Path[i] = '/'
	i++
	for j := 0; j < len(name); j++ {
		sa.raw.Path[i] = int8(name[j])
		i++
	}
	for j := 0; j < len(sockSuffix); j++ {
		sa.raw.Path[i] = int8(sockSuffix[j])
		i++
	}
	sa.len = uint32(unsafe.Offsetof(sa.raw.Path)) + uint32(n) + 1
	return true
}

const sockSuffix = ".sock"

// newSocket makes a nonblocking unix datagram socket, inside the named
// network namespace when ns is not empty (so that namespace's
// net.unix.max_dgram_qlen applies to it), with send and receive buffers of
// size bytes (forced past the system limits when the process may).
func newSocket(ns string, size int) (int, error) {
	fd := -1
	mk := func() error {
		var err error
		fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("unix datagram socket: %w", err)
		}
		return nil
	}
	var err error
	if ns != "" {
		err = netns.Do(ns, mk)
	} else {
		err = mk()
	}
	if err != nil {
		return -1, err
	}
	if size > 0 {
		setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, size)
		setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, size)
	}
	return fd, nil
}

// setBuffer sets a socket buffer size, forced (CAP_NET_ADMIN) if possible
// and otherwise as large as net.core.[wr]mem_max allows.
func setBuffer(fd, force, plain, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) == nil {
		return
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
}

// bindSocket binds fd to path, creating its directory when needed. A socket
// file nobody is bound to any more (left by a process that crashed) is
// removed and the bind retried; a live one is an error.
func bindSocket(fd int, path string) error {
	var sa sockaddr
	if err := sa.set(path); err != nil {
		return err
	}
	var err error
	for range 5 {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		err = bindRaw(fd, &sa)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.ENOENT):
			// The directory vanished between MkdirAll and bind: the
			// last endpoint of the network closing. Make it again.
			continue
		case errors.Is(err, unix.EADDRINUSE):
			if alive(&sa) {
				return fmt.Errorf("bind %s: in use by a running process", path)
			}
			if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				return fmt.Errorf("bind %s: remove stale socket: %w", path, rmErr)
			}
			continue
		default:
			return fmt.Errorf("bind %s: %w", path, err)
		}
	}
	return fmt.Errorf("bind %s: %w", path, err)
}

func bindRaw(fd int, sa *sockaddr) error {
	_, _, errno := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)), uintptr(sa.len))
	if errno != 0 {
		return errno
	}
	return nil
}

// alive reports whether a process is bound to the datagram socket at sa:
// connect succeeds only then (ECONNREFUSED means a stale file, ENOENT none
// at all). Nothing is sent.
func alive(sa *sockaddr) bool {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return true // cannot tell: assume alive, never remove
	}
	defer unix.Close(fd)
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)), uintptr(sa.len))
	return errno != unix.ECONNREFUSED && errno != unix.ENOENT
}

// sendmsg sends the gathered iovecs as one datagram to sa without waiting:
// a full receiver queue or send buffer is EAGAIN.
func sendmsg(fd int, sa *sockaddr, iov []unix.Iovec) unix.Errno {
	var msg unix.Msghdr
	msg.Name = (*byte)(unsafe.Pointer(&sa.raw))
	msg.Namelen = sa.len
	msg.Iov = &iov[0]
	msg.SetIovlen(len(iov))
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if errno != unix.EINTR {
			return errno
		}
	}
}

// mmsghdr is struct mmsghdr for recvmmsg(2) and sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// setIov points an iovec at b (which may be empty).
func setIov(iov *unix.Iovec, b []byte) {
	if len(b) == 0 {
		iov.Base = &zeroByte
		iov.SetLen(0)
		return
	}
	iov.Base = &b[0]
	iov.SetLen(len(b))
}

var zeroByte byte

// removeEmptyDirs removes the directories in order, each only if empty,
// and stops at the first that is not (another endpoint or tap still uses
// it); one already gone is skipped.
func removeEmptyDirs(dirs ...string) {
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return
		}
	}
}

// sameFile reports whether path still names the socket file with inode ino
// (so a file another process made after a stale one was replaced is not
// removed by mistake).
func sameFile(path string, ino uint64) bool {
	var st unix.Stat_t
	return unix.Lstat(path, &st) == nil && st.Ino == ino
}

// inode returns the inode number of path, or 0.
func inode(path string) uint64 {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil {
		return 0
	}
	return st.Ino
}

// nanotime is the wall clock in nanoseconds since the Unix epoch, as tap
// records carry it.
func nanotime() int64 { return time.Now().UnixNano() }

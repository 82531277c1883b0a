package lab

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"golang.org/x/sys/unix"
)

// ErrBusy is returned by Lock when another command held the lab for longer
// than the caller would wait.
var ErrBusy = errors.New("lab is busy")

// Lock takes the lab's lock: an exclusive flock(2) on <StateRoot>/<lab>.lock
// that serialises the commands changing a lab (deploy, destroy, apply,
// workload add and del, node restart, link set) across processes. holder describes
// the caller ("deploy -t lab.yaml") and is written into the lock file, so
// a command that finds the lab busy can say who holds it: it says so once
// on notice (nil: silently), waits up to wait, then fails with an error
// wrapping ErrBusy. The lock ends when the returned function is called or
// the process exits; when the lab then has no state directory (nothing, or
// something that is not a directory), the lock file goes too.
func Lock(name, holder string, wait time.Duration, notice io.Writer) (unlock func(), err error) {
	dir, err := Dir(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(topology.StateRoot, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", topology.StateRoot, err)
	}
	path := lockPath(name)
	deadline := time.Now().Add(wait)
	told := false
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, fileMode)
		if err != nil {
			return nil, fmt.Errorf("lock lab %s: %w", name, err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := lockHolder(f)
			f.Close()
			if !time.Now().Before(deadline) {
				return nil, fmt.Errorf("lab %s: %w: %s holds it; try again once it has finished", name, ErrBusy, who)
			}
			if !told && notice != nil {
				fmt.Fprintf(notice, "lab %s is busy: %s holds it; waiting up to %s\n", name, who, wait.Round(time.Second))
				told = true
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock lab %s: %w", name, err)
		}
		// The holder before us may have removed the file (see unlock):
		// a lock on an unlinked file locks nothing.
		if !sameFile(f, path) {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(fmt.Sprintf("vrouter %s (pid %d)\n", topology.Shorten(holder), os.Getpid())), 0)
		}
		return func() {
			if fi, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) || err == nil && !fi.IsDir() {
				_ = os.Remove(path)
			} else {
				_ = f.Truncate(0)
			}
			f.Close()
		}, nil
	}
}

// lockHolder reads who holds a lock from its file.
func lockHolder(f *os.File) string {
	buf := make([]byte, 256)
	n, _ := f.ReadAt(buf, 0)
	if s := strings.TrimSpace(string(buf[:n])); s != "" {
		return s
	}
	return "another vrouter command"
}

// sameFile reports whether the open file f is still the one at path.
func sameFile(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Lstat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

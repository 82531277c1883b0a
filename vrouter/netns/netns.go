// Package netns creates, enters and deletes named network namespaces (the
// same /run/netns files `ip netns` uses) and opens TUN devices inside them.
//
// Every function here works on a namespace given by name and refuses to act
// on the root (init) network namespace, so a bug in a caller cannot change
// the host's links, addresses or routes.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are bind-mounted, as iproute2 does.
const Dir = "/run/netns"

// ErrRoot is returned when an operation would act on the root namespace.
var ErrRoot = errors.New("refusing to act on the root network namespace")

// Path returns the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid namespace name %q", name)
	}
	return nil
}

// IsPath reports whether name is a namespace file's path (absolute, such
// as /proc/PID/ns/net, /var/run/netns/X or a runtime's CNI_NETNS) rather
// than a name under Dir. Exists, Do, Handle and SetSysctl take either;
// Create and Delete take names only.
func IsPath(name string) bool { return strings.HasPrefix(name, "/") }

// file returns the file of the namespace name or path.
func file(name string) string {
	if IsPath(name) {
		return filepath.Clean(name)
	}
	return Path(name)
}

// Exists reports whether the named namespace (or the namespace file at
// the path) exists.
func Exists(name string) bool {
	_, err := os.Stat(file(name))
	return err == nil
}

// List returns the names of the namespaces whose name starts with prefix,
// sorted.
func List(prefix string) ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// Create makes a new named network namespace with its loopback up. It fails
// if one with that name exists. The calling goroutine's namespace is left
// unchanged.
func Create(name string) (err error) {
	if err := checkName(name); err != nil {
		return err
	}
	if Exists(name) {
		return fmt.Errorf("create namespace %s: already exists", name)
	}
	if err := shareDir(); err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	err = onLockedThread(func() error {
		ns, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		return ns.Close()
	})
	if err != nil {
		// NewNamed may have left the file behind when the mount failed.
		_ = os.Remove(Path(name))
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	h, err := Handle(name)
	if err != nil {
		_ = Delete(name)
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		_ = Delete(name)
		return fmt.Errorf("create namespace %s: set lo up: %w", name, err)
	}
	return nil
}

// shareDir makes Dir a mount point with shared propagation, as `ip netns
// add` does, so that a namespace bind-mounted there later is visible to
// processes already running in their own mount namespace (every process
// started by `ip netns exec`, such as the node agents).
func shareDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself first.
		if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s: %w", Dir, err)
		}
		err = unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", Dir, err)
	}
	return nil
}

// Delete removes the named namespace. Deleting one that does not exist is
// not an error. Links inside it go with it once no process holds it.
func Delete(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if !Exists(name) {
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil {
		// The file may be a leftover that is no longer a mount point.
		if rmErr := os.Remove(Path(name)); rmErr != nil {
			return fmt.Errorf("delete namespace %s: %w", name, err)
		}
	}
	return nil
}

// onLockedThread runs fn on a locked OS thread and restores the thread's
// network namespace afterwards. If the namespace cannot be restored the
// thread stays locked, so the runtime discards it when the goroutine ends.
func onLockedThread(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current namespace: %w", err)
	}
	defer orig.Close()
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(fnErr, fmt.Errorf("restore namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// initNetInode is the inode number of the kernel's initial network
// namespace (PROC_NET_INIT_INO in include/linux/proc_ns.h); it is fixed.
const initNetInode = 0xEFFFFFF9

// isRoot reports whether ns is the initial network namespace or the
// namespace of PID 1 (when this process may look at it).
func isRoot(ns netns.NsHandle) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return false, fmt.Errorf("stat namespace: %w", err)
	}
	if st.Ino == initNetInode {
		return true, nil
	}
	var pid1 unix.Stat_t
	if err := unix.Stat("/proc/1/ns/net", &pid1); err == nil && pid1.Dev == st.Dev && pid1.Ino == st.Ino {
		return true, nil
	}
	return false, nil
}

// open returns a handle to the named namespace (or the one whose file is
// at the path), refusing the root one.
func open(name string) (netns.NsHandle, error) {
	var ns netns.NsHandle
	var err error
	if IsPath(name) {
		ns, err = netns.GetFromPath(file(name))
	} else {
		if err := checkName(name); err != nil {
			return netns.None(), err
		}
		ns, err = netns.GetFromName(name)
	}
	if err != nil {
		return netns.None(), fmt.Errorf("open namespace %s: %w", name, err)
	}
	root, err := isRoot(ns)
	if err == nil && root {
		err = fmt.Errorf("namespace %s: %w", name, ErrRoot)
	}
	if err != nil {
		ns.Close()
		return netns.None(), err
	}
	return ns, nil
}

// Do runs fn with the calling thread inside the named namespace (or the
// one whose file is at the path name). Sockets and
// devices fn creates belong to that namespace.
func Do(name string, fn func() error) error {
	ns, err := open(name)
	if err != nil {
		return err
	}
	defer ns.Close()
	return onLockedThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter namespace %s: %w", name, err)
		}
		return fn()
	})
}

// Handle returns a netlink handle bound to the named namespace (or the one
// whose file is at the path name). Every
// request made through it acts inside that namespace, whatever thread sends
// it. The caller closes it.
func Handle(name string) (*netlink.Handle, error) {
	ns, err := open(name)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in namespace %s: %w", name, err)
	}
	return h, nil
}

// SetSysctl writes a sysctl of the named namespace, e.g.
// "net/ipv6/conf/all/disable_ipv6". Network sysctls are per namespace; this
// never touches the root namespace's (Do refuses it).
func SetSysctl(name, key, value string) error {
	if strings.Contains(key, "..") {
		return fmt.Errorf("invalid sysctl %q", key)
	}
	err := Do(name, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value+"\n"), 0)
	})
	if err != nil {
		return fmt.Errorf("namespace %s: sysctl %s=%s: %w", name, key, value, err)
	}
	return nil
}

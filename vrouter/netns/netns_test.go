package netns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
	"golang.org/x/sys/unix"
)

func testName(t *testing.T, suffix string) string {
	netnstest.GuardNamespaces(t, fmt.Sprintf("vrtest-%d-", os.Getpid()))
	name := fmt.Sprintf("vrtest-%d-%s", os.Getpid(), suffix)
	t.Cleanup(func() {
		if err := Delete(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestCreateDoDelete(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := testName(t, "a")
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	if err := Create(name); err == nil {
		t.Fatal("second Create of the same name succeeded")
	}
	if !strings.Contains(ipOut(t, "netns", "list"), name) {
		t.Fatalf("ip netns list does not show %s", name)
	}
	if lo := ipOut(t, "-n", name, "link", "show", "lo"); !strings.Contains(lo, "UP") {
		t.Fatalf("lo not up in %s: %s", name, lo)
	}
	names, err := List(fmt.Sprintf("vrtest-%d-", os.Getpid()))
	if err != nil || len(names) != 1 || names[0] != name {
		t.Fatalf("List = %v, %v; want [%s]", names, err, name)
	}

	var st unix.Stat_t
	if err := unix.Stat(Path(name), &st); err != nil {
		t.Fatal(err)
	}
	var inside unix.Stat_t
	err = Do(name, func() error { return unix.Stat("/proc/thread-self/ns/net", &inside) })
	if err != nil {
		t.Fatal(err)
	}
	if inside.Ino != st.Ino {
		t.Fatalf("Do ran in namespace inode %d, want %d", inside.Ino, st.Ino)
	}
	var after unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino == st.Ino {
		t.Fatal("calling thread left inside the namespace")
	}

	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatal("namespace still exists after Delete")
	}
	if err := Delete(name); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestRefusesRootNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	name := fmt.Sprintf("vrtest-%d-root", os.Getpid())
	// A name that points at the root namespace (the test runs there), as a
	// careless bind mount would.
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(Path(name), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("/proc/self/ns/net", Path(name), "bind", unix.MS_BIND, ""); err != nil {
		os.Remove(Path(name))
		t.Fatal(err)
	}
	defer func() {
		unix.Unmount(Path(name), unix.MNT_DETACH)
		os.Remove(Path(name))
	}()
	if _, err := Handle(name); !errors.Is(err, ErrRoot) {
		t.Fatalf("Handle on the root namespace: err = %v, want ErrRoot", err)
	}
	if err := Do(name, func() error { return nil }); !errors.Is(err, ErrRoot) {
		t.Fatalf("Do on the root namespace: err = %v, want ErrRoot", err)
	}
	if _, err := OpenTUN(name, "vrtest0", 1500); !errors.Is(err, ErrRoot) {
		t.Fatalf("OpenTUN in the root namespace: err = %v, want ErrRoot", err)
	}
}

func TestInvalidNames(t *testing.T) {
	for _, n := range []string{"", ".", "..", "a/b"} {
		if err := Create(n); err == nil {
			t.Errorf("Create(%q) succeeded", n)
		}
		if _, err := Handle(n); err == nil {
			t.Errorf("Handle(%q) succeeded", n)
		}
	}
}

// TestTUNCarriesPing opens a TUN device in a namespace and answers the
// kernel's ping through it: real ping sends an echo request into the
// device, the test reads it and writes an echo reply back.
func TestTUNCarriesPing(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := testName(t, "tun")
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	dev, err := OpenTUN(name, "eth0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.AddAddress(netip.MustParsePrefix("10.99.0.1/24")); err != nil {
		t.Fatal(err)
	}
	link := ipOut(t, "-n", name, "link", "show", "eth0")
	if !strings.Contains(link, "mtu 1400") || !strings.Contains(link, "UP") {
		t.Fatalf("eth0 in %s: %s", name, link)
	}

	done := make(chan error, 1)
	go func() {
		out, err := exec.Command("ip", "netns", "exec", name, "ping", "-c", "1", "-W", "5", "10.99.0.2").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%v\n%s", err, out)
		}
		done <- err
	}()

	// Every read returns a 10-byte virtio_net_hdr and one packet; every
	// write takes them (an all-zero header: no offloads).
	const vnet = 10
	buf := make([]byte, 65536)
	f := dev.File()
	deadline := time.Now().Add(5 * time.Second)
	if err := f.SetReadDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := f.Read(buf)
		if err != nil {
			t.Fatalf("read tun: %v", err)
		}
		if n < vnet {
			t.Fatalf("read tun: %d bytes, shorter than the virtio_net_hdr", n)
		}
		pkt := buf[vnet:n]
		// Only the echo request to 10.99.0.2 interests us (the kernel may
		// also send IPv6 router solicitations and the like).
		if len(pkt) < 28 || pkt[0]>>4 != 4 || pkt[9] != 1 || netip.AddrFrom4([4]byte(pkt[16:20])) != netip.MustParseAddr("10.99.0.2") || pkt[20] != 8 {
			continue
		}
		reply := echoReply(pkt)
		wb := make([]byte, vnet+len(reply))
		copy(wb[vnet:], reply)
		if _, err := f.Write(wb); err != nil {
			t.Fatalf("write tun: %v", err)
		}
		break
	}
	if err := <-done; err != nil {
		t.Fatalf("ping through the TUN device failed: %v", err)
	}
}

// echoReply turns an IPv4 ICMP echo request into its reply, recomputing both
// checksums from scratch (RFC 1071).
func echoReply(req []byte) []byte {
	ihl := int(req[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(req[2:4]))
	p := append([]byte(nil), req[:total]...)
	copy(p[12:16], req[16:20])
	copy(p[16:20], req[12:16])
	p[8] = 64
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:12], checksum(p[:ihl]))
	icmp := p[ihl:]
	icmp[0] = 0 // echo reply
	icmp[2], icmp[3] = 0, 0
	binary.BigEndian.PutUint16(icmp[2:4], checksum(icmp))
	return p
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// A namespace given by its file's path (/run/netns/X, /proc/PID/ns/net of
// a process inside it, as a CNI runtime's CNI_NETNS) is the same namespace
// as by name; a path to the root namespace is refused like a name, and
// Create and Delete take no paths.
func TestNamespacePath(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardRoot(t)
	name := testName(t, "path")
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	procPath := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	// ip netns exec enters the namespace after exec: wait for it.
	var want unix.Stat_t
	if err := unix.Stat(Path(name), &want); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st unix.Stat_t
		if err := unix.Stat(procPath, &st); err == nil && st.Ino == want.Ino {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process never entered %s", name)
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, p := range []string{Path(name), procPath, "/run/netns/../netns/" + name} {
		if !IsPath(p) || !Exists(p) {
			t.Errorf("%s: IsPath %v Exists %v, want both", p, IsPath(p), Exists(p))
		}
		h, err := Handle(p)
		if err != nil {
			t.Fatalf("Handle(%s): %v", p, err)
		}
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vrpath0"}, PeerName: "vrpath1"}); err != nil {
			t.Fatalf("add a link through %s: %v", p, err)
		}
		h.Close()
		if out := ipOut(t, "-n", name, "-o", "link", "show", "vrpath0"); !strings.Contains(out, "vrpath0") {
			t.Errorf("link added through %s is not in %s: %s", p, name, out)
		}
		ipOut(t, "-n", name, "link", "del", "vrpath0")
		var ino uint64
		if err := Do(p, func() error {
			var st unix.Stat_t
			err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st)
			ino = st.Ino
			return err
		}); err != nil || ino != want.Ino {
			t.Errorf("Do(%s) ran in namespace %d (%v), want %s's %d", p, ino, err, name, want.Ino)
		}
	}
	for _, p := range []string{"/proc/self/ns/net", "/proc/thread-self/ns/net"} {
		if _, err := Handle(p); !errors.Is(err, ErrRoot) {
			t.Errorf("Handle(%s) = %v, want ErrRoot", p, err)
		}
		if err := SetSysctl(p, "net/ipv4/ip_forward", "1"); !errors.Is(err, ErrRoot) {
			t.Errorf("SetSysctl(%s) = %v, want ErrRoot", p, err)
		}
	}
	if Exists("/run/netns/" + name + "-none") {
		t.Error("a missing namespace file exists")
	}
	if err := Create("/run/netns/" + name + "-x"); err == nil {
		t.Error("Create took a path")
	}
	if err := Delete(procPath); err == nil {
		t.Error("Delete took a path")
	}
}

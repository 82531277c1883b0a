package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"golang.org/x/sys/unix"
)

// childEnv marks the test binary run inside a host namespace by
// TestCurrentNamespace (and names the pod's namespace); parentEnv is the
// parent's network namespace inode.
const (
	childEnv  = "VROUTER_KERNEL_TEST_CHILD"
	parentEnv = "VROUTER_KERNEL_TEST_PARENT_NETNS"
)

// netnsInode returns the inode of the calling thread's network namespace.
func netnsInode(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// On a real host the dataplane programs the namespace the agent runs in
// (Options.Namespace empty). The test runs itself again inside a host
// namespace (ip netns exec), where the child refuses to go on if it finds
// itself in the root namespace, programs the seed's Always table through
// a userspace (or the kernel's) tunl0 and a workload, and prints what it
// reads back; the parent checks the namespace's `ip route`.
func TestCurrentNamespace(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		currentNamespaceChild(t, os.Getenv(childEnv))
		return
	}
	guard(t)
	h := newHosts(t, "192.168.50.10/24")[0]
	pod := newNS(t, "pod")
	cmd := exec.Command("ip", "netns", "exec", h.ns, os.Args[0], "-test.run=^TestCurrentNamespace$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+pod, fmt.Sprintf("%s=%d", parentEnv, netnsInode(t)))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := seed(t, "seed-always.txt")
	if !strings.Contains(string(out), "ROUTES\n"+want+"END\n") {
		t.Errorf("the child read back:\n%s\nwant the seed's:\n%s", out, want)
	}
	// The userspace tunl0 went with the child; the rest stays.
	got := ipRoute(t, h.ns)
	for _, l := range []string{"blackhole 10.244.166.128/26 proto bird", "10.244.166.129 dev calif3c799362a5 scope link"} {
		if !strings.Contains(got, l+"\n") {
			t.Errorf("after the child exited, ip route lacks %q:\n%s", l, got)
		}
	}
}

func currentNamespaceChild(t *testing.T, pod string) {
	// The initial network namespace has a fixed inode number
	// (PROC_NET_INIT_INO); the parent's namespace is the test's.
	const initNetInode = 0xEFFFFFF9
	if ino := netnsInode(t); ino == initNetInode || fmt.Sprint(ino) == os.Getenv(parentEnv) {
		t.Fatal("the child runs in the root (or the parent's) network namespace: refusing to program it")
	}
	d, err := New(Options{Interface: "ens33", Address: netip.MustParsePrefix("192.168.50.10/24"), MTU: 1460})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.EnableTunnel(netip.MustParseAddr("10.244.166.128")); err != nil {
		t.Fatal(err)
	}
	if err := d.AddWorkload(context.Background(), Port{Name: "calif3c799362a5", Namespace: pod, Address: netip.MustParseAddr("10.244.166.129")}); err != nil {
		t.Fatal(err)
	}
	replace(t, d,
		"blackhole 10.244.166.128/26 proto bird",
		"10.244.166.129 dev calif3c799362a5 scope link",
		"10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink",
		"10.244.135.0/26 via 192.168.50.12 dev tunl0 proto bird onlink",
	)
	fmt.Printf("ROUTES\n%sEND\n", fib.Format(d.Routes()))
}

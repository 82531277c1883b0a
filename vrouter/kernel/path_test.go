package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"golang.org/x/sys/unix"
)

// A workload's namespace may be given as a namespace file's path, as a
// CNI runtime gives it (CNI_NETNS): /proc/PID/ns/net of a process inside
// it, or the bind mount /run/netns/X; the pod side may have another name
// than eth0 (CNI_IFNAME). The veth, address and routes are the same as by
// name, and RemoveWorkload removes the pair.
func TestWorkloadNamespacePath(t *testing.T) {
	guard(t)
	h := newHosts(t, "192.168.50.10/24")[0]
	d := newDP(t, h, Options{})
	podA, podB := newNS(t, "pa"), newNS(t, "pb")
	sleeper := exec.Command("ip", "netns", "exec", podA, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	procPath := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	var want unix.Stat_t
	if err := unix.Stat(netns.Path(podA), &want); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the sleeper to enter "+podA, func() bool {
		var st unix.Stat_t
		return unix.Stat(procPath, &st) == nil && st.Ino == want.Ino
	})

	for _, tc := range []struct {
		pod, path, ifname, name, addr string
	}{
		{podA, procPath, "", "cali00000000001", "10.244.166.131"},
		{podB, netns.Path(podB), "net1", "cali00000000002", "10.244.166.132"},
	} {
		p := Port{Name: tc.name, Namespace: tc.path, Address: netip.MustParseAddr(tc.addr), PodInterface: tc.ifname}
		if err := d.AddWorkload(context.Background(), p); err != nil {
			t.Fatalf("AddWorkload in %s: %v", tc.path, err)
		}
		// Again (a repeated ADD): kept as it is.
		idx := linkIndex(t, h.ns, tc.name)
		if err := d.AddWorkload(context.Background(), p); err != nil {
			t.Fatalf("AddWorkload again in %s: %v", tc.path, err)
		}
		if got := linkIndex(t, h.ns, tc.name); got != idx {
			t.Errorf("%s: the second AddWorkload made the veth anew (%d, was %d)", tc.path, got, idx)
		}
		ifname := tc.ifname
		if ifname == "" {
			ifname = "eth0"
		}
		if out := ip(t, tc.pod, "-o", "addr", "show", "dev", ifname); !strings.Contains(out, "inet "+tc.addr+"/32") {
			t.Errorf("%s in %s: %s", ifname, tc.pod, out)
		}
		routes := ipRoute(t, tc.pod)
		for _, l := range []string{"default via 169.254.1.1 dev " + ifname, "169.254.1.1 dev " + ifname + " scope link"} {
			if !strings.Contains(routes, l+"\n") {
				t.Errorf("routes of %s lack %q:\n%s", tc.pod, l, routes)
			}
		}
		if out := ip(t, h.ns, "-o", "link", "show", "dev", tc.name); !strings.Contains(out, "ee:ee:ee:ee:ee:ee") {
			t.Errorf("host side %s: %s", tc.name, out)
		}
		d.RemoveWorkload(tc.name)
		if out, err := exec.Command("ip", "-n", h.ns, "link", "show", "dev", tc.name).CombinedOutput(); err == nil {
			t.Errorf("%s still there after RemoveWorkload: %s", tc.name, out)
		}
		if out, err := exec.Command("ip", "-n", tc.pod, "link", "show", "dev", ifname).CombinedOutput(); err == nil {
			t.Errorf("%s still in %s after RemoveWorkload: %s", ifname, tc.pod, out)
		}
	}
}

package uring

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// TestTUN reads and writes a real TUN device (IFF_VNET_HDR, nonblocking,
// as the engine opens it) in a namespace of its own through a ring: what
// the engine relies on. With NoWait a read of the empty device completes
// at once with EAGAIN instead of waiting in the kernel (without it, it
// waits even though the descriptor is nonblocking: Linux 6.18), and a
// packet the namespace sends is read whole with its virtio_net_hdr.
func TestTUN(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	prefix := fmt.Sprintf("vrur-%d-", os.Getpid())
	netnstest.GuardNamespaces(t, prefix)
	ns := prefix + "a"
	if err := netns.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(ns); err != nil {
			t.Error(err)
		}
	})
	tun, err := netns.OpenTUN(ns, "tun0", 1500)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if err := tun.AddAddress(netip.MustParsePrefix("10.77.0.1/24")); err != nil {
		t.Fatal(err)
	}
	rc, err := tun.File().SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	r := newRing(t, 8)
	cq := make([]CQE, 8)
	buf := make([]byte, 65536+10)
	var res []CQE
	read := func(flags uint32) {
		res = res[:0]
		if err := rc.Control(func(fd uintptr) {
			r.PrepRead(int(fd), buf, flags, 1)
			if err := r.SubmitAndWait(0); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(2 * time.Second)
			for len(res) == 0 && time.Now().Before(deadline) {
				if n := r.Reap(cq); n > 0 {
					res = append(res, cq[:n]...)
				}
				if len(res) == 0 {
					// give it a moment: a read left waiting would show here
					_ = r.SubmitAndWait(0)
					time.Sleep(time.Millisecond)
				}
			}
			if len(res) == 0 {
				r.PrepCancelFD(int(fd), 2)
				_ = r.SubmitAndWait(2)
				for _, c := range cq[:r.Reap(cq)] {
					if c.UserData == 1 { // the read's, not the cancel's
						res = append(res, c)
					}
				}
				t.Errorf("the read waited in the kernel: %+v", res)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Drain what the kernel sent on bringing the device up; then the
	// empty device's read completes at once with EAGAIN.
	flags := uint32(NoWait)
	for range 100 {
		read(flags)
		if errors.Is(res[0].Err(), unix.EOPNOTSUPP) {
			t.Log("this kernel's TUN cannot honour RWF_NOWAIT; reading without it")
			flags = 0
			continue
		}
		if res[0].Res < 0 {
			break
		}
	}
	if !errors.Is(res[0].Err(), unix.EAGAIN) {
		t.Fatalf("read of an empty nonblocking TUN: %+v (%v), want EAGAIN", res, res[0].Err())
	}
	// A UDP datagram from the namespace to a neighbour leaves by tun0.
	out, err := exec.Command("ip", "netns", "exec", ns, "python3", "-c",
		`import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x"*100, ("10.77.0.2", 9))`).CombinedOutput()
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	read(flags)
	if res[0].Res != 10+20+8+100 {
		t.Fatalf("read %+v (%v), want a 138-byte virtio_net_hdr and datagram", res, res[0].Err())
	}
	if buf[10]>>4 != 4 || buf[10+9] != 17 {
		t.Errorf("not an IPv4 UDP packet: % x", buf[:40])
	}
	// Write it back (to the namespace itself): the kernel takes it whole.
	copy(buf[10+12:], []byte{10, 77, 0, 2, 10, 77, 0, 1})
	n := 0
	if err := rc.Control(func(fd uintptr) {
		r.PrepWrite(int(fd), buf[:res[0].Res], 0, 3)
		if err := r.SubmitAndWait(1); err != nil {
			t.Fatal(err)
		}
		n = r.Reap(cq)
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 || cq[0].Res != res[0].Res {
		t.Errorf("write %+v (%v)", cq[:n], cq[0].Err())
	}
}

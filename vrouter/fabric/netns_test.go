package fabric

import (
	"fmt"
	"os"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// labNamespace creates a namespace for the test and deletes it after.
func labNamespace(t testing.TB, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("vrtest-%d-fabric-%s", os.Getpid(), suffix)
	if err := netns.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

func TestMaxDgramQlenInNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	rootQueue := maxQueued(t)
	ns := labNamespace(t, "qlen")
	const qlen = 64
	if err := SetMaxDgramQlen(ns, qlen); err != nil {
		t.Fatal(err)
	}
	if n, err := MaxDgramQlen(ns); err != nil || n != qlen {
		t.Fatalf("MaxDgramQlen(%s) = %d, %v; want %d", ns, n, err, qlen)
	}
	if got := maxQueued(t); got != rootQueue {
		t.Fatalf("the root namespace's max_dgram_qlen changed: %d, was %d", got-1, rootQueue-1)
	}
	if err := SetMaxDgramQlen("", 100); err == nil {
		t.Error("SetMaxDgramQlen with no namespace succeeded")
	}

	// A receiver whose socket is created in the namespace queues qlen+1
	// frames, whoever sends them.
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{NoRing: true}) // the socket's queue
	attach(t, dir, "node2", Options{Namespace: ns})
	full := 0
	for i := range 2 * qlen {
		switch err := a.SendTo(addr2, Frame{Packet: packet(100, i)}); err {
		case nil:
		case ErrQueueFull:
			full++
		default:
			t.Fatal(err)
		}
	}
	if queued := 2*qlen - full; queued != qlen+1 {
		t.Errorf("%d frames queued, want %d", queued, qlen+1)
	}

	// So does a tap opened there.
	tap, err := OpenTapWithOptions(dir, "lan", TapOptions{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	if _, err := Attach(dir, "lan", "node3", Options{Namespace: "vrtest-no-such-namespace"}); err == nil {
		t.Error("Attach in a missing namespace succeeded")
	}
}

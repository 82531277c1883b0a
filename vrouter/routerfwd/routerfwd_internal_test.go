package routerfwd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// The forwarder's copy of a router namespace's kernel table follows routes
// a daemon adds and deletes there: routes out of the underlay keep their
// gateway, the router's own addresses are local, and a deleted route
// leaves the copy.
func TestKernelMirror(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardRoot(t)
	ns := fmt.Sprintf("vrtest-%d-mirror", os.Getpid())
	netnstest.GuardNamespaces(t, ns)
	if err := netns.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(ns); err != nil {
			t.Error(err)
		}
	})
	if err := loopbackUp(ns, []netip.Prefix{netip.MustParsePrefix("10.99.0.1/24")}); err != nil {
		t.Fatal(err)
	}
	tun, err := netns.OpenTUN(ns, "ens33", 1500)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if err := tun.AddAddress(netip.MustParsePrefix("192.168.50.100/24")); err != nil {
		t.Fatal(err)
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	table := fib.NewTable()
	m := &kernelMirror{ns: ns, devs: []string{"ens33"}, table: table, log: slog.New(slog.NewTextHandler(io.Discard, nil)), installed: map[netip.Prefix]fib.Route{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.sync(); err != nil {
		t.Fatal(err)
	}
	go m.run(ctx)

	lookup := func(a string) (fib.Route, bool) { return table.Lookup(netip.MustParseAddr(a)) }
	if r, ok := lookup("192.168.50.11"); !ok || r.Type != fib.Unicast || r.Dev != "ens33" || r.Gateway.IsValid() {
		t.Errorf("connected route: %v %v", r, ok)
	}
	for _, a := range []string{"10.99.0.1", "10.99.0.77", "192.168.50.100"} {
		if r, ok := lookup(a); !ok || r.Type != rtnLocal {
			t.Errorf("%s: %v %v, want a local route", a, r, ok)
		}
	}

	// A daemon installs a learned route (proto bird): it appears with its
	// gateway; removed, it goes.
	ip("route", "add", "10.244.166.128/26", "via", "192.168.50.10", "dev", "ens33", "proto", "bird")
	want := "10.244.166.128/26 via 192.168.50.10 dev ens33 proto bird"
	waitFor(t, func() bool {
		r, ok := lookup("10.244.166.130")
		return ok && r.String() == want
	}, "route "+want+" in the mirror")
	ip("route", "del", "10.244.166.128/26")
	waitFor(t, func() bool { _, ok := lookup("10.244.166.130"); return !ok }, "deleted route gone from the mirror")
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

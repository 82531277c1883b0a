package dataplane_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// maxPortBytes is the most Go memory (heap and goroutine stacks) one
// idle workload port of a running engine may take: its reader holds no
// packet buffers until its device has packets. Measured about 4.5 KB,
// 7-23 KB under the race detector (larger stacks); one 64 KB buffer per
// port would exceed it.
const maxPortBytes = 48 << 10

// An engine with many workload ports on real TUN devices (in one
// namespace) grows by at most maxPortBytes per port, however many ports:
// the readers' 64 KB buffers are shared, not per port. (Before, each
// port's reader kept 64 of them, 4.6 MB per port, and the TUN device
// wrapper another 1.9 MB.)
func TestEnginePortMemory(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	const ports = 300
	ns := fmt.Sprintf("vrtest-%d-engmem", os.Getpid())
	netnstest.GuardNamespaces(t, ns)
	if err := netns.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(ns); err != nil {
			t.Error(err)
		}
	})
	// No IPv6: the kernel would send router solicitations on every new
	// device, and the readers would take buffers to read them.
	for _, key := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
		if err := netns.SetSysctl(ns, key, "1"); err != nil {
			t.Fatal(err)
		}
	}
	host, err := netns.OpenTUN(ns, "ens33", 1500)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	ep, err := fabric.Attach(t.TempDir(), "lan", "n1", fabric.Options{Interface: "n1/ens33"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := dataplane.NewEngine(dataplane.EngineConfig{
		FIB: fib.NewTable(), Host: host, HostName: "@host", Underlay: ep, Interface: "ens33",
		MTU: 1500, Address: netip.MustParseAddr("192.168.50.10"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	goMem := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	before := goMem()
	for i := range ports {
		dev, err := netns.OpenTUN(ns, fmt.Sprintf("w%d", i), 1500)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dev.Close() })
		if err := e.AddWorkload(fmt.Sprintf("cali%d", i), dev, 1500); err != nil {
			t.Fatal(err)
		}
	}
	after := goMem()
	per := (int64(after) - int64(before)) / ports
	t.Logf("%d ports: Go heap and stacks %d kB -> %d kB, %d bytes per port (limit %d)", ports, before>>10, after>>10, per, maxPortBytes)
	if per > maxPortBytes {
		t.Errorf("%d bytes of Go memory per idle port, want at most %d", per, maxPortBytes)
	}
}

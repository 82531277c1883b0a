package kernel

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/fib"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// nsPrefix starts the name of every namespace these tests make: unique to
// the process, so parallel runs of other packages never collide.
var nsPrefix = fmt.Sprintf("vkt%d-", os.Getpid())

var nsSeq atomic.Int32

// newNS makes a namespace removed when the test ends.
func newNS(t testing.TB, role string) string {
	t.Helper()
	name := fmt.Sprintf("%s%d%s", nsPrefix, nsSeq.Add(1), role)
	if err := netns.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// guard checks the test leaves the root namespace as it found it and no
// namespace of its own behind. Call it first: its checks run last.
func guard(t testing.TB) {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardNamespaces(t, nsPrefix)
	netnstest.GuardRoot(t)
}

// ip runs ip(8) inside namespace ns and returns its output.
func ip(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipRoute returns `ip route` in ns. Lines lose the trailing space some
// iproute2 versions print (and the seed's, as most pasted output, has
// not); nothing else changes.
func ipRoute(t testing.TB, ns string) string {
	t.Helper()
	return strings.ReplaceAll(ip(t, ns, "route"), " \n", "\n")
}

// hostOpts describe a test host, set up as a Calico host managed by
// NetworkManager is: the address on ens33 with the connected route and the
// default route at metric 100, docker0 with its connected route.
type host struct {
	ns   string
	addr netip.Prefix
}

// newHosts makes len(addrs) host namespaces on one network (192.168.50.0/24
// style): two joined by a veth pair named ens33 at both ends, more through
// a bridge in a namespace of its own.
func newHosts(t testing.TB, addrs ...string) []host {
	t.Helper()
	var hosts []host
	for i, a := range addrs {
		hosts = append(hosts, host{ns: newNS(t, fmt.Sprintf("h%d", i)), addr: netip.MustParsePrefix(a)})
	}
	switch len(hosts) {
	case 1:
		// A peer that is a lone veth end in a namespace of its own.
		peer := newNS(t, "peer")
		ip(t, hosts[0].ns, "link", "add", "ens33", "type", "veth", "peer", "name", "ens33", "netns", peer)
		ip(t, peer, "link", "set", "ens33", "up")
	case 2:
		ip(t, hosts[0].ns, "link", "add", "ens33", "type", "veth", "peer", "name", "ens33", "netns", hosts[1].ns)
	default:
		br := newNS(t, "br")
		ip(t, br, "link", "add", "br0", "type", "bridge")
		ip(t, br, "link", "set", "br0", "up")
		for i, h := range hosts {
			port := fmt.Sprintf("p%d", i)
			ip(t, br, "link", "add", port, "type", "veth", "peer", "name", "ens33", "netns", h.ns)
			ip(t, br, "link", "set", port, "master", "br0", "up")
		}
	}
	for _, h := range hosts {
		gw := h.addr.Masked().Addr().Next()
		ip(t, h.ns, "addr", "add", h.addr.String(), "dev", "ens33", "noprefixroute")
		ip(t, h.ns, "link", "set", "ens33", "up")
		ip(t, h.ns, "route", "add", h.addr.Masked().String(), "dev", "ens33", "proto", "kernel", "scope", "link", "src", h.addr.Addr().String(), "metric", "100")
		ip(t, h.ns, "route", "add", "default", "via", gw.String(), "dev", "ens33", "proto", "static", "metric", "100")
		ip(t, h.ns, "link", "add", "docker0", "type", "veth", "peer", "name", "docker0p")
		ip(t, h.ns, "addr", "add", "172.17.0.1/16", "dev", "docker0")
		ip(t, h.ns, "link", "set", "docker0p", "up")
		ip(t, h.ns, "link", "set", "docker0", "up")
	}
	return hosts
}

// testLog writes the dataplane's log to the test's.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newDP makes a dataplane on h, closed when the test ends.
func newDP(t testing.TB, h host, opts Options) *Dataplane {
	t.Helper()
	opts.Namespace, opts.Interface, opts.Address = h.ns, "ens33", h.addr
	if opts.Logger == nil {
		opts.Logger = testLog(t)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// run runs d's reconcile loop until the returned stop is called or the
// test ends.
func run(t testing.TB, d *Dataplane) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.Run(ctx) }()
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seed reads a seed table from testdata, without its comment lines.
func seed(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func mustRoute(t testing.TB, line string) fib.Route {
	t.Helper()
	r, err := fib.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// replace programs routes given in `ip route` text.
func replace(t testing.TB, d *Dataplane, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if err := d.ReplaceRoute(mustRoute(t, l)); err != nil {
			t.Fatal(err)
		}
	}
}

// hasLine reports whether `ip route` in ns has exactly line.
func hasLine(t testing.TB, ns, line string) bool {
	t.Helper()
	for _, l := range strings.Split(ipRoute(t, ns), "\n") {
		if l == line {
			return true
		}
	}
	return false
}

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/metrics"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// kernelNS makes a namespace for a kernel-mode test, removed when the test
// ends; the names are unique to the process.
func kernelNS(t testing.TB, role string) string {
	t.Helper()
	name := fmt.Sprintf("vat%d-%s", os.Getpid(), role)
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

func ipIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return strings.ReplaceAll(string(out), " \n", "\n")
}

// ifIndex returns the interface index of dev in ns, as `ip -o link` prints
// it.
func ifIndex(t *testing.T, ns, dev string) string {
	t.Helper()
	for _, l := range strings.Split(ipIn(t, ns, "-o", "link", "show", "dev", dev), "\n") {
		if i, rest, ok := strings.Cut(l, ": "); ok && strings.HasPrefix(rest, dev) {
			return i
		}
	}
	t.Fatalf("no interface %s in %s", dev, ns)
	return ""
}

// An agent whose config says "dataplane": "kernel" programs its
// namespace's kernel: it gives ens33 the node address, routes its
// workload on a veth, blackholes its block, installs what BGP learns as
// proto bird and removes what BGP withdraws; `vrouter route` (the control
// API) prints the kernel's table. Stopped, it leaves everything in place;
// restarted, it keeps the workload's veth and the routes.
func TestKernelModeAgent(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardNamespaces(t, fmt.Sprintf("vat%d-", os.Getpid()))
	netnstest.GuardRoot(t)
	host, peer, pod := kernelNS(t, "host"), kernelNS(t, "peer"), kernelNS(t, "pod")
	ipIn(t, host, "link", "add", "ens33", "type", "veth", "peer", "name", "ens33", "netns", peer)
	ipIn(t, peer, "link", "set", "ens33", "up")

	cfg := testConfig(t)
	cfg.Namespace, cfg.Dataplane = host, config.DataplaneKernel
	cfg.Gateway = netip.MustParseAddr("192.168.50.1")
	cfg.Workloads = []config.Workload{{Name: "web-1", Namespace: pod}}
	start := func() (*Agent, *fakeSpeaker, func()) { return startKernelAgent(t, cfg) }
	a, sp, stop := start()
	if _, ok := a.dp.(kernelDataplane); !ok {
		t.Fatalf("dataplane %T, want the kernel's", a.dp)
	}
	w := a.workloads["web-1"]
	block := netip.PrefixFrom(w.Address, 26).Masked()
	sp.deliver("10.244.104.0/26", "192.168.50.11")
	want := []string{
		"default via 192.168.50.1 dev ens33 proto static",
		"10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
		w.Address.String() + " dev " + w.Interface + " scope link",
		"blackhole " + block.String() + " proto bird",
		"192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10",
	}
	table := ipIn(t, host, "route")
	for _, l := range want {
		if !strings.Contains("\n"+table, "\n"+l+"\n") {
			t.Errorf("ip route lacks %q:\n%s", l, table)
		}
	}
	if n := strings.Count(table, "\n"); n != len(want) {
		t.Errorf("ip route has %d routes, want %d:\n%s", n, len(want), table)
	}
	routes, err := control.NewClient(control.Socket(cfg.StateDir, cfg.Node)).Routes(context.Background())
	if err != nil || routes != table {
		t.Errorf("vrouter route (control API): %v\n%s\nwant the kernel's table:\n%s", err, routes, table)
	}
	if out := ipIn(t, pod, "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "inet "+w.Address.String()+"/32") {
		t.Errorf("workload eth0: %s", out)
	}
	if s, err := a.status(context.Background()); err != nil || s.Tunnel != "" || s.Dataplane != config.DataplaneKernel {
		t.Errorf("status without IPIP: %+v, %v; want no tunnel, kernel dataplane", s, err)
	}
	// Metrics: the kernel's counters of the underlay and the workload's
	// veth, no engine counters.
	if m, err := a.metricsSnapshot(context.Background()); err != nil || m.Kernel == nil || m.Engine != nil || m.Dataplane != config.DataplaneKernel {
		t.Errorf("metrics snapshot %+v, %v; want the kernel dataplane's", m, err)
	} else {
		kinds := map[string]string{}
		for _, p := range m.Kernel.Ports {
			kinds[p.Name] = p.Kind
		}
		if kinds["ens33"] != "underlay" || kinds[w.Interface] != "workload" {
			t.Errorf("metrics ports %+v, want ens33 (underlay) and %s (workload)", m.Kernel.Ports, w.Interface)
		}
		if m.Routes[metrics.RouteKind{Protocol: "bird", Type: "unicast"}] != 1 || m.IPAM.InUse != 1 || m.Workloads != 1 {
			t.Errorf("metrics snapshot: routes %v, IPAM %+v, %d workloads", m.Routes, m.IPAM, m.Workloads)
		}
	}
	sp.deliver("10.244.104.0/26", "")
	if strings.Contains(ipIn(t, host, "route"), "10.244.104.0/26") {
		t.Error("a withdrawn route stayed in the kernel")
	}
	// A next hop off the node's network resolves through the kernel's
	// route to it (the default gateway), as BIRD's "gateway recursive".
	sp.deliver("10.244.7.0/26", "192.168.60.10")
	if table := ipIn(t, host, "route"); !strings.Contains(table, "\n10.244.7.0/26 via 192.168.50.1 dev ens33 proto bird\n") {
		t.Errorf("ip route:\n%s\nwant the off-network block via the gateway", table)
	}
	sp.deliver("10.244.7.0/26", "")
	sp.deliver("10.244.135.0/26", "192.168.50.12")
	link := ifIndex(t, host, w.Interface)

	// Stopped, the agent leaves the kernel as it was.
	table = ipIn(t, host, "route")
	stop()
	if got := ipIn(t, host, "route"); got != table {
		t.Errorf("ip route after the agent stopped:\n%s\nwant it unchanged:\n%s", got, table)
	}
	// Restarted, it serves the same workload on the same veth.
	a, _, _ = start()
	if got := ipIn(t, host, "route"); got != table {
		t.Errorf("ip route after the restart:\n%s\nwant it unchanged:\n%s", got, table)
	}
	if got := ifIndex(t, host, w.Interface); got != link {
		t.Errorf("the workload's veth after the restart is interface %s, was %s: made anew", got, link)
	}
	if got := a.workloads["web-1"]; got != w {
		t.Errorf("workload after the restart %+v, want %+v", got, w)
	}
}

// startKernelAgent starts an agent for cfg with its real dataplane and a
// fake BGP speaker; it stops when the test ends.
func startKernelAgent(t *testing.T, cfg *config.Node) (*Agent, *fakeSpeaker, func()) {
	t.Helper()
	a := newAgent(cfg, slog.New(slog.DiscardHandler))
	sp := newFakeSpeaker()
	a.newSpeaker = func(context.Context, bgp.Config) (Speaker, error) { return sp, nil }
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.start(ctx); err != nil {
		cancel()
		a.close()
		t.Fatal(err)
	}
	stop := sync.OnceFunc(func() { cancel(); a.close() })
	t.Cleanup(stop)
	return a, sp, stop
}

// A kernel-mode agent with an IPIP pool brings up tunl0 (the kernel's, or
// a userspace one where the kernel has no ipip module) with its address
// from its block, and routes learned blocks through it, Calico's way.
func TestKernelModeAgentIPIP(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardNamespaces(t, fmt.Sprintf("vat%d-", os.Getpid()))
	netnstest.GuardRoot(t)
	host, peer := kernelNS(t, "ihost"), kernelNS(t, "ipeer")
	ipIn(t, host, "link", "add", "ens33", "type", "veth", "peer", "name", "ens33", "netns", peer)
	ipIn(t, peer, "link", "set", "ens33", "up")
	cfg := testConfig(t)
	cfg.Namespace, cfg.Dataplane = host, config.DataplaneKernel
	cfg.Pools[0].IPIPMode = "Always"
	a, sp, _ := startKernelAgent(t, cfg)
	sp.deliver("10.244.104.0/26", "192.168.50.11")
	if table := ipIn(t, host, "route"); !strings.Contains("\n"+table, "\n10.244.104.0/26 via 192.168.50.11 dev tunl0 proto bird onlink\n") {
		t.Errorf("ip route:\n%s\nwant the block through tunl0", table)
	}
	tunl0 := ipIn(t, host, "-o", "addr", "show", "dev", "tunl0")
	if !strings.Contains(tunl0, "inet "+a.tunnelAddr.String()+"/32") {
		t.Errorf("tunl0 addresses: %s; want %s/32", tunl0, a.tunnelAddr)
	}
	if s := a.dp.Stats(); s["tunl0_kernel"]+s["tunl0_userspace"] != 1 {
		t.Errorf("stats %v: say neither tunl0", s)
	}
	// `vrouter node status` says which tunl0 it is: an ipip device is
	// the kernel module's, a TUN device the agent's userspace tunl0.
	want, what := control.TunnelUserspace, "(userspace: TUN device and raw IPIP socket; the kernel has no ipip module)"
	if strings.Contains(ipIn(t, host, "-d", "link", "show", "dev", "tunl0"), " ipip ") {
		want, what = control.TunnelKernel, "(kernel ipip module)"
	}
	t.Logf("tunl0 in use: %s", want)
	s, err := a.status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Tunnel != want || s.Dataplane != config.DataplaneKernel {
		t.Errorf("status: tunnel %q, dataplane %q; want %q, kernel", s.Tunnel, s.Dataplane, want)
	}
	var out strings.Builder
	if err := control.WriteNodeStatus(&out, s, nil); err != nil {
		t.Fatal(err)
	}
	if line := "IPIP tunnel: tunl0 " + a.tunnelAddr.String() + "/32 " + what + "\n"; !strings.Contains(out.String(), line) {
		t.Errorf("node status:\n%s\nlacks %q", out.String(), line)
	}
}

// A config naming an unknown dataplane fails to start, saying so.
func TestUnknownDataplane(t *testing.T) {
	cfg := testConfig(t)
	cfg.Dataplane = "ebpf"
	a := newAgent(cfg, slog.New(slog.DiscardHandler))
	a.newSpeaker = func(context.Context, bgp.Config) (Speaker, error) { return newFakeSpeaker(), nil }
	err := a.start(context.Background())
	a.close()
	if err == nil || !strings.Contains(err.Error(), `unknown dataplane "ebpf"`) {
		t.Fatalf("start = %v, want an unknown dataplane error", err)
	}
}

// Graceful restart in kernel mode: the restarted agent claims the routes
// its predecessor left in the kernel (they never leave it), and the sweep
// after the restart time removes the block BGP did not bring back.
func TestKernelModeGracefulRestart(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardNamespaces(t, fmt.Sprintf("vat%d-", os.Getpid()))
	netnstest.GuardRoot(t)
	host, peer := kernelNS(t, "grhost"), kernelNS(t, "grpeer")
	ipIn(t, host, "link", "add", "ens33", "type", "veth", "peer", "name", "ens33", "netns", peer)
	ipIn(t, peer, "link", "set", "ens33", "up")
	cfg := testConfig(t)
	cfg.Namespace, cfg.Dataplane = host, config.DataplaneKernel
	cfg.BGP.GracefulRestart, cfg.BGP.RestartTime = true, 500*time.Millisecond
	kept, gone := "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird", "10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird"
	has := func(line string) bool { return strings.Contains("\n"+ipIn(t, host, "route"), "\n"+line+"\n") }

	_, sp, stop := startKernelAgent(t, cfg)
	sp.deliver("10.244.104.0/26", "192.168.50.11")
	sp.deliver("10.244.135.0/26", "192.168.50.12")
	stop()
	if !has(kept) || !has(gone) {
		t.Fatalf("the stopped agent's routes are not in the kernel:\n%s", ipIn(t, host, "route"))
	}

	a, sp, _ := startKernelAgent(t, cfg)
	if !has(kept) || !has(gone) {
		t.Fatalf("the restarted agent's kernel lost routes:\n%s", ipIn(t, host, "route"))
	}
	if n := a.dp.Stats()["kernel_routes_claimed"]; n != 2 {
		t.Errorf("claimed %d routes, want both blocks claimed (restored as they were: nothing rewritten)", n)
	}
	sp.deliver("10.244.104.0/26", "192.168.50.11")
	eventually(t, func() string {
		if has(gone) {
			return "the block not learned again is still in the kernel after the restart time"
		}
		return ""
	})
	if !has(kept) {
		t.Errorf("the block learned again is gone:\n%s", ipIn(t, host, "route"))
	}
}

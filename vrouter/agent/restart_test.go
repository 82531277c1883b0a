package agent

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

func testAgent(t *testing.T, dir string) *Agent {
	t.Helper()
	return &Agent{
		cfg: &config.Node{Node: "node2", Routes: filepath.Join(dir, "node2.routes.json"), Interface: "ens33",
			BGP: config.BGP{GracefulRestart: true}},
		log:     slog.New(slog.DiscardHandler),
		dp:      newFakeDataplane(),
		learned: map[netip.Prefix]netip.Addr{},
		stale:   map[netip.Prefix]bool{},
	}
}

// The routes an agent learned over BGP (and only those: not its own
// blackholes or workload routes) come back, stale, in the next agent of
// the node; learning a prefix again makes it fresh.
func TestRoutesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "nodes"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := testAgent(t, dir)
	old.learn(bgp.RouteUpdate{Prefix: netip.MustParsePrefix("10.244.1.0/26"), NextHop: netip.MustParseAddr("192.168.50.10")})
	old.learn(bgp.RouteUpdate{Prefix: netip.MustParsePrefix("10.244.3.0/26"), NextHop: netip.MustParseAddr("192.168.50.12")})
	learned := old.dp.Routes()
	if len(learned) != 2 {
		t.Fatalf("learned %v", learned)
	}
	others := []fib.Route{
		{Dst: netip.MustParsePrefix("10.244.2.0/26"), Type: fib.Blackhole, Protocol: fib.ProtoBird},
		{Dst: netip.MustParsePrefix("10.244.2.1/32"), Type: fib.Unicast, Dev: "cali0123456789a", Protocol: fib.ProtoBoot, Scope: fib.ScopeLink},
	}
	for _, r := range others {
		if err := old.dp.ReplaceRoute(r); err != nil {
			t.Fatal(err)
		}
	}
	old.saveRoutes()

	a := testAgent(t, dir)
	n, err := a.restoreRoutes()
	if err != nil || n != 2 {
		t.Fatalf("restored %d routes (%v), want 2", n, err)
	}
	want := fib.Format(learned)
	if got := fib.Format(a.dp.Routes()); got != want {
		t.Errorf("restored FIB:\n%s\nwant:\n%s", got, want)
	}
	if a.staleCount() != 2 {
		t.Errorf("%d stale routes, want 2", a.staleCount())
	}
	a.learn(bgp.RouteUpdate{Prefix: learned[0].Dst, NextHop: learned[0].Gateway})
	if a.staleCount() != 1 {
		t.Errorf("%d stale routes after one was learned again, want 1", a.staleCount())
	}

	// Without graceful restart nothing is written.
	plain := testAgent(t, t.TempDir())
	plain.cfg.BGP.GracefulRestart = false
	plain.learn(bgp.RouteUpdate{Prefix: learned[0].Dst, NextHop: learned[0].Gateway})
	plain.saveRoutes()
	if _, err := os.Stat(plain.cfg.RoutesFile()); !os.IsNotExist(err) {
		t.Errorf("routes file written without graceful restart: %v", err)
	}
	// A damaged file is an error that names it.
	if err := os.WriteFile(filepath.Join(dir, "node2.routes.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testAgent(t, dir).restoreRoutes(); err == nil || !strings.Contains(err.Error(), "node2.routes.json") {
		t.Errorf("restore from a damaged file: %v", err)
	}
}

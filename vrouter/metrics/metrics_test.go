package metrics

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/kernel"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// userspaceSnapshot is a node with the engine, two peers (one up), IPIP.
func userspaceSnapshot() *Snapshot {
	var fwd dataplane.Stats
	fwd.Forwarded, fwd.Local, fwd.Encapsulated, fwd.NeedFragment = 100, 7, 40, 2
	fwd.ICMPErrors, fwd.ICMPRateLimited = 3, 1
	fwd.Drops[dataplane.ReasonNoRoute] = 3
	fwd.Drops[dataplane.ReasonBlackhole] = 5
	return &Snapshot{
		Dataplane: "userspace", Tunnel: "engine", LinkUp: true,
		Engine: &dataplane.EngineMetrics{
			Forwarder: fwd, Tunnel: true, SegmentDrops: 4,
			Policy: dataplane.PolicyMetrics{Denied: map[string]uint64{dataplane.DeniedIngressDefault: 6}, AllowedFlows: 11, Entries: 9, Evicted: 1,
				Rules: map[policy.RuleID]uint64{{Policy: "shop/web", Direction: policy.Ingress, Index: 0}: 5}},
			Decap: []encap.Counter{{Name: "accepted", Value: 40}, {Name: "unknown_source", Value: 2}, {Name: "ecn_ce_marked", Value: 9}},
			Underlays: []dataplane.UnderlayMetrics{{Name: "ens33", Up: true, Stats: fabric.Stats{
				TxFrames: 140, RxFrames: 90, TxBytes: 14000, RxBytes: 9000,
				TxDrops: fabric.TxDrops{LinkDown: 6, QueueFull: 2}, RxDrops: fabric.RxDrops{BadFrame: 1},
				Ring: fabric.RingStats{TxFrames: 120, TxBytes: 12000, RxFrames: 80, RxBytes: 8000, TxFull: 2, Out: 1, In: 2},
			}}},
		},
		Peers: []bgp.PeerStatus{
			{Address: netip.MustParseAddr("192.168.50.11"), Type: bgp.Mesh, State: bgp.StateEstablished, Since: time.Unix(1700000000, 0), Received: 1, Accepted: 1, Advertised: 2},
			{Address: netip.MustParseAddr("192.168.50.12"), Type: bgp.Mesh, State: bgp.StateActive},
		},
		Routes:      map[RouteKind]int{{"bird", "unicast"}: 2, {"bird", "blackhole"}: 1, {"kernel", "unicast"}: 1},
		StaleRoutes: 2,
		Workloads:   3,
		IPAM:        IPAM{Blocks: 1, BlockAddresses: 64, InUse: 4, Borrowed: 1},
	}
}

func TestCollectorUserspace(t *testing.T) {
	c := NewCollector(func(context.Context) (*Snapshot, error) { return userspaceSnapshot(), nil }, 0)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP vrouter_packets_dropped_total Packets the engine did not forward, by reason (those answered with an ICMP error included).
# TYPE vrouter_packets_dropped_total counter
`
	var lines []string
	for r := dataplane.Reason(1); int(r) < dataplane.NumReasons; r++ {
		v := "0"
		switch r {
		case dataplane.ReasonNoRoute:
			v = "3"
		case dataplane.ReasonBlackhole:
			v = "5"
		}
		lines = append(lines, `vrouter_packets_dropped_total{reason="`+r.String()+`"} `+v)
	}
	lines = append(lines, `vrouter_packets_dropped_total{reason="segmentation_failed"} 4`)
	want += strings.Join(lines, "\n") + "\n"
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "vrouter_packets_dropped_total"); err != nil {
		t.Error(err)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP vrouter_bgp_sessions BGP sessions by state.
# TYPE vrouter_bgp_sessions gauge
vrouter_bgp_sessions{state="Active"} 1
vrouter_bgp_sessions{state="Connect"} 0
vrouter_bgp_sessions{state="Established"} 1
vrouter_bgp_sessions{state="Idle"} 0
vrouter_bgp_sessions{state="OpenConfirm"} 0
vrouter_bgp_sessions{state="OpenSent"} 0
# HELP vrouter_bgp_peer_up 1 if the BGP session with the peer is Established, else 0.
# TYPE vrouter_bgp_peer_up gauge
vrouter_bgp_peer_up{peer="192.168.50.11",type="node-to-node mesh"} 1
vrouter_bgp_peer_up{peer="192.168.50.12",type="node-to-node mesh"} 0
# HELP vrouter_bgp_peer_prefixes_advertised Prefixes advertised to the peer.
# TYPE vrouter_bgp_peer_prefixes_advertised gauge
vrouter_bgp_peer_prefixes_advertised{peer="192.168.50.11"} 2
vrouter_bgp_peer_prefixes_advertised{peer="192.168.50.12"} 0
# HELP vrouter_bgp_peer_state_change_timestamp_seconds When the BGP session last changed state (Unix time, one-second resolution).
# TYPE vrouter_bgp_peer_state_change_timestamp_seconds gauge
vrouter_bgp_peer_state_change_timestamp_seconds{peer="192.168.50.11"} 1.7e+09
# HELP vrouter_bgp_stale_routes Routes restored at a graceful restart and not learned again from BGP yet.
# TYPE vrouter_bgp_stale_routes gauge
vrouter_bgp_stale_routes 2
# HELP vrouter_fib_routes Routes in the node's forwarding table, by protocol and type.
# TYPE vrouter_fib_routes gauge
vrouter_fib_routes{protocol="bird",type="blackhole"} 1
vrouter_fib_routes{protocol="bird",type="unicast"} 2
vrouter_fib_routes{protocol="kernel",type="unicast"} 1
# HELP vrouter_ipip_decap_dropped_packets_total IPIP packets not decapsulated, by reason (unknown_source: not from a known node).
# TYPE vrouter_ipip_decap_dropped_packets_total counter
vrouter_ipip_decap_dropped_packets_total{reason="unknown_source"} 2
# HELP vrouter_ipip_encapsulated_packets_total Packets encapsulated in IPIP by the engine or the userspace tunl0 (the kernel's tunl0 counts in vrouter_port_transmit_packets_total{port="tunl0"}).
# TYPE vrouter_ipip_encapsulated_packets_total counter
vrouter_ipip_encapsulated_packets_total 40
# HELP vrouter_port_transmit_dropped_packets_total Packets that should have left by the port and were dropped there, by reason.
# TYPE vrouter_port_transmit_dropped_packets_total counter
vrouter_port_transmit_dropped_packets_total{kind="underlay",port="ens33",reason="bad_frame"} 0
vrouter_port_transmit_dropped_packets_total{kind="underlay",port="ens33",reason="error"} 0
vrouter_port_transmit_dropped_packets_total{kind="underlay",port="ens33",reason="link_down"} 6
vrouter_port_transmit_dropped_packets_total{kind="underlay",port="ens33",reason="loss"} 0
vrouter_port_transmit_dropped_packets_total{kind="underlay",port="ens33",reason="neighbor_down"} 0
vrouter_port_transmit_dropped_packets_total{kind="underlay",port="ens33",reason="no_neighbor"} 0
vrouter_port_transmit_dropped_packets_total{kind="underlay",port="ens33",reason="queue_full"} 2
# HELP vrouter_fabric_ring_frames_total Frames the engine's fabric port sent (tx) or received (rx) through shared-memory rings rather than its socket (a subset of vrouter_port_*_packets_total).
# TYPE vrouter_fabric_ring_frames_total counter
vrouter_fabric_ring_frames_total{direction="rx",port="ens33"} 80
vrouter_fabric_ring_frames_total{direction="tx",port="ens33"} 120
# HELP vrouter_fabric_ring_bytes_total Bytes of IP packets the engine's fabric port sent (tx) or received (rx) through shared-memory rings.
# TYPE vrouter_fabric_ring_bytes_total counter
vrouter_fabric_ring_bytes_total{direction="rx",port="ens33"} 8000
vrouter_fabric_ring_bytes_total{direction="tx",port="ens33"} 12000
# HELP vrouter_fabric_ring_full_drops_total Frames dropped because the shared-memory ring to the neighbour was full (a subset of vrouter_port_transmit_dropped_packets_total{reason="queue_full"}).
# TYPE vrouter_fabric_ring_full_drops_total counter
vrouter_fabric_ring_full_drops_total{port="ens33"} 2
# HELP vrouter_fabric_rings Shared-memory rings the engine's fabric port has now: out to busy neighbours, in from them.
# TYPE vrouter_fabric_rings gauge
vrouter_fabric_rings{direction="in",port="ens33"} 2
vrouter_fabric_rings{direction="out",port="ens33"} 1
# HELP vrouter_ipam_addresses_borrowed Addresses assigned to the node from blocks not affine to it.
# TYPE vrouter_ipam_addresses_borrowed gauge
vrouter_ipam_addresses_borrowed 1
`), "vrouter_bgp_sessions", "vrouter_bgp_peer_up", "vrouter_bgp_peer_prefixes_advertised", "vrouter_bgp_peer_state_change_timestamp_seconds",
		"vrouter_bgp_stale_routes", "vrouter_fib_routes", "vrouter_ipip_decap_dropped_packets_total", "vrouter_ipip_encapsulated_packets_total",
		"vrouter_port_transmit_dropped_packets_total", "vrouter_fabric_ring_frames_total", "vrouter_fabric_ring_bytes_total",
		"vrouter_fabric_ring_full_drops_total", "vrouter_fabric_rings", "vrouter_ipam_addresses_borrowed"); err != nil {
		t.Error(err)
	}
	for name, want := range map[string]float64{
		"vrouter_packets_forwarded_total":         100,
		"vrouter_packets_delivered_total":         7,
		"vrouter_packets_fragmented_total":        2,
		"vrouter_icmp_errors_sent_total":          3,
		"vrouter_ipip_decapsulated_packets_total": 40,
		"vrouter_workloads":                       3,
		"vrouter_underlay_link_up":                1,
		"vrouter_ipam_addresses_in_use":           4,
		"vrouter_ipam_blocks":                     1,
	} {
		if got := single(t, c, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// No kernel metrics on the engine.
	if n := testutil.CollectAndCount(c, "vrouter_kernel_resyncs_total", "vrouter_kernel_route_events_total"); n != 0 {
		t.Errorf("%d kernel metrics from a userspace node", n)
	}
}

// single returns the value of the only sample of the metric called name.
func single(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		if len(f.Metric) != 1 {
			t.Fatalf("%s has %d samples, want 1", name, len(f.Metric))
		}
		m := f.Metric[0]
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestCollectorKernel(t *testing.T) {
	s := &Snapshot{
		Dataplane: "kernel", Tunnel: "userspace",
		Kernel: &kernel.Metrics{
			Resyncs: 2, RoutesRestored: 1, RoutesAdopted: 5,
			UserTunnel: &kernel.UserTunnelMetrics{EncapPackets: 11, EncapNoRoute: 1, Decap: []encap.Counter{{Name: "accepted", Value: 12}}},
			Ports: []kernel.PortMetrics{
				{Name: "ens33", Kind: "underlay", Up: true, RxPackets: 20, TxPackets: 21},
				{Name: "cali0123456789a", Kind: "workload", Up: true, RxPackets: 5, TxPackets: 6, TxDropped: 1},
			},
		},
	}
	c := NewCollector(func(context.Context) (*Snapshot, error) { return s, nil }, time.Second)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP vrouter_kernel_route_events_total Routes the kernel dataplane restored (removed by someone else), removed (stray), adopted (left by an earlier agent) or claimed (adopted and wanted again).
# TYPE vrouter_kernel_route_events_total counter
vrouter_kernel_route_events_total{event="adopted"} 5
vrouter_kernel_route_events_total{event="claimed"} 0
vrouter_kernel_route_events_total{event="removed"} 0
vrouter_kernel_route_events_total{event="restored"} 1
# HELP vrouter_port_transmit_packets_total Packets (GSO super-packets count once in the engine) sent on the port.
# TYPE vrouter_port_transmit_packets_total counter
vrouter_port_transmit_packets_total{kind="underlay",port="ens33"} 21
vrouter_port_transmit_packets_total{kind="workload",port="cali0123456789a"} 6
# HELP vrouter_ipip_encap_dropped_packets_total Packets for tunl0 that could not be encapsulated, by reason.
# TYPE vrouter_ipip_encap_dropped_packets_total counter
vrouter_ipip_encap_dropped_packets_total{reason="error"} 0
vrouter_ipip_encap_dropped_packets_total{reason="no_route"} 1
`), "vrouter_kernel_route_events_total", "vrouter_port_transmit_packets_total", "vrouter_ipip_encap_dropped_packets_total"); err != nil {
		t.Error(err)
	}
	if got := single(t, c, "vrouter_ipip_decapsulated_packets_total"); got != 12 {
		t.Errorf("decapsulated %v, want 12", got)
	}
	// The engine's counters are not made up for the kernel.
	if n := testutil.CollectAndCount(c, "vrouter_packets_forwarded_total", "vrouter_packets_dropped_total"); n != 0 {
		t.Errorf("%d engine metrics from a kernel node", n)
	}
}

func TestCollectorErrors(t *testing.T) {
	// A failed snapshot fails the scrape.
	bad := NewCollector(func(context.Context) (*Snapshot, error) { return nil, errors.New("agent gone") }, 0)
	reg := prometheus.NewRegistry()
	reg.MustRegister(bad)
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "agent gone") {
		t.Errorf("gather of a failed snapshot: %v, want the snapshot's error", err)
	}
	// Failed parts are counted, scrape after scrape, and the rest exported.
	c := NewCollector(func(context.Context) (*Snapshot, error) {
		s := userspaceSnapshot()
		s.Peers = nil
		s.FailedParts = []string{"bgp"}
		return s, nil
	}, 0)
	testutil.CollectAndCount(c)
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP vrouter_scrape_errors_total Scrapes that could not read part of the node's state (BGP, IPAM); the agent's log says why.
# TYPE vrouter_scrape_errors_total counter
vrouter_scrape_errors_total{part="bgp"} 2
vrouter_scrape_errors_total{part="ipam"} 0
`), "vrouter_scrape_errors_total"); err != nil {
		t.Error(err)
	}
	if got := single(t, c, "vrouter_packets_forwarded_total"); got != 100 {
		t.Errorf("forwarded %v with BGP failing, want 100", got)
	}
}

// TestCollectorContext: the snapshot gets a context with the timeout.
func TestCollectorContext(t *testing.T) {
	var deadline time.Time
	c := NewCollector(func(ctx context.Context) (*Snapshot, error) {
		deadline, _ = ctx.Deadline()
		return userspaceSnapshot(), nil
	}, 3*time.Second)
	start := time.Now()
	testutil.CollectAndCount(c)
	if d := deadline.Sub(start); d < 2*time.Second || d > 4*time.Second {
		t.Errorf("snapshot deadline %v after the scrape started, want 3s", d)
	}
}

func TestDescriptions(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range Descriptions() {
		if !strings.HasPrefix(d.Name, "vrouter_") || d.Help == "" {
			t.Errorf("metric %+v: want a vrouter_ name and a help text", d)
		}
		if (d.Type == "counter") != strings.HasSuffix(d.Name, "_total") {
			t.Errorf("metric %s is a %s: counters and only counters end in _total", d.Name, d.Type)
		}
		if seen[d.Name] {
			t.Errorf("metric %s listed twice", d.Name)
		}
		seen[d.Name] = true
	}
	if len(seen) != len(all) {
		t.Errorf("%d descriptions, %d metrics", len(seen), len(all))
	}
}

// promtool returns the path of promtool, or "" (Debian's prometheus
// package ships it; `make deps` extracts it into /opt/vrouter-prometheus).
func promtool() string {
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	p := "/opt/vrouter-prometheus/usr/bin/promtool"
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// checkPromtool runs `promtool check metrics` on an exposition when
// promtool is installed (CI installs it: there its absence fails).
func checkPromtool(t *testing.T, text []byte) {
	t.Helper()
	p := promtool()
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found (make deps extracts it into /opt/vrouter-prometheus)")
		}
		t.Log("promtool not found: skipping promtool check metrics (client_golang's lint ran)")
		return
	}
	cmd := exec.Command(p, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestHandler serves a node's metrics as the agent does and checks the
// text with promtool.
func TestHandler(t *testing.T) {
	h := Handler(NewCollector(func(context.Context) (*Snapshot, error) { return userspaceSnapshot(), nil }, 0))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.Bytes()
	for _, want := range []string{"vrouter_packets_forwarded_total 100\n", "go_goroutines ", "process_start_time_seconds ",
		"vrouter_policy_denied_packets_total{reason=\"ingress_default_deny\"} 6\n", "vrouter_policy_denied_packets_total{reason=\"revoked\"} 0\n",
		"vrouter_policy_rule_hits_total{direction=\"ingress\",policy=\"shop/web\",rule=\"0\"} 5\n", "vrouter_conntrack_entries 9\n",
		"vrouter_conntrack_evictions_total 1\n", "vrouter_policy_allowed_flows_total 11\n"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	checkPromtool(t, body)
}

// TestREADMEListsEveryMetric: the README's metric table names every
// metric.
func TestREADMEListsEveryMetric(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range Descriptions() {
		if !strings.Contains(string(data), "| `"+d.Name+"` | "+d.Type+" |") {
			t.Errorf("README's metric table lacks %s (%s)", d.Name, d.Type)
		}
	}
}

// TestCollectorRouter: a router forwarder exports its engine and routes,
// no BGP, IPAM or workloads it does not have.
func TestCollectorRouter(t *testing.T) {
	s := userspaceSnapshot()
	s.Router, s.Peers, s.IPAM, s.Workloads = true, nil, IPAM{}, 0
	c := NewCollector(func(context.Context) (*Snapshot, error) { return s, nil }, 0)
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if got := single(t, c, "vrouter_packets_forwarded_total"); got != 100 {
		t.Errorf("forwarded %v, want 100", got)
	}
	if n := testutil.CollectAndCount(c, "vrouter_bgp_sessions", "vrouter_ipam_blocks", "vrouter_workloads", "vrouter_bgp_stale_routes"); n != 0 {
		t.Errorf("a router exports %d BGP, IPAM or workload samples", n)
	}
	if n := testutil.CollectAndCount(c, "vrouter_fib_routes"); n != 3 {
		t.Errorf("%d route samples, want 3", n)
	}
}

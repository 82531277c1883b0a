package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/metrics"
)

// fakeEngine is the fake dataplane with an engine's counters.
type fakeEngine struct {
	*fakeDataplane
	mu sync.Mutex
	m  dataplane.EngineMetrics
}

func (d *fakeEngine) EngineMetrics() dataplane.EngineMetrics {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m
}

// fakeAdvertising is the fake speaker with prefix counts, as
// *bgp.Speaker's PeersAdvertised gives them.
type fakeAdvertising struct{ *fakeSpeaker }

func (s fakeAdvertising) PeersAdvertised(ctx context.Context) ([]bgp.PeerStatus, error) {
	peers, err := s.Peers(ctx)
	for i := range peers {
		peers[i].Advertised = 7
	}
	return peers, err
}

// TestMetrics: GET /metrics on the control socket and on MetricsAddr
// export the dataplane's counters, the sessions, the FIB and IPAM.
func TestMetrics(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsAddr = "127.0.0.1:0"
	fe := &fakeEngine{fakeDataplane: newFakeDataplane()}
	fe.m.Forwarder.Forwarded = 42
	fe.m.Forwarder.Drops[dataplane.ReasonNoRoute] = 3
	fe.m.Underlays = []dataplane.UnderlayMetrics{{Name: "ens33", Up: true, Stats: fabric.Stats{TxFrames: 9}}}
	sp := newFakeSpeaker()
	sp.peers = []bgp.PeerStatus{
		{Address: netip.MustParseAddr("192.168.50.11"), Type: bgp.Mesh, State: bgp.StateEstablished, Received: 1, Accepted: 1},
		{Address: netip.MustParseAddr("192.168.50.12"), Type: bgp.Mesh, State: bgp.StateConnect},
	}
	a := newAgent(cfg, slog.New(slog.DiscardHandler))
	a.newDataplane = func(context.Context, *config.Node, *slog.Logger) (Dataplane, error) { return fe, nil }
	a.newSpeaker = func(context.Context, bgp.Config) (Speaker, error) { return fakeAdvertising{sp}, nil }
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.start(ctx); err != nil {
		cancel()
		a.close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); a.close() })

	c := control.NewClient(control.Socket(cfg.StateDir, cfg.Node))
	if _, err := c.AddWorkload(ctx, config.Workload{Name: "web-1", Namespace: "vr-t.web-1"}); err != nil {
		t.Fatal(err)
	}
	sp.deliver("10.244.104.0/26", "192.168.50.11")

	text, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`vrouter_dataplane_info{dataplane="userspace",tunnel=""} 1`,
		"vrouter_packets_forwarded_total 42\n",
		`vrouter_packets_dropped_total{reason="no_route"} 3`,
		`vrouter_port_transmit_packets_total{kind="underlay",port="ens33"} 9`,
		`vrouter_bgp_sessions{state="Established"} 1`,
		`vrouter_bgp_sessions{state="Connect"} 1`,
		`vrouter_bgp_peer_state{peer="192.168.50.12",state="Connect",type="node-to-node mesh"} 1`,
		`vrouter_bgp_peer_prefixes_received{peer="192.168.50.11"} 1`,
		`vrouter_bgp_peer_prefixes_advertised{peer="192.168.50.11"} 7`,
		// the learned block; the node's blackholed block; the connected route
		`vrouter_fib_routes{protocol="bird",type="unicast"} 1`,
		`vrouter_fib_routes{protocol="bird",type="blackhole"} 1`,
		`vrouter_fib_routes{protocol="kernel",type="unicast"} 1`,
		`vrouter_fib_routes{protocol="boot",type="unicast"} 1`, // web-1's /32 (ip route omits "proto boot")
		"vrouter_workloads 1\n",
		"vrouter_ipam_blocks 1\n",
		"vrouter_ipam_block_addresses 64\n",
		"vrouter_ipam_addresses_in_use 1\n",
		"vrouter_ipam_addresses_borrowed 0\n",
		"vrouter_bgp_stale_routes 0\n",
		"vrouter_underlay_link_up 1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
	if _, err := metrics.Parse([]byte(text)); err != nil {
		t.Errorf("metrics do not parse: %v", err)
	}

	// Counters are read at scrape time; the link state too.
	fe.mu.Lock()
	fe.m.Forwarder.Forwarded = 50
	fe.mu.Unlock()
	fe.SetLinkUp(false)
	addr, _ := a.metricsAddr.Load().(string)
	if addr == "" {
		t.Fatal("no metrics listener")
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "vrouter_packets_forwarded_total 50\n") || !strings.Contains(string(body), "vrouter_underlay_link_up 0\n") {
		t.Errorf("GET http://%s/metrics: %s\n%s", addr, resp.Status, body)
	}
	// Only /metrics there: the control API stays on the socket.
	if resp, err := hc.Get("http://" + addr + "/v1/status"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v1/status on the metrics address: %v, %v; want 404", resp, err)
	} else {
		resp.Body.Close()
	}
	// Stopped, the agent no longer listens.
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := hc.Get("http://" + addr + "/metrics")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the metrics address still answers after the agent stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsAddressInUse: an address the agent cannot listen on fails
// the start.
func TestMetricsAddressInUse(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsAddr = "256.0.0.1:1"
	a := newAgent(cfg, slog.New(slog.DiscardHandler))
	a.newDataplane = func(context.Context, *config.Node, *slog.Logger) (Dataplane, error) { return newFakeDataplane(), nil }
	a.newSpeaker = func(context.Context, bgp.Config) (Speaker, error) { return newFakeSpeaker(), nil }
	err := a.start(t.Context())
	a.close()
	if err == nil || !strings.Contains(err.Error(), "metrics address") {
		t.Errorf("start with metrics address 256.0.0.1:1: %v, want an error", err)
	}
}

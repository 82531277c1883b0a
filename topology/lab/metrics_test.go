package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/vrouter-lab/vrouter/vrouter/metrics"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// sample returns the value of the sample of family name whose labels
// include want, and whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// promtoolPath returns promtool's path, or "" (Debian's prometheus package
// ships it; make deps extracts it into /opt/vrouter-prometheus).
func promtoolPath() string {
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if p := "/opt/vrouter-prometheus/usr/bin/promtool"; fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestMetricsServe scrapes `vrouter serve --metrics` on a running lab of
// two racks joined by a router node, IPIP across it: the forwarding,
// IPIP and port counters move with pings, the router's drops and ICMP
// errors with a ping to nowhere, the BGP session states with `vrouter
// link set NODE down` and up, and promtool accepts the text.
func TestMetricsServe(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	name := labName(t, "metrics")
	file := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`name: %s
ipPools:
  - {name: pool, cidr: 10.244.0.0/16, ipipMode: CrossSubnet}
networks:
  - {name: rack1, cidr: 192.168.50.0/24}
  - {name: rack2, cidr: 192.168.60.0/24}
bgp: {keepaliveTime: 1s, holdTime: 3s}
nodes:
  node1: {network: rack1, address: 192.168.50.10}
  node2: {network: rack2, address: 192.168.60.10}
  tor:
    kind: router
    interfaces:
      - {network: rack1, address: 192.168.50.1}
      - {network: rack2, address: 192.168.60.1}
workloads:
  - {name: a, node: node1, address: 10.244.1.1}
  - {name: b, node: node2, address: 10.244.2.1}
`, name)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)

	// One node's metrics: its own exposition, no node label.
	out := mustVR(t, "metrics", "--lab", name, "node1")
	if !strings.Contains(out, `vrouter_bgp_sessions{state="Established"} 1`) || strings.Contains(out, `node="`) {
		t.Errorf("vrouter metrics node1: want node1's exposition with its session up, no node label:\n%.2000s", out)
	}
	if out, code := vr(t, "metrics", "--lab", name, "node9"); code == 0 || !strings.Contains(out, "no node or router node9") {
		t.Errorf("vrouter metrics node9: exit %d\n%s", code, out)
	}

	// serve on a port of the kernel's choosing; it says which.
	ctx, cancel := context.WithCancel(context.Background())
	serve := exec.CommandContext(ctx, vrouterBin, "serve", "--lab", name, "--metrics", "127.0.0.1:0")
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	serve.Stderr = os.Stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = serve.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("vrouter serve: %v", err)
	}
	_, url, ok := strings.Cut(strings.TrimSpace(line), " at ")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/metrics") {
		t.Fatalf("vrouter serve said %q, want the URL it serves", line)
	}
	hc := &http.Client{Timeout: 20 * time.Second}
	scrape := func() (map[string]*dto.MetricFamily, []byte) {
		t.Helper()
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s, %v\n%s", url, resp.Status, err, body)
		}
		fams, err := metrics.Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		return fams, body
	}
	val := func(fams map[string]*dto.MetricFamily, metric string, labels ...string) float64 {
		t.Helper()
		want := map[string]string{}
		for i := 0; i+1 < len(labels); i += 2 {
			want[labels[i]] = labels[i+1]
		}
		v, ok := sample(fams, metric, want)
		if !ok {
			t.Fatalf("no sample %s%v", metric, want)
		}
		return v
	}

	before, body := scrape()
	if p := promtoolPath(); p != "" {
		cmd := exec.Command(p, "check", "metrics")
		cmd.Stdin = strings.NewReader(string(body))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") == "true" {
		t.Error("promtool not found (make deps extracts it into /opt/vrouter-prometheus)")
	}
	for _, n := range []string{"node1", "node2"} {
		if v := val(before, "vrouter_node_up", "node", n); v != 1 {
			t.Errorf("vrouter_node_up{node=%s} = %v, want 1", n, v)
		}
		if v := val(before, "vrouter_bgp_sessions", "node", n, "state", "Established"); v != 1 {
			t.Errorf("%s: %v sessions Established, want 1", n, v)
		}
		// the workload's address and tunl0's
		if v := val(before, "vrouter_ipam_addresses_in_use", "node", n); v != 2 {
			t.Errorf("%s: %v addresses in use, want 2 (a workload, tunl0)", n, v)
		}
	}
	// Each node advertises its blocks, and receives the other's.
	for n, peer := range map[string]string{"node1": "node2", "node2": "node1"} {
		blocks := val(before, "vrouter_ipam_blocks", "node", n)
		if blocks < 1 {
			t.Errorf("%s: %v blocks", n, blocks)
		}
		if v := val(before, "vrouter_bgp_peer_prefixes_advertised", "node", n); v != blocks {
			t.Errorf("%s: %v prefixes advertised, want its %v blocks", n, v, blocks)
		}
		if v := val(before, "vrouter_bgp_peer_prefixes_received", "node", peer); v != blocks {
			t.Errorf("%s: %v prefixes received, want %s's %v blocks", peer, v, n, blocks)
		}
	}
	if v := val(before, "vrouter_node_up", "node", "tor"); v != 1 {
		t.Errorf("vrouter_node_up{node=tor} = %v, want 1 (the router's forwarder exports its engine)", v)
	}
	if n := len(before["vrouter_bgp_sessions"].GetMetric()); n != 2*len(metrics.States) {
		t.Errorf("%d vrouter_bgp_sessions samples, want the two nodes' (the router has no BGP)", n)
	}

	// Traffic: 5 pings a -> b, IPIP across tor (CrossSubnet): each node
	// encapsulates one way and decapsulates and forwards the other; tor
	// forwards both ways.
	mustVR(t, "exec", "--lab", name, "a", "--", "ping", "-c", "5", "-i", "0.2", "-W", "2", "10.244.2.1")
	after, _ := scrape()
	delta := func(metric string, labels ...string) float64 {
		t.Helper()
		return val(after, metric, labels...) - val(before, metric, labels...)
	}
	for _, n := range []string{"node1", "node2"} {
		for _, m := range []string{"vrouter_packets_forwarded_total", "vrouter_ipip_encapsulated_packets_total", "vrouter_ipip_decapsulated_packets_total"} {
			if d := delta(m, "node", n); d < 5 {
				t.Errorf("%s: %s grew by %v after 5 pings, want at least 5", n, m, d)
			}
		}
		if d := delta("vrouter_port_transmit_packets_total", "node", n, "port", "ens33"); d < 5 {
			t.Errorf("%s sent %v more packets on ens33 after 5 pings, want at least 5", n, d)
		}
	}
	if d := delta("vrouter_packets_forwarded_total", "node", "tor"); d < 10 {
		t.Errorf("tor forwarded %v more packets after 5 pings, want at least 10", d)
	}
	// A ping to nowhere: node1 sends it to its gateway, tor has no route,
	// drops it and answers with an ICMP error.
	vr(t, "exec", "--lab", name, "a", "--", "ping", "-c", "1", "-W", "1", "10.99.0.1")
	latest, _ := scrape()
	if d := val(latest, "vrouter_packets_dropped_total", "node", "tor", "reason", "no_route") - val(after, "vrouter_packets_dropped_total", "node", "tor", "reason", "no_route"); d < 1 {
		t.Errorf("tor counted %v no_route drops for a ping to 10.99.0.1, want 1", d)
	}
	if d := val(latest, "vrouter_icmp_errors_sent_total", "node", "tor") - val(after, "vrouter_icmp_errors_sent_total", "node", "tor"); d < 1 {
		t.Errorf("tor sent %v ICMP errors about a ping to 10.99.0.1, want 1", d)
	}

	// The link down: node2's link metric at once, the sessions once the
	// hold timer (3 s) expires.
	mustVR(t, "link", "set", "--lab", name, "node2", "down")
	eventually(t, 20*time.Second, "sessions down after link set node2 down", func() (bool, string) {
		f, _ := scrape()
		l := val(f, "vrouter_underlay_link_up", "node", "node2")
		e1 := val(f, "vrouter_bgp_sessions", "node", "node1", "state", "Established")
		up1 := val(f, "vrouter_bgp_peer_up", "node", "node1", "peer", "192.168.60.10")
		return l == 0 && e1 == 0 && up1 == 0, fmt.Sprintf("node2 link up %v, node1 sessions Established %v, peer up %v", l, e1, up1)
	})
	mustVR(t, "link", "set", "--lab", name, "node2", "up")
	eventually(t, 30*time.Second, "sessions up after link set node2 up", func() (bool, string) {
		f, _ := scrape()
		e1 := val(f, "vrouter_bgp_sessions", "node", "node1", "state", "Established")
		e2 := val(f, "vrouter_bgp_sessions", "node", "node2", "state", "Established")
		return e1 == 1 && e2 == 1, fmt.Sprintf("sessions Established: node1 %v, node2 %v", e1, e2)
	})
	f, _ := scrape()
	if d := val(f, "vrouter_port_transmit_dropped_packets_total", "node", "node2", "port", "ens33", "reason", "link_down"); d < 1 {
		t.Errorf("node2 counted %v frames dropped on its link while down, want some (BGP keepalives)", d)
	}
}

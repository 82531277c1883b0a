package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// TestNodeRunMetricsAddr runs a kernel-mode agent as on a real host, with
// --metrics-addr, and scrapes it over TCP in its namespace.
func TestNodeRunMetricsAddr(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardNamespaces(t, fmt.Sprintf("vcn%d-", os.Getpid()))
	netnstest.GuardRoot(t)
	bin, _ := buildVrouter(t)
	host, peer := cniNS(t, "mhost"), cniNS(t, "mpeer")
	ipN(t, host, "link", "add", "ens33", "type", "veth", "peer", "name", "ens33", "netns", peer)
	ipN(t, peer, "link", "set", "ens33", "up")
	ipN(t, host, "link", "set", "lo", "up")

	dir := t.TempDir()
	nodeFile := filepath.Join(dir, "node.yaml")
	yaml := "node: host1\naddress: 192.168.50.10/24\ninterface: ens33\nasNumber: 64512\n" +
		"ipPools:\n  - name: default-ipv4-ippool\n    cidr: 10.244.0.0/16\n" +
		"peers:\n  - {address: 192.168.50.11, asNumber: 64512}\n" +
		"datastore: " + filepath.Join(dir, "lib", "ipam.db") + "\nstateDir: " + filepath.Join(dir, "run") + "\n"
	if err := os.WriteFile(nodeFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	agent := exec.Command("ip", "netns", "exec", host, bin, "node", "run", "--config", nodeFile, "--metrics-addr", "127.0.0.1:9091")
	agent.Stdout, agent.Stderr = &log, &log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = agent.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = agent.Process.Kill()
			<-done
			t.Errorf("the agent did not stop on SIGTERM:\n%s", &log)
		}
	})

	// A client whose connections are made in the host's namespace.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := netns.Do(host, func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://127.0.0.1:9091/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				body = string(b)
				break
			}
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's metrics address never answered: %v\nagent:\n%s", err, &log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{
		`vrouter_dataplane_info{dataplane="kernel",tunnel=""} 1`,
		`vrouter_port_up{kind="underlay",port="ens33"} 1`,
		"vrouter_kernel_resyncs_total ",
		`vrouter_bgp_peer_up{peer="192.168.50.11",type="global"} 0`, // nobody at the peer's address
		`vrouter_fib_routes{protocol="kernel",type="unicast"} 1`,
		"process_start_time_seconds ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
	// The engine's counters are not there: the kernel forwards.
	if strings.Contains(body, "vrouter_packets_forwarded_total") {
		t.Error("a kernel-mode agent exports engine counters")
	}
}

package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
	"github.com/vrouter-lab/vrouter/vrouter/netstack"
)

// A netstack workload through the control API: no namespace, its
// services parsed and handed to the dataplane; bad services and services
// on a namespace workload are refused without keeping an address; a
// restarted agent serves it again though it has no namespace.
func TestNetstackWorkloadAPI(t *testing.T) {
	cfg := testConfig(t)
	n := startTestNode(t, cfg)
	c := control.NewClient(control.Socket(cfg.StateDir, cfg.Node))
	ctx := context.Background()

	w := config.Workload{Name: "api-1", Stack: config.StackNetstack, Serve: []string{"tcp:80:http", "udp:53:echo"}}
	info, err := c.AddWorkload(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if info.Stack != config.StackNetstack || info.Namespace != "" || info.PodInterface != "" || !info.Address.IsValid() {
		t.Errorf("workload info %+v", info)
	}
	p, ok := n.dp.port(info.Interface)
	want := []netstack.Service{{Proto: "tcp", Port: 80, Kind: "http"}, {Proto: "udp", Port: 53, Kind: "echo"}}
	if !ok || p.Stack != config.StackNetstack || p.Workload != "api-1" || p.Address != info.Address || fmt.Sprint(p.Serve) != fmt.Sprint(want) {
		t.Fatalf("port %+v (%v)", p, ok)
	}
	if again, err := c.AddWorkload(ctx, w); err != nil || *again != *info {
		t.Errorf("adding api-1 again: %+v, %v; want %+v", again, err, info)
	}
	if _, err := c.AddWorkload(ctx, config.Workload{Name: "api-1", Namespace: "vr-t.api-1"}); err == nil {
		t.Error("a namespace workload api-1 beside the netstack one was accepted")
	}

	for _, bad := range []config.Workload{
		{Name: "bad-1", Stack: config.StackNetstack, Serve: []string{"tcp:80:gopher"}},
		{Name: "bad-2", Stack: "vm"},
		{Name: "bad-3", Namespace: "vr-t.bad-3", Serve: []string{"tcp:80:http"}},
		{Name: "bad-4", Stack: config.StackNetstack, Namespace: "vr-t.bad-4"},
	} {
		if _, err := c.AddWorkload(ctx, bad); err == nil {
			t.Errorf("workload %+v accepted", bad)
		}
		if a, err := n.ipam.AddressByHandle(ctx, handle(cfg.Lab, bad.Name)); err == nil {
			t.Errorf("refused workload %s keeps address %s", bad.Name, a)
		}
	}

	n.stop()
	n = startTestNode(t, cfg)
	got, err := c.Workload(ctx, "api-1")
	if err != nil || *got != *info {
		t.Fatalf("after the restart api-1 is %+v, %v; want %+v", got, err, info)
	}
	if p, ok := n.dp.port(info.Interface); !ok || p.Stack != config.StackNetstack || len(p.Serve) != 2 {
		t.Errorf("port of api-1 after the restart: %+v, %v", p, ok)
	}
}

// The kernel dataplane refuses a netstack workload, saying why.
func TestKernelRefusesNetstack(t *testing.T) {
	err := kernelDataplane{}.AddWorkload(context.Background(), WorkloadPort{Name: "cali1", Stack: config.StackNetstack})
	if !errors.Is(err, errNetstackKernel) || !strings.Contains(err.Error(), "userspace") {
		t.Errorf("kernel dataplane, netstack workload: %v", err)
	}
}

// netstackNode is an agent with the real userspace dataplane (its node
// namespace made for the test) and a fake speaker.
type netstackNode struct {
	*Agent
	dp      *userspace
	speaker *fakeSpeaker
	ctl     *control.Client
}

func startNetstackNode(t testing.TB, stateDir, node, ns string, addr, peer netip.Addr, peerNode string, workloads ...config.Workload) *netstackNode {
	t.Helper()
	cfg := &config.Node{
		Lab: "t", Node: node, StateDir: stateDir, Namespace: ns,
		Network: "lan", Prefix: netip.PrefixFrom(addr, 24), Interface: "ens33", MTU: 1500,
		Neighbors: []config.Neighbor{{Node: peerNode, Address: peer}},
		Pools:     []config.Pool{{Name: "default-ipv4-ippool", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26, IPIPMode: "Never"}},
		Datastore: filepath.Join(stateDir, node+".ipam.db"),
		BGP:       config.BGP{ASN: 64512, Peers: []config.BGPPeer{{Address: peer, ASN: 64512, Type: "node-to-node mesh", Node: peerNode}}},
		Workloads: workloads,
	}
	n := &netstackNode{speaker: newFakeSpeaker(), ctl: control.NewClient(control.Socket(stateDir, node))}
	n.Agent = newAgent(cfg, slog.New(slog.DiscardHandler))
	n.newDataplane = func(ctx context.Context, cfg *config.Node, log *slog.Logger) (Dataplane, error) {
		dp, err := newUserspace(ctx, cfg, log)
		if err == nil {
			n.dp = dp.(*userspace)
		}
		return dp, err
	}
	n.newSpeaker = func(context.Context, bgp.Config) (Speaker, error) { return n.speaker, nil }
	ctx, cancel := context.WithCancel(context.Background())
	if err := n.start(ctx); err != nil {
		cancel()
		n.close()
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { cancel(); n.close() }) })
	return n
}

// stack returns the gVisor stack of workload name.
func (n *netstackNode) stack(t *testing.T, name string) *netstack.Stack {
	t.Helper()
	st, ok := n.dp.Stack(config.InterfaceName("t", name))
	if !ok {
		t.Fatalf("no stack for workload %s", name)
	}
	return st
}

// Two agents with the userspace engine, joined by the fabric: netstack
// workloads on both reach each other (ping answered by the stack, HTTP
// with the workload's name and address, UDP echo) and a namespace (TUN)
// workload, both ways; deleting a netstack workload frees its stack.
func TestNetstackAgents(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.GuardRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	dir := t.TempDir()
	a1, a2 := netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("192.168.50.11")
	n1 := startNetstackNode(t, dir, "node1", kernelNS(t, "ns-node1"), a1, a2, "node2")
	n2 := startNetstackNode(t, dir, "node2", kernelNS(t, "ns-node2"), a2, a1, "node1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	serve := []string{"tcp:80:http", "tcp:7:echo", "udp:53:echo"}
	add := func(n *netstackNode, w config.Workload) *control.WorkloadInfo {
		t.Helper()
		info, err := n.ctl.AddWorkload(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	w1 := add(n1, config.Workload{Name: "api-1", Stack: config.StackNetstack, Serve: serve, Address: netip.MustParseAddr("10.244.1.5")})
	w2 := add(n2, config.Workload{Name: "api-2", Stack: config.StackNetstack, Serve: serve, Address: netip.MustParseAddr("10.244.2.7")})
	tunNS := kernelNS(t, "ns-web")
	w3 := add(n2, config.Workload{Name: "web-1", Namespace: tunNS, Address: netip.MustParseAddr("10.244.2.8")})
	// BGP as the fake speakers tell it: each node learns the other's block.
	n1.speaker.deliver("10.244.2.0/26", a2.String())
	n2.speaker.deliver("10.244.1.0/26", a1.String())
	s1, s2 := n1.stack(t, "api-1"), n2.stack(t, "api-2")

	httpGet := func(from *netstack.Stack, to netip.Addr) string {
		t.Helper()
		c, err := from.DialTCP(ctx, netip.AddrPortFrom(to, 80))
		if err != nil {
			t.Fatalf("%s → %s:80: %v", from.Name(), to, err)
		}
		defer c.Close()
		return httpOver(t, c)
	}
	for _, c := range []struct {
		from *netstack.Stack
		to   *control.WorkloadInfo
	}{{s1, w2}, {s2, w1}} {
		if _, err := c.from.Ping(ctx, c.to.Address, 1, 56); err != nil {
			t.Errorf("ping %s → %s: %v", c.from.Name(), c.to.Name, err)
		}
		if got, want := httpGet(c.from, c.to.Address), c.to.Name+" "+c.to.Address.String()+"\n"; got != want {
			t.Errorf("HTTP %s → %s: %q, want %q", c.from.Name(), c.to.Name, got, want)
		}
		u, err := c.from.DialUDP(netip.AddrPortFrom(c.to.Address, 53))
		if err != nil {
			t.Fatal(err)
		}
		if got := udpEchoOnce(t, u, "hello"); got != "hello" {
			t.Errorf("UDP echo %s → %s: %q", c.from.Name(), c.to.Name, got)
		}
		u.Close()
	}

	// netstack (node1) ↔ namespace workload (node2, a TUN device)
	if _, err := s1.Ping(ctx, w3.Address, 2, 56); err != nil {
		t.Errorf("ping api-1 → web-1 (TUN): %v", err)
	}
	var l net.Listener
	if err := netns.Do(tunNS, func() (err error) {
		l, err = net.Listen("tcp4", w3.Address.String()+":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "web-1 in a namespace\n") }))
	}()
	c, err := s1.DialTCP(ctx, netip.AddrPortFrom(w3.Address, 8080))
	if err != nil {
		t.Fatalf("api-1 → web-1:8080: %v", err)
	}
	if got := httpOver(t, c); got != "web-1 in a namespace\n" {
		t.Errorf("HTTP api-1 → web-1: %q", got)
	}
	c.Close()
	var conn net.Conn
	if err := netns.Do(tunNS, func() (err error) {
		conn, err = net.DialTimeout("tcp4", w1.Address.String()+":80", 10*time.Second)
		return err
	}); err != nil {
		t.Fatalf("web-1 (TUN) → api-1:80: %v", err)
	}
	if got, want := httpOver(t, conn), "api-1 "+w1.Address.String()+"\n"; got != want {
		t.Errorf("HTTP web-1 → api-1: %q, want %q", got, want)
	}
	conn.Close()
	// 4 MB from the namespace's kernel TCP (GSO super-packets from the
	// TUN device, segmented by the engine for the stack) to api-1's echo
	// and back
	if err := netns.Do(tunNS, func() (err error) {
		conn, err = net.DialTimeout("tcp4", w1.Address.String()+":7", 10*time.Second)
		return err
	}); err != nil {
		t.Fatalf("web-1 (TUN) → api-1:7: %v", err)
	}
	// 0.4 s on an idle machine, about 1 s with every CPU busy; under a
	// loaded CI run the fabric's sockets overflow (counted as
	// fabric_tx_drops) and TCP's retransmission backoff once took more
	// than 30 s: this checks the bytes, not the speed.
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	echoStart := time.Now()
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	go func() { _, _ = conn.Write(data) }()
	back := make([]byte, len(data))
	if n, err := io.ReadFull(conn, back); err != nil || !bytes.Equal(back, data) {
		t.Errorf("4 MB echo web-1 → api-1: %d bytes back, %v (equal %v); node1 %v; node2 %v", n, err, bytes.Equal(back, data), n1.dp.Stats(), n2.dp.Stats())
	}
	t.Logf("4 MB echo took %v", time.Since(echoStart))
	conn.Close()
	var uc net.Conn
	if err := netns.Do(tunNS, func() (err error) {
		uc, err = net.Dial("udp4", w1.Address.String()+":53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := udpEchoOnce(t, uc, "from the namespace"); got != "from the namespace" {
		t.Errorf("UDP echo web-1 → api-1: %q", got)
	}
	uc.Close()
	// the namespace's own ping (the kernel's ICMP), answered by gVisor
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", tunNS, "ping", "-c", "2", "-W", "5", w1.Address.String()).CombinedOutput(); err != nil {
		t.Errorf("ping from web-1's namespace to api-1: %v\n%s", err, out)
	}

	// del frees the stack: its port is gone and its client calls fail
	if err := n1.ctl.DeleteWorkload(ctx, "api-1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := n1.dp.Stack(w1.Interface); ok {
		t.Error("api-1's stack is still held after delete")
	}
	if _, err := s1.Ping(ctx, w2.Address, 3, 8); err == nil {
		t.Error("the deleted workload's stack still pings")
	}
}

// httpOver sends GET / on c and returns the response body.
func httpOver(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP status %d: %v", resp.StatusCode, err)
	}
	return string(b)
}

// udpEchoOnce sends msg on c (retrying a lost datagram) and returns what
// comes back.
func udpEchoOnce(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	buf := make([]byte, 2048)
	for try := 0; ; try++ {
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
		if try == 5 {
			t.Fatalf("UDP echo: %v", err)
		}
	}
}

package joint

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// A kernel namespace on a bridge pings a fabric member through the joint:
// the joint answers its ARP for the member's address, hands the echo
// request to the member's endpoint as coming from the kernel node's, and
// the member's reply, sent to the kernel node, reaches the namespace.
func TestJointPing(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardRoot(t)
	prefix := fmt.Sprintf("vrjoint-%d-", os.Getpid())
	netnstest.GuardNamespaces(t, prefix)
	brNS, kNS := prefix+"br", prefix+"k"
	for _, ns := range []string{brNS, kNS} {
		if err := netns.Create(ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netns.Delete(ns) })
	}
	for _, c := range [][]string{
		{"-n", brNS, "link", "add", "br0", "type", "bridge"},
		{"-n", brNS, "link", "set", "br0", "up"},
		{"-n", brNS, "link", "add", "p0", "master", "br0", "type", "veth", "peer", "name", "ens33", "netns", kNS},
		{"-n", brNS, "link", "set", "p0", "up"},
		{"-n", kNS, "addr", "add", "192.168.50.10/24", "dev", "ens33"},
		{"-n", kNS, "link", "set", "ens33", "up"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", c, err, out)
		}
	}
	dir := t.TempDir()
	member := netip.MustParseAddr("192.168.50.11")
	cfg := &Config{Network: "lan", FabricDir: dir, Namespace: brNS, Bridge: "br0", Port: "fab0", MTU: 1500,
		Kernel: []Member{{Node: "node1", Address: netip.MustParseAddr("192.168.50.10"), Namespace: kNS, Interface: "ens33"}},
		Fabric: []Member{{Node: "node2", Address: member}}}
	j, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	ep, err := fabric.Attach(dir, "lan", "node2", fabric.Options{Neighbors: map[netip.Addr]string{cfg.Kernel[0].Address: "node1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	// node2 answers echo requests, as an engine's host would.
	requests := make(chan string, 16)
	go func() {
		bufs, frames := [][]byte{make([]byte, 65535)}, make([]fabric.Frame, 1)
		for {
			n, err := ep.ReadBatch(bufs, frames)
			if err != nil {
				return
			}
			for _, f := range frames[:n] {
				p := f.Packet
				if len(p) < 28 || p[9] != 1 || p[20] != 8 {
					continue
				}
				src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
				requests <- src.String() + " > " + dst.String()
				r := append([]byte(nil), p...)
				copy(r[12:16], p[16:20])
				copy(r[16:20], p[12:16])
				icmp := header.ICMPv4(r[20:])
				icmp.SetType(0)
				icmp.SetChecksum(0)
				icmp.SetChecksum(header.Checksum(r[20:]))
				_ = ep.SendTo(cfg.Kernel[0].Address, fabric.Frame{Packet: r})
			}
		}
	}()

	out, err := exec.Command("ip", "netns", "exec", kNS, "ping", "-c", "2", "-i", "0.2", "-W", "2", member.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ping through the joint: %v\n%s\ncounters: to fabric %d, to bridge %d, ARP %d, errors %d", err, out,
			j.Counters.ToFabric.Load(), j.Counters.ToBridge.Load(), j.Counters.ARPReplies.Load(), j.Counters.SendErrors.Load())
	}
	select {
	case r := <-requests:
		if r != "192.168.50.10 > 192.168.50.11" {
			t.Errorf("node2 got an echo request %s", r)
		}
	case <-time.After(time.Second):
		t.Error("node2 got no echo request")
	}
	neigh, _ := exec.Command("ip", "-n", kNS, "neigh", "show", member.String()).CombinedOutput()
	if want := MemberMAC(member).String(); !strings.Contains(string(neigh), want) {
		t.Errorf("node1's neighbour entry for %s: %s, want lladdr %s", member, neigh, want)
	}
	if j.Counters.ARPReplies.Load() == 0 || j.Counters.ToFabric.Load() < 2 || j.Counters.ToBridge.Load() < 2 {
		t.Errorf("counters: ARP replies %d, to fabric %d, to bridge %d", j.Counters.ARPReplies.Load(), j.Counters.ToFabric.Load(), j.Counters.ToBridge.Load())
	}
}

package bgp

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// The seed's three nodes on loopback: each announces its /26 with itself
// as next hop over a full iBGP mesh in AS 64512.
func TestMesh(t *testing.T) {
	start := time.Now()
	n1 := startNode(t, "node1", "127.0.0.11", 64512)
	n2 := startNode(t, "node2", "127.0.0.12", 64512)
	n3 := startNode(t, "node3", "127.0.0.13", 64512)
	nodes := []*node{n1, n2, n3}
	checkStopped(t, nodes...)
	block := map[*node]netip.Prefix{
		n1: netip.MustParsePrefix("10.244.166.128/26"),
		n2: netip.MustParsePrefix("10.244.104.0/26"),
		n3: netip.MustParsePrefix("10.244.135.0/26"),
	}
	n1.meshWith(t, n2, n3)
	n2.meshWith(t, n1, n3)
	n3.meshWith(t, n1, n2)
	for _, n := range nodes {
		if err := n.Announce(t.Context(), block[n], n.addr); err != nil {
			t.Fatalf("%s: announce: %v", n.name, err)
		}
	}

	// Every node learns the two other blocks, each via its owner.
	converged := func(n *node, want ...*node) string {
		got := n.learned()
		if len(got) != len(want) {
			return fmt.Sprintf("%s learned %v, want the blocks of %d nodes", n.name, got, len(want))
		}
		for _, o := range want {
			u, ok := got[block[o]]
			if !ok || u.NextHop != o.addr || u.Peer != o.addr {
				return fmt.Sprintf("%s learned %v, want %v via %v", n.name, got, block[o], o.addr)
			}
		}
		return ""
	}
	eventually(t, 10*time.Second, func() string {
		for _, n := range nodes {
			var others []*node
			for _, o := range nodes {
				if o != n {
					others = append(others, o)
				}
			}
			if msg := converged(n, others...); msg != "" {
				return msg
			}
		}
		return ""
	})
	t.Logf("mesh converged in %v", time.Since(start).Round(time.Millisecond))

	for _, n := range nodes {
		peers, err := n.Peers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) != 2 {
			t.Fatalf("%s: peers %+v, want 2", n.name, peers)
		}
		for _, p := range peers {
			if p.State != StateEstablished || p.Info != StateEstablished || p.Type != Mesh {
				t.Errorf("%s: peer %+v, want an Established mesh peer", n.name, p)
			}
			if p.Since.Before(start.Truncate(time.Second)) || p.Since.After(time.Now()) {
				t.Errorf("%s: peer %v up since %v, not during the test", n.name, p.Address, p.Since)
			}
		}
		if !peers[0].Address.Less(peers[1].Address) {
			t.Errorf("%s: peers not sorted: %v, %v", n.name, peers[0].Address, peers[1].Address)
		}
	}
	// Prefix counts: each peer sent its block; node1 sent its own block
	// to each (and, iBGP, not the others' blocks).
	adv, err := n1.PeersAdvertised(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range adv {
		if p.Received != 1 || p.Accepted != 1 || p.Advertised != 1 {
			t.Errorf("node1: peer %v received %d, accepted %d, advertised %d prefixes; want 1 each", p.Address, p.Received, p.Accepted, p.Advertised)
		}
	}
	peers, _ := n1.Peers(t.Context())
	if peers[0].Advertised != 0 {
		t.Errorf("Peers counted advertised prefixes (%d): only PeersAdvertised should", peers[0].Advertised)
	}
	var status bytes.Buffer
	if err := WriteStatus(&status, "vrouter", true, peers, time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("node1:\n%s", status.String())
	for _, want := range []string{
		"| 127.0.0.12   | node-to-node mesh | up    | ",
		"| 127.0.0.13   | node-to-node mesh | up    | ",
		" | Established |\n",
	} {
		if !strings.Contains(status.String(), want) {
			t.Errorf("node1 status lacks %q", want)
		}
	}

	// A Watch started now is told the current table first, and ends with
	// its context.
	var lateMu sync.Mutex
	late := map[netip.Prefix]RouteUpdate{}
	lateCalls := 0
	wctx, cancel := context.WithCancel(t.Context())
	if err := n1.Watch(wctx, func(u RouteUpdate) {
		lateMu.Lock()
		defer lateMu.Unlock()
		late[u.Prefix] = u
		lateCalls++
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() string {
		lateMu.Lock()
		defer lateMu.Unlock()
		if !maps.Equal(late, n1.learned()) {
			return fmt.Sprintf("a new Watch got %v, want %v", late, n1.learned())
		}
		return ""
	})
	cancel()
	eventually(t, 2*time.Second, func() string {
		n1.Speaker.mu.Lock()
		defer n1.Speaker.mu.Unlock()
		if len(n1.watches) != 1 {
			return fmt.Sprintf("%d watches, want 1 once the context is done", len(n1.watches))
		}
		return ""
	})
	lateMu.Lock()
	callsBefore := lateCalls
	lateMu.Unlock()

	// A withdrawal reaches the two others; a new announcement too.
	if err := n2.Withdraw(t.Context(), block[n2]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() string {
		for _, n := range []*node{n1, n3} {
			if _, ok := n.learned()[block[n2]]; ok {
				return fmt.Sprintf("%s still routes %v", n.name, block[n2])
			}
		}
		return ""
	})
	for _, n := range []*node{n1, n3} {
		if u := lastUpdate(n, block[n2]); !u.Withdrawn || u.NextHop != n2.addr || u.Peer != n2.addr {
			t.Errorf("%s: last update for %v is %+v, want a withdrawal of the path via %v", n.name, block[n2], u, n2.addr)
		}
	}
	if err := n2.Withdraw(t.Context(), block[n2]); err != nil {
		t.Errorf("withdrawing again: %v", err)
	}
	lateMu.Lock()
	if lateCalls != callsBefore {
		t.Errorf("a Watch whose context is done was called %d more times", lateCalls-callsBefore)
	}
	lateMu.Unlock()
	if err := n2.Announce(t.Context(), block[n2], n2.addr); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() string {
		if msg := converged(n1, n2, n3); msg != "" {
			return msg
		}
		return converged(n3, n1, n2)
	})

	// node3 stops: its block disappears from the others, and their
	// sessions with it leave Established within the hold time.
	stopped := time.Now()
	n3.Stop()
	eventually(t, 3*time.Second, func() string {
		for _, n := range []*node{n1, n2} {
			if _, ok := n.learned()[block[n3]]; ok {
				return fmt.Sprintf("%s still routes %v", n.name, block[n3])
			}
			if p, ok := n.peer(t, n3.addr); !ok || p.State == StateEstablished || p.Info == "" || p.Info == StateEstablished {
				return fmt.Sprintf("%s: peer node3 is %+v", n.name, p)
			}
		}
		return ""
	})
	for _, n := range []*node{n1, n2} {
		p, _ := n.peer(t, n3.addr)
		t.Logf("%s: node3 is %s (%s) since %v, %v after Stop", n.name, p.State, p.Info, p.Since.Format(time.TimeOnly), time.Since(stopped).Round(time.Millisecond))
		if !strings.Contains(p.Info, "Peer de-configured") && !strings.HasPrefix(p.Info, "Socket: ") {
			t.Errorf("%s: node3's Info %q says neither that it was de-configured nor why connecting fails", n.name, p.Info)
		}
		if u := lastUpdate(n, block[n3]); !u.Withdrawn || u.NextHop != n3.addr {
			t.Errorf("%s: last update for %v is %+v, want a withdrawal", n.name, block[n3], u)
		}
	}
	if err := n3.Announce(t.Context(), block[n3], n3.addr); err != ErrStopped {
		t.Errorf("Announce after Stop: %v, want ErrStopped", err)
	}
	if _, err := n3.Peers(t.Context()); err != ErrStopped {
		t.Errorf("Peers after Stop: %v, want ErrStopped", err)
	}

	// node1 deletes node2: it forgets node2's block, node2 forgets node1's.
	if err := n1.DeletePeer(t.Context(), n2.addr); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() string {
		if _, ok := n1.learned()[block[n2]]; ok {
			return "node1 still routes node2's block"
		}
		if _, ok := n2.learned()[block[n1]]; ok {
			return "node2 still routes node1's block"
		}
		if p, ok := n2.peer(t, n1.addr); !ok || p.Info != "Received: Peer de-configured" && !strings.HasPrefix(p.Info, "Socket: ") {
			return fmt.Sprintf("node2: peer node1 is %+v", p)
		}
		return ""
	})
	if _, ok := n1.peer(t, n2.addr); ok {
		t.Error("node1 still lists node2 as a peer")
	}
}

// lastUpdate is the last update n's Watch reported for prefix.
func lastUpdate(n *node, prefix netip.Prefix) RouteUpdate {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.updates) - 1; i >= 0; i-- {
		if n.updates[i].Prefix == prefix {
			return n.updates[i]
		}
	}
	return RouteUpdate{}
}

// A peer configured with the wrong AS never comes up, and both ends say
// why: the end that checks the OPEN sends a NOTIFICATION (Bad peer AS),
// the other receives it (and, GoBGP discarding NOTIFICATIONs received
// before Established, can only say it received one).
func TestWrongPeerAS(t *testing.T) {
	a := startNode(t, "a", "127.0.0.21", 64512)
	b := startNode(t, "b", "127.0.0.22", 64512)
	checkStopped(t, a, b)
	if err := a.AddPeer(t.Context(), Peer{Address: b.addr, ASN: 65000, Type: NodeSpecific, Port: testPort, LocalAddr: a.addr}); err != nil {
		t.Fatal(err)
	}
	// b only accepts: a always opens the session, so a is the end that
	// checks the OPEN (a collision of two attempts made either end the
	// one to notice, and the other's words a matter of timing).
	if err := b.AddPeer(t.Context(), Peer{Address: a.addr, Type: Global, Port: testPort, LocalAddr: b.addr, Passive: true}); err != nil {
		t.Fatal(err)
	}
	established := func() string {
		for _, c := range []struct {
			n    *node
			peer netip.Addr
		}{{a, b.addr}, {b, a.addr}} {
			if p, _ := c.n.peer(t, c.peer); p.State == StateEstablished {
				t.Fatalf("%s: session with %v came up: %+v", c.n.name, c.peer, p)
			}
		}
		return ""
	}
	// 30s: an attempt that a loaded machine stalls past the 3s hold time
	// ends in "Hold timer expired" instead, and GoBGP idles 5s before the
	// next one.
	eventually(t, 30*time.Second, func() string {
		established()
		pa, _ := a.peer(t, b.addr)
		pb, _ := b.peer(t, a.addr)
		if pa.Info != "BGP Error: Bad peer AS" || pb.Info != "Received: NOTIFICATION" {
			return fmt.Sprintf("a says %q, b says %q", pa.Info, pb.Info)
		}
		return ""
	})
	// Keep watching through another connection attempt (ConnectRetry 1 s).
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		established()
		time.Sleep(100 * time.Millisecond)
	}
	pa, _ := a.peer(t, b.addr)
	pb, _ := b.peer(t, a.addr)
	// b's "Received: NOTIFICATION" is inferred; GoBGP's counters confirm it.
	var notifications uint64
	err := b.srv.ListPeer(t.Context(), &api.ListPeerRequest{Address: a.addr.String()}, func(p *api.Peer) {
		notifications = p.GetState().GetMessages().GetReceived().GetNotification()
	})
	if err != nil || notifications == 0 {
		t.Errorf("b received %d NOTIFICATIONs from a (err %v), want some", notifications, err)
	}
	if pa.Type != NodeSpecific || pb.Type != Global {
		t.Errorf("types %v, %v; want node specific, global", pa.Type, pb.Type)
	}
	if pa.Since.IsZero() || pb.Since.IsZero() {
		t.Errorf("no Since: %+v, %+v", pa, pb)
	}
	if len(a.learned()) != 0 || len(b.learned()) != 0 {
		t.Errorf("routes learned without a session: %v, %v", a.learned(), b.learned())
	}
	var status bytes.Buffer
	if err := WriteStatus(&status, "vrouter", true, []PeerStatus{pb}, time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("b:\n%s", status.String())
	row := fmt.Sprintf("| 127.0.0.21   | global    | start | %s | %s Received: NOTIFICATION |", pb.Since.Format(time.TimeOnly), pb.State)
	if !strings.Contains(status.String(), row) {
		t.Errorf("b's status lacks %q", row)
	}
}

// A peer that falls silent (the network between them partitioned) is
// declared down when the hold time runs out, on both sides, and its routes
// are withdrawn.
func TestHoldTimerExpires(t *testing.T) {
	// a does not listen: its only session goes through the proxy, which
	// b sees as coming from a's address.
	a := startNodeOn(t, "a", "127.0.0.31", 64512, -1)
	b := startNode(t, "b", "127.0.0.32", 64512)
	checkStopped(t, a, b)
	via := netip.MustParseAddr("127.0.0.33")
	px := startProxy(t, netip.AddrPortFrom(via, uint16(testPort)), netip.AddrPortFrom(b.addr, uint16(testPort)), a.addr)
	if err := a.AddPeer(t.Context(), Peer{Address: via, Port: testPort, LocalAddr: a.addr}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPeer(t.Context(), Peer{Address: a.addr, Port: testPort, LocalAddr: b.addr}); err != nil {
		t.Fatal(err)
	}
	blockA, blockB := netip.MustParsePrefix("10.244.1.0/26"), netip.MustParsePrefix("10.244.2.0/26")
	if err := a.Announce(t.Context(), blockA, a.addr); err != nil {
		t.Fatal(err)
	}
	if err := b.Announce(t.Context(), blockB, b.addr); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		if u := a.learned()[blockB]; u.NextHop != b.addr || u.Peer != via {
			return fmt.Sprintf("a learned %v", a.learned())
		}
		if u := b.learned()[blockA]; u.NextHop != a.addr || u.Peer != a.addr {
			return fmt.Sprintf("b learned %v", b.learned())
		}
		return ""
	})

	px.frozen.Store(true)
	frozen := time.Now()
	eventually(t, 6*time.Second, func() string {
		for _, c := range []struct {
			n     *node
			peer  netip.Addr
			block netip.Prefix
		}{{a, via, blockB}, {b, a.addr, blockA}} {
			if _, ok := c.n.learned()[c.block]; ok {
				return fmt.Sprintf("%s still routes %v", c.n.name, c.block)
			}
			if p, _ := c.n.peer(t, c.peer); p.State == StateEstablished || p.Info != "BGP Error: Hold timer expired" {
				return fmt.Sprintf("%s: peer %+v", c.n.name, p)
			}
		}
		return ""
	})
	elapsed := time.Since(frozen)
	t.Logf("both sides declared the other down %v after the partition (hold time 3 s)", elapsed.Round(time.Millisecond))
	// The last keepalive arrived at most a keepalive time (1 s) before the
	// partition, so the hold timers ran out between 2 and 3 s after it;
	// allow for the polling and a loaded machine (up to 2 s late: a
	// default 9 s or 90 s hold time, or none, still fails).
	if elapsed < 1500*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("declared down %v after the partition, want within the 3 s hold time", elapsed)
	}
}

func TestStartErrors(t *testing.T) {
	n := startNode(t, "a", "127.0.0.41", 64512)
	checkStopped(t, n)
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no ASN", Config{ListenAddr: n.addr, ListenPort: -1}, "ASN"},
		{"no router ID", Config{ASN: 64512, ListenAddr: netip.MustParseAddr("::1"), ListenPort: -1}, "router ID"},
		{"bad port", Config{ASN: 64512, RouterID: n.addr, ListenPort: 70000}, "port"},
		{"port in use", Config{ASN: 64512, ListenAddr: n.addr, ListenPort: testPort}, "address already in use"},
	} {
		s, err := Start(t.Context(), c.cfg)
		if err == nil {
			s.Stop()
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.want)
		}
	}
	if err := n.AddPeer(t.Context(), Peer{}); err == nil {
		t.Error("AddPeer without an address: no error")
	}
	if err := n.Announce(t.Context(), netip.MustParsePrefix("10.0.0.0/26"), netip.MustParseAddr("fd00::1")); err == nil {
		t.Error("Announce with a next hop of another family: no error")
	}
	if err := n.Withdraw(t.Context(), netip.MustParsePrefix("10.0.0.0/26")); err != nil {
		t.Errorf("withdrawing what was never announced: %v", err)
	}
	n.Stop()
	n.Stop()
	if err := n.Watch(t.Context(), func(RouteUpdate) {}); err != ErrStopped {
		t.Errorf("Watch after Stop: %v, want ErrStopped", err)
	}
	if err := n.AddPeer(t.Context(), Peer{Address: netip.MustParseAddr("127.0.0.42")}); err != ErrStopped {
		t.Errorf("AddPeer after Stop: %v, want ErrStopped", err)
	}
}

package bgp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// With graceful restart, a session that fails (here: a partition, so the
// hold timers expire) leaves the peer's routes in place, stale, until the
// session is back; the peers report graceful restart negotiated and
// End-of-RIB received. Without it the same failure withdraws them (see
// TestHoldTimerExpires).
func TestGracefulRestartKeepsRoutes(t *testing.T) {
	gr := func(c *Config) { c.GracefulRestart, c.RestartTime = true, 60*time.Second }
	a := startNodeWith(t, "a", "127.0.0.41", 64512, -1, gr)
	b := startNodeWith(t, "b", "127.0.0.42", 64512, testPort, gr)
	checkStopped(t, a, b)
	via := netip.MustParseAddr("127.0.0.43")
	px := startProxy(t, netip.AddrPortFrom(via, uint16(testPort)), netip.AddrPortFrom(b.addr, uint16(testPort)), a.addr)
	if err := a.AddPeer(t.Context(), Peer{Address: via, Port: testPort, LocalAddr: a.addr}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPeer(t.Context(), Peer{Address: a.addr, Port: testPort, LocalAddr: b.addr, Passive: true}); err != nil {
		t.Fatal(err)
	}
	blockB := netip.MustParsePrefix("10.244.2.0/26")
	if err := b.Announce(t.Context(), blockB, b.addr); err != nil {
		t.Fatal(err)
	}
	synced := func() string {
		if u := a.learned()[blockB]; u.NextHop != b.addr {
			return fmt.Sprintf("a learned %v", a.learned())
		}
		for _, c := range []struct {
			n    *node
			peer netip.Addr
		}{{a, via}, {b, a.addr}} {
			p, _ := c.n.peer(t, c.peer)
			if p.State != StateEstablished || !p.GracefulRestart || !p.EndOfRIB {
				return fmt.Sprintf("%s: peer %+v, want Established with graceful restart and End-of-RIB", c.n.name, p)
			}
		}
		return ""
	}
	eventually(t, 10*time.Second, synced)
	if routes, err := a.Learned(t.Context()); err != nil || routes[blockB].NextHop != b.addr {
		t.Fatalf("a's Learned: %v, %v", routes, err)
	}

	px.frozen.Store(true)
	eventually(t, 8*time.Second, func() string {
		if p, _ := a.peer(t, via); p.State == StateEstablished {
			return fmt.Sprintf("a: peer %+v still Established", p)
		}
		return ""
	})
	if u, ok := a.learned()[blockB]; !ok || u.NextHop != b.addr {
		t.Fatalf("a dropped b's route when the session failed under graceful restart: %v", a.learned())
	}
	for _, u := range a.updates {
		if u.Withdrawn {
			t.Errorf("a reported a withdrawal under graceful restart: %+v", u)
		}
	}
	px.frozen.Store(false)
	eventually(t, 30*time.Second, synced)
}

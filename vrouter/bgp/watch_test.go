package bgp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// path builds a GoBGP path as Watch receives it: learned from peer, or
// originated here if peer is empty.
func path(t *testing.T, prefix, nextHop, peer string, withdraw bool) *api.Path {
	t.Helper()
	p, err := newPath(netip.MustParsePrefix(prefix), netip.MustParseAddr(nextHop))
	if err != nil {
		t.Fatal(err)
	}
	p.IsWithdraw = withdraw
	p.NeighborIp = "<nil>" // what GoBGP says of paths originated locally
	if peer != "" {
		p.NeighborIp = peer
	}
	return p
}

func TestWatchDeliver(t *testing.T) {
	var got []RouteUpdate
	w := &watch{fn: func(u RouteUpdate) { got = append(got, u) }, cancel: func() {}, learned: map[netip.Prefix]RouteUpdate{}}
	log := slog.New(slog.DiscardHandler)
	pfx := netip.MustParsePrefix("10.244.104.0/26")
	n2, n3 := netip.MustParseAddr("192.168.50.11"), netip.MustParseAddr("192.168.50.12")

	steps := []struct {
		name  string
		paths []*api.Path
		want  []RouteUpdate
	}{
		{"own path", []*api.Path{path(t, "10.244.166.128/26", "192.168.50.10", "", false)}, nil},
		{"learned", []*api.Path{path(t, "10.244.104.0/26", "192.168.50.11", "192.168.50.11", false)},
			[]RouteUpdate{{Prefix: pfx, NextHop: n2, Peer: n2}}},
		{"same again", []*api.Path{path(t, "10.244.104.0/26", "192.168.50.11", "192.168.50.11", false)}, nil},
		{"better path elsewhere", []*api.Path{path(t, "10.244.104.0/26", "192.168.50.12", "192.168.50.12", false)},
			[]RouteUpdate{{Prefix: pfx, NextHop: n3, Peer: n3}}},
		{"withdrawn", []*api.Path{path(t, "10.244.104.0/26", "192.168.50.12", "192.168.50.12", true)},
			[]RouteUpdate{{Prefix: pfx, NextHop: n3, Peer: n3, Withdrawn: true}}},
		{"withdrawn again", []*api.Path{path(t, "10.244.104.0/26", "192.168.50.12", "192.168.50.12", true)}, nil},
		{"learned, then our own path wins", []*api.Path{
			path(t, "10.244.104.0/26", "192.168.50.11", "192.168.50.11", false),
			path(t, "10.244.104.0/26", "192.168.50.10", "", false),
		}, []RouteUpdate{{Prefix: pfx, NextHop: n2, Peer: n2}, {Prefix: pfx, NextHop: n2, Peer: n2, Withdrawn: true}}},
	}
	for _, s := range steps {
		got = nil
		w.deliver(s.paths, log)
		if !slices.Equal(got, s.want) {
			t.Errorf("%s: got %+v, want %+v", s.name, got, s.want)
		}
	}

	w.close()
	got = nil
	w.deliver([]*api.Path{path(t, "10.244.104.0/26", "192.168.50.11", "192.168.50.11", false)}, log)
	if got != nil {
		t.Errorf("update after close: %+v", got)
	}
}

func TestPathRoundTrip(t *testing.T) {
	for _, c := range []struct{ prefix, nextHop, want string }{
		{"10.244.166.128/26", "192.168.50.10", "192.168.50.10"},
		{"10.244.166.130/26", "192.168.50.10", "192.168.50.10"}, // masked
		{"10.244.166.128/26", "", "0.0.0.0"},                    // next-hop-self
		{"fd00:10:244::/80", "fd00::10", "fd00::10"},
		{"fd00:10:244::/80", "", "::"},
	} {
		nh := netip.Addr{}
		if c.nextHop != "" {
			nh = netip.MustParseAddr(c.nextHop)
		}
		p, err := newPath(netip.MustParsePrefix(c.prefix), nh)
		if err != nil {
			t.Fatalf("%s via %s: %v", c.prefix, c.nextHop, err)
		}
		u, err := decodePath(p)
		if err != nil {
			t.Fatalf("%s via %s: decode: %v", c.prefix, c.nextHop, err)
		}
		if want := netip.MustParsePrefix(c.prefix).Masked(); u.Prefix != want || u.NextHop.String() != c.want || u.Peer.IsValid() {
			t.Errorf("%s via %s: decoded %+v, want %v via %s from no peer", c.prefix, c.nextHop, u, want, c.want)
		}
	}
	for _, c := range []struct{ prefix, nextHop string }{
		{"10.244.166.128/26", "fd00::1"},
		{"fd00::/64", "192.168.50.10"},
		{"::ffff:10.0.0.0/104", "10.0.0.1"},
	} {
		if _, err := newPath(netip.MustParsePrefix(c.prefix), netip.MustParseAddr(c.nextHop)); err == nil {
			t.Errorf("%s via %s: no error", c.prefix, c.nextHop)
		}
	}
}

// The logger adapter reads the last error of a session from the messages
// GoBGP logs, with the fields GoBGP gives them.
func TestLastErrorFromLogs(t *testing.T) {
	ev := newPeerEvents()
	l := &gobgpLogger{log: slog.New(slog.DiscardHandler), events: ev}
	peer := "192.168.50.11"
	addr := netip.MustParseAddr(peer)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}

	steps := []struct {
		do   func()
		want string
	}{
		{func() { l.Debug("failed to connect", log.Fields{"Key": peer, "Error": refused}) }, "Socket: Connection refused"},
		{func() {
			l.Warn("received notification", log.Fields{"Key": peer, "Code": uint8(6), "Subcode": uint8(3), "Data": []byte{}})
		}, "Received: Peer de-configured"},
		// A collision is routine and hides nothing.
		{func() {
			l.Warn("sent notification", log.Fields{"Key": peer, "Code": uint8(6), "Subcode": uint8(7), "Data": []byte{}})
		}, "Received: Peer de-configured"},
		{func() {
			l.Warn("sent notification", log.Fields{"Key": peer, "Data": bgp.NewMessageError(2, 2, nil, "as number mismatch")})
		}, "BGP Error: Bad peer AS"},
		{func() { l.Info("Peer Up", log.Fields{"Key": peer}) }, ""},
		{func() { l.Warn("hold timer expired", log.Fields{"Key": peer}) }, "BGP Error: Hold timer expired"},
		{func() { l.Info("Peer Down", log.Fields{"Key": peer, "Reason": "read-failed"}) }, "Socket: Connection closed"},
		// A NOTIFICATION received before Established: GoBGP only says the
		// attempt ended on an invalid message.
		{func() {
			l.Debug("state changed", log.Fields{"Key": peer, "old": "BGP_FSM_ACTIVE", "new": "BGP_FSM_OPENSENT", "reason": fmt.Errorf("new-connection")})
			l.Debug("state changed", log.Fields{"Key": peer, "old": "BGP_FSM_OPENSENT", "new": "BGP_FSM_OPENCONFIRM", "reason": fmt.Errorf("open-msg-received")})
			l.Debug("state changed", log.Fields{"Key": peer, "old": "BGP_FSM_OPENCONFIRM", "new": "BGP_FSM_IDLE", "reason": stringer("invalid-msg")})
		}, "Received: NOTIFICATION"},
		// ... unless it was this speaker that sent one.
		{func() {
			l.Debug("state changed", log.Fields{"Key": peer, "old": "BGP_FSM_ACTIVE", "new": "BGP_FSM_OPENSENT"})
			l.Warn("sent notification", log.Fields{"Key": peer, "Data": bgp.NewMessageError(2, 6, nil, "")})
			l.Debug("state changed", log.Fields{"Key": peer, "old": "BGP_FSM_OPENSENT", "new": "BGP_FSM_IDLE", "reason": stringer("invalid-msg")})
		}, "BGP Error: Unacceptable hold time"},
	}
	for i, s := range steps {
		s.do()
		if got := ev.lastError(addr); got != s.want {
			t.Errorf("step %d: last error %q, want %q", i, got, s.want)
		}
	}
	// Messages about other peers, or none, leave it alone.
	l.Warn("hold timer expired", log.Fields{"Key": "192.168.50.12"})
	l.Warn("hold timer expired", log.Fields{})
	if got := ev.lastError(addr); got != "BGP Error: Unacceptable hold time" {
		t.Errorf("last error %q changed by another peer's", got)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestSocketError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "Connection refused"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, "No route to host"},
		{fmt.Errorf("dial tcp: %w", os.ErrDeadlineExceeded), "Connection timed out"},
		{errors.New("dial tcp 10.0.0.1:179: something odd"), "Something odd"},
	} {
		if got := socketError(c.err); got != c.want {
			t.Errorf("socketError(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestNotificationText(t *testing.T) {
	for _, c := range []struct {
		code, sub uint8
		want      string
	}{
		{2, 2, "Bad peer AS"},
		{4, 0, "Hold timer expired"},
		{6, 3, "Peer de-configured"},
		{3, 99, "Invalid UPDATE message (subcode 99)"},
		{42, 1, "Unknown error 42/1"},
	} {
		if got := notificationText(c.code, c.sub); got != c.want {
			t.Errorf("notificationText(%d, %d) = %q, want %q", c.code, c.sub, got, c.want)
		}
	}
}

func TestPeerTypeAndDescription(t *testing.T) {
	for _, c := range []struct {
		typ  PeerType
		name string
		addr string
		desc string
	}{
		{Mesh, "node-to-node mesh", "192.168.50.11", "Mesh_192_168_50_11"},
		{Global, "global", "10.0.0.1", "Global_10_0_0_1"},
		{NodeSpecific, "node specific", "fd80:24e2:f998:72d7::2", "Node_fd80_24e2_f998_72d7__2"},
	} {
		if c.typ.String() != c.name {
			t.Errorf("%d.String() = %q, want %q", c.typ, c.typ.String(), c.name)
		}
		d := description(c.typ, netip.MustParseAddr(c.addr))
		if d != c.desc || typeFromDescription(d) != c.typ {
			t.Errorf("description %q (type back %v), want %q", d, typeFromDescription(d), c.desc)
		}
	}
}

package bgp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testPort is the port every test speaker listens on, on its own loopback
// address: high, never 179, and different for concurrent test processes.
var testPort = 20000 + os.Getpid()%1000

// testHandler logs to the test until it ends (GoBGP's Serve goroutine
// outlives a speaker, and t.Log after the test would panic).
type testHandler struct {
	level slog.Level
	attrs string
	st    *testHandlerState
}

type testHandlerState struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (h testHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h testHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s %s", r.Time.Format("15:04:05.000"), r.Level, h.attrs, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	if !h.st.done {
		h.st.t.Log(b.String())
	}
	return nil
}

func (h testHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		h.attrs += fmt.Sprintf(" %s=%v", a.Key, a.Value)
	}
	return h
}

func (h testHandler) WithGroup(string) slog.Handler { return h }

// testLogger logs at info level and above (everything with
// VROUTER_BGP_DEBUG=1) through t.Log.
func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("VROUTER_BGP_DEBUG") != "" {
		level = levelTrace
	}
	st := &testHandlerState{t: t}
	t.Cleanup(func() {
		st.mu.Lock()
		st.done = true
		st.mu.Unlock()
	})
	return slog.New(testHandler{level: level, st: st})
}

// node is a test speaker and what its Watch reported.
type node struct {
	name string
	addr netip.Addr
	*Speaker

	mu      sync.Mutex
	routes  map[netip.Prefix]RouteUpdate // current learned routes
	updates []RouteUpdate                // everything reported, in order
}

// startNode starts a speaker listening on 127.0.0.x with keepalive 1 s
// and hold 3 s, watching its learned routes; it is stopped when the test
// ends.
func startNode(t *testing.T, name, addr string, asn uint32) *node {
	t.Helper()
	return startNodeOn(t, name, addr, asn, testPort)
}

// startNodeOn is startNode with another listening port (-1: none).
func startNodeOn(t *testing.T, name, addr string, asn uint32, port int) *node {
	t.Helper()
	return startNodeWith(t, name, addr, asn, port, nil)
}

// startNodeWith is startNodeOn with a change to the speaker's config.
func startNodeWith(t *testing.T, name, addr string, asn uint32, port int, change func(*Config)) *node {
	t.Helper()
	n := &node{name: name, addr: netip.MustParseAddr(addr), routes: map[netip.Prefix]RouteUpdate{}}
	cfg := Config{
		ASN:           asn,
		ListenAddr:    n.addr,
		ListenPort:    port,
		KeepaliveTime: time.Second,
		HoldTime:      3 * time.Second,
		ConnectRetry:  time.Second,
		Logger:        testLogger(t).With("node", name),
	}
	if change != nil {
		change(&cfg)
	}
	s, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	n.Speaker = s
	t.Cleanup(s.Stop)
	if err := s.Watch(context.Background(), n.record); err != nil {
		t.Fatalf("watch %s: %v", name, err)
	}
	return n
}

func (n *node) record(u RouteUpdate) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.updates = append(n.updates, u)
	if u.Withdrawn {
		delete(n.routes, u.Prefix)
	} else {
		n.routes[u.Prefix] = u
	}
}

// learned returns a copy of the routes n has learned.
func (n *node) learned() map[netip.Prefix]RouteUpdate {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := make(map[netip.Prefix]RouteUpdate, len(n.routes))
	for k, v := range n.routes {
		m[k] = v
	}
	return m
}

// peer returns n's status of its session with addr.
func (n *node) peer(t *testing.T, addr netip.Addr) (PeerStatus, bool) {
	t.Helper()
	peers, err := n.Peers(t.Context())
	if err != nil {
		t.Fatalf("%s: peers: %v", n.name, err)
	}
	for _, p := range peers {
		if p.Address == addr {
			return p, true
		}
	}
	return PeerStatus{}, false
}

// meshWith configures the others as n's mesh peers, over loopback.
func (n *node) meshWith(t *testing.T, others ...*node) {
	t.Helper()
	for _, o := range others {
		err := n.AddPeer(t.Context(), Peer{Address: o.addr, Type: Mesh, Port: testPort, LocalAddr: n.addr})
		if err != nil {
			t.Fatalf("%s: add peer %s: %v", n.name, o.name, err)
		}
	}
}

// eventually polls cond every 50 ms until it returns "" or timeout
// passes, then fails with cond's last complaint.
func eventually(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkStopped verifies, once the test's speakers are stopped, that their
// listeners are closed and that nothing they started still runs except
// GoBGP's Serve loop, which GoBGP v3 never ends (one per speaker).
func checkStopped(t *testing.T, nodes ...*node) {
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Stop()
		}
		for _, n := range nodes {
			l, err := net.Listen("tcp", netip.AddrPortFrom(n.addr, uint16(testPort)).String())
			if err != nil {
				t.Errorf("%s: listener not closed: %v", n.name, err)
				continue
			}
			l.Close()
		}
		var leaked []string
		deadline := time.Now().Add(3 * time.Second)
		for {
			leaked = leakedGoroutines()
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, g := range leaked {
			t.Errorf("goroutine still running after Stop:\n%s", g)
		}
	})
}

// leakedGoroutines lists the goroutines running GoBGP's code or this
// package's, other than GoBGP's everlasting Serve loops and the caller.
func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var leaked []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // the calling goroutine
			continue
		}
		if !strings.Contains(g, "osrg/gobgp") && !strings.Contains(g, "vrouter/bgp.") {
			continue
		}
		if strings.Contains(g, "server.(*BgpServer).Serve(") && strings.Contains(g, "created by github.com/vrouter-lab/vrouter/vrouter/bgp.Start") {
			continue
		}
		leaked = append(leaked, g)
	}
	return leaked
}

// proxy relays TCP connections from its address to a target, from a given
// source address, until frozen: then it drops everything both ways and
// closes nothing, as a network partition would.
type proxy struct {
	l      net.Listener
	target netip.AddrPort
	source netip.Addr
	frozen atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, listen netip.AddrPort, target netip.AddrPort, source netip.Addr) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", listen.String())
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, source: source, conns: []net.Conn{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		if p.frozen.Load() {
			p.wg.Add(1)
			go p.copy(io.Discard, c)
			continue
		}
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(p.source, 0))}
		u, err := d.Dial("tcp", p.target.String())
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(u) {
			return
		}
		p.wg.Add(2)
		go p.copy(u, c)
		go p.copy(c, u)
	}
}

// track remembers a connection to close; false if the proxy is closed.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *proxy) copy(dst io.Writer, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if err != nil {
			if c, ok := dst.(*net.TCPConn); ok && !p.frozen.Load() {
				c.CloseWrite()
			}
			return
		}
		if !p.frozen.Load() {
			dst.Write(buf[:n])
		}
	}
}

func (p *proxy) close() {
	p.l.Close()
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

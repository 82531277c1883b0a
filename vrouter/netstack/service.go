package netstack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Service is one server a netstack workload runs, written
// PROTO:PORT:KIND: tcp:80:http, tcp:7:echo, udp:53:echo, tcp:5201:sink,
// udp:9:sink.
type Service struct {
	Proto string // "tcp" or "udp"
	Port  uint16
	Kind  string // "http" (tcp), "echo" or "sink" (tcp or udp)
}

// String returns the service as ParseService reads it.
func (s Service) String() string {
	return s.Proto + ":" + strconv.Itoa(int(s.Port)) + ":" + s.Kind
}

// ParseService reads a service written PROTO:PORT:KIND.
func ParseService(v string) (Service, error) {
	parts := strings.Split(v, ":")
	if len(parts) != 3 {
		return Service{}, fmt.Errorf("service %q: want PROTO:PORT:KIND (tcp:80:http)", v)
	}
	port, err := strconv.ParseUint(parts[1], 10, 16)
	if err != nil || port == 0 {
		return Service{}, fmt.Errorf("service %q: port %q is not 1-65535", v, parts[1])
	}
	s := Service{Proto: parts[0], Port: uint16(port), Kind: parts[2]}
	switch {
	case s.Proto != "tcp" && s.Proto != "udp":
		return Service{}, fmt.Errorf("service %q: protocol %q is not tcp or udp", v, s.Proto)
	case s.Proto == "tcp" && (s.Kind == "http" || s.Kind == "echo" || s.Kind == "sink"):
	case s.Proto == "udp" && (s.Kind == "echo" || s.Kind == "sink"):
	default:
		return Service{}, fmt.Errorf("service %q: no %s service %q (tcp: http, echo, sink; udp: echo, sink)", v, s.Proto, s.Kind)
	}
	return s, nil
}

// ParseServices reads a list of services; a port may serve one service
// per protocol.
func ParseServices(vs []string) ([]Service, error) {
	out := make([]Service, 0, len(vs))
	seen := map[string]bool{}
	for _, v := range vs {
		s, err := ParseService(v)
		if err != nil {
			return nil, err
		}
		key := s.Proto + ":" + strconv.Itoa(int(s.Port))
		if seen[key] {
			return nil, fmt.Errorf("service %q: %s port %d served twice", v, s.Proto, s.Port)
		}
		seen[key] = true
		out = append(out, s)
	}
	return out, nil
}

// servers are a stack's running services and their connections.
type servers struct {
	mu      sync.Mutex
	closed  bool
	closers map[io.Closer]struct{}
	wg      sync.WaitGroup
}

// track registers c to be closed by close; false if the services are
// closed already (c is closed then).
func (v *servers) track(c io.Closer) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		c.Close()
		return false
	}
	if v.closers == nil {
		v.closers = map[io.Closer]struct{}{}
	}
	v.closers[c] = struct{}{}
	return true
}

func (v *servers) untrack(c io.Closer) {
	v.mu.Lock()
	delete(v.closers, c)
	v.mu.Unlock()
}

// close closes every listener and connection and waits for the services'
// goroutines to end.
func (v *servers) close() {
	v.mu.Lock()
	v.closed = true
	cs := v.closers
	v.closers = nil
	v.mu.Unlock()
	for c := range cs {
		c.Close()
	}
	v.wg.Wait()
}

// run runs fn in a goroutine close waits for, unless the services are
// closed.
func (v *servers) run(fn func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		fn()
	}()
}

// An idle service holds no goroutine: its endpoint's wait queue calls
// back when a connection or datagram arrives, and the callback starts a
// goroutine that takes everything waiting (accepts the connections,
// echoes the datagrams) and ends. So an idle workload costs its
// endpoints only, whatever it serves. drain is that goroutine's work;
// running keeps to one goroutine at a time.
type lazyService struct {
	st      *Stack
	ep      tcpip.Endpoint
	wq      waiter.Queue
	entry   waiter.Entry
	running atomic.Bool
	closed  atomic.Bool // set by Close: a closed endpoint stays "readable"
	drain   func()
}

// start registers the callback, before the endpoint is bound (nothing
// can arrive unnoticed).
func (l *lazyService) start() *lazyService {
	l.entry = waiter.NewFunctionEntry(waiter.ReadableEvents, func(waiter.EventMask) { l.wake() })
	l.wq.EventRegister(&l.entry)
	return l
}

// Close unregisters the callback and closes the endpoint.
func (l *lazyService) Close() error {
	l.closed.Store(true)
	l.wq.EventUnregister(&l.entry)
	l.ep.Close()
	return nil
}

// wake starts the draining goroutine unless it runs; it drains again if
// something arrived while it was stopping. It is called by the endpoint's
// notification, perhaps under its locks: it touches only the flag.
func (l *lazyService) wake() {
	if !l.running.CompareAndSwap(false, true) {
		return
	}
	l.st.svc.run(func() {
		for {
			l.drain()
			l.running.Store(false)
			// A closed endpoint reports itself readable for ever (its
			// reads fail at once): stop then, or close would wait on
			// this goroutine spinning.
			if l.closed.Load() || l.ep.Readiness(waiter.ReadableEvents) == 0 || !l.running.CompareAndSwap(false, true) {
				return
			}
		}
	})
}

// serve starts the services.
func (st *Stack) serve(svcs []Service) error {
	for _, s := range svcs {
		l := &lazyService{st: st}
		proto := tcp.ProtocolNumber
		if s.Proto == "udp" {
			proto = udp.ProtocolNumber
		}
		ep, e := st.s.NewEndpoint(proto, ipv4.ProtocolNumber, &l.wq)
		if e != nil {
			return fmt.Errorf("%s: %s", s, e)
		}
		l.ep = ep
		switch s.Kind {
		case "http":
			l.drain = func() { st.accept(ep, nil) }
		case "echo":
			l.drain = func() { st.accept(ep, func(c net.Conn) { _, _ = io.Copy(c, c) }) }
			if s.Proto == "udp" {
				l.drain = func() { udpEcho(ep) }
			}
		case "sink":
			l.drain = func() { st.accept(ep, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }) }
			if s.Proto == "udp" {
				var count atomic.Uint64
				l.drain = func() { udpSink(ep, &count) }
				// gVisor's default, 32 KB, holds a few hundred small
				// datagrams: a flood overflows it before the sink's
				// goroutine runs. Used only while datagrams wait.
				ep.SocketOptions().SetReceiveBufferSize(udpSinkBuffer, true)
			}
		}
		if !st.svc.track(l.start()) {
			return errClosed
		}
		if e := ep.Bind(tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(st.addr.As4()), Port: s.Port}); e != nil {
			return fmt.Errorf("%s: bind: %s", s, e)
		}
		if s.Proto == "tcp" {
			if e := ep.Listen(listenBacklog); e != nil {
				return fmt.Errorf("%s: listen: %s", s, e)
			}
		}
	}
	return nil
}

// listenBacklog is a service's accept queue.
const listenBacklog = 128

// accept serves every connection waiting on ep with fn, each in a
// goroutine of its own (fn nil: hands them to the shared HTTP server),
// and returns when none is left.
func (st *Stack) accept(ep tcpip.Endpoint, fn func(net.Conn)) {
	for {
		n, wq, e := ep.Accept(nil)
		if e != nil {
			if _, ok := e.(*tcpip.ErrWouldBlock); !ok {
				st.log.Debug("accept ended", "workload", st.name, "err", e)
			}
			return
		}
		c := gonet.NewTCPConn(wq, n)
		if fn == nil {
			st.serveHTTP(c)
			continue
		}
		if !st.svc.track(c) {
			return
		}
		st.svc.run(func() {
			defer st.svc.untrack(c)
			defer c.Close()
			fn(c)
		})
	}
}

// The HTTP service of every stack in the process is one http.Server
// (started with the first), fed the connections the stacks accept: an
// idle workload holds no server and no goroutine for it.
var shared struct {
	once sync.Once
	ch   chan net.Conn
}

// httpConn is a connection of a stack's HTTP service: the body it
// answers with, and the stack that tracks it.
type httpConn struct {
	net.Conn
	st   *Stack
	body string
	once sync.Once
}

func (c *httpConn) Close() error {
	c.once.Do(func() { c.st.svc.untrack(c) })
	return c.Conn.Close()
}

type bodyKey struct{}

// chanListener hands the shared HTTP server the stacks' connections; it
// is never closed.
type chanListener struct{ ch chan net.Conn }

func (l chanListener) Accept() (net.Conn, error) { return <-l.ch, nil }
func (l chanListener) Close() error              { return nil }
func (l chanListener) Addr() net.Addr            { return &net.TCPAddr{} }

// serveHTTP hands c to the shared HTTP server, which answers every
// request with the workload's name and address: "api-1 10.244.1.5\n".
func (st *Stack) serveHTTP(c net.Conn) {
	shared.once.Do(func() {
		shared.ch = make(chan net.Conn, 64)
		srv := &http.Server{
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       time.Minute,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				if hc, ok := c.(*httpConn); ok {
					return context.WithValue(ctx, bodyKey{}, hc.body)
				}
				return ctx
			},
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := r.Context().Value(bodyKey{}).(string)
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, _ = io.WriteString(w, body)
			}),
			ErrorLog: log.New(io.Discard, "", 0),
		}
		go func() { _ = srv.Serve(chanListener{shared.ch}) }()
	})
	// the server closes hc when it is done, which untracks it
	hc := &httpConn{Conn: c, st: st, body: st.name + " " + st.addr.String() + "\n"}
	if !st.svc.track(hc) {
		return
	}
	shared.ch <- hc
}

// udpEchoMax is the longest datagram the UDP echo service sends back
// whole (longer ones are truncated).
const udpEchoMax = 9216

// udpBufs are the UDP echo services' buffers, taken while datagrams wait.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, udpEchoMax); return &b }}

// udpEcho sends every datagram waiting on ep back to its sender and
// returns when none is left.
func udpEcho(ep tcpip.Endpoint) {
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	for {
		w := tcpip.SliceWriter(*bp)
		res, e := ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
		if e != nil {
			return
		}
		var r bytes.Reader
		r.Reset((*bp)[:res.Count])
		to := res.RemoteAddr
		_, _ = ep.Write(&r, tcpip.WriteOptions{To: &to})
	}
}

// The UDP sink's control datagrams (package probe's flood sends them): a
// query is answered with the reply prefix and the decimal count of
// datagrams received since the last reset; a reset with a count of 0.
const (
	sinkReset = "vrouter-probe:reset"
	sinkQuery = "vrouter-probe:count"
	sinkReply = "vrouter-probe:count="
)

// udpSinkBuffer is the UDP sink's receive buffer (gVisor clamps it to
// the stack's maximum, 4 MB by default).
const udpSinkBuffer = 4 << 20

// udpSink counts and discards every datagram waiting on ep, answering
// the control datagrams, and returns when none is left.
func udpSink(ep tcpip.Endpoint, count *atomic.Uint64) {
	var buf [64]byte
	for {
		w := tcpip.SliceWriter(buf[:])
		res, e := ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
		if e != nil {
			return
		}
		var reply string
		switch msg := string(buf[:res.Count]); {
		case res.Total == len(sinkReset) && msg == sinkReset:
			count.Store(0)
			reply = sinkReply + "0"
		case res.Total == len(sinkQuery) && msg == sinkQuery:
			reply = sinkReply + strconv.FormatUint(count.Load(), 10)
		default:
			count.Add(1)
			continue
		}
		var r strings.Reader
		r.Reset(reply)
		to := res.RemoteAddr
		_, _ = ep.Write(&r, tcpip.WriteOptions{To: &to})
	}
}

package netstack

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// Service is one server a netstack workload runs, written
// PROTO:PORT:KIND: tcp:80:http, tcp:7:echo, udp:53:echo, tcp:5201:sink.
type Service struct {
	Proto string // "tcp" or "udp"
	Port  uint16
	Kind  string // "http" (tcp), "echo" (tcp or udp) or "sink" (tcp)
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
	case s.Proto == "udp" && s.Kind == "echo":
	default:
		return Service{}, fmt.Errorf("service %q: no %s service %q (tcp: http, echo, sink; udp: echo)", v, s.Proto, s.Kind)
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

// go runs fn in a goroutine close waits for.
func (v *servers) run(fn func()) {
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		fn()
	}()
}

// serve starts the services.
func (st *Stack) serve(svcs []Service) error {
	for _, s := range svcs {
		local := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(st.addr.As4()), Port: s.Port}
		if s.Proto == "udp" {
			c, err := gonet.DialUDP(st.s, &local, nil, ipv4.ProtocolNumber)
			if err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			if st.svc.track(c) {
				st.svc.run(func() { udpEcho(c) })
			}
			continue
		}
		l, err := gonet.ListenTCP(st.s, local, ipv4.ProtocolNumber)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		if !st.svc.track(l) {
			continue
		}
		switch s.Kind {
		case "http":
			srv := &http.Server{Handler: st.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
			st.svc.untrack(l)
			st.svc.track(srv)
			st.svc.run(func() { _ = srv.Serve(l) })
		case "echo":
			st.svc.run(func() { st.accept(l, func(c net.Conn) { _, _ = io.Copy(c, c) }) })
		case "sink":
			st.svc.run(func() { st.accept(l, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }) })
		}
	}
	return nil
}

// accept serves every connection l accepts with fn until l is closed.
func (st *Stack) accept(l net.Listener, fn func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				st.log.Debug("accept ended", "workload", st.name, "err", err)
			}
			return
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

// httpHandler answers every request with the workload's name and
// address: "api-1 10.244.1.5\n".
func (st *Stack) httpHandler() http.Handler {
	body := st.name + " " + st.addr.String() + "\n"
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, body)
	})
}

// udpEchoMax is the longest datagram the UDP echo service sends back
// whole (longer ones are truncated): its buffer is held by every idle
// workload running it.
const udpEchoMax = 9216

// udpEcho sends every datagram c receives back to its sender until c is
// closed.
func udpEcho(c *gonet.UDPConn) {
	buf := make([]byte, udpEchoMax)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = c.WriteTo(buf[:n], from)
	}
}

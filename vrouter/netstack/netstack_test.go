package netstack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netstack"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Two netstack workloads on two engines reach each other both ways:
// ping (answered by the stack), HTTP, TCP echo (1 MB through SACK-enabled
// TCP) and UDP echo; directly (ipipMode Never) and through tunl0 (IPIP,
// Always).
func TestAcrossEngines(t *testing.T) {
	for _, mode := range []struct {
		name   string
		tunnel bool
	}{{"Never", false}, {"IPIP", true}} {
		t.Run(mode.name, func(t *testing.T) { testAcrossEngines(t, mode.tunnel) })
	}
}

func testAcrossEngines(t *testing.T, tunnel bool) {
	p := newPairMode(t, tunnel)
	serve := []string{"tcp:80:http", "tcp:7:echo", "udp:53:echo", "tcp:5201:sink"}
	sa := p.a.addStack(t, "caliA", "api-1", addrA, serve...)
	t.Cleanup(sa.Close)
	sb := p.b.addStack(t, "caliB", "api-2", addrB, serve...)
	t.Cleanup(sb.Close)
	ctx := testCtx(t)

	for _, c := range []struct {
		name     string
		from, to *netstack.Stack
	}{{"a→b", sa, sb}, {"b→a", sb, sa}} {
		t.Run(c.name, func(t *testing.T) {
			for seq := range uint16(3) {
				rtt, err := c.from.Ping(ctx, c.to.Address(), seq, 56)
				if err != nil {
					t.Fatalf("ping %d: %v", seq, err)
				}
				t.Logf("ping seq %d: %v", seq, rtt)
			}

			// HTTP: the server answers with its workload's name and address
			client := &http.Client{Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
					ap, err := netip.ParseAddrPort(addr)
					if err != nil {
						return nil, err
					}
					return c.from.DialTCP(ctx, ap)
				},
			}}
			defer client.CloseIdleConnections()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.to.Address().String()+"/", nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("HTTP GET: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := fmt.Sprintf("%s %s\n", c.to.Name(), c.to.Address())
			if err != nil || resp.StatusCode != 200 || string(body) != want {
				t.Errorf("HTTP GET: status %d, body %q (%v); want 200 %q", resp.StatusCode, body, err, want)
			}

			// TCP echo: 1 MB there and back
			conn, err := c.from.DialTCP(ctx, netip.AddrPortFrom(c.to.Address(), 7))
			if err != nil {
				t.Fatalf("TCP connect: %v", err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			data := make([]byte, 1<<20)
			_, _ = rand.Read(data)
			werr := make(chan error, 1)
			go func() { _, err := conn.Write(data); werr <- err }()
			got := make([]byte, len(data))
			if _, err := io.ReadFull(conn, got); err != nil {
				t.Fatalf("TCP echo: read: %v", err)
			}
			if err := <-werr; err != nil {
				t.Fatalf("TCP echo: write: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Error("TCP echo: the bytes came back changed")
			}

			// UDP echo
			u, err := c.from.DialUDP(netip.AddrPortFrom(c.to.Address(), 53))
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			msg := []byte("hello over udp from " + c.from.Name())
			buf := make([]byte, 2048)
			var n int
			for try := 0; ; try++ { // UDP: retry a lost datagram
				if _, err := u.Write(msg); err != nil {
					t.Fatal(err)
				}
				_ = u.SetReadDeadline(time.Now().Add(2 * time.Second))
				if n, err = u.Read(buf); err == nil || try == 5 {
					break
				}
			}
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Errorf("UDP echo: got %q (%v), want %q", buf[:n], err, msg)
			}
		})
	}

	// The engines forwarded it all: nothing crossed without them.
	for _, n := range []*node{p.a, p.b} {
		st := n.e.Stats()
		if st["fabric_tx_frames"] == 0 || st["fabric_rx_frames"] == 0 {
			t.Errorf("engine counters %v: nothing crossed the underlay", st)
		}
		if tunnel && st["ipip_decap_accepted"] == 0 {
			t.Errorf("engine counters %v: nothing came through tunl0", st)
		}
	}
}

// A ping to an address nobody has fails (the engine drops it, or answers
// with an ICMP error), it does not hang or succeed.
func TestPingNowhere(t *testing.T) {
	p := newPair(t)
	sa := p.a.addStack(t, "caliA", "api-1", addrA)
	t.Cleanup(sa.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := sa.Ping(ctx, netip.MustParseAddr("10.244.2.9"), 1, 8); err == nil {
		t.Error("ping to an address without a workload succeeded")
	}
}

func TestParseService(t *testing.T) {
	for _, c := range []struct {
		in   string
		want netstack.Service
		ok   bool
	}{
		{"tcp:80:http", netstack.Service{Proto: "tcp", Port: 80, Kind: "http"}, true},
		{"tcp:7:echo", netstack.Service{Proto: "tcp", Port: 7, Kind: "echo"}, true},
		{"udp:53:echo", netstack.Service{Proto: "udp", Port: 53, Kind: "echo"}, true},
		{"tcp:5201:sink", netstack.Service{Proto: "tcp", Port: 5201, Kind: "sink"}, true},
		{"udp:80:http", netstack.Service{}, false},
		{"udp:9:sink", netstack.Service{Proto: "udp", Port: 9, Kind: "sink"}, true},
		{"tcp:0:http", netstack.Service{}, false},
		{"tcp:65536:http", netstack.Service{}, false},
		{"sctp:80:http", netstack.Service{}, false},
		{"tcp:80", netstack.Service{}, false},
		{"tcp:80:http:x", netstack.Service{}, false},
		{"tcp:+80:http", netstack.Service{}, true}, // ParseUint takes no sign: see below
	} {
		got, err := netstack.ParseService(c.in)
		if c.in == "tcp:+80:http" {
			if err == nil {
				t.Errorf("ParseService(%q) accepted a signed port", c.in)
			}
			continue
		}
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseService(%q) = %+v, %v; want %+v, ok %v", c.in, got, err, c.want, c.ok)
		}
		if err == nil && got.String() != c.in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), c.in)
		}
	}
	if _, err := netstack.ParseServices([]string{"tcp:80:http", "tcp:80:echo"}); err == nil {
		t.Error("ParseServices took two services on one TCP port")
	}
	if s, err := netstack.ParseServices([]string{"tcp:53:echo", "udp:53:echo"}); err != nil || len(s) != 2 {
		t.Errorf("ParseServices(tcp and udp 53) = %v, %v", s, err)
	}
}

func FuzzParseService(f *testing.F) {
	for _, s := range []string{"tcp:80:http", "udp:53:echo", "tcp:5201:sink", "tcp::", ":::", "tcp:99999:echo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := netstack.ParseService(in)
		if err != nil {
			return
		}
		if s.Port == 0 || (s.Proto != "tcp" && s.Proto != "udp") {
			t.Fatalf("ParseService(%q) = %+v: invalid service accepted", in, s)
		}
		again, err := netstack.ParseService(s.String())
		if err != nil || again != s {
			t.Fatalf("ParseService(%q) = %+v, its String %q reads back as %+v, %v", in, s, s.String(), again, err)
		}
	})
}

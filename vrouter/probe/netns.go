package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// NamespaceDialer probes from a network namespace (a namespace
// workload's, a name under /run/netns or a path): its sockets are opened
// inside it, so the namespace's kernel sends and answers, as a tool run
// there would. It needs CAP_SYS_ADMIN (to enter the namespace) and
// CAP_NET_RAW (to ping).
type NamespaceDialer struct{ Namespace string }

// DialTCP connects to dst from the namespace.
func (n NamespaceDialer) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(n.Namespace, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp4", dst.String())
		return err
	})
	return c, err
}

// DialUDP returns a UDP socket of the namespace connected to dst.
func (n NamespaceDialer) DialUDP(dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(n.Namespace, func() (err error) {
		c, err = net.Dial("udp4", dst.String())
		return err
	})
	return c, err
}

// Ping sends one ICMP echo request from a raw socket of the namespace and
// waits for its reply (matched by identifier, sequence and payload).
func (n NamespaceDialer) Ping(ctx context.Context, dst netip.Addr, seq uint16, size int) (time.Duration, error) {
	var c net.PacketConn
	if err := netns.Do(n.Namespace, func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return 0, fmt.Errorf("ping: %w", err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	id := uint16(rand.N(1 << 16))
	req := EchoRequest(id, seq, size)
	start := time.Now()
	if _, err := c.WriteTo(req, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return 0, fmt.Errorf("ping %v: %w", dst, err)
	}
	buf := make([]byte, len(req)+128)
	for {
		k, from, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				err = errors.Join(err, ctx.Err())
			}
			return 0, fmt.Errorf("ping %v: %w", dst, err)
		}
		if ip, ok := from.(*net.IPAddr); ok && ip.IP.Equal(dst.AsSlice()) && IsEchoReply(buf[:k], id, seq, req[8:]) {
			return time.Since(start), nil
		}
	}
}

// EchoRequest returns an ICMP echo request with payload bytes 0, 1, 2...
func EchoRequest(id, seq uint16, size int) []byte {
	m := make([]byte, 8+size)
	m[0] = 8 // echo request
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	for i := range size {
		m[8+i] = byte(i)
	}
	binary.BigEndian.PutUint16(m[2:], ^sum(m))
	return m
}

// IsEchoReply reports whether m is an ICMP echo reply to id and seq
// carrying payload.
func IsEchoReply(m []byte, id, seq uint16, payload []byte) bool {
	return len(m) == 8+len(payload) && m[0] == 0 && m[1] == 0 &&
		binary.BigEndian.Uint16(m[4:]) == id && binary.BigEndian.Uint16(m[6:]) == seq &&
		string(m[8:]) == string(payload)
}

// sum is the ones' complement sum of m (RFC 1071).
func sum(m []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(m); i += 2 {
		s += uint32(binary.BigEndian.Uint16(m[i:]))
	}
	if len(m)%2 == 1 {
		s += uint32(m[len(m)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

package netstack

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// DialTCP connects to dst from the workload.
func (st *Stack) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	if st.isClosed() {
		return nil, errClosed
	}
	c, err := gonet.DialContextTCP(ctx, st.s, fullAddr(dst), ipv4.ProtocolNumber)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialUDP returns a UDP socket of the workload connected to dst.
func (st *Stack) DialUDP(dst netip.AddrPort) (net.Conn, error) {
	if st.isClosed() {
		return nil, errClosed
	}
	r := fullAddr(dst)
	c, err := gonet.DialUDP(st.s, nil, &r, ipv4.ProtocolNumber)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Ping sends one ICMP echo request with seq and size bytes of payload
// from the workload to dst and waits for the reply until ctx ends; it
// returns the round-trip time.
func (st *Stack) Ping(ctx context.Context, dst netip.Addr, seq uint16, size int) (time.Duration, error) {
	if st.isClosed() {
		return 0, errClosed
	}
	var wq waiter.Queue
	ep, e := st.s.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
	if e != nil {
		return 0, fmt.Errorf("ping: %s", e)
	}
	if e := ep.Connect(fullAddr(netip.AddrPortFrom(dst, 0))); e != nil {
		ep.Close()
		return 0, fmt.Errorf("ping %v: %s", dst, e)
	}
	c := gonet.NewUDPConn(&wq, ep)
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := make([]byte, header.ICMPv4MinimumSize+size)
	m := header.ICMPv4(req)
	m.SetType(header.ICMPv4Echo)
	m.SetSequence(seq)
	for i := range size {
		req[header.ICMPv4MinimumSize+i] = byte(i)
	}
	start := time.Now()
	if _, err := c.Write(req); err != nil {
		return 0, fmt.Errorf("ping %v: %w", dst, err)
	}
	reply := make([]byte, len(req)+64)
	for {
		n, err := c.Read(reply)
		if err != nil {
			return 0, fmt.Errorf("ping %v: %w", dst, err)
		}
		r := header.ICMPv4(reply[:n])
		if n >= header.ICMPv4MinimumSize && r.Type() == header.ICMPv4EchoReply &&
			binary.BigEndian.Uint16(reply[6:]) == seq && n == len(req) {
			return time.Since(start), nil
		}
	}
}

func (st *Stack) isClosed() bool {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.closed
}

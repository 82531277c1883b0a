// Package netstack runs workloads as gVisor TCP/IP stacks (gVisor's
// netstack, gvisor.dev/gvisor/pkg/tcpip) inside the node agent, attached
// to the userspace engine's ports in memory: no network namespace, no TUN
// device, no system call per packet.
//
// A Stack is one workload: IPv4, ICMP, TCP (with SACK) and UDP on one
// point-to-point NIC with the workload's /32 address and, as a Calico
// workload has, a default route via 169.254.1.1, resolved by no ARP (the
// link has no link address: every packet goes to the engine). It answers
// ICMP echo and runs the services its Config lists (HTTP, echo, a discard
// sink); Ping, DialTCP and DialUDP use it as a client.
//
// A Stack is a dataplane.Link: the engine reads the packets it sends with
// Wait and Read and hands it packets with Deliver. The stack sends plain
// packets of at most its MTU (no GSO, checksums complete) and takes the
// same.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Gateway is the next hop of a netstack workload's default route, as of
// every Calico workload: an address nobody owns, on a link without
// neighbour resolution, so every packet goes to the engine.
var Gateway = netip.MustParseAddr("169.254.1.1")

// nicID is the stack's only NIC.
const nicID tcpip.NICID = 1

// queueLen is how many outbound packets the link queues for the engine's
// reader; more are dropped (a full transmit ring). At 256, a 4 MB TCP echo
// between a namespace workload and a netstack one under the race detector
// stalled about one run in ten (the echo server blocked writing, no packet
// crossing either engine any more; the cause inside gVisor's TCP is not
// found); at 1024 none did in 40 runs. It costs 8 KB per stack (the
// channel's buffer).
const queueLen = 1024

// Config describes a netstack workload.
type Config struct {
	Name    string     // the workload's name: the HTTP service answers with it
	Address netip.Addr // the workload's IPv4 address (a /32)
	MTU     int        // the port's MTU
	Serve   []Service  // the services to run
	Logger  *slog.Logger
}

// Stack is one netstack workload: a gVisor stack, its link to the engine
// and its services.
type Stack struct {
	name string
	addr netip.Addr
	log  *slog.Logger
	s    *stack.Stack
	ep   *channel.Endpoint

	ctx    context.Context
	cancel context.CancelFunc
	held   *stack.PacketBuffer // the packet Wait took, for Read; the reader's only

	mu     sync.RWMutex // held for reading while a packet is delivered
	closed bool

	svc servers
}

var _ dataplane.Link = (*Stack)(nil)

// New makes a workload's stack and starts its services; Close stops them
// and frees the stack.
func New(cfg Config) (*Stack, error) {
	if !cfg.Address.Is4() {
		return nil, fmt.Errorf("netstack %s: address %v is not IPv4", cfg.Name, cfg.Address)
	}
	if cfg.MTU < dataplane.MinMTU || cfg.MTU > dataplane.MaxMTU {
		return nil, fmt.Errorf("netstack %s: mtu %d out of range", cfg.Name, cfg.MTU)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	st := &Stack{name: cfg.Name, addr: cfg.Address, log: log, s: s}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	fail := func(what string, e tcpip.Error) (*Stack, error) {
		st.Close()
		return nil, fmt.Errorf("netstack %s: %s: %s", cfg.Name, what, e)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return fail("enable SACK", e)
	}
	// A point-to-point link without link addresses: no ARP, no GSO,
	// checksums computed and checked by the stack.
	st.ep = channel.New(queueLen, uint32(cfg.MTU), "")
	if e := s.CreateNIC(nicID, st.ep); e != nil {
		return fail("create NIC", e)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(cfg.Address.As4()).WithPrefix(),
	}
	if e := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); e != nil {
		return fail("add address", e)
	}
	s.SetRouteTable([]tcpip.Route{{
		Destination: header.IPv4EmptySubnet,
		Gateway:     tcpip.AddrFrom4(Gateway.As4()),
		NIC:         nicID,
	}})
	if err := st.serve(cfg.Serve); err != nil {
		st.Close()
		return nil, fmt.Errorf("netstack %s: %w", cfg.Name, err)
	}
	return st, nil
}

// Name returns the workload's name.
func (st *Stack) Name() string { return st.name }

// Address returns the workload's address.
func (st *Stack) Address() netip.Addr { return st.addr }

// Wait blocks until the stack has a packet for the engine (true) or is
// closed (false).
func (st *Stack) Wait() bool {
	if st.held != nil {
		return true
	}
	st.held = st.ep.ReadContext(st.ctx)
	return st.held != nil
}

// Read copies the stack's next outbound packet into buf and returns its
// length, 0 if none is queued.
func (st *Stack) Read(buf []byte) int {
	for {
		pkt := st.held
		st.held = nil
		if pkt == nil {
			if pkt = st.ep.Read(); pkt == nil {
				return 0
			}
		}
		n := 0
		if pkt.Size() <= len(buf) {
			for _, v := range pkt.AsSlices() {
				n += copy(buf[n:], v)
			}
		}
		pkt.DecRef()
		if n > 0 {
			return n
		}
	}
}

// Deliver hands one IPv4 packet to the stack; it is processed before
// Deliver returns (what the stack sends in answer is queued for Read).
func (st *Stack) Deliver(pkt []byte) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return
	}
	p := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	st.ep.InjectInbound(ipv4.ProtocolNumber, p)
	p.DecRef()
}

// Close stops the services, closes the stack's endpoints and frees it:
// the engine's reader of its port ends. It may be called more than once.
func (st *Stack) Close() {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.closed = true
	st.mu.Unlock()
	st.svc.close()
	st.cancel()
	st.s.Close()
	st.s.Wait()
	if st.ep != nil {
		st.ep.Close()
	}
}

// errClosed is returned by the client methods of a closed stack.
var errClosed = errors.New("netstack: closed")

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
}

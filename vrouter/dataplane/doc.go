// Package dataplane is the forwarding core of vrouter's userspace engine: a
// pure function layer over packet buffers, independent of TUN devices and
// sockets, so it can be tested and benchmarked alone.
//
// A Forwarder holds the router's ports (underlay links, workload
// interfaces, the tunl0 tunnel, the host's own stack) and its local
// addresses, and routes by a fib.Table. Forward takes one IPv4 packet and
// the port it arrived on and returns a Decision: deliver it on a port,
// encapsulate it through a tunnel port, answer with an ICMP error, hand it
// to the local stack, or drop it for a Reason. It behaves as Linux's IPv4
// forwarding does (ip_rcv, ip_route_input, ip_forward, ip_error,
// icmp_send): header validation, martian addresses, longest-prefix match,
// route types, TTL, MTU and DF, IP options, ICMP error rules, quoting and
// rate limits. It modifies the packet in place and never allocates, so the
// engine can drive it with reused buffers:
//
//	d := fwd.Forward(pkt, inPort, icmpBuf[:])
//	switch d.Action {
//	case dataplane.Deliver, dataplane.Encap, dataplane.ICMPError:
//		// send d.Packet on d.Port toward d.NextHop (encapsulated if
//		// d.Port.Kind is PortTunnel); if d.Fragment, send the pieces
//		// dataplane.Fragment makes instead
//	case dataplane.Local:
//		// hand d.Packet to the host stack (d.Port, the PortHost port)
//	case dataplane.Drop:
//		// d.Reason says why; Stats counts it
//	}
//
// Deliberate differences from Linux: no ICMP redirects, no reverse-path
// filter, no directed (subnet) broadcast, no multicast routing, no global
// ICMP rate limit (icmp_msgs_per_sec), and ICMP errors carry no IP
// options; options are updated only on packets that are forwarded, so an
// ICMP error quotes the packet exactly as it was received. With
// Config.ErrorsToIngress (lab routers) an error with no route back goes
// out of the port the packet came in by, where Linux would drop it.
//
// The Engine drives a Forwarder with real devices: a node's underlay TUN
// (host side) and its Underlay (a fabric endpoint), its workloads' TUN
// devices and tunl0; a router node has one host side and one Underlay per
// interface (EngineConfig.Interfaces). Underlay is an interface, so the
// engine's tests run it over an in-memory underlay, and another transport
// can replace the fabric.
package dataplane

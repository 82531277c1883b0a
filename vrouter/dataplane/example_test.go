package dataplane_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// exampleIPv4 builds a minimal IPv4/UDP packet with the given TTL, DF flag
// and total size.
func exampleIPv4(src, dst string, ttl byte, df bool, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	if df {
		p[6] = 0x40
	}
	p[8], p[9] = ttl, 17
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(p[i])<<8 | uint32(p[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	return p
}

// Example drives a forwarder for node1 of the Calico IPIP example: a
// workload on a cali port, a remote block through tunl0.
func Example() {
	a, p := netip.MustParseAddr, netip.MustParsePrefix
	table := fib.NewTable()
	for _, r := range []fib.Route{
		{Dst: p("10.244.104.0/26"), Type: fib.Unicast, Gateway: a("192.168.50.11"), Dev: "tunl0", Protocol: fib.ProtoBird, OnLink: true},
		{Dst: p("10.244.166.128/32"), Type: fib.Unicast, Dev: "cali717821d73f3", Scope: fib.ScopeLink},
		{Dst: p("10.244.166.128/26"), Type: fib.Blackhole, Protocol: fib.ProtoBird},
		{Dst: p("192.168.50.0/24"), Type: fib.Unicast, Dev: "ens33", Protocol: fib.ProtoKernel, Scope: fib.ScopeLink, PrefSrc: a("192.168.50.10")},
	} {
		if err := table.Insert(r); err != nil {
			panic(err)
		}
	}
	fwd, err := dataplane.New(table, dataplane.Config{
		Ports: []dataplane.Port{
			{ID: 0, Name: "host", Kind: dataplane.PortHost, MTU: 1500},
			{ID: 1, Name: "ens33", Kind: dataplane.PortUnderlay, MTU: 1500, Addr: a("192.168.50.10")},
			{ID: 2, Name: "tunl0", Kind: dataplane.PortTunnel, MTU: 1480, Addr: a("10.244.166.129")},
			{ID: 3, Name: "cali717821d73f3", Kind: dataplane.PortWorkload, MTU: 1500},
		},
		DefaultSource: a("192.168.50.10"),
	})
	if err != nil {
		panic(err)
	}

	icmpBuf := make([]byte, dataplane.MaxICMPErrorLen) // reused for every packet
	fragBuf := make([]byte, 1500)
	show := func(d dataplane.Decision) {
		switch d.Action {
		case dataplane.Deliver, dataplane.Encap, dataplane.ICMPError:
			fmt.Printf("%v on %s to %v, %d bytes", d.Action, d.Port.Name, d.NextHop, len(d.Packet))
			if d.Action == dataplane.ICMPError {
				fmt.Printf(" (ICMP type %d code %d, for %v)", d.Packet[20], d.Packet[21], d.Reason)
			}
			if d.Fragment {
				n := 0
				_ = dataplane.Fragment(d.Packet, d.Port.MTU, fragBuf, func(frag []byte) error {
					n++ // send frag (encapsulated for a tunnel port)
					return nil
				})
				fmt.Printf(" in %d fragments", n)
			}
			fmt.Println()
		case dataplane.Local:
			fmt.Printf("local to %s\n", d.Port.Name)
		case dataplane.Drop:
			fmt.Printf("drop: %v\n", d.Reason)
		}
	}

	const web1 = "10.244.166.128"
	show(fwd.Forward(exampleIPv4(web1, "10.244.104.5", 64, true, 100), 3, icmpBuf))
	show(fwd.Forward(exampleIPv4("10.244.104.5", web1, 63, true, 100), 2, icmpBuf))
	show(fwd.Forward(exampleIPv4(web1, "10.244.104.5", 1, true, 100), 3, icmpBuf))
	show(fwd.Forward(exampleIPv4(web1, "10.244.104.5", 64, true, 1500), 3, icmpBuf))
	show(fwd.Forward(exampleIPv4(web1, "10.244.104.5", 64, false, 1500), 3, icmpBuf))
	show(fwd.Forward(exampleIPv4(web1, "8.8.8.8", 64, false, 100), 3, icmpBuf))
	show(fwd.Forward(exampleIPv4("10.244.104.5", "10.244.166.140", 64, false, 100), 2, icmpBuf))
	show(fwd.Forward(exampleIPv4(web1, "192.168.50.10", 64, false, 100), 3, icmpBuf))
	fmt.Println(fwd.Stats().Map())
	// Output:
	// encap on tunl0 to 192.168.50.11, 100 bytes
	// deliver on cali717821d73f3 to 10.244.166.128, 100 bytes
	// icmp-error on cali717821d73f3 to 10.244.166.128, 128 bytes (ICMP type 11 code 0, for ttl_exceeded)
	// icmp-error on cali717821d73f3 to 10.244.166.128, 576 bytes (ICMP type 3 code 4, for frag_needed)
	// encap on tunl0 to 192.168.50.11, 1500 bytes in 2 fragments
	// icmp-error on cali717821d73f3 to 10.244.166.128, 128 bytes (ICMP type 3 code 0, for no_route)
	// drop: blackhole
	// local to host
	// map[drop_blackhole:1 drop_frag_needed:1 drop_no_route:1 drop_ttl_exceeded:1 encapsulated:2 forwarded:1 icmp_errors:3 local:1 need_fragment:1]
}

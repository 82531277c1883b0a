package main

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// newDemoCommand prints the forwarding table of node1 from the Calico BGP
// example (three nodes on 192.168.50.0/24, pool 10.244.0.0/16) and the
// longest-prefix-match answers for a few destinations. It needs no root and
// creates nothing.
func newDemoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Print node1's FIB from the Calico BGP example and a few lookups",
		Long: `demo fills a forwarding table with the routes node1 holds in the Calico
BGP example (blocks learned from node2 and node3, its own block as a blackhole,
a local workload's /32 and the connected underlay), prints it in 'ip route'
format and shows which route longest-prefix match picks for a few
destinations. It needs no privileges and creates nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t := fib.NewTable()
			for _, r := range demoRoutes() {
				if err := t.Insert(r); err != nil {
					return fmt.Errorf("build demo table: %w", err)
				}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "# vrouter route node1 (Calico BGP example, ipipMode: Never)")
			fmt.Fprint(out, fib.Format(t.Routes()))
			fmt.Fprintln(out)
			fmt.Fprintln(out, "# longest-prefix match")
			for _, s := range []string{"10.244.104.7", "10.244.135.70", "10.244.166.128", "10.244.166.130", "192.168.50.11", "8.8.8.8"} {
				dst := netip.MustParseAddr(s)
				if r, ok := t.Lookup(dst); ok {
					fmt.Fprintf(out, "%-15s -> %s\n", s, r)
				} else {
					fmt.Fprintf(out, "%-15s -> no route (ICMP network unreachable)\n", s)
				}
			}
			return nil
		},
	}
}

func demoRoutes() []fib.Route {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	return []fib.Route{
		{Dst: p("10.244.104.0/26"), Type: fib.Unicast, Gateway: a("192.168.50.11"), Dev: "ens33", Protocol: fib.ProtoBird},
		{Dst: p("10.244.135.0/26"), Type: fib.Unicast, Gateway: a("192.168.50.12"), Dev: "ens33", Protocol: fib.ProtoBird},
		{Dst: p("10.244.166.128/32"), Type: fib.Unicast, Dev: "cali717821d73f3", Protocol: fib.ProtoBoot, Scope: fib.ScopeLink},
		{Dst: p("10.244.166.128/26"), Type: fib.Blackhole, Protocol: fib.ProtoBird},
		{Dst: p("192.168.50.0/24"), Type: fib.Unicast, Dev: "ens33", Protocol: fib.ProtoKernel, Scope: fib.ScopeLink, PrefSrc: a("192.168.50.10")},
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
	"gopkg.in/yaml.v3"
)

func newGetCommand() *cobra.Command {
	var output string
	var ds datastoreFlags
	var ns string
	cmd := &cobra.Command{
		Use:   "get KIND [NAME] [--lab LAB | --datastore etcd --etcd-endpoints URL,...]",
		Short: "List a lab's or etcd's nodes, IP pools, BGP peers (and a lab's workloads and blocks), as calicoctl does",
		Long: `get lists resources the way calicoctl lists Calico's.

On a lab (the default; --lab names one when several are deployed), KIND is
nodes, workloads, ippools, blocks, bgppeers, policies or denied: nodes with
their AS (in parentheses when it is the lab's default), workload endpoints,
IP pools, IPAM blocks with their affinity, the BGPPeer resources of the lab
file (peer IP or peer selector, node or node selector, AS; passwords are
never printed), the network policies in force with their hit counters (-o
wide: per rule), and per node the packets policy denied, by reason, with
the connection tracking table (denied); on a lab with datastore: etcd,
also etcdmembers: its etcd members (name, namespace, endpoint, state).

With --datastore etcd, get reads the Calico resources in etcd instead:
KIND is nodes, ippools, bgppeers, bgpconfigurations, networkpolicies,
globalnetworkpolicies or workloadendpoints (singular or plural),
optionally one NAME (-n NAMESPACE for a namespaced kind: without it a
listing shows every namespace, a NAME is looked up in "default"). -o wide adds columns; -o json or -o yaml
prints every field in Calico's shape.

` + etcdHelp,
		Example: "  vrouter get nodes\n  vrouter get blocks -o yaml\n  vrouter get bgppeers -o wide\n" +
			"  vrouter get policies -o wide\n  vrouter get denied\n" +
			"  vrouter get nodes -o wide --datastore etcd --etcd-endpoints http://10.0.0.1:2379\n" +
			"  vrouter get ippool default-ipv4-ippool -o yaml --datastore etcd --etcd-endpoints http://10.0.0.1:2379\n" +
			"  vrouter get networkpolicies -n prod --datastore etcd --etcd-endpoints http://10.0.0.1:2379",
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"nodes", "workloads", "ippools", "blocks", "bgppeers", "bgpconfigurations", "etcdmembers", "policies", "denied"},
	}
	load := labFlag(cmd)
	ds.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, wide, json or yaml")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "with --datastore etcd: the namespace of NetworkPolicies and WorkloadEndpoints")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if cmd.Flags().Changed("datastore") {
			if cmd.Flags().Changed("lab") {
				return fmt.Errorf("--lab and --datastore: give one (a lab, or etcd)")
			}
			kind, ok := resources.KindOf(args[0])
			if !ok {
				return fmt.Errorf("etcd holds nodes, ippools, bgppeers, bgpconfigurations, networkpolicies, globalnetworkpolicies and workloadendpoints, not %q", args[0])
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			if ns != "" && !resources.Namespaced(kind) {
				return fmt.Errorf("a %s has no namespace", kind)
			}
			return getResources(cmd, &ds, kind, name, ns, output)
		}
		if len(args) == 2 {
			return fmt.Errorf("a lab lists every %s; NAME is for --datastore etcd", args[0])
		}
		if etcdFlagsChanged(cmd) {
			return fmt.Errorf("--etcd-* flags need --datastore etcd")
		}
		if cmd.Flags().Changed("namespace") {
			return fmt.Errorf("-n/--namespace is for --datastore etcd (a lab lists every namespace)")
		}
		st, err := load()
		if err != nil {
			return err
		}
		l, err := lab.Listing(cmd.Context(), st, args[0])
		if err != nil {
			return err
		}
		return printListing(cmd.OutOrStdout(), l, output)
	}
	return cmd
}

// etcdFlagsChanged reports whether a datastore flag was given.
func etcdFlagsChanged(cmd *cobra.Command) bool {
	for _, f := range []string{"etcd-endpoints", "etcd-cert", "etcd-key", "etcd-ca", "etcd-timeout"} {
		if cmd.Flags().Changed(f) {
			return true
		}
	}
	return false
}

func printListing(w io.Writer, l *lab.Table, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(l.Items)
	case "yaml":
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		return enc.Encode(l.Items)
	case "table", "wide", "":
		cols := l.Columns
		if format != "wide" {
			cols = cols[:l.Narrow]
		}
		tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		for i, c := range cols {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
		for _, row := range l.Rows {
			for i := range cols {
				if i > 0 {
					fmt.Fprint(tw, "\t")
				}
				fmt.Fprint(tw, row[i])
			}
			fmt.Fprintln(tw)
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown output format %q (want table, wide, json or yaml)", format)
}

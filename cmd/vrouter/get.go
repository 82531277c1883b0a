package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"gopkg.in/yaml.v3"
)

func newGetCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get (nodes|workloads|ippools|blocks|bgppeers|etcdmembers)",
		Short: "List a lab's nodes, workloads, IP pools, IPAM blocks or BGP peers, as calicoctl does",
		Long: `get lists lab resources the way calicoctl lists Calico's: nodes with their
AS (in parentheses when it is the lab's default), workload endpoints, IP
pools, IPAM blocks with their affinity, and the BGPPeer resources of the lab
file (peer IP or peer selector, node or node selector, AS; passwords are
never printed), and the etcd members of a lab with datastore: etcd. -o json or -o yaml prints every field.`,
		Example:   "  vrouter get nodes\n  vrouter get blocks -o yaml\n  vrouter get bgppeers -o wide",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"nodes", "workloads", "ippools", "blocks", "bgppeers", "etcdmembers"},
	}
	load := labFlag(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, wide, json or yaml")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
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

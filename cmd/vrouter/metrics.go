package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/metrics"
)

func newMetricsCommand() *cobra.Command {
	var list bool
	cmd := &cobra.Command{
		Use:   "metrics [NODE | ROUTER]",
		Short: "Print the Prometheus metrics of a lab's nodes and routers",
		Long: `metrics prints the Prometheus metrics of a node's agent in the text
exposition format, as its control socket serves them at GET /metrics:
packets forwarded, delivered and dropped by reason, per-port counters,
IPIP encapsulation, ICMP errors, BGP sessions by state and prefixes per
peer, FIB routes, IPAM blocks and addresses, graceful-restart stale
routes, and the Go runtime's and the process' metrics. A router (kind:
router, or an external router's forwarder) exports its engine's counters
and routes.

With no NODE it prints every node's and router's, one exposition with a
node label on every sample, and vrouter_node_up says which answered. 'vrouter
serve --metrics ADDR' serves the same for a Prometheus server. --list
prints the vrouter_ metrics and what they mean.`,
		Example: "  vrouter metrics node1\n  vrouter metrics | grep vrouter_bgp_sessions\n  vrouter metrics --list",
		Args:    cobra.MaximumNArgs(1),
	}
	load := labFlag(cmd)
	cmd.Flags().BoolVar(&list, "list", false, "list the metrics a node exports, with their types, labels and meaning")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		w := cmd.OutOrStdout()
		if list {
			for _, d := range metrics.Descriptions() {
				labels := ""
				if len(d.Labels) > 0 {
					labels = "{" + strings.Join(d.Labels, ",") + "}"
				}
				fmt.Fprintf(w, "%s%s %s\n    %s\n", d.Name, labels, d.Type, d.Help)
			}
			return nil
		}
		st, err := load()
		if err != nil {
			return err
		}
		nodes, err := lab.Metrics(cmd.Context(), st, args...)
		if err != nil {
			return err
		}
		if len(args) == 1 {
			if nodes[0].Err != nil {
				return nodes[0].Err
			}
			_, err := w.Write(nodes[0].Text)
			return err
		}
		if err := metrics.Merge(w, nodes); err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "vrouter: %v\n", n.Err)
			}
		}
		return nil
	}
	return cmd
}

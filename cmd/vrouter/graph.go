package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/graph"
	"github.com/vrouter-lab/vrouter/topology/lab"
)

func newGraphCommand() *cobra.Command {
	var file, format string
	cmd := &cobra.Command{
		Use:   "graph [-o dot|mermaid|html] [-t FILE | --lab LAB]",
		Short: "Draw a lab: Graphviz DOT, Mermaid, or a self-contained HTML page",
		Long: `graph prints a lab's drawing: its networks, Calico nodes, router nodes,
external routers and workloads, and its BGP sessions (node-to-node mesh,
bgpPeers, route reflectors), as containerlab's graph command does.

  -o dot      Graphviz (render: dot -Tsvg -o lab.svg)
  -o mermaid  a Mermaid flowchart (paste into a mermaid block on GitHub)
  -o html     one HTML file with an SVG drawing laid out by vrouter
              (networks as bars, nodes above them, their workloads above
              them); it loads nothing from anywhere when opened

With -t it draws a lab file without deploying it; otherwise the deployed
lab (--lab, or the only one). A workload without a fixed address shows
"from IPAM".`,
		Example: "  vrouter graph -t examples/calico-crosssubnet.yaml -o html > lab.html\n  vrouter graph -o dot | dot -Tsvg > lab.svg",
		Args:    cobra.NoArgs,
	}
	// Drawing a lab file needs no root; a deployed lab's state does.
	cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if file != "" {
			return nil
		}
		return requireRoot(cmd)
	}
	load := labFlag(cmd)
	cmd.Flags().StringVarP(&file, "topo", "t", "", "lab file (YAML) to draw, without deploying it")
	cmd.Flags().StringVarP(&format, "output", "o", "dot", "format: "+strings.Join(graph.Formats, ", "))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !contains(graph.Formats, format) {
			return fmt.Errorf("-o %s: want one of %s", format, strings.Join(graph.Formats, ", "))
		}
		var l *topology.Lab
		if file != "" {
			if cmd.Flags().Changed("lab") {
				return errors.New("give -t FILE or --lab LAB, not both")
			}
			var err error
			if l, err = topology.Load(file); err != nil {
				return err
			}
		} else {
			st, err := load()
			if err != nil {
				return err
			}
			l = st.Spec
		}
		var sessions []graph.Session
		for _, s := range lab.Sessions(l) {
			sessions = append(sessions, graph.Session{A: s.A, B: s.B, Type: s.Type, EBGP: s.EBGP, RouteReflectorClient: s.RouteReflectorClient})
		}
		return graph.Write(cmd.OutOrStdout(), format, graph.Build(l, sessions))
	}
	return cmd
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
)

func newLinkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "link",
		Short: "Take a node's underlay link down or up on a running lab",
	}
	cmd.AddCommand(newLinkSetCommand())
	return cmd
}

func newLinkSetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set NODE up|down",
		Short: "Set a node's underlay link up or down, as 'ip link set' does",
		Long: `set pulls or plugs the cable of a node's underlay interface (ens33) in the
fabric: while it is down every frame the node's engine sends or receives on
it is dropped, BGP traffic included. The node's peers notice when their hold
timer expires (holdTime in the lab file) and withdraw its routes; the node
withdraws theirs. Once the link is up again the sessions re-establish, the
routes come back and traffic resumes. The state is kept in the node's
config: a restarted agent comes up with its link as it was.`,
		Example:   "  vrouter link set node2 down\n  vrouter link set node2 up",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"up", "down"},
	}
	load := labFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var up bool
		switch args[1] {
		case "up":
			up = true
		case "down":
		default:
			return fmt.Errorf("link state %q: want up or down", args[1])
		}
		st, err := load()
		if err != nil {
			return err
		}
		l, err := lab.SetLink(cmd.Context(), st, args[0], up)
		if err != nil {
			return err
		}
		state := "DOWN"
		if l.Up {
			state = "UP"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s/%s (network %s): %s\n", args[0], l.Interface, l.Network, state)
		return nil
	}
	return cmd
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
)

func newLinkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "link",
		Short: "Take a node's or router's link down or up on a running lab",
	}
	cmd.AddCommand(newLinkSetCommand())
	return cmd
}

func newLinkSetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set NODE [INTERFACE] up|down",
		Short: "Set a node's underlay link or a router's interface up or down, as 'ip link set' does",
		Long: `set pulls or plugs the cable of a node's underlay interface (ens33) in the
fabric: while it is down every frame the node's engine sends or receives on
it is dropped, BGP traffic included. The node's peers notice when their hold
timer expires (holdTime in the lab file) and withdraw its routes; the node
withdraws theirs. Once the link is up again the sessions re-establish, the
routes come back and traffic resumes. The state is kept in the node's
config: a restarted agent comes up with its link as it was.

For a router (kind: router, or an external router) name the interface,
e.g. eth1, unless it has only one: that cuts one network off the router.`,
		Example:   "  vrouter link set node2 down\n  vrouter link set node2 up\n  vrouter link set tor eth1 down",
		Args:      cobra.RangeArgs(2, 3),
		ValidArgs: []string{"up", "down"},
	}
	load := lockedLabFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var up bool
		var iface string
		if len(args) == 3 {
			iface = args[1]
		}
		switch state := args[len(args)-1]; state {
		case "up":
			up = true
		case "down":
		default:
			return fmt.Errorf("link state %q: want up or down", state)
		}
		st, unlock, err := load()
		if err != nil {
			return err
		}
		defer unlock()
		l, err := lab.SetLink(cmd.Context(), st, args[0], iface, up)
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

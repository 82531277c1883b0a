package main

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
)

func newWorkloadCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workload",
		Short: "Add or delete workloads on a running lab",
	}
	cmd.AddCommand(newWorkloadAddCommand(), newWorkloadDelCommand())
	return cmd
}

func newWorkloadAddCommand() *cobra.Command {
	var node, address string
	cmd := &cobra.Command{
		Use:   "add NAME --node NODE [--address ADDR]",
		Short: "Add a workload: a namespace whose eth0 the node's engine serves",
		Long: `add creates the workload's namespace and asks the node's agent to serve it:
the agent allocates an address from the node's blocks (claiming a new /26
when they are full), opens eth0 with the address and Calico's default route
(default via 169.254.1.1 dev eth0 onlink) and routes it with a /32. A new
block is announced over BGP.`,
		Example: "  vrouter workload add web-4 --node node2",
		Args:    cobra.ExactArgs(1),
	}
	load := lockedLabFlag(cmd)
	cmd.Flags().StringVar(&node, "node", "", "node that serves the workload")
	cmd.Flags().StringVar(&address, "address", "", "fixed address from a pool (default: IPAM's choice)")
	_ = cmd.MarkFlagRequired("node")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		st, unlock, err := load()
		if err != nil {
			return err
		}
		defer unlock()
		var addr netip.Addr
		if address != "" {
			if addr, err = netip.ParseAddr(address); err != nil {
				return fmt.Errorf("--address: %w", err)
			}
		}
		info, err := lab.AddWorkload(cmd.Context(), st, args[0], node, addr)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "workload %s added on %s: %s dev %s\n", info.Name, node, info.Address, info.Interface)
		return nil
	}
	return cmd
}

func newWorkloadDelCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "del NAME",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a workload and release its address",
		Args:    cobra.ExactArgs(1),
	}
	load := lockedLabFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		st, unlock, err := load()
		if err != nil {
			return err
		}
		defer unlock()
		if err := lab.DeleteWorkload(cmd.Context(), st, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "workload %s deleted\n", args[0])
		return nil
	}
	return cmd
}

package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/vrouter"
)

func newNodeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run the node agent, or show a node's BGP status",
	}
	cmd.AddCommand(newNodeRunCommand(), newNodeStatusCommand())
	return cmd
}

func newNodeRunCommand() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the per-node agent (what deploy starts in each node namespace)",
		Long: `run starts the node agent in the current network namespace: it brings up
the underlay interface, claims address blocks for its workloads from IPAM,
speaks BGP with its peers and forwards packets in the userspace engine. It
runs until SIGTERM or SIGINT. 'vrouter deploy' starts one per node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := vrouter.LoadConfig(config)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return vrouter.Run(ctx, cfg)
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "node config file (JSON, written by deploy)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func newNodeStatusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status NODE",
		Short: "Print a node's BGP peers as 'calicoctl node status' does",
		Args:  cobra.ExactArgs(1),
	}
	agent := nodeAgent(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := agent(args[0])
		if err != nil {
			return err
		}
		s, err := c.Status(cmd.Context())
		return vrouter.WriteNodeStatus(cmd.OutOrStdout(), s, err)
	}
	return cmd
}

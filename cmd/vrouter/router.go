package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/routerfwd"
)

func newRouterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "router",
		Short: "Run the forwarder of an external router (what deploy starts for each router)",
	}
	var configFile string
	run := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Join an external router's namespace to the lab's underlay",
		Long: `run brings up the router namespace's underlay interface (a TUN device) and
loopback addresses and forwards between them and the lab's userspace
underlay: packets the namespace's kernel routes out of the underlay
interface go to their gateway's node, as the kernel's routing table (filled
by the router's BGP daemon) says. It runs no BGP and no IPAM of its own.
It runs until SIGTERM or SIGINT; 'vrouter deploy' starts one per router.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadRouter(configFile)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return routerfwd.Run(ctx, cfg)
		},
	}
	run.Flags().StringVar(&configFile, "config", "", "router config file (JSON, written by deploy)")
	_ = run.MarkFlagRequired("config")
	cmd.AddCommand(run)
	return cmd
}

package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/vrouter/joint"
)

func newJointCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "joint",
		Short: "Join a network's Linux bridge to the userspace fabric (what deploy starts for a network of kernel and userspace nodes)",
	}
	var configFile string
	run := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Carry frames between a kernel network's bridge and the lab's userspace fabric",
		Long: `run puts a TAP port (fab0) on the network's bridge and attaches to the
userspace fabric under the name of every kernel-mode node on the bridge: it
answers ARP for the fabric's members (userspace nodes, routers) and carries
IPv4 between the two sides, GSO super-packets whole. It runs until SIGTERM
or SIGINT; 'vrouter deploy' starts one per network that has kernel-mode
nodes and userspace members.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := joint.Load(configFile)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("joint", cfg.Network)
			j, err := joint.Open(cfg, log)
			if err != nil {
				return err
			}
			log.Info("joint running", "kernel nodes", len(cfg.Kernel), "fabric members", len(cfg.Fabric))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			j.Run(ctx)
			c := &j.Counters
			log.Info("joint stopped", "to fabric", c.ToFabric.Load(), "to bridge", c.ToBridge.Load(), "arp replies", c.ARPReplies.Load(),
				"unknown sender", c.UnknownSender.Load(), "send errors", c.SendErrors.Load(), "bad frames", c.BadFrame.Load())
			return nil
		},
	}
	run.Flags().StringVar(&configFile, "config", "", "joint config file (JSON, written by deploy)")
	_ = run.MarkFlagRequired("config")
	cmd.AddCommand(run)
	return cmd
}

package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/agent"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

func newNodeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run the node agent, show a node's BGP status, or restart a node's agent",
	}
	cmd.AddCommand(newNodeRunCommand(), newNodeStatusCommand(), newNodeRestartCommand())
	return cmd
}

func newNodeRunCommand() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the per-node agent (what deploy starts in each node namespace)",
		Long: `run starts the node agent in the current network namespace: it brings up
the underlay interface, claims address blocks for its workloads from IPAM,
speaks BGP with its peers and forwards packets in the userspace engine. It
runs until SIGTERM or SIGINT. 'vrouter deploy' starts one per node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadNode(configFile)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return agent.Run(ctx, cfg)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "node config file (JSON, written by deploy)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func newNodeStatusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status NODE",
		Short: "Print a node's BGP peers as 'calicoctl node status' does",
		Args:  cobra.ExactArgs(1),
	}
	load := labFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		st, err := load()
		if err != nil {
			return err
		}
		// The node's kind knows: a calico node's agent answers, a router
		// says where to look.
		n, err := st.Member(args[0])
		if err != nil {
			return err
		}
		return n.Status(cmd.Context(), cmd.OutOrStdout())
	}
	return cmd
}

func newNodeRestartCommand() *cobra.Command {
	var kill, noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "restart NODE [--kill]",
		Short: "Restart a node's agent on a running lab",
		Long: `restart stops the node's agent (SIGTERM; with --kill, SIGKILL, as a crash
would), starts a new one with the same config and returns once the node is
ready again: every BGP session Established, every remote block routed. The
workloads keep their namespaces and addresses (IPAM remembers them); the new
agent recreates their eth0 devices, which vanish with the old agent. An
agent that died is simply started again. With gracefulRestart in the lab
file the peers keep the node's routes (stale) while it restarts, and the
node keeps forwarding along the routes it had. With --no-wait it returns as
soon as the new agent answers, without waiting for BGP.`,
		Example: "  vrouter node restart node2\n  vrouter node restart node2 --kill",
		Args:    cobra.ExactArgs(1),
	}
	load := lockedLabFlag(cmd)
	cmd.Flags().BoolVar(&kill, "kill", false, "stop the agent with SIGKILL, as a crash would")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for the node's BGP sessions and routes")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the new agent runs, without waiting for BGP sessions and routes")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		st, unlock, err := load()
		if err != nil {
			return err
		}
		defer unlock()
		start := time.Now()
		progress := func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) }
		if err := lab.RestartNode(cmd.Context(), st, args[0], lab.RestartOptions{Kill: kill, Timeout: timeout, NoWait: noWait, Progress: progress}); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "node %s restarted in %s\n", args[0], time.Since(start).Round(time.Millisecond))
		return nil
	}
	return cmd
}

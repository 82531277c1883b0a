package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newEtcdCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Show, stop and start the etcd members of a lab with datastore: etcd",
		Long: `A lab with datastore: etcd runs a 3-member etcd cluster (etcd0, etcd1,
etcd2), each member in a namespace of its own on the lab's etcd network,
which every node joins by its mgmt0. These commands show the members and
stop, kill or start them, for fault tests: with one member down the
cluster keeps a quorum and workload adds go on; with two or three down,
adds fail after the agents' etcd timeout, while BGP and forwarding go on.`,
	}
	cmd.AddCommand(newEtcdStatusCommand(), newEtcdStopCommand("stop"), newEtcdStopCommand("kill"), newEtcdStartCommand())
	return cmd
}

func newEtcdStatusCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "List the lab's etcd members: name, namespace, endpoint, state (leader, follower, down)",
		Example: "  vrouter etcd status --lab calico-etcd",
		Args:    cobra.NoArgs,
	}
	load := labFlag(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		st, err := load()
		if err != nil {
			return err
		}
		if st.Etcd == nil {
			return fmt.Errorf("lab %s runs no etcd (its datastore is bbolt)", st.Name)
		}
		ms := st.EtcdStatus(cmd.Context())
		switch output {
		case "json":
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(ms)
		case "table", "":
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tNAMESPACE\tENDPOINT\tSTATE")
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.Namespace, m.Endpoint, m.State)
			}
			return tw.Flush()
		}
		return fmt.Errorf("unknown output format %q (want table or json)", output)
	}
	return cmd
}

// newEtcdStopCommand is `vrouter etcd stop` (SIGTERM) or `vrouter etcd
// kill` (SIGKILL, as a crash).
func newEtcdStopCommand(verb string) *cobra.Command {
	short, how := "Stop etcd members (SIGTERM, then SIGKILL after 5s)", "stopped"
	if verb == "kill" {
		short, how = "Kill etcd members (SIGKILL, as a crash would)", "killed"
	}
	cmd := &cobra.Command{
		Use:     verb + " MEMBER...",
		Short:   short,
		Example: fmt.Sprintf("  vrouter etcd %s etcd1 --lab calico-etcd\n  vrouter etcd %s etcd0 etcd1 etcd2", verb, verb),
		Args:    cobra.MinimumNArgs(1),
	}
	load := lockedLabFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		st, unlock, err := load()
		if err != nil {
			return err
		}
		defer unlock()
		for _, m := range args {
			if err := st.StopEtcdMember(m, verb == "kill"); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "etcd member %s %s\n", m, how)
		}
		return nil
	}
	return cmd
}

func newEtcdStartCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "start MEMBER...",
		Short: "Start stopped etcd members again, with their data",
		Long: `start starts each member again with its data directory, in its namespace,
and, once a quorum of members runs, waits until it serves (at most
--timeout). A member started while too few others run serves once enough
do.`,
		Example: "  vrouter etcd start etcd1 --lab calico-etcd\n  vrouter etcd start etcd0 etcd1 etcd2",
		Args:    cobra.MinimumNArgs(1),
	}
	load := lockedLabFlag(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for a member to serve")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		st, unlock, err := load()
		if err != nil {
			return err
		}
		defer unlock()
		for _, m := range args {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			serving, err := st.StartEtcdMember(ctx, m)
			cancel()
			if err != nil {
				return err
			}
			if serving {
				fmt.Fprintf(cmd.OutOrStdout(), "etcd member %s started, serving\n", m)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "etcd member %s started; it serves once a quorum of members runs\n", m)
			}
		}
		return nil
	}
	return cmd
}

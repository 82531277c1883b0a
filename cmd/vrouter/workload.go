package main

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
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
	var node, address, netnsArg, configFile, stack, policyNS string
	var serve []string
	var labels map[string]string
	cmd := &cobra.Command{
		Use:   "add NAME (--node NODE | --netns NETNS) [--address ADDR] [--stack netstack --serve tcp:80:http,...]",
		Short: "Add a workload: a namespace whose eth0 the node's engine serves",
		Long: `add creates the workload's namespace and asks the node's agent to serve it:
the agent allocates an address from the node's blocks (claiming a new /26
when they are full), opens eth0 with the address and Calico's default route
(default via 169.254.1.1 dev eth0 onlink) and routes it with a /32. A new
block is announced over BGP.

With --stack netstack the workload is a gVisor TCP/IP stack inside the
node's agent instead of a namespace: same address, port and routes, no
namespace (vrouter exec cannot enter it; use vrouter probe). It answers
ping and runs the services --serve lists, PROTO:PORT:KIND: tcp:80:http
(answers with its name and address), tcp:7:echo, udp:53:echo,
tcp:5201:sink (discards).

On a real host (kernel mode, 'vrouter node run' on a node file), give the
workload's network namespace instead of a node: a name under /run/netns or
a path such as /proc/PID/ns/net; the agent is the one the node file names
(--config). It makes the workload's veth pair, Calico's way, as the CNI
plugin does.

--labels and --namespace are what network policy sees of the workload:
the lab sends them to every agent with the policies, and with the cluster
in etcd the agent writes them in the workload's WorkloadEndpoint, which
policy selectors on every node match.`,
		Example: "  vrouter workload add web-4 --node node2\n" +
			"  vrouter workload add api-1 --node node1 --stack netstack --serve tcp:80:http,udp:53:echo\n" +
			"  vrouter workload add web-4 --netns /proc/4242/ns/net     # on a real host\n" +
			"  vrouter workload add db-1 --netns db-1 --namespace prod --labels app=db,tier=backend",
		Args: cobra.ExactArgs(1),
	}
	load := lockedLabFlag(cmd)
	cmd.Flags().StringVar(&node, "node", "", "node that serves the workload (on a lab)")
	cmd.Flags().StringVar(&address, "address", "", "fixed address from a pool (default: IPAM's choice)")
	cmd.Flags().StringVar(&netnsArg, "netns", "", "the workload's existing network namespace, a name or a path (on a real host)")
	cmd.Flags().StringVar(&configFile, "config", config.DefaultNodeFile, "the host's node file, naming its agent (with --netns)")
	cmd.Flags().StringVar(&stack, "stack", "", "what runs the workload's TCP/IP: namespace (default) or netstack (a gVisor stack in the agent)")
	cmd.Flags().StringSliceVar(&serve, "serve", nil, "services of a netstack workload, PROTO:PORT:KIND (tcp:80:http, tcp:7:echo, udp:53:echo, tcp:5201:sink)")
	cmd.Flags().StringToStringVar(&labels, "labels", nil, "the workload's labels for network policy selectors, k=v,k2=v2")
	cmd.Flags().StringVar(&policyNS, "namespace", "", "the workload's namespace for network policy (default \"default\"; not its network namespace: see --netns)")
	cmd.MarkFlagsMutuallyExclusive("node", "netns")
	cmd.MarkFlagsOneRequired("node", "netns")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var addr netip.Addr
		if address != "" {
			var err error
			if addr, err = netip.ParseAddr(address); err != nil {
				return fmt.Errorf("--address: %w", err)
			}
		}
		if netnsArg != "" {
			if stack != "" || len(serve) > 0 {
				return fmt.Errorf("--stack and --serve are for lab workloads (--node): a real host's workload is its namespace")
			}
			c, cfg, err := hostAgent(configFile)
			if err != nil {
				return err
			}
			info, err := c.AddWorkload(cmd.Context(), config.Workload{Name: args[0], Namespace: netnsArg, Address: addr, PolicyNamespace: policyNS, Labels: labels})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "workload %s added on %s: %s dev %s\n", info.Name, cfg.Node, info.Address, info.Interface)
			return nil
		}
		st, unlock, err := load()
		if err != nil {
			return err
		}
		defer unlock()
		info, err := lab.AddWorkloadSpec(cmd.Context(), st, topology.Workload{Name: args[0], Node: node, Address: addr, Stack: stack, Serve: serve, Namespace: policyNS, Labels: labels})
		if err != nil {
			return err
		}
		kind := ""
		if info.Stack != "" {
			kind = " (" + info.Stack + ")"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "workload %s added on %s: %s dev %s%s\n", info.Name, node, info.Address, info.Interface, kind)
		return nil
	}
	return cmd
}

func newWorkloadDelCommand() *cobra.Command {
	var host bool
	var configFile string
	cmd := &cobra.Command{
		Use:     "del NAME [--host]",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a workload and release its address",
		Long: `del removes a workload: its port (on a real host, its veth pair), its
route and its address. With --host, the workload is one the host's agent
serves (the node file's, --config), as 'workload add --netns' made it.`,
		Args: cobra.ExactArgs(1),
	}
	load := lockedLabFlag(cmd)
	cmd.Flags().BoolVar(&host, "host", false, "the workload is the real host's agent's (see --config)")
	cmd.Flags().StringVar(&configFile, "config", config.DefaultNodeFile, "the host's node file, naming its agent (with --host)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if host {
			c, _, err := hostAgent(configFile)
			if err != nil {
				return err
			}
			if err := c.DeleteWorkload(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "workload %s deleted\n", args[0])
			return nil
		}
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

// hostAgent returns a client of the real host's agent the node file at
// path names, and the file's config.
func hostAgent(path string) (*control.Client, *config.Node, error) {
	cfg, err := config.LoadNodeFile(path)
	if err != nil {
		return nil, nil, err
	}
	return control.NewClient(cfg.ControlSocket()), cfg, nil
}

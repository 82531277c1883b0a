package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "vrouter",
		Short: "A Calico-style virtual router for labs, conformance tests and real hosts",
		Long: `vrouter is a Calico-style virtual router.

Each virtual node runs a userspace forwarding engine on TUN devices, with
workloads in network namespaces. Nodes claim /26 address blocks from IP pools,
announce them to each other over BGP, and forward with longest-prefix match,
blackholes for their own blocks, /32 routes to local workloads and IPIP
encapsulation. Routing tables print in 'ip route' format, BGP status the way
'calicoctl node status' prints it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return requireRoot(cmd)
		},
	}
	root.AddCommand(
		newDeployCommand(), newDestroyCommand(), newApplyCommand(), newInspectCommand(), newExecCommand(),
		newNodeCommand(), newRouterCommand(), newJointCommand(), newGetCommand(), newRouteCommand(), newWorkloadCommand(),
		newLinkCommand(), newCaptureCommand(), newIPAMCommand(), newTestCommand(), newVersionCommand(), newDemoCommand(), newCNICommand(),
		newMetricsCommand(), newServeCommand(), newGraphCommand(), newUICommand(),
	)
	root.AddCommand(newDeleteCommand()) // calicoctl delete, on etcd
	root.AddCommand(newEtcdCommand())   // a lab's etcd members
	root.AddCommand(newProbeCommand())  // from any workload, netstack or namespace
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the vrouter version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "vrouter version %s (%s %s/%s)\n",
				version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

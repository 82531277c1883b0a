package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/vrouter/cni"
)

// runAsCNIPlugin runs the binary as the CNI plugin when it was started as
// vrouter-cni (a link to vrouter, or a copy, named so in the runtime's
// CNI_PATH): a runtime runs a plugin with no arguments, so only the name
// can say which it is. It reports whether it ran (and the exit status).
func runAsCNIPlugin(ctx context.Context, argv0 string) (int, bool) {
	if filepath.Base(argv0) != cni.ProgramName {
		return 0, false
	}
	return cni.Run(ctx, os.Getenv, os.Stdin, os.Stdout), true
}

func newCNICommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cni",
		Short: "Run as the CNI plugin (what a runtime runs as vrouter-cni)",
		Long: `cni is vrouter's CNI plugin (CNI spec 1.0: ADD, DEL, CHECK, VERSION),
for containerd, CRI-O or kubelet on a host where 'vrouter node run' runs a
kernel-mode agent. The runtime runs plugins by their "type" with no
arguments, so install the binary under the plugin's name:

  ln -s /usr/local/bin/vrouter /opt/cni/bin/vrouter-cni

and give "type": "vrouter-cni" in the network config. 'vrouter cni' is the
same plugin for a shell or a wrapper script: the command in CNI_COMMAND,
the container in CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME, the network
config on stdin, the result (or a CNI error object) on stdout.

The plugin's config keys besides the standard ones: "socket" (the agent's
control socket), or "node" and "stateDir" (the socket is
STATEDIR/nodes/NODE.sock; defaults: the host name and /run/vrouter), and
"timeout" (default 30s). The agent is the IPAM: leave "ipam" out.`,
		Example: `  CNI_COMMAND=VERSION vrouter cni </dev/null
  CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/var/run/netns/c1 CNI_IFNAME=eth0 \
    vrouter cni < /etc/cni/net.d/10-vrouter.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if code := cni.Run(cmd.Context(), os.Getenv, cmd.InOrStdin(), cmd.OutOrStdout()); code != 0 {
				return exitError(code)
			}
			return nil
		},
	}
}

// exitError makes main exit with its status without printing anything
// more: the plugin printed its error object.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

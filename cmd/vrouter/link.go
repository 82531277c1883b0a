package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

func newLinkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "link",
		Short: "Take a node's or router's link down or up, or impair it, on a running lab",
	}
	cmd.AddCommand(newLinkSetCommand(), newLinkShowCommand())
	return cmd
}

// impairFlags are link set's impairment flags.
type impairFlags struct {
	delay, jitter, loss, rate string
	duplicate, corrupt        string
	clear                     bool
}

// set reports whether any impairment flag was given.
func (f *impairFlags) set(cmd *cobra.Command) bool {
	for _, name := range []string{"delay", "jitter", "loss", "rate", "duplicate", "corrupt", "clear"} {
		if cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// impairment parses the flags into the impairment they ask for.
func (f *impairFlags) impairment() (config.Impairment, error) {
	var imp config.Impairment
	if f.clear {
		if f.delay != "" || f.jitter != "" || f.loss != "" || f.rate != "" || f.duplicate != "" || f.corrupt != "" {
			return imp, errors.New("--clear removes every impairment: give it alone")
		}
		return imp, nil
	}
	// The flags in config.ImpairmentSettings' order.
	for i, v := range []string{f.delay, f.jitter, f.loss, f.rate, f.duplicate, f.corrupt} {
		if v == "" {
			continue
		}
		name := config.ImpairmentSettings[i]
		if err := imp.Set(name, v); err != nil {
			return imp, fmt.Errorf("--%s: %w", name, err)
		}
	}
	if imp.IsZero() {
		return imp, errors.New("no impairment given: use --clear to remove them")
	}
	return imp, imp.Validate()
}

// parseLinkSetArgs splits NODE [INTERFACE] [up|down]: state is "" when
// the command sets no state.
func parseLinkSetArgs(args []string) (node, iface, state string, err error) {
	if last := args[len(args)-1]; last == "up" || last == "down" {
		state, args = last, args[:len(args)-1]
	}
	switch len(args) {
	case 1:
		return args[0], "", state, nil
	case 2:
		return args[0], args[1], state, nil
	case 0:
		return "", "", "", errors.New("name the node or router")
	}
	return "", "", "", fmt.Errorf("link state %q: want up or down", args[len(args)-1])
}

func newLinkSetCommand() *cobra.Command {
	var imp impairFlags
	cmd := &cobra.Command{
		Use:   "set NODE [INTERFACE] [up|down] [--delay D] [--jitter J] [--loss P%] [--rate R] [--duplicate P%] [--corrupt P%] [--clear]",
		Short: "Set a node's underlay link or a router's interface up or down, or impair it, as 'ip link set' and 'tc qdisc' do",
		Long: `set pulls or plugs the cable of a node's underlay interface (ens33) in the
fabric: while it is down every frame the node's engine sends or receives on
it is dropped, BGP traffic included. The node's peers notice when their hold
timer expires (holdTime in the lab file) and withdraw its routes; the node
withdraws theirs. Once the link is up again the sessions re-establish, the
routes come back and traffic resumes. The state is kept in the node's
config: a restarted agent comes up with its link as it was.

With --delay, --jitter, --loss or --rate it impairs the link instead, as
netem and tbf would on the interface's egress: every frame the node sends
on it is lost with the given probability, sent no faster than the rate, and
delivered the delay later, plus or minus up to the jitter; --duplicate
sends a share of them twice, --corrupt flips one bit in a share. The flags
replace the link's impairment as a whole (those left out are none);
--clear removes it. Delays are Go durations (20ms, 1.5s), loss a
percentage (1%), rates tc's units (kbit, mbit, gbit). The impairment is
kept in the node's config too, and 'vrouter link show' lists it. A node
with dataplane: kernel has no fabric link to impair.

For a router (kind: router, or an external router) name the interface,
e.g. eth1, unless it has only one: that cuts one network off the router.`,
		Example: "  vrouter link set node2 down\n  vrouter link set node2 up\n  vrouter link set tor eth1 down\n" +
			"  vrouter link set node2 --delay 20ms --jitter 5ms --loss 1% --rate 100mbit\n  vrouter link set node2 --clear",
		Args:      cobra.RangeArgs(1, 3),
		ValidArgs: []string{"up", "down"},
	}
	cmd.Flags().StringVar(&imp.delay, "delay", "", "delay every frame sent by this long (e.g. 20ms)")
	cmd.Flags().StringVar(&imp.jitter, "jitter", "", "vary the delay by up to this much either way (at most the delay)")
	cmd.Flags().StringVar(&imp.loss, "loss", "", "lose this share of the frames sent (e.g. 1%)")
	cmd.Flags().StringVar(&imp.rate, "rate", "", "send no faster than this (e.g. 100mbit; units kbit, mbit, gbit)")
	cmd.Flags().StringVar(&imp.duplicate, "duplicate", "", "send this share of the frames twice (e.g. 1%)")
	cmd.Flags().StringVar(&imp.corrupt, "corrupt", "", "flip one bit in this share of the frames (e.g. 0.1%)")
	cmd.Flags().BoolVar(&imp.clear, "clear", false, "remove the link's impairment")
	load := lockedLabFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		node, iface, state, err := parseLinkSetArgs(args)
		if err != nil {
			return err
		}
		impair := imp.set(cmd)
		if state == "" && !impair {
			return errors.New("say up or down, or give an impairment (--delay, --jitter, --loss, --rate, --duplicate, --corrupt) or --clear")
		}
		var want config.Impairment
		if impair {
			if want, err = imp.impairment(); err != nil {
				return err
			}
		}
		st, unlock, err := load()
		if err != nil {
			return err
		}
		defer unlock()
		var l *control.Link
		if state != "" {
			if l, err = lab.SetLink(cmd.Context(), st, node, iface, state == "up"); err != nil {
				return err
			}
		}
		if impair {
			if l, err = lab.SetImpairment(cmd.Context(), st, node, iface, want); err != nil {
				return err
			}
		}
		// as before impairments existed, unless there is one to show
		line := fmt.Sprintf("%s/%s (network %s): %s", node, l.Interface, l.Network, linkState(l.Up))
		if impair || l.Impairment != nil {
			line += " " + impairmentText(l.Impairment)
		}
		fmt.Fprintln(cmd.OutOrStdout(), line)
		return nil
	}
	return cmd
}

func linkState(up bool) string {
	if up {
		return "UP"
	}
	return "DOWN"
}

func impairmentText(imp *config.Impairment) string {
	if imp == nil {
		return "-"
	}
	return imp.String()
}

func newLinkShowCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show [NODE]",
		Short: "List the nodes' and routers' links with their state and impairments",
		Long: `show lists every link of the lab's nodes and routers (or of one): the
interface, its network, whether it is up and the impairment in force, as
the agents and forwarders report them.`,
		Example: "  vrouter link show\n  vrouter link show node2",
		Args:    cobra.MaximumNArgs(1),
	}
	load := labFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		st, err := load()
		if err != nil {
			return err
		}
		node := ""
		if len(args) == 1 {
			node = args[0]
		}
		links, err := lab.Links(cmd.Context(), st, node)
		if err != nil {
			return err
		}
		return printLinks(cmd.OutOrStdout(), links)
	}
	return cmd
}

// printLinks writes the links as link show's table.
func printLinks(w io.Writer, links []lab.LinkState) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKIND\tINTERFACE\tNETWORK\tSTATE\tIMPAIRMENT")
	for _, l := range links {
		kind := "node"
		if l.Router {
			kind = "router"
		}
		state, imp := linkState(l.Up), impairmentText(l.Impairment)
		if l.Err != nil {
			state, imp = "UNKNOWN", "(not running)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.Node, kind, l.Interface, l.Network, state, imp)
	}
	return tw.Flush()
}

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"golang.org/x/sys/unix"
)

func newCaptureCommand() *cobra.Command {
	var file string
	var opt lab.CaptureOptions
	cmd := &cobra.Command{
		Use:   "capture NETWORK -w FILE",
		Short: "Record the packets crossing an underlay network to a pcapng file",
		Long: `capture records every packet that crosses one of the lab's underlay networks
(such as lan) into a pcapng file that tshark, Wireshark and tcpdump read.
Each packet is recorded once, as its sender put it on the network, on an
interface named after the sending node and its underlay interface
(node1/ens33); packets are raw IPv4 (no link-layer header). TCP super-packets
the engines carry whole (GSO, longer than the MTU) are recorded whole, as
tcpdump records them on an interface with GRO.

A network with kernel-mode nodes is a Linux bridge: capture reads it with a
packet socket (the bridge in promiscuous mode) in its namespace, records
each IPv4 packet on its sender's interface (by source MAC; fab0 for what
the joint to the fabric sends) and, on a mixed network, merges it with the
fabric's packets so that each is recorded once; --bridge reads the bridge
only.

The capture runs until Ctrl-C, --count packets or --duration, then flushes
the file and prints how many packets it captured on stderr. '-w -' writes
to standard output, flushing every packet, for a reader such as
'tshark -r -'.`,
		Example: `  vrouter capture lan -w lan.pcapng
  vrouter capture lan -w lan.pcapng --duration 10s
  vrouter capture lan -w - | tshark -r - -Y icmp
  vrouter capture lan -w - --count 20 | tshark -r - -T fields -e frame.interface_name -e ip.src -e ip.dst`,
		Args: cobra.ExactArgs(1),
	}
	load := labFlag(cmd)
	cmd.Flags().StringVarP(&file, "write", "w", "", "pcapng file to write ('-' for standard output)")
	cmd.Flags().IntVarP(&opt.Count, "count", "c", 0, "stop after this many packets (0: no limit)")
	cmd.Flags().DurationVar(&opt.Duration, "duration", 0, "stop after this long, e.g. 30s (0: no limit)")
	cmd.Flags().BoolVar(&opt.Bridge, "bridge", false, "on a network with kernel-mode nodes: read its Linux bridge only, not the userspace members' fabric")
	_ = cmd.MarkFlagRequired("write")
	cmd.RunE = func(cmd *cobra.Command, args []string) (err error) {
		if file == "" {
			return errors.New("say where to write: -w FILE, or -w - for standard output")
		}
		if opt.Count < 0 || opt.Duration < 0 {
			return errors.New("--count and --duration must not be negative")
		}
		st, err := load()
		if err != nil {
			return err
		}
		if err := st.CheckNetwork(args[0]); err != nil {
			return err // before creating the file
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		var w io.Writer = cmd.OutOrStdout()
		if f, ok := w.(*os.File); ok && file == "-" && isTerminal(f) {
			return errors.New("standard output is a terminal: pipe it into a reader (vrouter capture lan -w - | tshark -r -) or write a file with -w FILE")
		}
		if file != "-" {
			f, err := os.Create(file)
			if err != nil {
				return err
			}
			defer func() {
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}()
			w = f
		}
		stderr := cmd.ErrOrStderr()
		opt.Ready = func() {
			fmt.Fprintf(stderr, "capturing on %s of lab %s (Ctrl-C to stop)\n", args[0], st.Name)
		}
		n, err := lab.Capture(ctx, st, args[0], w, opt)
		plural := "s"
		if n == 1 {
			plural = ""
		}
		fmt.Fprintf(stderr, "%d packet%s captured\n", n, plural)
		return err
	}
	return cmd
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

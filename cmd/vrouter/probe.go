package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/probe"
)

func newProbeCommand() *cobra.Command {
	var (
		pingN, size         int
		tcpPort, udpPort    uint16
		bulkPort            uint16
		httpURL, output     string
		bulk, timeout, intv time.Duration
		flood               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "probe FROM TO [--ping N | --tcp PORT | --udp PORT | --http URL | --bulk 5s | --flood 5s] [-o json]",
		Short: "Ping, connect, echo, GET or send bulk TCP from a workload to another",
		Long: `probe sends traffic from workload FROM to TO (a workload, node or router
name, or an address) and prints what happened: each ping's round trip,
a TCP connection's connect time, a UDP echo's round trip, an HTTP GET's
status and body, a bulk TCP transfer's throughput, a UDP flood's packets per second.

A netstack workload probes from inside its gVisor stack, through its
node's agent; a namespace workload (or a node) from inside its namespace,
with the kernel's own sockets, so no tool needs to be installed there.
The targets' services: a netstack workload answers ping and runs its
serve: list (tcp:80:http, tcp:7:echo, udp:53:echo, tcp:5201:sink); a
namespace workload answers ping, and whatever you run in it (iperf3 -s is
a sink for --bulk). --flood needs a netstack workload's udp:PORT:sink,
which counts what arrives.

With no probe flag it pings 3 times. It exits 1 when the probe fails.`,
		Example: `  vrouter probe web-1 api-1 --ping 5
  vrouter probe api-1 web-2 --tcp 22
  vrouter probe api-1 api-2 --udp 53
  vrouter probe web-1 api-1 --http /            # http://<api-1's address>/
  vrouter probe api-1 api-2 --bulk 5s -o json   # to api-2's tcp:5201:sink
  vrouter probe api-1 api-2 --flood 5s --size 64 --port 9   # to api-2's udp:9:sink`,
		Args: cobra.ExactArgs(2),
	}
	load := labFlag(cmd)
	f := cmd.Flags()
	f.IntVar(&pingN, "ping", 0, "send N ICMP echo requests, a second apart (--interval)")
	f.Uint16Var(&tcpPort, "tcp", 0, "open a TCP connection to PORT")
	f.Uint16Var(&udpPort, "udp", 0, "send one datagram to PORT and wait for its echo")
	f.StringVar(&httpURL, "http", "", "GET URL: a path (/), or http://TO[:PORT]/PATH")
	f.DurationVar(&bulk, "bulk", 0, "send TCP as fast as possible for this long to --port (a sink)")
	f.DurationVar(&flood, "flood", 0, "send UDP datagrams of --size bytes as fast as possible for this long to --port (a udp sink)")
	f.Uint16Var(&bulkPort, "port", 0, "the sink's port for --bulk (default 5201) or --flood (default 9)")
	f.IntVar(&size, "size", 56, "payload bytes of a ping or UDP datagram")
	f.DurationVar(&intv, "interval", time.Second, "time between pings")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for each reply or connection")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.MarkFlagsMutuallyExclusive("ping", "tcp", "udp", "http", "bulk", "flood")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "text" && output != "json" {
			return fmt.Errorf("unknown output format %q (want text or json)", output)
		}
		req := probe.Request{Kind: probe.KindPing, Count: 3, Size: size, Interval: intv, Timeout: timeout}
		switch {
		case cmd.Flags().Changed("ping"):
			req.Count = pingN
		case tcpPort != 0:
			req.Kind, req.Port = probe.KindTCP, tcpPort
		case udpPort != 0:
			req.Kind, req.Port = probe.KindUDP, udpPort
		case cmd.Flags().Changed("http"):
			req.Kind, req.URL = probe.KindHTTP, httpURL
		case cmd.Flags().Changed("bulk"):
			req.Kind, req.Port, req.Duration = probe.KindBulk, bulkPort, bulk
			if bulk <= 0 {
				return fmt.Errorf("--bulk %v: give a duration such as 5s", bulk)
			}
		case cmd.Flags().Changed("flood"):
			req.Kind, req.Port, req.Duration = probe.KindFlood, bulkPort, flood
			if flood <= 0 {
				return fmt.Errorf("--flood %v: give a duration such as 5s", flood)
			}
		}
		st, err := load()
		if err != nil {
			return err
		}
		res, err := lab.Probe(cmd.Context(), st, args[0], args[1], req)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if output == "json" {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(res); err != nil {
				return err
			}
		} else {
			fmt.Fprint(out, res.Text())
		}
		if !res.OK {
			return exitError(1) // the result said why
		}
		return nil
	}
	return cmd
}

package main

import (
	"net/netip"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

func newDeployCommand() *cobra.Command {
	var file string
	var timeout time.Duration
	var noWait bool
	cmd := &cobra.Command{
		Use:   "deploy -t FILE",
		Short: "Create a lab from a lab file and wait until it routes",
		Long: `deploy validates the lab file, then creates one network namespace and one
'vrouter node run' agent per node and one namespace per workload. It returns
once every BGP session is Established and every node has a route to every
other node's blocks, and prints a summary (a bordered table). On a terminal it shows each
phase (plan, provision, start, wait) as it goes. The lab keeps running until
'vrouter destroy'. On failure or timeout it removes everything it made.
With --no-wait it returns as soon as every agent runs, without waiting for
BGP: for labs whose sessions are not meant to come up (a wrong password or
AS, a peer outside the lab).`,
		Example: "  vrouter deploy -t examples/calico-bgp.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := topology.Load(file)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			unlock, err := lockLab(cmd, l.Name)
			if err != nil {
				return err
			}
			defer unlock()
			start := time.Now()
			ph := newPhases(cmd.ErrOrStderr(), writesToTerminal(cmd.OutOrStdout()) && writesToTerminal(cmd.ErrOrStderr()))
			st, err := lab.Deploy(ctx, l, lab.Options{File: file, Timeout: timeout, NoWait: noWait, Progress: ph, Phase: ph.Phase})
			ph.Done(err)
			if errors.Is(err, lab.ErrInterrupted) {
				return fmt.Errorf("interrupted: lab %s was not deployed, and everything deploy made is removed", l.Name)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "lab %s deployed in %s\n", st.Name, time.Since(start).Round(time.Millisecond))
			return printInspect(cmd, st, "box")
		},
	}
	cmd.Flags().StringVarP(&file, "topo", "t", "", "lab file (YAML)")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for BGP sessions and routes")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the agents run, without waiting for BGP sessions and routes")
	_ = cmd.MarkFlagRequired("topo")
	return cmd
}

func newDestroyCommand() *cobra.Command {
	var file, name string
	var all bool
	cmd := &cobra.Command{
		Use:   "destroy (-t FILE | --lab LAB | --all)",
		Short: "Remove a lab: processes, namespaces, devices and files",
		Long: `destroy stops a lab's node agents (SIGTERM, then SIGKILL), deletes its
namespaces (and with them every TUN device) and removes its state directory
under /run/vrouter. It works after a crash left partial state and is
idempotent: destroying a lab that is not there succeeds. It removes only a
directory vrouter made (one holding the lab's own state file), never follows
a symbolic link, and finishes its work when interrupted.`,
		Example: "  vrouter destroy -t examples/calico-bgp.yaml\n  vrouter destroy --lab calico-bgp\n  vrouter destroy --all",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Half a destroy helps no one: SIGINT and SIGTERM wait for
			// it to finish.
			_, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			switch {
			case all:
				return lab.DestroyAll(holder(), lockWait, cmd.ErrOrStderr())
			case name != "":
			case file != "":
				l, err := topology.Load(file)
				if err != nil {
					return err
				}
				name = l.Name
			default:
				return errors.New("say which lab: -t FILE, --lab LAB or --all")
			}
			if err := topology.CheckLabName(name); err != nil {
				return err
			}
			unlock, err := lockLab(cmd, name)
			if err != nil {
				return err
			}
			defer unlock()
			ph := newPhases(cmd.ErrOrStderr(), writesToTerminal(cmd.OutOrStdout()) && writesToTerminal(cmd.ErrOrStderr()))
			err = lab.DestroyPhases(name, ph.Phase)
			ph.Done(err)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "topo", "t", "", "lab file (YAML)")
	cmd.Flags().StringVar(&name, "lab", "", "lab name")
	cmd.Flags().StringVar(&name, "name", "", "lab name (the same as --lab)")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "destroy every lab")
	return cmd
}

// nodeAgent adds --lab and returns a function resolving a node name to a
// client of that node's agent.
func nodeAgent(cmd *cobra.Command) func(node string) (*control.Client, error) {
	load := labFlag(cmd)
	return func(node string) (*control.Client, error) {
		st, err := load()
		if err != nil {
			return nil, err
		}
		if n, ok := st.Node(node); ok {
			return control.NewClient(n.Control), nil
		}
		if r, ok := st.Router(node); ok {
			// A router's forwarder answers status, routes and stats.
			return control.NewRouterClient(r.Control), nil
		}
		return nil, fmt.Errorf("lab %s has no node %q", st.Name, topology.Shorten(node))
	}
}

func newInspectCommand() *cobra.Command {
	var output string
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "inspect [--watch [--interval 2s]]",
		Short: "List a lab's nodes and workloads with addresses, interfaces and state",
		Long: `inspect lists a lab's nodes, tunnels, routers, bridges and workloads with
their namespaces, interfaces, addresses and state. -o box draws the table
with borders (as deploy's summary), -o json prints JSON.

With --watch it lists them again every --interval until interrupted: on a
terminal it redraws the screen, otherwise it prints one listing after the
other, each under a line with the time.`,
		Example: "  vrouter inspect\n  vrouter inspect --watch --interval 2s",
		Args:    cobra.NoArgs,
	}
	load := labFlag(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, box or json")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "list again every --interval until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "with --watch, how often to list")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !watch {
			st, err := load()
			if err != nil {
				return err
			}
			return printInspect(cmd, st, output)
		}
		if interval < 100*time.Millisecond {
			return fmt.Errorf("--interval %s: at least 100ms", interval)
		}
		if _, err := load(); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		cmd.SetContext(ctx)
		return watchEvery(ctx, cmd.OutOrStdout(), writesToTerminal(cmd.OutOrStdout()), interval, func() error {
			st, err := load()
			if err != nil {
				return err
			}
			return printInspect(cmd, st, output)
		})
	}
	return cmd
}

// watchEvery calls draw every interval until ctx ends or draw fails: on a
// terminal after clearing the screen, otherwise after a line with the
// time, so that one listing follows the other.
func watchEvery(ctx context.Context, out io.Writer, terminal bool, interval time.Duration, draw func() error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		now := time.Now().Format("15:04:05")
		if terminal {
			fmt.Fprintf(out, "\033[H\033[2JEvery %s, %s (interrupt to stop)\n\n", interval, now)
		} else {
			fmt.Fprintf(out, "--- %s\n", now)
		}
		if err := draw(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// inspectRow is one line of `vrouter inspect`.
type inspectRow struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Node      string `json:"node"`
	Namespace string `json:"namespace"`
	Interface string `json:"interface"`
	Address   string `json:"address"`
	State     string `json:"state"`
}

func inspectRows(ctx context.Context, st *lab.State) []inspectRow {
	var rows []inspectRow
	addrs := map[string]string{}
	for _, n := range st.Nodes {
		state := "down"
		var tunnel netip.Addr
		if s, err := control.NewClient(n.Control).Status(ctx); err == nil {
			state = "running"
			switch {
			case !s.LinkUp:
				state = "link down" // vrouter link set NODE down
			case s.DatastoreError != "":
				state = "datastore down" // etcd down: BGP and forwarding go on
			case !s.Ready:
				state = "starting"
			}
			for _, w := range s.Workloads {
				addrs[w.Name] = w.Address.String()
			}
			tunnel = s.TunnelAddress
		}
		if !netns.Exists(n.Namespace) {
			state = "missing" // its namespace was deleted outside vrouter
		}
		rows = append(rows, inspectRow{Name: n.Name, Kind: "node", Node: n.Name, Namespace: n.Namespace, Interface: n.Interface, Address: n.Address.String(), State: state})
		if tunnel.IsValid() {
			rows = append(rows, inspectRow{Name: n.Name, Kind: "tunnel", Node: n.Name, Namespace: n.Namespace, Interface: dataplane.TunnelName, Address: tunnel.String(), State: state})
		}
	}
	for _, r := range st.Routers {
		state := "running"
		c := control.NewClient(r.Control)
		if _, err := c.Status(ctx); err != nil {
			state = "down"
		}
		// one row per interface, with its link's state
		down := map[string]bool{}
		if ls, err := c.Links(ctx); err == nil {
			for _, l := range ls {
				down[l.Interface] = !l.Up
			}
		}
		ifState := func(name string) string {
			if state == "running" && down[name] {
				return "link down" // vrouter link set ROUTER IFACE down
			}
			return state
		}
		kind := "router" // a router node
		if n, err := st.Member(r.Name); err == nil && n.Kind() != topology.KindRouter {
			kind = "router (" + n.Kind() + ")" // an external router and its daemon
		}
		rows = append(rows, inspectRow{Name: r.Name, Kind: kind, Node: r.Name, Namespace: r.Namespace, Interface: r.Interface, Address: r.Address.String(), State: ifState(r.Interface)})
		for _, i := range r.Interfaces {
			rows = append(rows, inspectRow{Name: r.Name, Kind: kind, Node: r.Name, Namespace: r.Namespace, Interface: i.Name, Address: i.Address.String(), State: ifState(i.Name)})
		}
	}
	// A kernel lab's networks: each a bridge in a namespace of the lab's.
	for _, b := range st.Bridges {
		state, cidr := "running", "-"
		if !netns.Exists(b.Namespace) {
			state = "missing"
		}
		if st.Spec != nil {
			if n, ok := st.Spec.Network(b.Network); ok {
				cidr = n.CIDR.String()
			}
		}
		rows = append(rows, inspectRow{Name: b.Network, Kind: "bridge", Node: "-", Namespace: b.Namespace, Interface: lab.BridgeName, Address: cidr, State: state})
		if b.Joint != "" {
			// A mixed network's joint to the fabric: its port on the bridge.
			state := "down"
			if b.JointRunning() {
				state = "running"
			}
			rows = append(rows, inspectRow{Name: b.Network, Kind: "joint", Node: "-", Namespace: b.Namespace, Interface: lab.JointPort, Address: cidr, State: state})
		}
	}
	// An etcd lab's members, each in its namespace on the etcd network.
	for _, m := range st.EtcdStatus(ctx) {
		rows = append(rows, inspectRow{Name: m.Name, Kind: "etcd", Node: "-", Namespace: m.Namespace, Interface: "eth0", Address: m.Endpoint, State: m.State})
	}
	for _, w := range st.Workloads {
		state := "running"
		a, ok := addrs[w.Name]
		if !ok {
			a, state = "-", "down"
		}
		kind, ns := "workload", w.Namespace
		if w.IsNetstack() {
			// no namespace: its stack is in the node's agent
			kind, ns = "workload (netstack)", "-"
		} else if !netns.Exists(w.Namespace) {
			state = "missing" // deleted outside vrouter: vrouter workload del
		}
		rows = append(rows, inspectRow{Name: w.Name, Kind: kind, Node: w.Node, Namespace: ns, Interface: w.Interface, Address: a, State: state})
	}
	return rows
}

func printInspect(cmd *cobra.Command, st *lab.State, format string) error {
	rows := inspectRows(cmd.Context(), st)
	out := cmd.OutOrStdout()
	switch format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Name  string       `json:"name"`
			Nodes []inspectRow `json:"nodes"`
		}{st.Name, rows})
	case "box":
		var cells [][]string
		for _, r := range rows {
			cells = append(cells, []string{r.Name, r.Kind, r.Node, r.Namespace, r.Interface, r.Address, r.State})
		}
		return writeBoxTable(out, []string{"NAME", "KIND", "NODE", "NAMESPACE", "INTERFACE", "ADDRESS", "STATE"}, cells)
	case "table", "":
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKIND\tNODE\tNAMESPACE\tINTERFACE\tADDRESS\tSTATE")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, r.Node, r.Namespace, r.Interface, r.Address, r.State)
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown output format %q (want table, box or json)", format)
}

func newExecCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exec NAME -- CMD [ARGS...]",
		Short: "Run a command in a node's or workload's namespace",
		Long: `exec runs CMD inside the network namespace of the named node or workload,
with the standard streams attached, and exits with CMD's exit code.`,
		Example: "  vrouter exec web-1 -- ping -c 3 10.244.104.1\n  vrouter exec node1 -- ip route",
		Args:    cobra.MinimumNArgs(2),
	}
	load := labFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		st, err := load()
		if err != nil {
			return err
		}
		ns, ok := st.Namespace(args[0])
		if !ok {
			return fmt.Errorf("lab %s has no node, router or workload %q", st.Name, topology.Shorten(args[0]))
		}
		if w, ok := st.Workload(args[0]); ok && w.IsNetstack() {
			return fmt.Errorf("workload %s is a netstack workload: a gVisor stack inside node %s's agent, with no namespace to run commands in; probe it instead, e.g.: vrouter probe %s TARGET --ping 3 --lab %s (or --tcp PORT, --udp PORT, --http URL, --bulk 5s)", w.Name, w.Node, w.Name, st.Name)
		}
		if !netns.Exists(ns) {
			return missingNamespace(st, args[0], ns)
		}
		c := exec.Command("ip", append([]string{"netns", "exec", ns}, args[1:]...)...)
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
		err = c.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		return err
	}
	return cmd
}

// missingNamespace explains that the namespace of a lab member is gone.
func missingNamespace(st *lab.State, name, ns string) error {
	for _, w := range st.Workloads {
		if w.Name == name {
			return fmt.Errorf("workload %s: its namespace %s no longer exists (deleted outside vrouter?); remove the workload with: vrouter workload del %s --lab %s", name, ns, name, st.Name)
		}
	}
	return fmt.Errorf("%s: its namespace %s no longer exists (deleted outside vrouter?); the lab is broken: vrouter destroy --lab %s, then deploy it again", name, ns, st.Name)
}

func newRouteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "route NODE",
		Short: "Print a node's forwarding table in 'ip route' format",
		Long: `route prints the FIB of the node's userspace engine, the table that forwards
workload traffic, in 'ip route' format. (The node namespace's own kernel
table, 'vrouter exec NODE -- ip route', holds only the connected underlay
route: forwarding lives in the engine.)`,
		Args: cobra.ExactArgs(1),
	}
	agent := nodeAgent(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := agent(args[0])
		if err != nil {
			return err
		}
		text, err := c.Routes(cmd.Context())
		if err != nil {
			return err
		}
		fmt.Fprint(cmd.OutOrStdout(), text)
		return nil
	}
	return cmd
}

func newApplyCommand() *cobra.Command {
	var file, resFile string
	var ds datastoreFlags
	var loadLab func() (*lab.State, error)
	cmd := &cobra.Command{
		Use:   "apply (-t LABFILE | -f RESOURCES (--datastore etcd --etcd-endpoints URL,... | --lab LAB))",
		Short: "Apply an edited lab file to a running lab (pools, policies, labels), or Calico resources to etcd (calicoctl apply)",
		Long: `apply does one of two things, by its flag.

-t LABFILE compares the lab file with the running lab of the same name and
applies what can change without restarting nodes: each IP pool's ipipMode
(Never, Always, CrossSubnet) and mtu, the policies, and the workloads'
namespaces and labels. Every node reprograms its routes at once (via NODE
dev tunl0 onlink, or dev ens33) and brings up tunl0 with an address from
its own block if it needs one. A new mtu applies to workloads added
afterwards. Every agent gets the new policies at once: new flows see them
from the next packet, established flows at their next packet (kept if the
new policies allow them, cut if they deny them). On a lab with datastore:
etcd, nodes after the running lab's in the file are added (their
namespaces and agents), and join every node's mesh through etcd. Any
other difference is refused, changing nothing: destroy and deploy for
those.

-f RESOURCES (a file, or - for stdin) writes Calico resources to etcd, as
calicoctl apply does: YAML documents separated by ---, each an IPPool,
BGPConfiguration, BGPPeer, Node, GlobalNetworkPolicy, NetworkPolicy or
WorkloadEndpoint (apiVersion projectcalico.org/v3). The whole file is checked first, every problem reported as FILE:LINE: FIELD:
message, and nothing is written unless all of it is valid; then pools,
BGP configurations, peers, nodes, then policies and endpoints are created
or replaced, in that order. Agents running with meshFromDatastore apply
them within seconds: a pool's ipipMode reprograms routes, BGPConfiguration
default's nodeToNodeMeshEnabled and asNumber and BGPPeers change sessions,
policies are recompiled and enforced (engine or nftables). With --lab
instead of the datastore flags, the resources go to the etcd of that lab
(one with datastore: etcd).

` + etcdHelp,
		Example: "  sed -i 's/ipipMode: Never/ipipMode: Always/' lab.yaml\n  vrouter apply -t lab.yaml\n" +
			"  vrouter apply -f resources.yaml --datastore etcd --etcd-endpoints https://10.0.0.1:2379 \\\n" +
			"      --etcd-cert client.pem --etcd-key client-key.pem --etcd-ca ca.pem",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case file != "" && resFile != "":
				return fmt.Errorf("-t (a lab file) and -f (resources for etcd): give one")
			case resFile != "" && cmd.Flags().Changed("lab"):
				if cmd.Flags().Changed("datastore") || etcdFlagsChanged(cmd) {
					return fmt.Errorf("--lab and --datastore: give one (an etcd lab, or etcd)")
				}
				return applyResources(cmd, &ds, resFile, func() (*resources.Store, error) {
					st, err := loadLab()
					if err != nil {
						return nil, err
					}
					es, err := st.OpenEtcd(cmd.Context())
					if err != nil {
						return nil, err
					}
					return resources.Owning(es), nil
				})
			case resFile != "":
				return applyResources(cmd, &ds, resFile, nil)
			case cmd.Flags().Changed("lab"):
				return fmt.Errorf("--lab goes with -f (an etcd lab's etcd); -t names the lab by its file")
			case file == "":
				return fmt.Errorf("give -t LABFILE (a running lab) or -f RESOURCES --datastore etcd (etcd)")
			case cmd.Flags().Changed("datastore") || etcdFlagsChanged(cmd):
				return fmt.Errorf("-t applies a lab file to its lab; --datastore and --etcd-* go with -f")
			}
			l, err := topology.Load(file)
			if err != nil {
				return err
			}
			unlock, err := lockLab(cmd, l.Name)
			if err != nil {
				return err
			}
			defer unlock()
			st, err := lab.Load(l.Name)
			if err != nil {
				return err
			}
			changes, err := lab.Apply(cmd.Context(), st, l)
			if err != nil {
				return err
			}
			if len(changes) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "lab %s: nothing to change\n", st.Name)
				return nil
			}
			for _, c := range changes {
				fmt.Fprintf(cmd.OutOrStdout(), "lab %s: %s\n", st.Name, c)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "topo", "t", "", "lab file (YAML) of a running lab")
	cmd.Flags().StringVarP(&resFile, "filename", "f", "", "Calico resources (YAML, - for stdin) to write to etcd")
	ds.register(cmd)
	loadLab = labFlag(cmd)
	return cmd
}

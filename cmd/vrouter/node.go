package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/agent"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
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
	var configFile, dataplane, metricsAddr string
	var meshFromDatastore bool
	var ds datastoreFlags
	cmd := &cobra.Command{
		Use:   "run [--config FILE] [--dataplane userspace|kernel] [--datastore etcd --etcd-endpoints URL,...] [--metrics-addr HOST:PORT]",
		Short: "Run the per-node agent (what deploy starts in each node namespace)",
		Long: `run starts the node agent in the current network namespace: it brings up
the underlay interface, claims address blocks for its workloads from IPAM,
speaks BGP with its peers and forwards packets in the userspace engine. It
runs until SIGTERM or SIGINT. 'vrouter deploy' starts one per node.

With --dataplane kernel (or "dataplane": "kernel" in the config file) the
namespace's kernel forwards instead, as on a Calico host: the underlay is
the namespace's own interface (the config's interface, e.g. ens33), routes
go into its main table (proto bird, and workload routes on cali*
devices), workloads are veth pairs. The agent leaves them in place when it
stops, and a restarted agent adopts them without a forwarding gap. The
flag overrides the config file.

On a real host the config is a YAML node file (default
/etc/vrouter/node.yaml; see deploy/node.yaml and the README's "Kernel mode
on real hosts"): node name, address, interface, AS, peers, IP pools,
datastore. Its problems are reported all at once as FILE:LINE: FIELD:
message. A file whose name ends in .json, or that starts with '{', is
read as the JSON config deploy writes. deploy/systemd/vrouter-node.service
runs it under systemd; stopping it leaves routes and workloads in place.

IPAM state (blocks, affinities, handles) lives in a bbolt file by default
(the lab's, or the node file's datastore). With --datastore etcd it lives
in etcd, in Calico's key layout (/calico/ipam/v2/...), shared by nodes on
any number of hosts: --etcd-endpoints lists the members' client URLs;
--etcd-cert, --etcd-key and --etcd-ca give a client certificate, its key
and the CA of the members' certificates (https endpoints). The flags
override the config file's datastoreType and etcd fields.

With --mesh-from-datastore (or meshFromDatastore: true in the node file;
etcd only) the node registers its Node resource in etcd
(/calico/resources/v3/projectcalico.org/nodes/NODE: address, AS, labels,
routeReflectorClusterID) and meshes with every registered node, watching
them, instead of with the config's mesh peers; IP pools, BGPConfiguration
and BGPPeer resources in etcd (vrouter apply -f) apply live. If etcd does
not answer when the agent starts, it starts from the state it saved last
time (workloads, tunl0, blocks) and keeps forwarding, retrying etcd in
the background; workload adds fail, naming etcd, until it is back.

--metrics-addr serves Prometheus metrics at http://HOST:PORT/metrics
(default: off; Felix uses port 9091, e.g. --metrics-addr :9091). The
control socket serves them at GET /metrics in any case.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dropStartupPagesLater()
			cfg, err := config.LoadNodeFile(configFile)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("dataplane") {
				if err := config.CheckDataplane(dataplane); err != nil {
					return err
				}
				cfg.Dataplane = dataplane
			}
			if err := ds.apply(cmd, cfg); err != nil {
				return err
			}
			agentRuntimeDefaults(cfg)
			if cfg.Datastore != "" && cfg.DatastoreType != config.DatastoreEtcd {
				if err := os.MkdirAll(filepath.Dir(cfg.Datastore), 0o755); err != nil {
					return fmt.Errorf("datastore directory: %w", err)
				}
			}
			if metricsAddr != "" {
				cfg.MetricsAddr = metricsAddr
			}
			if cmd.Flags().Changed("mesh-from-datastore") {
				cfg.MeshFromDatastore = meshFromDatastore
				if err := cfg.CheckDatastore(); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return agent.Run(ctx, cfg)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", config.DefaultNodeFile, "node config file: YAML (a real host's node.yaml) or JSON (written by deploy)")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics (default off; Felix uses :9091)")
	cmd.Flags().StringVar(&dataplane, "dataplane", "", "what forwards: userspace (the engine) or kernel (netlink routes, veth workloads); default: the config file's (a YAML node file's: kernel), else userspace")
	cmd.Flags().BoolVar(&meshFromDatastore, "mesh-from-datastore", false, "register the node in etcd and mesh with the registered nodes (needs --datastore etcd)")
	ds.register(cmd)
	return cmd
}

// datastoreFlags select the IPAM datastore: --datastore bbolt|etcd and
// etcd's endpoints and TLS files.
type datastoreFlags struct {
	kind          string
	endpoints     []string
	cert, key, ca string
	timeout       time.Duration
}

func (f *datastoreFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.kind, "datastore", "", "where IPAM state lives: bbolt (the lab's file) or etcd; default: the config file's, else bbolt")
	fl.StringSliceVar(&f.endpoints, "etcd-endpoints", nil, "etcd members' client URLs, comma-separated (http://HOST:2379 or https://...)")
	fl.StringVar(&f.cert, "etcd-cert", "", "client certificate (PEM) for etcd")
	fl.StringVar(&f.key, "etcd-key", "", "key (PEM) of the etcd client certificate")
	fl.StringVar(&f.ca, "etcd-ca", "", "CA certificate(s) (PEM) that signed the etcd members' certificates")
	fl.DurationVar(&f.timeout, "etcd-timeout", 0, "bound on one datastore transaction (default 10s): with etcd down, workload adds fail after it")
}

// apply writes the flags given into cfg and checks the result.
func (f *datastoreFlags) apply(cmd *cobra.Command, cfg *config.Node) error {
	fl := cmd.Flags()
	if fl.Changed("datastore") {
		cfg.DatastoreType = f.kind
	}
	if fl.Changed("etcd-endpoints") {
		cfg.Etcd.Endpoints = f.endpoints
	}
	if fl.Changed("etcd-cert") {
		cfg.Etcd.CertFile = f.cert
	}
	if fl.Changed("etcd-key") {
		cfg.Etcd.KeyFile = f.key
	}
	if fl.Changed("etcd-ca") {
		cfg.Etcd.CAFile = f.ca
	}
	if fl.Changed("etcd-timeout") {
		cfg.Etcd.Timeout = f.timeout
	}
	etcdFlags := fl.Changed("etcd-endpoints") || fl.Changed("etcd-cert") || fl.Changed("etcd-key") || fl.Changed("etcd-ca")
	if etcdFlags && cfg.DatastoreType != config.DatastoreEtcd {
		return fmt.Errorf("--etcd-* flags need --datastore etcd")
	}
	return cfg.CheckDatastore()
}

func newNodeStatusCommand() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "status [NODE | --config FILE]",
		Short: "Print a node's BGP peers as 'calicoctl node status' does",
		Long: `status prints a node's BGP sessions as 'calicoctl node status' does, then
which tunl0 the node uses (the kernel's ipip module, the agent's userspace
tunl0, the engine's, or none).

On a lab, name the node. On a real host, give no node: the agent is the one
the node file names (--config, default /etc/vrouter/node.yaml).`,
		Example: "  vrouter node status node1\n  vrouter node status            # on a real host",
		Args:    cobra.MaximumNArgs(1),
	}
	load := labFlag(cmd)
	cmd.Flags().StringVar(&configFile, "config", config.DefaultNodeFile, "the node file of a real host's agent (when no NODE is given)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			cfg, err := config.LoadNodeFile(configFile)
			if err != nil {
				return fmt.Errorf("no NODE given, and the host's node file: %w", err)
			}
			sock := cfg.ControlSocket()
			s, err := control.NewClient(sock).Status(cmd.Context())
			err = control.WriteNodeStatus(cmd.OutOrStdout(), s, err)
			if errors.Is(err, control.ErrNotRunning) {
				// A real host's agent runs under systemd, not in a lab.
				return fmt.Errorf("node %s: agent is not running (no answer on %s); start it with: systemctl start vrouter-node (journalctl -u vrouter-node says why it stopped)", cfg.Node, sock)
			}
			return err
		}
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

// agentGC is the agent's garbage collection target (GOGC) unless the
// environment sets one: an agent's live heap is small (BGP state, the
// FIB), but its packet buffers (tens of MB of address space, mostly never
// touched) count toward the heap the default GOGC=100 lets grow before a
// collection, so garbage (BGP messages, control requests) piled up to
// that much resident memory. 50 keeps idle agents smaller (see
// docs/benchmarks.md, Scale) for a collection CPU cost that is noise at
// BGP's message rates. No GOMEMLIMIT: the untouched buffers count toward
// it too, and a limit near the resident size would collect continually.
const agentGC = 50

// agentRuntimeDefaults applies agentGC when GOGC is not set and, for the
// userspace engine (a lab's node: many agents share the machine's CPUs)
// when GOMAXPROCS is not set, one P: an idle agent then wakes no second
// thread to look for work after each BGP message, and forwarding is not
// slower (the engine's system calls are raw, so its readers never gave
// their P away anyway). Measured in docs/benchmarks.md.
func agentRuntimeDefaults(cfg *config.Node) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(agentGC)
	}
	if os.Getenv("GOMAXPROCS") == "" && cfg.Dataplane != config.DataplaneKernel {
		runtime.GOMAXPROCS(1)
	}
}

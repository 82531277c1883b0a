package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

// RouterState is one router of a deployed lab: its namespace, the
// forwarder that joins it to the underlay, and an external router's BGP
// daemon (Daemon; KindRouterNode for a router node, which runs none).
type RouterState struct {
	Name      string          `json:"name"`
	Namespace string          `json:"namespace"`
	Address   netip.Addr      `json:"address"`
	Network   string          `json:"network"`
	Interface string          `json:"interface"`
	Daemon    topology.Daemon `json:"daemon"`
	Config    string          `json:"config"`  // forwarder config file
	Control   string          `json:"control"` // forwarder control socket
	Log       string          `json:"log"`     // forwarder log
	PIDFile   string          `json:"pidFile"` // forwarder pid file
	// Dir holds the daemon's configuration, sockets, pid and log files.
	Dir string `json:"dir"`
	// DaemonConfig is the configuration the daemon runs with (the user's
	// file, or one vrouter generated in Dir).
	DaemonConfig string `json:"daemonConfig"`
	// Socket is BIRD's control socket (birdc -s SOCKET), FRR's vty
	// socket directory (vtysh --vty_socket DIR) or gobgpd's gRPC API
	// socket (gobgp --target unix://SOCKET).
	Socket string `json:"socket"`
	// CLI is the daemon's command-line client (birdc, vtysh or gobgp).
	CLI string `json:"cli"`
	// Processes are the daemon processes (bird; zebra and bgpd; zebra
	// and gobgpd).
	Processes []DaemonProcess `json:"processes"`
	// Announce are the prefixes put into gobgpd's RIB through its API
	// once it runs (gobgpd's configuration cannot originate routes).
	Announce []netip.Prefix `json:"announce,omitempty"`
	// Interfaces are a router node's interfaces beyond the one above
	// (Interface, Network, Address), on other networks.
	Interfaces []InterfaceState `json:"interfaces,omitempty"`
}

// DaemonProcess is one daemon process of a router.
type DaemonProcess struct {
	Name    string   `json:"name"` // bird, zebra, bgpd, gobgpd
	Args    []string `json:"args"` // the command line, run in the namespace
	PIDFile string   `json:"pidFile"`
	Log     string   `json:"log"`
}

// StatusCommand returns the command line, to be run in the router's
// namespace, that shows its daemon's BGP sessions (birdc show protocols,
// vtysh -c "show bgp summary", gobgp neighbor); nil for a router node
// (kind: router), which runs no daemon.
func (r RouterState) StatusCommand() []string {
	n, err := routerKind(forwarder{rs: r})
	if err != nil {
		return nil
	}
	e, ok := n.(*externalRouter)
	if !ok {
		return nil
	}
	return e.CLI(e.daemon.statusArgs()...)
}

// CLIArgs returns the command line that runs the router's daemon CLI with
// args (e.g. "show route"), to be run in the router's namespace; nil for a
// router node (kind: router), which runs no daemon.
func (r RouterState) CLIArgs(args ...string) []string {
	n, err := routerKind(forwarder{rs: r})
	if err != nil {
		return nil
	}
	return n.CLI(args...)
}

// Router returns the named router's state.
func (s *State) Router(name string) (RouterState, bool) {
	for _, r := range s.Routers {
		if r.Name == name {
			return r, true
		}
	}
	return RouterState{}, false
}

// forwarder is the part every router kind shares: `vrouter router run`,
// which joins the router's namespace to the lab's underlay (and with
// several interfaces, several underlay networks). The router kinds embed
// it.
type forwarder struct {
	rs  RouterState
	cfg *config.Router // the forwarder's config; nil for a router of a deployed lab
	lab *topology.Lab  // the lab file, while deploying
}

func (f *forwarder) Name() string                               { return f.rs.Name }
func (f *forwarder) Namespace() string                          { return f.rs.Namespace }
func (f *forwarder) record(st *State)                           { st.Routers = append(st.Routers, f.rs) }
func (f *forwarder) ready(context.Context, bool) (bool, string) { return true, "" }
func (f *forwarder) waitingFor() string                         { return "its processes" }

// makeDir makes the router's own directory (its daemon's, if it has one).
func (f *forwarder) makeDir() error {
	if err := os.Mkdir(f.rs.Dir, dirMode); err != nil {
		return fmt.Errorf("router %s: %w", f.rs.Name, err)
	}
	return nil
}

// writeConfig writes the forwarder's config.
func (f *forwarder) writeConfig() error {
	if err := f.cfg.WriteFile(f.rs.Config); err != nil {
		return fmt.Errorf("router %s: write config: %w", f.rs.Name, err)
	}
	return nil
}

// startForwarder starts the forwarder in the router's namespace and waits
// until it answers on its control socket: its underlay interfaces and
// loopback addresses are up.
func (f *forwarder) startForwarder(ctx context.Context, bin string) error {
	r := f.rs
	if err := startProcess(r.Namespace, []string{bin, "router", "run", "--config", r.Config}, r.Log, r.PIDFile, nil); err != nil {
		return fmt.Errorf("router %s: start forwarder: %w", r.Name, err)
	}
	for {
		if err := f.forwarderRunning(); err != nil {
			return err
		}
		if _, err := control.NewClient(r.Control).Status(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("router %s: timed out waiting for the forwarder", r.Name)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// forwarderRunning says whether the forwarder exited.
func (f *forwarder) forwarderRunning() error {
	if !processAlive(f.rs.PIDFile) {
		return fmt.Errorf("router %s: forwarder exited; last log lines:\n%s", f.rs.Name, tail(f.rs.Log, 10))
	}
	return nil
}

// neighbors lists the nodes and routers on network, as ARP would find them.
func neighbors(l *topology.Lab, network string) []config.Neighbor {
	var out []config.Neighbor
	for _, o := range l.Nodes {
		if o.Network == network {
			out = append(out, config.Neighbor{Node: o.Name, Address: o.Address})
		}
	}
	for _, o := range l.Routers {
		if o.Network == network {
			out = append(out, config.Neighbor{Node: o.Name, Address: o.Address})
		}
	}
	for _, o := range l.RouterNodes {
		if i, ok := o.InterfaceOn(network); ok {
			out = append(out, config.Neighbor{Node: o.Name, Address: i.Address})
		}
	}
	return out
}

// startProcess starts args inside namespace ns, detached from the caller
// (own session, output to log), and records its pid and start time.
func startProcess(ns string, args []string, log, pidFile string, cpus []int) error {
	logf, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := startOnCPUs(cmd, cpus); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	started, _, err := procStart(pid)
	if err == nil {
		err = writeFile(startFile(pidFile), []byte(started+"\n"), fileMode)
	}
	if err == nil {
		err = writeFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), fileMode)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("write pid file: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

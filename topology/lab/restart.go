package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

// RestartOptions tune RestartNode.
type RestartOptions struct {
	// Kill stops the agent with SIGKILL, as a crash would, instead of
	// SIGTERM: it leaves without closing its sessions or its devices (the
	// kernel removes its TUN devices with its last descriptors).
	Kill     bool
	Binary   string        // the vrouter executable; default: this one
	Timeout  time.Duration // how long to wait for the node to be ready; default 60s
	NoWait   bool          // return once the new agent answers, BGP or not
	Progress func(format string, args ...any)
}

// RestartNode stops the agent of one node of a running lab (if it still
// runs) and starts a new one with the same config, then waits until the
// node is ready: every BGP session Established and every remote block
// routed. The new agent recreates the node's underlay interface and each
// workload's eth0 with the address IPAM keeps for it (the workload
// namespaces, and whatever runs in them, stay), and announces its blocks
// again.
func RestartNode(ctx context.Context, st *State, node string, opt RestartOptions) error {
	if err := StopNode(st, node, opt); err != nil {
		return err
	}
	return StartNode(ctx, st, node, opt)
}

// StopNode stops the agent of one node of a running lab, with SIGTERM (its
// sessions closed with a NOTIFICATION) or, with opt.Kill, SIGKILL (as a
// crash), and leaves it stopped until StartNode. For an external router
// it stops the BGP daemon's processes; its forwarder, link and kernel
// stay up.
func StopNode(st *State, node string, opt RestartOptions) error {
	if opt.Progress == nil {
		opt.Progress = func(string, ...any) {}
	}
	stop, verb := stopAgent, "stopped"
	if opt.Kill {
		stop, verb = killAgent, "killed"
	}
	if r, ok := st.Router(node); ok {
		if len(r.Processes) == 0 {
			return fmt.Errorf("router %s runs no BGP daemon (kind: router)", node)
		}
		for _, p := range r.Processes {
			if err := stop(p.PIDFile); err != nil {
				return fmt.Errorf("router %s: %s: %w", node, p.Name, err)
			}
		}
		opt.Progress("router %s: %s %s", node, r.Daemon, verb)
		return nil
	}
	n, ok := st.Node(node)
	if !ok {
		return fmt.Errorf("lab %s has no node %q", st.Name, topology.Shorten(node))
	}
	if err := stop(n.PIDFile); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	opt.Progress("node %s: agent %s", node, verb)
	return nil
}

// StartNode starts the agent of a node of a running lab that StopNode
// stopped, with the same config, then waits until the node is ready (see
// RestartNode); for an external router, its BGP daemon's processes, not
// waiting for its sessions. A node or router that runs is an error.
func StartNode(ctx context.Context, st *State, node string, opt RestartOptions) error {
	if opt.Timeout == 0 {
		opt.Timeout = 60 * time.Second
	}
	if opt.Progress == nil {
		opt.Progress = func(string, ...any) {}
	}
	if r, ok := st.Router(node); ok {
		m, err := routerKind(forwarder{rs: r})
		if err != nil {
			return err
		}
		e, ok := m.(*externalRouter)
		if !ok || len(r.Processes) == 0 {
			return fmt.Errorf("router %s runs no BGP daemon (kind: router)", node)
		}
		for _, p := range r.Processes {
			if processAlive(p.PIDFile) {
				return fmt.Errorf("router %s: %s runs already", node, p.Name)
			}
		}
		for _, p := range r.Processes {
			if err := startProcess(r.Namespace, p.Args, p.Log, p.PIDFile, nil); err != nil {
				return fmt.Errorf("router %s: start %s: %w", node, p.Name, err)
			}
			if err := e.daemon.started(r, p); err != nil {
				return err
			}
		}
		opt.Progress("router %s: %s started", node, r.Daemon)
		return nil
	}
	n, ok := st.Node(node)
	if !ok {
		return fmt.Errorf("lab %s has no node %q", st.Name, topology.Shorten(node))
	}
	if processAlive(n.PIDFile) {
		return fmt.Errorf("node %s: its agent runs already", node)
	}
	if opt.Binary == "" {
		var err error
		if opt.Binary, err = os.Executable(); err != nil {
			return fmt.Errorf("find vrouter executable: %w", err)
		}
	}
	c := st.calicoNode(n)
	if err := c.start(ctx, startEnv{bin: opt.Binary, progress: opt.Progress}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	return waitReady(ctx, []Node{c}, opt.NoWait, opt.Timeout, opt.Progress)
}

// killAgent sends SIGKILL to the agent in pidFile, if it runs, and waits
// until it is gone.
func killAgent(pidFile string) error {
	pid, ok := agentPID(pidFile)
	if !ok {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill agent %d: %w", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pidFile) {
		if time.Now().After(deadline) {
			return fmt.Errorf("agent %d still runs 5 s after SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitReaped(pid, deadline)
	return nil
}

// waitReaped waits, until deadline at the most, for the process pid to be
// gone from /proc: a zombie's other threads may still be exiting, holding
// its TUN devices and fabric sockets, which a new agent needs. (The new
// agent also waits for busy devices.)
func waitReaped(pid int, deadline time.Time) {
	for time.Now().Before(deadline) {
		if _, _, err := procStart(pid); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SetLink sets the underlay link of a node of a running lab up or down, and
// records it in the node's config so that a restarted agent keeps it; or
// that of a router's interface iface (which may be empty for a router with
// one interface).
func SetLink(ctx context.Context, st *State, node, iface string, up bool) (*control.Link, error) {
	if r, ok := st.Router(node); ok {
		l, err := control.NewRouterClient(r.Control).SetLink(ctx, iface, up)
		if err != nil {
			return nil, fmt.Errorf("router %s: %w", node, err)
		}
		return l, nil
	}
	n, ok := st.Node(node)
	if !ok {
		return nil, fmt.Errorf("lab %s has no node or router %q", st.Name, node)
	}
	if iface != "" && iface != n.Interface {
		return nil, fmt.Errorf("node %s has no interface %q (its underlay is %s)", node, iface, n.Interface)
	}
	// The config first, so that an agent restarted meanwhile keeps the
	// link as set; put back as it was if the agent does not take it.
	wasDown := false
	if err := updateNodeConfig(n, func(c *config.Node) { wasDown, c.LinkDown = c.LinkDown, !up }); err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	l, err := control.NewClient(n.Control).SetLink(ctx, "", up)
	if err != nil {
		_ = updateNodeConfig(n, func(c *config.Node) { c.LinkDown = wasDown })
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	return l, nil
}

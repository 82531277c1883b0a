package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"golang.org/x/sys/unix"
)

// Options tune Deploy.
type Options struct {
	File     string        // the lab file, recorded in the state
	Binary   string        // the vrouter executable the nodes run; default: this one
	Timeout  time.Duration // how long to wait for BGP and routes; default 60s
	Progress io.Writer     // progress lines; nil for none
	NoWait   bool          // return once every agent answers, BGP or not
}

// Deploy creates the lab: namespaces, one agent process per node, one
// namespace per workload. It returns once every node reports that all its
// BGP sessions are Established and every remote block is routed, or, after a
// failure or the timeout, removes everything it made and returns the error.
func Deploy(ctx context.Context, l *topology.Lab, opt Options) (st *State, err error) {
	if opt.Timeout == 0 {
		opt.Timeout = 60 * time.Second
	}
	if opt.Binary == "" {
		if opt.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find vrouter executable: %w", err)
		}
	}
	progress := func(format string, args ...any) {
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, format+"\n", args...)
		}
	}
	if err := checkCPUs(l); err != nil {
		return nil, err
	}
	if err := CheckDaemons(l); err != nil {
		return nil, err
	}
	dir, err := Dir(l.Name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(statePath(dir)); err == nil {
		return nil, fmt.Errorf("lab %s is already deployed (state in %s); destroy it first with: vrouter destroy --lab %s", l.Name, dir, l.Name)
	}
	if left, _ := leftovers(l.Name); len(left) > 0 {
		return nil, fmt.Errorf("lab %s has stale state from an earlier run (%s); clean it with: vrouter destroy --lab %s", l.Name, strings.Join(left, ", "), l.Name)
	}
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	frr := usesFRR(l)
	if err := createDir(dir, frr); err != nil {
		return nil, err
	}
	st = &State{Name: l.Name, File: opt.File, Dir: dir, Created: time.Now().UTC(), Spec: l}
	defer func() {
		if err != nil {
			if errors.Is(err, ErrInterrupted) {
				progress("interrupted, cleaning up lab %s", l.Name)
			} else {
				progress("deploy failed, cleaning up lab %s", l.Name)
			}
			if derr := Destroy(l.Name); derr != nil {
				err = errors.Join(err, fmt.Errorf("clean up: %w", derr))
			}
			st = nil
		}
	}()
	// The state file first: from here on, destroy recognises the
	// directory as this lab's.
	if err := st.save(); err != nil {
		return nil, err
	}
	if err := createSubdirs(dir, frr); err != nil {
		return nil, err
	}

	for _, n := range l.Nodes {
		if err := interrupted(ctx); err != nil {
			return nil, err
		}
		cfg, err := nodeConfig(l, dir, n)
		if err != nil {
			return nil, err
		}
		ns := NodeState{
			Name:      n.Name,
			Namespace: cfg.Namespace,
			Address:   n.Address,
			Network:   n.Network,
			Interface: n.Interface,
			Config:    nodePaths(dir, n.Name).Config,
			Control:   cfg.Control,
			Log:       nodePaths(dir, n.Name).Log,
			PIDFile:   nodePaths(dir, n.Name).PIDFile,
		}
		st.Nodes = append(st.Nodes, ns)
		if err := createNamespace(ns.Namespace); err != nil {
			return nil, err
		}
		// The fabric's unix sockets queue only max_dgram_qlen datagrams,
		// 10 by default: too few for a TUN read's burst.
		if err := fabric.SetMaxDgramQlen(ns.Namespace, fabric.DefaultMaxDgramQlen); err != nil {
			return nil, err
		}
		if err := cfg.WriteFile(ns.Config); err != nil {
			return nil, fmt.Errorf("node %s: write config: %w", n.Name, err)
		}
	}
	// External routers (BGP daemons), then router nodes (kind: router):
	// both run a forwarder in a namespace of their own.
	for _, r := range l.Routers {
		rs, err := prepareRouter(l, dir, r)
		if err != nil {
			return nil, err
		}
		st.Routers = append(st.Routers, rs)
	}
	for _, r := range l.RouterNodes {
		rs, err := prepareRouterNode(l, dir, r)
		if err != nil {
			return nil, err
		}
		st.Routers = append(st.Routers, rs)
	}
	for _, rs := range st.Routers {
		if err := interrupted(ctx); err != nil {
			return nil, err
		}
		if err := createNamespace(rs.Namespace); err != nil {
			return nil, err
		}
		if err := fabric.SetMaxDgramQlen(rs.Namespace, fabric.DefaultMaxDgramQlen); err != nil {
			return nil, err
		}
	}
	for _, w := range l.Workloads {
		ws := WorkloadState{Name: w.Name, Node: w.Node, Namespace: l.NamespaceName(w.Name), Interface: config.InterfaceName(l.Name, w.Name)}
		if err := interrupted(ctx); err != nil {
			return nil, err
		}
		st.Workloads = append(st.Workloads, ws)
		if err := createNamespace(ws.Namespace); err != nil {
			return nil, err
		}
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	for _, n := range st.Nodes {
		if err := interrupted(ctx); err != nil {
			return nil, err
		}
		spec, _ := l.Node(n.Name)
		if err := startAgent(opt.Binary, n, spec.CPUSet); err != nil {
			return nil, err
		}
		progress("node %s: agent started in namespace %s", n.Name, n.Namespace)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	// Routers first: the nodes' BGP sessions across them need them.
	for _, r := range st.Routers {
		if err := startProcess(r.Namespace, []string{opt.Binary, "router", "run", "--config", r.Config}, r.Log, r.PIDFile, nil); err != nil {
			return nil, fmt.Errorf("router %s: start forwarder: %w", r.Name, err)
		}
		if err := waitForwarder(ctx, r); err != nil {
			return nil, orInterrupted(parent, err)
		}
		if err := startRouterDaemons(r); err != nil {
			return nil, err
		}
		if r.IsRouterNode() {
			progress("router %s: forwarding in namespace %s", r.Name, r.Namespace)
			continue
		}
		progress("router %s: %s started in namespace %s", r.Name, r.Daemon, r.Namespace)
	}
	if err := waitReady(ctx, st, opt.NoWait, opt.Timeout, progress); err != nil {
		return nil, orInterrupted(parent, err)
	}
	return st, nil
}

// ErrInterrupted is returned by Deploy when its context was cancelled (by
// SIGINT or SIGTERM in the CLI); everything it made is removed by then.
var ErrInterrupted = errors.New("interrupted")

// interrupted returns an error wrapping ErrInterrupted once ctx is done.
func interrupted(ctx context.Context) error {
	if ctx.Err() != nil {
		return fmt.Errorf("deploy %w", ErrInterrupted)
	}
	return nil
}

// orInterrupted returns the interruption if parent was cancelled while
// err happened (a wait that ended because deploy was interrupted), err
// otherwise.
func orInterrupted(parent context.Context, err error) error {
	if ierr := interrupted(parent); ierr != nil {
		return ierr
	}
	return err
}

// usesFRR reports whether the lab runs an FRR router, whose daemons (user
// frr) must pass through the state directory.
func usesFRR(l *topology.Lab) bool {
	for _, r := range l.Routers {
		if r.Daemon == topology.DaemonFRR {
			return true
		}
	}
	return false
}

// createNamespace creates a lab namespace. Labs are IPv4 only, so IPv6 is
// off inside it: no router solicitations or MLD reports reach the engine.
func createNamespace(name string) error {
	if err := netns.Create(name); err != nil {
		return err
	}
	for _, key := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
		if err := netns.SetSysctl(name, key, "1"); err != nil {
			return err
		}
	}
	return nil
}

// checkCPUs checks that every CPU a node's cpuSet names is one this process
// may run on, before anything is created.
func checkCPUs(l *topology.Lab) error {
	var avail unix.CPUSet
	if err := unix.SchedGetaffinity(0, &avail); err != nil {
		return fmt.Errorf("read CPU affinity: %w", err)
	}
	for _, n := range l.Nodes {
		for _, c := range n.CPUSet {
			if !avail.IsSet(c) {
				return fmt.Errorf("node %s: cpuSet %s: CPU %d is not available here (this machine has %d CPUs, 0-%d)",
					n.Name, topology.FormatCPUSet(n.CPUSet), c, runtime.NumCPU(), runtime.NumCPU()-1)
			}
		}
	}
	return nil
}

// startAgent starts `vrouter node run` inside the node's namespace, detached
// from the caller (own session, output to the node's log file), on the CPUs
// in cpus (any when empty).
func startAgent(bin string, n NodeState, cpus []int) error {
	if err := startProcess(n.Namespace, []string{bin, "node", "run", "--config", n.Config}, n.Log, n.PIDFile, cpus); err != nil {
		return fmt.Errorf("node %s: start agent: %w", n.Name, err)
	}
	return nil
}

// startOnCPUs starts cmd with its CPU affinity set to cpus (unchanged when
// empty). A child inherits the affinity of the thread that forks it, so the
// fork happens on a locked thread given that affinity; the thread is thrown
// away afterwards (the goroutine ends without unlocking it).
func startOnCPUs(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		var set unix.CPUSet
		for _, c := range cpus {
			set.Set(c)
		}
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- fmt.Errorf("set CPU affinity %s: %w", topology.FormatCPUSet(cpus), err)
			return
		}
		done <- cmd.Start()
	}()
	return <-done
}

// waitReady polls every node until it reports ready (with anyState, until
// it answers at all) or ctx ends. On timeout the error says what each node
// not ready was still waiting for.
func waitReady(ctx context.Context, st *State, anyState bool, timeout time.Duration, progress func(string, ...any)) error {
	ready := map[string]bool{}
	last := map[string]*control.Status{}
	for {
		if err := checkRouterDaemons(st); err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if ready[n.Name] {
				continue
			}
			if !processAlive(n.PIDFile) {
				return fmt.Errorf("node %s: agent exited; last log lines:\n%s", n.Name, tail(n.Log, 10))
			}
			s, err := control.NewClient(n.Control).Status(ctx)
			if err != nil {
				continue
			}
			last[n.Name] = s
			if s.Ready || anyState {
				ready[n.Name] = true
				progress("node %s: %d BGP sessions Established, %d routes", n.Name, s.PeersEstablished, s.Routes)
			}
		}
		if len(ready) == len(st.Nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			var waiting []string
			for _, n := range st.Nodes {
				if !ready[n.Name] {
					waiting = append(waiting, "  "+n.Name+": "+notReadyReason(st, n, last[n.Name]))
				}
			}
			return fmt.Errorf("timed out after %s; still waiting for:\n%s", timeout, strings.Join(waiting, "\n"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// notReadyReason says what a node that is not ready waits for, from its
// last status (nil: it never answered).
func notReadyReason(st *State, n NodeState, s *control.Status) string {
	if s == nil {
		want := 0
		for _, w := range st.Workloads {
			if w.Node == n.Name {
				want++
			}
		}
		return fmt.Sprintf("the agent (resources): it never answered on %s while starting (opening its TUN devices and %d workloads); see %s", n.Control, want, n.Log)
	}
	var down []string
	for _, p := range s.Peers {
		if p.State != bgp.StateEstablished {
			d := p.Address.String() + " " + p.State
			if p.Info != "" {
				d += " (" + p.Info + ")"
			}
			down = append(down, d)
		}
	}
	if len(down) > 0 {
		return fmt.Sprintf("BGP: %d of %d sessions Established; not up: %s", s.PeersEstablished, len(s.Peers), strings.Join(down, ", "))
	}
	return fmt.Sprintf("routes: every BGP session is Established, but not every other node's blocks are routed yet (%d routes)", s.Routes)
}

// waitForwarder waits until router r's forwarder answers on its control
// socket: its underlay interface and loopback addresses are up.
func waitForwarder(ctx context.Context, r RouterState) error {
	for {
		if !processAlive(r.PIDFile) {
			return fmt.Errorf("router %s: forwarder exited; last log lines:\n%s", r.Name, tail(r.Log, 10))
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

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

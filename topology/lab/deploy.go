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
	"github.com/vrouter-lab/vrouter/vrouter/config"
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
	// Phase is told when each phase begins; nil for none.
	Phase PhaseFunc
}

// PhaseFunc is told, as each phase of Deploy or Destroy begins, its
// number (from 1), how many phases there are, and what it does ("start 3
// agents and 1 router"): for a progress display.
type PhaseFunc func(n, of int, what string)

// phase tells f, if any.
func (f PhaseFunc) phase(n, of int, format string, args ...any) {
	if f != nil {
		f(n, of, fmt.Sprintf(format, args...))
	}
}

// deployPhases is how many phases Deploy has.
const deployPhases = 4

// Deploy creates the lab: namespaces, one agent process per node, one
// namespace per workload, a forwarder (and a BGP daemon) per router. It
// returns once every node reports that all its BGP sessions are
// Established and every remote block is routed, or, after a failure or
// the timeout, removes everything it made and returns the error.
//
// It runs in four phases: plan (every node in its kind, with its config
// and paths; its executables found; nothing made yet), provision (the
// state directory, each node's files, the namespaces), start (each node's
// processes) and wait (until every node is ready).
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
	opt.Phase.phase(1, deployPhases, "plan: check the lab file's nodes and their executables")
	p, err := newPlan(l)
	if err != nil {
		return nil, err
	}
	if err := interrupted(ctx); err != nil {
		return nil, err
	}
	if err := createDir(p.dir, p.frr); err != nil {
		return nil, err
	}
	st = &State{Name: l.Name, File: opt.File, Dir: p.dir, Created: time.Now().UTC(), Spec: l}
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
	opt.Phase.phase(2, deployPhases, "provision: state directory, %s", counted(len(p.nodes)+len(p.workloads)+len(p.bridges), "namespace"))
	if err := provision(ctx, p, st); err != nil {
		return nil, err
	}
	// The timeout bounds starting (the routers' forwarders must answer)
	// and waiting.
	deadline := time.Now().Add(opt.Timeout)
	opt.Phase.phase(3, deployPhases, "start: %s", p.processes())
	jctx, jcancel := context.WithDeadline(ctx, deadline)
	err = startJoints(jctx, p, opt.Binary)
	jcancel()
	if err != nil {
		return nil, orInterrupted(ctx, err)
	}
	if err := startEtcdBefore(ctx, p.etcd, l, deadline, progress); err != nil {
		return nil, err
	}
	if err := start(ctx, p.nodes, startEnv{bin: opt.Binary, progress: progress}, deadline); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if opt.NoWait {
		opt.Phase.phase(4, deployPhases, "wait: every agent answering")
	} else {
		opt.Phase.phase(4, deployPhases, "wait: BGP sessions Established, every block routed")
	}
	if err := waitReady(wctx, p.nodes, opt.NoWait, opt.Timeout, progress); err != nil {
		return nil, orInterrupted(ctx, err)
	}
	if len(l.Policies) > 0 {
		if err := PushPolicies(wctx, st, l); err != nil {
			return nil, orInterrupted(ctx, err)
		}
		progress("policies: %d sent to every node", len(l.Policies))
	}
	return st, nil
}

// plan is a lab about to be deployed: every node in its kind, with its
// config and paths computed and its executables found. Nothing exists
// yet.
type plan struct {
	dir string
	// nodes in the order they start: the calico nodes (their agents
	// need nothing to start), then the routers, external routers first
	// (each waited for: the nodes' BGP sessions across them need them).
	nodes     []Node
	workloads []WorkloadState
	bridges   []bridge   // a kernel lab's networks (kernel.go)
	etcd      *EtcdState // an etcd lab's cluster (etcd.go)
	frr       bool       // a node runs as user frr: the state directory lets group frr through
}

// processes says what start starts: "3 agents, 1 router".
func (p *plan) processes() string {
	agents, routers := 0, 0
	for _, n := range p.nodes {
		if n.Kind() == topology.KindCalico {
			agents++
		} else {
			routers++
		}
	}
	out := counted(agents, "agent")
	if routers > 0 {
		out += ", " + counted(routers, "router")
	}
	if p.etcd != nil {
		out = counted(len(p.etcd.Members), "etcd member") + ", " + out
	}
	return out
}

// counted is "1 thing" or "n things" ("n processes").
func counted(n int, thing string) string {
	switch {
	case n == 1:
		return "1 " + thing
	case strings.HasSuffix(thing, "s"):
		return fmt.Sprintf("%d %ses", n, thing)
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// newPlan plans the deployment of lab l: it computes every node's config
// and paths, checks that every node's executables are there and that the
// lab is not deployed (nor left behind by an earlier run).
func newPlan(l *topology.Lab) (*plan, error) {
	dir, err := Dir(l.Name)
	if err != nil {
		return nil, err
	}
	p := &plan{dir: dir, bridges: planBridges(l, dir)}
	if p.etcd, err = planEtcd(l, dir); err != nil {
		return nil, err
	}
	for _, n := range l.Nodes {
		c, err := planCalicoNode(l, dir, n)
		if err != nil {
			return nil, err
		}
		p.nodes = append(p.nodes, c)
	}
	for _, r := range l.Routers {
		n, err := planExternalRouter(l, dir, r)
		if err != nil {
			return nil, err
		}
		p.nodes = append(p.nodes, n)
	}
	for _, r := range l.RouterNodes {
		n, err := planRouterNode(l, dir, r)
		if err != nil {
			return nil, err
		}
		p.nodes = append(p.nodes, n)
	}
	var errs []error
	for _, n := range p.nodes {
		if err := n.check(); err != nil {
			errs = append(errs, err)
		}
		p.frr = p.frr || n.frrGroup()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(statePath(dir)); err == nil {
		return nil, fmt.Errorf("lab %s is already deployed (state in %s); destroy it first with: vrouter destroy --lab %s", l.Name, dir, l.Name)
	}
	if left, _ := leftovers(l.Name); len(left) > 0 {
		return nil, fmt.Errorf("lab %s has stale state from an earlier run (%s); clean it with: vrouter destroy --lab %s", l.Name, strings.Join(left, ", "), l.Name)
	}
	for _, w := range l.Workloads {
		c := workloadConfig(l.Name, w)
		p.workloads = append(p.workloads, WorkloadState{Name: w.Name, Node: w.Node, Namespace: c.Namespace, Interface: config.InterfaceName(l.Name, w.Name), Stack: c.Stack})
	}
	return p, nil
}

// provision makes the lab's state in its new state directory: the state
// file first (from then on destroy recognises the directory as the
// lab's), the nodes and routers directories, every node's files and
// namespace, a kernel lab's bridges (each in its namespace, joined to the
// nodes), then the workloads' namespaces, and records them all in st.
func provision(ctx context.Context, p *plan, st *State) error {
	if err := st.save(); err != nil {
		return err
	}
	if err := createSubdirs(p.dir, p.frr); err != nil {
		return err
	}
	for _, n := range p.nodes {
		if err := interrupted(ctx); err != nil {
			return err
		}
		if err := n.prepare(); err != nil {
			return err
		}
		if err := createNamespace(n.Namespace()); err != nil {
			return err
		}
		// The fabric's unix sockets queue only max_dgram_qlen datagrams,
		// 10 by default: too few for a TUN read's burst.
		if err := fabric.SetMaxDgramQlen(n.Namespace(), fabric.DefaultMaxDgramQlen); err != nil {
			return err
		}
		n.record(st)
	}
	if err := provisionBridges(ctx, p, st); err != nil {
		return err
	}
	if err := provisionEtcd(ctx, p.etcd, st); err != nil {
		return err
	}
	for _, w := range p.workloads {
		if err := interrupted(ctx); err != nil {
			return err
		}
		if w.Namespace != "" { // a netstack workload has none
			if err := createNamespace(w.Namespace); err != nil {
				return err
			}
		}
		st.Workloads = append(st.Workloads, w)
	}
	return st.save()
}

// start starts every node's processes, in order; a node that must answer
// before the next starts is waited for until deadline.
func start(ctx context.Context, nodes []Node, env startEnv, deadline time.Time) error {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for _, n := range nodes {
		if err := interrupted(ctx); err != nil {
			return err
		}
		if err := n.start(wctx, env); err != nil {
			return orInterrupted(ctx, err)
		}
	}
	return nil
}

// startEtcdBefore starts an etcd lab's cluster, before the agents that
// use it, waits until it serves (until deadline at most) and seeds it.
func startEtcdBefore(ctx context.Context, e *EtcdState, l *topology.Lab, deadline time.Time, progress func(string, ...any)) error {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := startEtcd(wctx, e, l.Name, progress); err != nil {
		return orInterrupted(ctx, err)
	}
	if err := seedEtcd(wctx, e, l); err != nil {
		return orInterrupted(ctx, err)
	}
	return nil
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
// it answers at all) or ctx ends; a node whose process exited ends it with
// an error. On timeout the error says what each node not ready was still
// waiting for.
func waitReady(ctx context.Context, nodes []Node, anyState bool, timeout time.Duration, progress func(string, ...any)) error {
	ready := map[string]bool{}
	for {
		for _, n := range nodes {
			if err := n.running(); err != nil {
				return err
			}
		}
		for _, n := range nodes {
			if ready[n.Name()] {
				continue
			}
			if ok, line := n.ready(ctx, anyState); ok {
				ready[n.Name()] = true
				if line != "" {
					progress("%s", line)
				}
			}
		}
		if len(ready) == len(nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			var waiting []string
			for _, n := range nodes {
				if !ready[n.Name()] {
					waiting = append(waiting, "  "+n.Name()+": "+n.waitingFor())
				}
			}
			return fmt.Errorf("timed out after %s; still waiting for:\n%s", timeout, strings.Join(waiting, "\n"))
		case <-time.After(200 * time.Millisecond):
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

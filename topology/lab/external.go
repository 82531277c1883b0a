package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// externalRouter is an external router (routers: in the lab file): the
// forwarder and, beside it, a BGP daemon, whose part differs by kind
// (daemon: bird, bird2, frr or gobgpd).
type externalRouter struct {
	forwarder
	daemon daemon
	bins   daemonBins // found by check
}

// daemon is the part of an external router's kind that is its BGP
// daemon's.
type daemon interface {
	// find finds the daemon's executables for router r, or says which
	// Debian package provides the missing one.
	find(r topology.Router) (daemonBins, error)
	// configure writes the daemon's configuration for router r into
	// the router's directory (rs.Dir), has the daemon check it, and
	// records in rs the configuration, the socket its CLI talks to and
	// the processes to start. It may add to the forwarder's config.
	configure(l *topology.Lab, r topology.Router, bins daemonBins, rs *RouterState, cfg *config.Router) error
	// started is called once process p of the daemon runs, before the
	// next one starts.
	started(rs RouterState, p DaemonProcess) error
	// cli is the command line of the daemon's client with args.
	cli(rs RouterState, args ...string) []string
	// statusArgs are the client's arguments that list the BGP sessions.
	statusArgs() []string
	// cleanup removes what the daemon's stopped processes left behind.
	cleanup(rs RouterState)
	// frrGroup reports whether the daemon runs as user frr.
	frrGroup() bool
}

func (e *externalRouter) Kind() string                { return string(e.rs.Daemon) }
func (e *externalRouter) CLI(args ...string) []string { return e.daemon.cli(e.rs, args...) }
func (e *externalRouter) frrGroup() bool              { return e.daemon.frrGroup() }
func (e *externalRouter) cleanup()                    { e.daemon.cleanup(e.rs) }

// Status: vrouter speaks no BGP in an external router; its daemon's CLI
// tells.
func (e *externalRouter) Status(context.Context, io.Writer) error {
	return fmt.Errorf("%s is an external router running %s; ask it: vrouter exec %s -- %s", e.rs.Name, e.rs.Daemon, e.rs.Name, shellJoin(e.CLI(e.daemon.statusArgs()...)))
}

// spec is the router in the lab file being deployed.
func (e *externalRouter) spec() (topology.Router, error) {
	if e.lab != nil {
		if r, ok := e.lab.Router(e.rs.Name); ok {
			return r, nil
		}
	}
	return topology.Router{}, fmt.Errorf("router %s: not in the lab file", e.rs.Name)
}

func (e *externalRouter) check() error {
	r, err := e.spec()
	if err != nil {
		return err
	}
	e.bins, err = e.daemon.find(r)
	return err
}

// prepare writes the forwarder's config and the daemon's configuration.
func (e *externalRouter) prepare() error {
	r, err := e.spec()
	if err != nil {
		return err
	}
	if err := e.makeDir(); err != nil {
		return err
	}
	e.rs.CLI = e.bins.cli
	if err := e.daemon.configure(e.lab, r, e.bins, &e.rs, e.cfg); err != nil {
		return err
	}
	return e.writeConfig()
}

// start starts the forwarder, then the daemon's processes.
func (e *externalRouter) start(ctx context.Context, env startEnv) error {
	if err := e.startForwarder(ctx, env.bin); err != nil {
		return err
	}
	for _, p := range e.rs.Processes {
		if err := startProcess(e.rs.Namespace, p.Args, p.Log, p.PIDFile, nil); err != nil {
			return fmt.Errorf("router %s: start %s: %w", e.rs.Name, p.Name, err)
		}
		if err := e.daemon.started(e.rs, p); err != nil {
			return err
		}
	}
	env.progress("router %s: %s started in namespace %s", e.rs.Name, e.rs.Daemon, e.rs.Namespace)
	return nil
}

func (e *externalRouter) running() error {
	if err := e.forwarderRunning(); err != nil {
		return err
	}
	for _, p := range e.rs.Processes {
		if !processAlive(p.PIDFile) {
			return fmt.Errorf("router %s: %s exited; last log lines:\n%s", e.rs.Name, p.Name, tail(p.Log, 10))
		}
	}
	return nil
}

// planExternalRouter computes external router r's forwarder config and
// files; the daemon's come with prepare, once check found it.
func planExternalRouter(l *topology.Lab, dir string, r topology.Router) (Node, error) {
	cfg, err := routerConfig(l, dir, r)
	if err != nil {
		return nil, err
	}
	files := routerPaths(dir, r.Name)
	rs := RouterState{
		Name:      r.Name,
		Namespace: cfg.Namespace,
		Address:   r.Address,
		Network:   r.Network,
		Interface: r.Interface,
		Daemon:    r.Daemon,
		Config:    files.Config,
		Control:   cfg.Control,
		Log:       files.Log,
		PIDFile:   files.PIDFile,
		Dir:       daemonDir(dir, r.Name),
	}
	return routerKind(forwarder{rs: rs, cfg: cfg, lab: l})
}

// routerConfig builds the forwarder config of router r.
func routerConfig(l *topology.Lab, dir string, r topology.Router) (*config.Router, error) {
	net, ok := l.Network(r.Network)
	if !ok {
		return nil, fmt.Errorf("router %s: unknown network %s", r.Name, r.Network)
	}
	c := &config.Router{
		Lab:       l.Name,
		Router:    r.Name,
		Control:   ControlSocket(dir, r.Name),
		Fabric:    fabricDir(dir),
		Namespace: l.NamespaceName(r.Name),
		Network:   net.Name,
		Prefix:    netip.PrefixFrom(r.Address, net.CIDR.Bits()),
		Interface: r.Interface,
		MTU:       net.MTU,
		Neighbors: neighbors(l, r.Network),
	}
	if !r.Impairment.IsZero() {
		c.Impairments = map[string]config.Impairment{r.Interface: r.Impairment}
	}
	for _, p := range r.Announce {
		first := p.Addr()
		if p.Bits() < 31 {
			first = first.Next()
		}
		c.Loopback = append(c.Loopback, netip.PrefixFrom(first, p.Bits()))
	}
	return c, nil
}

// routerPeer is one BGP session of a router's generated configuration.
type routerPeer struct {
	Name     string
	Address  netip.Addr
	ASN      uint32
	Password string
}

// routerPeers lists the sessions router r's generated configuration has:
// one per peer node, with the router's password, or else the password of
// a bgpPeers entry between them.
func routerPeers(l *topology.Lab, r topology.Router) []routerPeer {
	var out []routerPeer
	for _, name := range r.Peers {
		n, ok := l.Node(name)
		if !ok {
			continue
		}
		p := routerPeer{Name: n.Name, Address: n.Address, ASN: nodeASN(l, n), Password: r.Password}
		for _, bp := range l.BGPPeers {
			if p.Password != "" {
				break
			}
			if bp.PeerIP == r.Address && bp.AppliesTo(n) && bp.Password != "" {
				p.Password = bp.Password
				break
			}
		}
		out = append(out, p)
	}
	return out
}

// daemonBins are the executables a router's daemon needs.
type daemonBins struct {
	main  string // bird, FRR's bgpd or gobgpd
	zebra string // FRR only
	cli   string // birdc, vtysh or gobgp
}

// findExecutable finds main, the executable of router r's daemon, or says
// which Debian package (pkg) provides it.
func findExecutable(r topology.Router, main, pkg string) (string, error) {
	p, err := lookPath(main)
	if err != nil {
		return "", fmt.Errorf("router %s: daemon %s: %s not found; install the Debian package %s", r.Name, r.Daemon, main, pkg)
	}
	return p, nil
}

// findCompanion finds the executable name that comes with main (zebra,
// a daemon's CLI): beside main, in one of dirs, or in PATH.
func findCompanion(r topology.Router, main, name, pkg string, dirs ...string) (string, error) {
	for _, d := range append([]string{filepath.Dir(main)}, dirs...) {
		if p, err := lookPath(filepath.Join(d, name)); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("router %s: daemon %s: %s not found beside %s or in PATH; install the Debian package %s", r.Name, r.Daemon, name, main, pkg)
}

// lookPath is exec.LookPath that also accepts a path without a slash only
// through PATH, and reports a directory or non-executable as missing.
func lookPath(p string) (string, error) {
	found, err := exec.LookPath(p)
	if err != nil {
		return "", err
	}
	return filepath.Abs(found)
}

// daemonProcess is process name of router rs's daemon, running args.
func daemonProcess(rs *RouterState, name string, args ...string) DaemonProcess {
	pid, log := daemonProcessPaths(rs.Dir, name)
	return DaemonProcess{Name: name, Args: args, PIDFile: pid, Log: log}
}

// waitForFile waits up to 10 s for process p of router rs to create path.
func waitForFile(rs RouterState, p DaemonProcess, path string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if !processAlive(p.PIDFile) {
			return fmt.Errorf("router %s: %s exited; last log lines:\n%s", rs.Name, p.Name, tail(p.Log, 10))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("router %s: %s did not open %s within 10s", rs.Name, p.Name, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

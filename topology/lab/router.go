package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// RouterState is one external router of a deployed lab: its namespace, the
// forwarder that joins it to the underlay, and its BGP daemon.
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

// CLIArgs returns the command line that runs the router's daemon CLI with
// args (e.g. "show route"), to be run in the router's namespace.
func (r RouterState) CLIArgs(args ...string) []string {
	switch r.Daemon {
	case topology.DaemonFRR:
		out := []string{r.CLI, "--vty_socket", r.Socket}
		for _, a := range args {
			out = append(out, "-c", a)
		}
		return out
	case topology.DaemonGoBGP:
		return append([]string{r.CLI, "--target", "unix://" + r.Socket}, args...)
	}
	return append([]string{r.CLI, "-s", r.Socket}, args...)
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

// daemonBins are the executables a router's daemon needs.
type daemonBins struct {
	main  string // bird, FRR's bgpd or gobgpd
	zebra string // FRR only
	cli   string // birdc, vtysh or gobgp
}

// findDaemon finds the executables of router r's daemon, or says which
// Debian package provides the missing one.
func findDaemon(r topology.Router) (daemonBins, error) {
	var b daemonBins
	main, pkg := r.Binary, ""
	switch r.Daemon {
	case topology.DaemonBIRD:
		pkg = "bird (apt-get install bird)"
		if main == "" {
			main = "bird"
		}
	case topology.DaemonBIRD2:
		pkg = "bird2, which conflicts with bird: extract it without installing (apt-get download bird2 && dpkg-deb -x bird2_*.deb /opt/vrouter-bird2), or set binary: in the lab file or VROUTER_BIRD2"
		if main == "" {
			main = os.Getenv("VROUTER_BIRD2")
		}
		if main == "" {
			main = DefaultBIRD2
		}
	case topology.DaemonFRR:
		pkg = "frr (apt-get install frr)"
		if main == "" {
			main = filepath.Join(frrDir, "bgpd")
		}
	case topology.DaemonGoBGP:
		pkg = "gobgpd (apt-get install gobgpd)"
		if main == "" {
			main = "gobgpd"
		}
	default:
		return b, fmt.Errorf("router %s: unknown daemon %q", r.Name, r.Daemon)
	}
	var err error
	if b.main, err = lookPath(main); err != nil {
		return b, fmt.Errorf("router %s: daemon %s: %s not found; install the Debian package %s", r.Name, r.Daemon, main, pkg)
	}
	if r.Daemon == topology.DaemonBIRD || r.Daemon == topology.DaemonBIRD2 {
		if err := checkBIRDVersion(r, b.main); err != nil {
			return b, err
		}
	}
	dir := filepath.Dir(b.main)
	companion := func(name string) (string, error) {
		if p, err := lookPath(filepath.Join(dir, name)); err == nil {
			return p, nil
		}
		if p, err := lookPath(filepath.Join(frrDir, name)); err == nil && r.Daemon == topology.DaemonFRR {
			return p, nil
		}
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		return "", fmt.Errorf("router %s: daemon %s: %s not found beside %s or in PATH; install the Debian package %s", r.Name, r.Daemon, name, b.main, pkg)
	}
	switch r.Daemon {
	case topology.DaemonFRR:
		if b.zebra, err = companion("zebra"); err != nil {
			return b, err
		}
		b.cli, err = companion("vtysh")
	case topology.DaemonGoBGP:
		b.cli, err = companion("gobgp")
	default:
		b.cli, err = companion("birdc")
	}
	return b, err
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

// CheckDaemons checks that every router's daemon is installed, before
// anything of the lab is created.
func CheckDaemons(l *topology.Lab) error {
	var errs []error
	for _, r := range l.Routers {
		if _, err := findDaemon(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
	for _, p := range r.Announce {
		first := p.Addr()
		if p.Bits() < 31 {
			first = first.Next()
		}
		c.Loopback = append(c.Loopback, netip.PrefixFrom(first, p.Bits()))
	}
	return c, nil
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

// routerPeer is one BGP session of a router's generated configuration.
type routerPeer struct {
	Name     string
	Address  netip.Addr
	ASN      uint32
	Password string
}

// routerPeers lists the sessions router r's generated configuration has:
// one per peer node, with the password of a bgpPeers entry between them.
func routerPeers(l *topology.Lab, r topology.Router) []routerPeer {
	var out []routerPeer
	for _, name := range r.Peers {
		n, ok := l.Node(name)
		if !ok {
			continue
		}
		p := routerPeer{Name: n.Name, Address: n.Address, ASN: nodeASN(l, n)}
		for _, bp := range l.BGPPeers {
			if bp.PeerIP == r.Address && bp.AppliesTo(n) && bp.Password != "" {
				p.Password = bp.Password
				break
			}
		}
		out = append(out, p)
	}
	return out
}

// prepareRouter writes router r's forwarder config and daemon
// configuration and returns its state; nothing runs yet.
func prepareRouter(l *topology.Lab, dir string, r topology.Router) (RouterState, error) {
	bins, err := findDaemon(r)
	if err != nil {
		return RouterState{}, err
	}
	cfg, err := routerConfig(l, dir, r)
	if err != nil {
		return RouterState{}, err
	}
	files := routerPaths(dir, r.Name)
	if r.Daemon == topology.DaemonGoBGP {
		cfg.GoBGP = &config.GoBGPKernel{CLI: bins.cli, Socket: daemonFile(daemonDir(dir, r.Name), gobgpdSockFile)}
	}
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
		CLI:       bins.cli,
	}
	if err := os.Mkdir(rs.Dir, dirMode); err != nil {
		return rs, fmt.Errorf("router %s: %w", r.Name, err)
	}
	if err := cfg.WriteFile(rs.Config); err != nil {
		return rs, fmt.Errorf("router %s: write config: %w", r.Name, err)
	}
	proc := func(name string, args ...string) DaemonProcess {
		pid, log := daemonProcessPaths(dir, r.Name, name)
		return DaemonProcess{Name: name, Args: args, PIDFile: pid, Log: log}
	}
	rs.DaemonConfig = r.Config
	switch r.Daemon {
	case topology.DaemonBIRD, topology.DaemonBIRD2:
		if rs.DaemonConfig == "" {
			rs.DaemonConfig = daemonFile(rs.Dir, birdConfFile)
			if err := writeFile(rs.DaemonConfig, []byte(birdConfig(l, r, r.Daemon == topology.DaemonBIRD2)), fileMode); err != nil {
				return rs, fmt.Errorf("router %s: write bird.conf: %w", r.Name, err)
			}
		}
		rs.Socket = daemonFile(rs.Dir, birdCtlFile)
		if out, err := exec.Command(bins.main, "-p", "-c", rs.DaemonConfig).CombinedOutput(); err != nil {
			return rs, fmt.Errorf("router %s: %s rejects %s: %s", r.Name, bins.main, rs.DaemonConfig, strings.TrimSpace(string(out)))
		}
		rs.Processes = []DaemonProcess{proc("bird", bins.main, "-f", "-c", rs.DaemonConfig, "-s", rs.Socket)}
	case topology.DaemonFRR:
		// FRR's daemons drop to user frr (and need its vty group): the
		// directory of their pid files and sockets must be theirs.
		if err := chownTo(rs.Dir, "frr"); err != nil {
			return rs, fmt.Errorf("router %s: %w", r.Name, err)
		}
		// bgpd runs as user frr, which may not read the user's file
		// where it is: it gets a copy in its own directory, readable by
		// root and group frr only (it may hold passwords).
		conf := []byte(frrConfig(l, r))
		if r.Config != "" {
			if conf, err = os.ReadFile(r.Config); err != nil {
				return rs, fmt.Errorf("router %s: read config: %w", r.Name, err)
			}
		}
		rs.DaemonConfig = daemonFile(rs.Dir, bgpdConfFile)
		if err := writeFRRFile(rs.DaemonConfig, conf); err != nil {
			return rs, fmt.Errorf("router %s: write bgpd.conf: %w", r.Name, err)
		}
		if out, err := checkFRRConfig(bins.main, rs.DaemonConfig); err != nil {
			what := rs.DaemonConfig
			if r.Config != "" {
				what = r.Config + " (copied to " + rs.DaemonConfig + ")"
			}
			return rs, fmt.Errorf("router %s: %s rejects %s: %s", r.Name, bins.main, what, strings.TrimSpace(string(out)))
		}
		zconf := daemonFile(rs.Dir, zebraConfFile)
		if err := writeFRRFile(zconf, []byte("hostname "+r.Name+"\nlog stdout\n")); err != nil {
			return rs, fmt.Errorf("router %s: write zebra.conf: %w", r.Name, err)
		}
		rs.Socket = rs.Dir
		zserv := daemonFile(rs.Dir, zservFile)
		common := []string{"-z", zserv, "--vty_socket", rs.Dir}
		rs.Processes = []DaemonProcess{
			proc("zebra", append([]string{bins.zebra, "-f", zconf, "-i", daemonFile(rs.Dir, zebraPIDFile)}, common...)...),
			proc("bgpd", append([]string{bins.main, "-f", rs.DaemonConfig, "-i", daemonFile(rs.Dir, bgpdPIDFile), "-l", r.Address.String()}, common...)...),
		}
	case topology.DaemonGoBGP:
		if rs.DaemonConfig == "" {
			rs.DaemonConfig = daemonFile(rs.Dir, gobgpdConfFile)
			if err := writeFile(rs.DaemonConfig, []byte(gobgpConfig(l, r)), fileMode); err != nil {
				return rs, fmt.Errorf("router %s: write gobgpd.toml: %w", r.Name, err)
			}
		}
		if out, err := exec.Command(bins.main, "--dry-run", "-f", rs.DaemonConfig, "-t", gobgpConfigType(rs.DaemonConfig)).CombinedOutput(); err != nil {
			return rs, fmt.Errorf("router %s: %s rejects %s: %s", r.Name, bins.main, rs.DaemonConfig, strings.TrimSpace(string(out)))
		}
		rs.Socket = daemonFile(rs.Dir, gobgpdSockFile)
		rs.Announce = r.Announce
		rs.Processes = []DaemonProcess{
			proc("gobgpd", bins.main, "-f", rs.DaemonConfig, "-t", gobgpConfigType(rs.DaemonConfig), "-p",
				"--api-hosts", "unix://"+rs.Socket, "--pprof-disable"),
		}
	}
	return rs, nil
}

// startRouterDaemons starts the router's daemon processes in its
// namespace; FRR's bgpd starts once zebra listens, and gobgpd is given the announced prefixes once its API listens.
func startRouterDaemons(rs RouterState) error {
	for _, p := range rs.Processes {
		if err := startProcess(rs.Namespace, p.Args, p.Log, p.PIDFile, nil); err != nil {
			return fmt.Errorf("router %s: start %s: %w", rs.Name, p.Name, err)
		}
		if p.Name == "zebra" {
			zserv := daemonFile(rs.Dir, zservFile)
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := os.Stat(zserv); err == nil {
					break
				}
				if !processAlive(p.PIDFile) {
					return fmt.Errorf("router %s: zebra exited; last log lines:\n%s", rs.Name, tail(p.Log, 10))
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("router %s: zebra did not open %s within 10s", rs.Name, zserv)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if p.Name == "gobgpd" {
			if err := announceGoBGP(rs, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkRouterDaemons reports a router daemon that exited.
func checkRouterDaemons(st *State) error {
	for _, r := range st.Routers {
		for _, p := range r.Processes {
			if !processAlive(p.PIDFile) {
				return fmt.Errorf("router %s: %s exited; last log lines:\n%s", r.Name, p.Name, tail(p.Log, 10))
			}
		}
	}
	return nil
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

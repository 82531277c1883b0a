package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vrouter-lab/vrouter/topology"
	"golang.org/x/sys/unix"
)

// The state directory layout is known here and nowhere else: every path of
// a lab's state is computed by a function of this file, recorded in the
// lab's State, and handed to the processes the lab runs in their config
// files (config.Node, config.Router), which compute none themselves
// (inside fabric/, the fabric package names its networks' sockets).
//
//	<StateRoot>/                       0755, root
//	<StateRoot>/<lab>.lock             the lab's lock (see Lock), 0600
//	<StateRoot>/<lab>/                 0700 (0710 group frr when an FRR router runs)
//	    lab.json                       what the lab is made of (State), 0600
//	    ipam.db                        the IPAM datastore (bbolt)
//	    fabric/<network>/<node>.sock   the underlay fabric's sockets
//	    fabric/<network>/taps/         capture taps (vrouter capture)
//	    nodes/<node>.json              a node agent's config (config.Node)
//	    nodes/<node>.{log,pid,start}   its log, pid and start time
//	    nodes/<node>.sock              its control socket
//	    nodes/<node>.routes.json       the routes it learned (graceful restart)
//	    nodes/<node>.workloads.json    the workloads added through its API
//	    nodes/<router>.sock            a router forwarder's control socket
//	    routers/<router>.json          a router forwarder's config (config.Router)
//	    routers/<router>.{log,pid,start}
//	    routers/<router>.<daemon>.{log,pid,start}   each daemon process of an external router
//	    etcd/                          an etcd lab's cluster (etcd.go), 0700
//	    etcd/<member>.{log,pid,start}  an etcd member's log, pid and start time
//	    etcd/<member>/                 its data directory (--data-dir), 0700
//	    routers/<router>/              the daemon's directory (0700, or user frr's):
//	        bird.conf, bird.ctl                      bird, bird2
//	        bgpd.conf, zebra.conf, bgpd.pid,         frr
//	        zebra.pid, zserv.api, vty sockets
//	        gobgpd.toml, gobgpd.sock                 gobgpd
//
// Files that may hold a BGP password (lab.json, node and router configs,
// daemon configs) are 0600, or 0640 group frr where FRR's daemons, which
// drop to user frr, must read them. Every lab name passes
// topology.CheckLabName before it becomes part of a path.

// Directory and file modes of a lab's state.
const (
	dirMode     = 0o700
	frrDirMode  = 0o710 // group frr may traverse, not list
	fileMode    = 0o600
	frrFileMode = 0o640 // group frr may read
)

// frrUser is the user (and group) FRR's daemons drop to.
const frrUser = "frr"

// Dir returns the state directory of the lab called name, after checking
// that name is a valid lab name (so the directory is a direct child of
// topology.StateRoot).
func Dir(name string) (string, error) {
	if err := topology.CheckLabName(name); err != nil {
		return "", err
	}
	return filepath.Join(topology.StateRoot, name), nil
}

// nodesDir and routersDir hold the files of a lab's nodes and routers.
func nodesDir(dir string) string   { return filepath.Join(dir, "nodes") }
func routersDir(dir string) string { return filepath.Join(dir, "routers") }

// statePath is the lab's State file.
func statePath(dir string) string { return filepath.Join(dir, stateFile) }

// ipamPath is the lab's IPAM datastore (bbolt) in its state directory.
func ipamPath(dir string) string { return filepath.Join(dir, "ipam.db") }

// fabricDir holds the sockets of the lab's underlay fabric, one directory
// per network.
func fabricDir(dir string) string { return filepath.Join(dir, "fabric") }

// lockPath is the lock file of the lab called name, beside (not inside) its
// state directory, so that destroy can remove the directory while holding
// the lock.
func lockPath(name string) string { return filepath.Join(topology.StateRoot, name+".lock") }

// ControlSocket returns the control socket of the node agent, or router
// forwarder, called name in the lab state directory dir. Routers' sockets
// are beside the nodes' (one name space: a router and a node never share a
// name).
func ControlSocket(dir, name string) string {
	return filepath.Join(nodesDir(dir), name+".sock")
}

// processPaths are the files of one process a lab runs.
type processPaths struct {
	Config  string // its config file (a node agent's or router forwarder's)
	Log     string
	PIDFile string
}

// nodePaths are the files of node agent name.
func nodePaths(dir, name string) processPaths {
	return memberPaths(nodesDir(dir), name)
}

// routerPaths are the files of router name's forwarder.
func routerPaths(dir, name string) processPaths {
	return memberPaths(routersDir(dir), name)
}

func memberPaths(base, name string) processPaths {
	return processPaths{
		Config:  filepath.Join(base, name+".json"),
		Log:     filepath.Join(base, name+".log"),
		PIDFile: filepath.Join(base, name+".pid"),
	}
}

// routesPath is where node agent name keeps the routes it learned, for a
// graceful restart.
func routesPath(dir, name string) string {
	return filepath.Join(nodesDir(dir), name+".routes.json")
}

// addedWorkloadsPath is where node agent name keeps the workloads added
// through its control API, which a restarted agent serves again.
func addedWorkloadsPath(dir, name string) string {
	return filepath.Join(nodesDir(dir), name+".workloads.json")
}

// daemonDir is the directory of router name's BGP daemon.
func daemonDir(dir, name string) string { return filepath.Join(routersDir(dir), name) }

// daemonProcessPaths are the pid and log files of the daemon process
// (bird, zebra, bgpd, gobgpd) of the router whose daemon directory is
// ddir: beside that directory, routers/<router>.<process>.{pid,log}.
func daemonProcessPaths(ddir, process string) (pidFile, log string) {
	base := ddir + "." + process
	return base + ".pid", base + ".log"
}

// The files of a router's daemon directory (daemonDir).
const (
	birdConfFile   = "bird.conf"   // generated BIRD configuration
	birdCtlFile    = "bird.ctl"    // BIRD's control socket (birdc -s)
	bgpdConfFile   = "bgpd.conf"   // FRR's bgpd configuration (a copy of the user's)
	bgpdPIDFile    = "bgpd.pid"    // bgpd's own pid file (-i)
	zebraConfFile  = "zebra.conf"  // FRR's zebra configuration
	zebraPIDFile   = "zebra.pid"   // zebra's own pid file (-i)
	zservFile      = "zserv.api"   // zebra's API socket, bgpd connects to it
	gobgpdConfFile = "gobgpd.toml" // generated gobgpd configuration
	gobgpdSockFile = "gobgpd.sock" // gobgpd's gRPC API socket
)

// daemonFile is file (one of the names above) in daemon directory ddir.
func daemonFile(ddir, file string) string { return filepath.Join(ddir, file) }

// pidFiles lists the pid files in the lab state directory dir: the
// routers' (forwarders and daemon processes) first, then the node
// agents', then the etcd members' (the agents stop before the datastore
// they use). It needs no state file, so destroy finds what runs after a
// crash.
func pidFiles(dir string) []string {
	routers, _ := filepath.Glob(filepath.Join(routersDir(dir), "*.pid"))
	nodes, _ := filepath.Glob(filepath.Join(nodesDir(dir), "*.pid"))
	etcd, _ := filepath.Glob(filepath.Join(etcdDir(dir), "*.pid"))
	return append(append(routers, nodes...), etcd...)
}

// etcdDir holds an etcd lab's members: their data directories, logs and
// pid files.
func etcdDir(dir string) string { return filepath.Join(dir, "etcd") }

// etcdMemberPaths are the log and pid files of etcd member name (Config
// unused: its flags are its configuration).
func etcdMemberPaths(dir, name string) processPaths {
	p := memberPaths(etcdDir(dir), name)
	p.Config = ""
	return p
}

// etcdDataDir is etcd member name's data directory.
func etcdDataDir(dir, name string) string { return filepath.Join(etcdDir(dir), name) }

// startFile is where the start time of the process in pidFile is kept.
func startFile(pidFile string) string {
	return strings.TrimSuffix(pidFile, ".pid") + ".start"
}

// createDir creates the state directory of a new lab, readable by root
// alone; with frr, FRR's group may pass through it to its daemons' own
// directory. It fails if the directory exists. The caller writes the
// lab's state file into it at once (so that removeDir recognises it), then
// calls createSubdirs.
func createDir(dir string, frr bool) error {
	if err := os.MkdirAll(topology.StateRoot, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", topology.StateRoot, err)
	}
	if err := os.Mkdir(dir, dirMode); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	return setDirMode(dir, frr)
}

// createSubdirs creates the nodes and routers directories of a lab's state
// directory, with the same modes as the directory.
func createSubdirs(dir string, frr bool) error {
	for _, d := range []string{nodesDir(dir), routersDir(dir)} {
		if err := os.Mkdir(d, dirMode); err != nil {
			return fmt.Errorf("create state directory: %w", err)
		}
		if err := setDirMode(d, frr); err != nil {
			return err
		}
	}
	return nil
}

// setDirMode makes d root's alone, or with frr traversable by FRR's group.
func setDirMode(d string, frr bool) error {
	mode := os.FileMode(dirMode)
	if frr {
		if err := chownGroup(d, frrUser); err != nil {
			return err
		}
		mode = frrDirMode
	}
	// Mkdir's mode passes through the umask; Chmod's does not.
	if err := os.Chmod(d, mode); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	return nil
}

// writeFile writes data to path atomically (a temporary file renamed over
// it) with mode perm, which holds from the first byte: the file never
// exists with wider permissions.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeFRRFile writes a file FRR's daemons read: 0640, group frr.
func writeFRRFile(path string, data []byte) error {
	if err := writeFile(path, data, frrFileMode); err != nil {
		return err
	}
	return chownGroup(path, frrUser)
}

// frrIDs returns the uid and gid of FRR's user.
func frrIDs(name string) (int, int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s (made by the Debian package frr): %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("user %s: %w", name, err)
	}
	return uid, gid, nil
}

// chownTo gives path to the user called name and its group.
func chownTo(path, name string) error {
	uid, gid, err := frrIDs(name)
	if err != nil {
		return err
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// chownGroup gives path to the group of the user called name, keeping
// root as its owner.
func chownGroup(path, name string) error {
	_, gid, err := frrIDs(name)
	if err != nil {
		return err
	}
	if err := os.Lchown(path, 0, gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// checkDir checks that dir, a lab's state directory, is a real directory
// and not a symbolic link (which could lead a reader or a removal out of
// StateRoot). It returns an error wrapping fs.ErrNotExist when dir is not
// there.
func checkDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a lab state directory (it is a %s); vrouter leaves it alone", dir, fileKind(fi.Mode()))
	}
	return nil
}

// fileKind names what a mode says a file is.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	}
	return "special file"
}

// readStateFile reads a lab's State file without following a symbolic
// link.
func readStateFile(dir string) ([]byte, error) {
	f, err := os.OpenFile(statePath(dir), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link, not a lab's state file; vrouter leaves it alone", statePath(dir))
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxStateSize {
		return nil, fmt.Errorf("%s is not a lab's state file (a %s of %d bytes)", statePath(dir), fileKind(fi.Mode()), fi.Size())
	}
	return os.ReadFile(f.Name())
}

// maxStateSize bounds a lab's State file: a lab file is at most
// topology.MaxLabFileSize, and the state holds it with a few lines per
// node and workload.
const maxStateSize = 64 << 20

// removeDir removes the state directory of the lab called name, but only a
// verified one: a real directory (not a link) directly under StateRoot
// that holds the lab's own state file, naming this lab, or nothing at all.
// Anything else is left alone and reported. Links inside it are removed,
// never followed.
func removeDir(name string) error {
	dir, err := Dir(name)
	if err != nil {
		return err
	}
	if err := checkDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if data, err := readStateFile(dir); err == nil {
		var s struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(data, &s) != nil || s.Name != name {
			return fmt.Errorf("%s holds a state file that is not lab %s's; vrouter leaves it alone", dir, name)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	} else if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return fmt.Errorf("%s has no %s but holds %s: not a lab state directory vrouter made; remove it by hand if it is yours to remove", dir, stateFile, strings.Join(names, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

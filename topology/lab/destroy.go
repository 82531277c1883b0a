package lab

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// Destroy removes everything the lab called name made: it stops the node
// agents (SIGTERM, then SIGKILL after a grace period), deletes the lab's
// namespaces and its state directory. It needs nothing but the name, works
// after a crash left partial state, and destroying a lab that is not there
// is not an error. The name must be a valid lab name, and only a verified
// lab state directory is removed (see removeDir). The caller holds the
// lab's lock (Lock).
func Destroy(name string) error {
	return DestroyPhases(name, nil)
}

// destroyPhases is how many phases Destroy has.
const destroyPhases = 3

// DestroyPhases is Destroy telling phase as each of its phases begins.
func DestroyPhases(name string, phase PhaseFunc) error {
	dir, err := Dir(name)
	if err != nil {
		return err
	}
	if err := checkDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// The state, when there is one, says what each node's kind cleans
	// up once its processes are stopped.
	st, _ := Load(name)
	var errs []error
	pids := pidFiles(dir)
	phase.phase(1, destroyPhases, "stop: %s", counted(len(pids), "process"))
	errs = append(errs, stopAgents(pids)...)
	if st != nil {
		for _, n := range st.members() {
			n.cleanup()
		}
	}
	for _, pid := range strayAgents(dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	nss, err := netns.List(topology.LabNamespacePrefix(name))
	if err != nil {
		errs = append(errs, err)
	}
	// Whatever still runs in the lab's namespaces (a daemon whose pid file
	// was lost, a process someone started with vrouter exec) would keep
	// the namespace alive after it is unmounted.
	phase.phase(2, destroyPhases, "delete %s", counted(len(nss), "namespace"))
	if err := killInNamespaces(nss); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if err := netns.Delete(ns); err != nil {
			errs = append(errs, err)
		}
	}
	phase.phase(3, destroyPhases, "remove the state directory")
	if err := removeDir(name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DestroyAll destroys every lab with a state directory and every namespace
// any lab left behind, each lab under its lock (holder and wait as for
// Lock).
func DestroyAll(holder string, wait time.Duration, notice io.Writer) error {
	names, err := List()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		unlock, err := Lock(n, holder, wait, notice)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, Destroy(n))
		unlock()
	}
	nss, err := netns.List(topology.NamespacePrefix)
	errs = append(errs, err, killInNamespaces(nss))
	for _, ns := range nss {
		errs = append(errs, netns.Delete(ns))
	}
	return errors.Join(errs...)
}

// leftovers lists what an earlier run of the lab left behind.
func leftovers(name string) ([]string, error) {
	dir, err := Dir(name)
	if err != nil {
		return nil, err
	}
	var out []string
	if _, err := os.Lstat(dir); err == nil {
		out = append(out, dir)
	}
	nss, err := netns.List(topology.LabNamespacePrefix(name))
	out = append(out, nss...)
	return out, err
}

// agentPID reads a pid file and returns the pid if that process is still
// the agent the file names, not a recycled pid: its start time must match
// the one recorded beside the pid file at start. (The command line is no
// proof: while `ip netns exec` execs the agent, /proc/PID/cmdline is briefly
// empty.) A zombie counts as gone.
func agentPID(pidFile string) (int, bool) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	started, state, err := procStart(pid)
	if err != nil || state == 'Z' {
		return 0, false
	}
	want, err := os.ReadFile(startFile(pidFile))
	if err != nil {
		// No start time recorded: fall back to the command line.
		return pid, isAgentCmdline(pid, "")
	}
	return pid, strings.TrimSpace(string(want)) == started
}

// procStart returns a process's start time (field 22 of /proc/PID/stat, in
// clock ticks since boot, unchanged by exec) and its state letter.
func procStart(pid int) (string, byte, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// The command name in parentheses may hold spaces; fields follow it.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return "", 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return "", 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return f[19], f[0][0], nil
}

// isAgentCmdline reports whether pid runs `vrouter node run`, with a config
// under dir when dir is not empty.
func isAgentCmdline(pid int, dir string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	for i := 0; i+3 < len(args); i++ {
		if (args[i] == "node" || args[i] == "router") && args[i+1] == "run" && args[i+2] == "--config" {
			return dir == "" || strings.HasPrefix(args[i+3], dir+"/")
		}
	}
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "node" && args[i+1] == "run" {
			return dir == ""
		}
	}
	return false
}

// strayAgents lists the processes (agents, or `ip netns exec` about to
// become one) running with a config in the lab directory dir: agents whose
// pid file was lost, for example when a deploy died between starting an
// agent and writing its pid file.
func strayAgents(dir string) []int {
	return processes(func(pid int) bool { return isAgentCmdline(pid, dir) })
}

// processes returns the pids, other than this process's, that match.
func processes(match func(pid int) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if match(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processAlive reports whether the agent in pidFile still runs.
func processAlive(pidFile string) bool {
	_, ok := agentPID(pidFile)
	return ok
}

// stopParallel is how many processes destroy stops at once. One after
// another, each agent's graceful stop (a second or more on a loaded 2-CPU
// machine) added up: a 500-node lab took over ten minutes to destroy.
const stopParallel = 32

// stopAgents stops the processes of pidFiles (stopAgent), stopParallel at
// a time, and returns the errors.
func stopAgents(pidFiles []string) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, stopParallel)
	for _, pf := range pidFiles {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := stopAgent(pf); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// stopAgent sends SIGTERM, waits up to five seconds, then sends SIGKILL.
func stopAgent(pidFile string) error {
	pid, ok := agentPID(pidFile)
	if !ok {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if !processAlive(pidFile) {
			waitReaped(pid, time.Now().Add(5*time.Second))
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill agent %d: %w", pid, err)
	}
	for i := 0; i < 100 && processAlive(pidFile); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	waitReaped(pid, time.Now().Add(5*time.Second))
	return nil
}

// NamespaceProcesses returns the processes whose network namespace is one
// of the named namespaces nss.
func NamespaceProcesses(nss []string) []int {
	if len(nss) == 0 {
		return nil
	}
	inodes := map[uint64]bool{}
	for _, ns := range nss {
		var st syscall.Stat_t
		if err := syscall.Stat(netns.Path(ns), &st); err == nil {
			inodes[st.Ino] = true
		}
	}
	return processes(func(pid int) bool {
		var st syscall.Stat_t
		return syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && inodes[st.Ino]
	})
}

// killInNamespaces sends SIGKILL to every process in the namespaces nss
// and waits for them to go.
func killInNamespaces(nss []string) error {
	pids := NamespaceProcesses(nss)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(pids) > 0 {
		var left []int
		for _, pid := range pids {
			if _, state, err := procStart(pid); err == nil && state != 'Z' {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still run in the lab's namespaces", left)
		}
		pids = left
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"syscall"

	"github.com/vrouter-lab/vrouter/topology"
)

// Pause freezes (SIGSTOP) the BGP speaker of a node or external router of
// a running lab, or thaws it (SIGCONT) with pause false: a node's agent, a
// router's daemon processes (bird; zebra and bgpd; zebra and gobgpd). Its
// link and, for a router, its forwarder and kernel stay up, so the peers
// see a speaker that has hung: no KEEPALIVE arrives, their hold timers
// expire and their NOTIFICATIONs still cross the link. A router node
// (kind: router) runs no speaker and cannot be paused.
func Pause(st *State, name string, pause bool) error {
	sig, verb := syscall.SIGSTOP, "pause"
	if !pause {
		sig, verb = syscall.SIGCONT, "resume"
	}
	var pidFiles []string
	if n, ok := st.Node(name); ok {
		pidFiles = []string{n.PIDFile}
	} else if r, ok := st.Router(name); ok {
		if len(r.Processes) == 0 {
			return fmt.Errorf("%s %s: router %s runs no BGP daemon (kind: router)", verb, name, name)
		}
		for _, p := range r.Processes {
			pidFiles = append(pidFiles, p.PIDFile)
		}
	} else {
		return fmt.Errorf("lab %s has no node or router %q", st.Name, topology.Shorten(name))
	}
	for _, f := range pidFiles {
		pid, ok := agentPID(f)
		if !ok {
			return fmt.Errorf("%s %s: no process running (pid file %s)", verb, name, f)
		}
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("%s %s: signal %d: %w", verb, name, pid, err)
		}
	}
	return nil
}

// PeerStatus is one BGP session of an external router as its daemon
// reports it, in the terms `vrouter node status` uses: State up, start or
// down, Info such as "Established" or "Active".
type PeerStatus struct {
	Protocol string // the daemon's name for the session
	State    string
	Info     string
}

// birdProtocolLine is a line of birdc's show protocols: name, protocol,
// table, state, since, info.
var birdProtocolLine = regexp.MustCompile(`^(\S+)\s+BGP\s+\S+\s+(up|start|down|flush)\s+\S+\s*(.*)$`)

// RouterPeerStatus asks the daemon of external router name about its
// session with peer, a node of the lab: BIRD (bird and bird2) through
// birdc's show protocols. It also returns the daemon's output.
func RouterPeerStatus(ctx context.Context, st *State, name string, peer netip.Addr) (PeerStatus, string, error) {
	r, ok := st.Router(name)
	if !ok {
		return PeerStatus{}, "", fmt.Errorf("lab %s has no router %q", st.Name, topology.Shorten(name))
	}
	if r.Daemon != topology.DaemonBIRD && r.Daemon != topology.DaemonBIRD2 {
		return PeerStatus{}, "", fmt.Errorf("router %s runs %s: its sessions' state can be asserted for bird and bird2 only (assert it from the peer node's side instead)", name, r.Daemon)
	}
	node := ""
	if st.Spec != nil {
		for _, n := range st.Spec.Nodes {
			if n.Address == peer {
				node = n.Name
			}
		}
	}
	if node == "" {
		return PeerStatus{}, "", fmt.Errorf("router %s: no node of the lab has address %s", name, peer)
	}
	proto := birdName(node)
	args := r.CLIArgs("show", "protocols")
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	text := string(out)
	if err != nil {
		return PeerStatus{}, text, fmt.Errorf("router %s: %s: %w: %s", name, shellJoin(args), err, strings.TrimSpace(text))
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		m := birdProtocolLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m != nil && m[1] == proto {
			return PeerStatus{Protocol: proto, State: m[2], Info: strings.Join(strings.Fields(m[3]), " ")}, text, nil
		}
	}
	return PeerStatus{}, text, fmt.Errorf("router %s: %s lists no protocol %s (the session with %s)", name, r.Daemon, proto, peer)
}

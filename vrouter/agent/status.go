package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// hasPassword reports whether the session with addr uses TCP MD5.
func (a *Agent) hasPassword(addr netip.Addr) bool {
	for _, p := range a.peerList() {
		if p.Address == addr {
			return p.Password != ""
		}
	}
	return false
}

// tcpMD5Failures returns the kernel's count of TCP segments dropped in this
// network namespace for a wrong MD5 signature (TcpExt TCPMD5Failure), or 0
// when it cannot be read. A password mismatch shows only there: the SYNs
// are dropped silently and the session just times out.
func tcpMD5Failures() int {
	data, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		return 0
	}
	// Pairs of lines: "TcpExt: names..." then "TcpExt: values...".
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) || values[0] != "TcpExt:" {
			continue
		}
		for j, n := range names {
			if n == "TCPMD5Failure" {
				v, _ := strconv.Atoi(values[j])
				return v
			}
		}
	}
	return 0
}

// status reports the node's state; Ready means every BGP session is
// Established and every block affine to a peer is routed.
func (a *Agent) status(ctx context.Context) (*control.Status, error) {
	s := &control.Status{Node: a.cfg.Node, Address: a.cfg.Prefix.Addr(), Started: a.started, Routes: len(a.dp.Routes()), LinkUp: a.dp.LinkUp(), StaleRoutes: a.staleCount()}
	if imp := a.dp.Impairment(); !imp.IsZero() {
		s.Impairment = &imp
	}
	peers, err := a.bgp.Peers(ctx)
	if err != nil {
		return nil, err
	}
	md5Failures := -1 // not read yet
	for _, p := range peers {
		info := p.Info
		if p.State != bgp.StateEstablished && a.hasPassword(p.Address) {
			if md5Failures < 0 {
				md5Failures = tcpMD5Failures()
			}
			if md5Failures > 0 {
				info = fmt.Sprintf("%s (TCP MD5: %d segments with a bad signature; check the password on both ends)", info, md5Failures)
			}
		}
		s.Peers = append(s.Peers, control.PeerStatus{Address: p.Address, Type: p.Type.String(), State: p.State, Since: p.Since, Info: info, GracefulRestart: p.GracefulRestart})
		if p.State == bgp.StateEstablished {
			s.PeersEstablished++
		}
	}
	a.mu.Lock()
	for _, w := range a.workloads {
		s.Workloads = append(s.Workloads, w)
	}
	s.Blocks = slices.Clone(a.blocks)
	s.TunnelAddress = a.tunnelAddr
	s.Tunnel = a.dp.Tunnel()
	s.Dataplane = a.cfg.Dataplane
	if s.Dataplane == "" {
		s.Dataplane = config.DataplaneUserspace
	}
	a.mu.Unlock()
	slices.SortFunc(s.Workloads, func(x, y control.WorkloadInfo) int { return x.Address.Compare(y.Address) })
	s.Ready = s.PeersEstablished == len(a.peerList())
	if s.Ready {
		// The blocks are in the datastore: when it does not answer (etcd
		// down) the status says so, without waiting the store's full
		// timeout, and the rest of it stands.
		bctx, cancel := context.WithTimeout(ctx, statusDatastoreTimeout)
		s.Ready, err = a.remoteBlocksRouted(bctx)
		cancel()
		if err != nil {
			s.DatastoreError = err.Error()
		}
	}
	return s, nil
}

// statusDatastoreTimeout bounds the datastore read of a status.
const statusDatastoreTimeout = 2 * time.Second

func (a *Agent) remoteBlocksRouted(ctx context.Context) (bool, error) {
	blocks, err := a.ipam.Blocks(ctx)
	if err != nil {
		return false, err
	}
	peers := map[string]bool{}
	for _, p := range a.peerList() {
		peers[p.Node] = true
	}
	if len(a.cfg.BGP.RouteNodes) > 0 {
		clear(peers)
		for _, n := range a.cfg.BGP.RouteNodes {
			peers[n] = true
		}
	}
	for _, b := range blocks {
		if b.Affinity == "" || b.Affinity == a.cfg.Node || !peers[b.Affinity] {
			continue
		}
		routes := a.dp.Route(b.CIDR)
		if len(routes) == 0 || routes[0].Protocol != fib.ProtoBird {
			return false, nil
		}
	}
	return true, nil
}

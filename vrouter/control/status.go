package control

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
)

// WriteNodeStatus prints a node's BGP peers as `calicoctl node status`
// does. statusErr is the error of fetching s: the agent is not running.
func WriteNodeStatus(w io.Writer, s *Status, statusErr error) error {
	if statusErr != nil || s == nil {
		if err := bgp.WriteStatus(w, "vrouter", false, nil, time.Now()); err != nil {
			return err
		}
		if errors.Is(statusErr, ErrNotRunning) {
			return statusErr // says so, and how to start it
		}
		return fmt.Errorf("node agent is not running: %w", statusErr)
	}
	var peers []bgp.PeerStatus
	for _, p := range s.Peers {
		peers = append(peers, bgp.PeerStatus{Address: p.Address, Type: bgp.ParsePeerType(p.Type), State: p.State, Since: p.Since, Info: p.Info})
	}
	if err := bgp.WriteStatus(w, "vrouter", true, peers, time.Now()); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, TunnelLine(s)); err != nil {
		return err
	}
	if s.DatastoreError != "" {
		if _, err := fmt.Fprintf(w, "\nDatastore: %s (BGP and forwarding go on; workload adds fail until it is back)\n", s.DatastoreError); err != nil {
			return err
		}
	}
	switch {
	case s.StaleRoutes == 1:
		_, err := fmt.Fprintln(w, "\nGraceful restart: 1 restored route is still stale (kept until BGP brings it back or the restart time passes).")
		return err
	case s.StaleRoutes > 1:
		_, err := fmt.Fprintf(w, "\nGraceful restart: %d restored routes are still stale (kept until BGP brings them back or the restart time passes).\n", s.StaleRoutes)
		return err
	}
	return nil
}

// TunnelLine is the line of `vrouter node status` that says which tunl0
// the node uses, after the BGP tables as calicoctl adds its own notes:
//
//	IPIP tunnel: tunl0 10.244.166.129/32 (kernel ipip module)
//	IPIP tunnel: tunl0 10.244.166.129/32 (userspace: TUN device and raw IPIP socket; the kernel has no ipip module)
//	IPIP tunnel: none (no IP pool uses IPIP)
func TunnelLine(s *Status) string {
	what := ""
	switch s.Tunnel {
	case "":
		return "IPIP tunnel: none (no IP pool uses IPIP)"
	case TunnelKernel:
		what = "kernel ipip module"
	case TunnelUserspace:
		what = "userspace: TUN device and raw IPIP socket; the kernel has no ipip module"
	case TunnelEngine:
		what = "userspace engine"
	default:
		what = s.Tunnel
	}
	addr := ""
	if s.TunnelAddress.IsValid() {
		addr = " " + s.TunnelAddress.String() + "/32"
	}
	return "IPIP tunnel: tunl0" + addr + " (" + what + ")"
}

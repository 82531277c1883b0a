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

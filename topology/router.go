package topology

import (
	"net/netip"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// Daemon names the BGP daemon an external router runs.
type Daemon string

// The daemons a router may run.
const (
	// DaemonBIRD is BIRD 1.6 (Debian package bird).
	DaemonBIRD Daemon = "bird"
	// DaemonBIRD2 is BIRD 2 (Debian package bird2, which conflicts with
	// bird; it may be extracted beside it, see README).
	DaemonBIRD2 Daemon = "bird2"
	// DaemonFRR is FRRouting's bgpd with zebra (Debian package frr).
	DaemonFRR Daemon = "frr"
	// DaemonGoBGP is GoBGP's gobgpd (Debian package gobgpd), installing
	// routes through an FRR zebra (Debian package frr).
	DaemonGoBGP Daemon = "gobgpd"
)

// daemons are the valid daemon values in the order messages list them.
var daemons = []Daemon{DaemonBIRD, DaemonBIRD2, DaemonFRR, DaemonGoBGP}

// Router is an external router: a network namespace on an underlay network
// running a real BGP daemon (BIRD, FRR or GoBGP) with its own kernel routing
// table, which a small forwarder (`vrouter router run`) joins to the
// underlay fabric.
type Router struct {
	// Name names the router; it shares the namespace of node and workload
	// names.
	Name string
	// Network is the underlay network the router is on.
	Network string
	// Address is the router's address on that network; BGP runs over it.
	Address netip.Addr
	// Interface is the name of the router's underlay interface.
	Interface string
	// ASNumber is the router's AS: the lab's bgp.asNumber (iBGP with the
	// nodes) unless the file says otherwise.
	ASNumber uint32
	// Daemon is the BGP daemon the router runs.
	Daemon Daemon
	// Binary is the daemon's executable (bird, FRR's bgpd, gobgpd); empty means
	// the default place for Daemon.
	Binary string `json:",omitempty"`
	// Config is the absolute path of a daemon configuration the user
	// wrote; empty means vrouter generates one.
	Config string `json:",omitempty"`
	// Peers are the lab nodes a generated configuration peers with: those
	// a bgpPeers entry makes peer with the router's address.
	Peers []string `json:",omitempty"`
	// Announce are prefixes behind the router: the first address of each
	// is put on the router's loopback, and a generated configuration
	// announces them.
	Announce []netip.Prefix `json:",omitempty"`
	// RouteReflectorClusterID makes a generated configuration reflect
	// routes (RFC 4456) between the peer nodes, its clients, with this
	// cluster ID.
	RouteReflectorClusterID netip.Addr `json:",omitzero"`
	// Password is the TCP MD5 key (RFC 2385) of every session of a
	// generated configuration, instead of the bgpPeers entries' (e.g. a
	// wrong one, to see sessions fail).
	Password string `json:",omitempty"`
	// HoldTime is the hold time a generated configuration proposes
	// (keepalives every third of it); 0 means the lab's bgp.holdTime and
	// keepaliveTime.
	HoldTime time.Duration
	// Impairment is what the router's link does to the frames it sends
	// (delay, loss, ...), as `vrouter link set` sets it.
	Impairment config.Impairment `json:",omitzero"`
}

// Router returns the router called name.
func (l *Lab) Router(name string) (Router, bool) {
	for _, r := range l.Routers {
		if r.Name == name {
			return r, true
		}
	}
	return Router{}, false
}

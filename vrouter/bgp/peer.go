package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// PeerType is how a peer came to be configured, in Calico's words.
type PeerType int

// Peer types, as `calicoctl node status` names them.
const (
	// Mesh is a peer of the full node-to-node mesh.
	Mesh PeerType = iota
	// Global is a BGPPeer resource that applies to every node.
	Global
	// NodeSpecific is a BGPPeer resource that applies to one node.
	NodeSpecific
)

// String returns the name `calicoctl node status` shows in its PEER TYPE
// column: "node-to-node mesh", "global" or "node specific".
func (t PeerType) String() string {
	switch t {
	case Mesh:
		return "node-to-node mesh"
	case Global:
		return "global"
	case NodeSpecific:
		return "node specific"
	}
	return fmt.Sprintf("PeerType(%d)", int(t))
}

// ParsePeerType returns the peer type String names: "global", "node
// specific", or anything else for Mesh.
func ParsePeerType(s string) PeerType {
	switch s {
	case Global.String():
		return Global
	case NodeSpecific.String():
		return NodeSpecific
	}
	return Mesh
}

// descriptionPrefix is the first word of a GoBGP neighbor description, as
// Calico names its BIRD protocols and GoBGP neighbors: Mesh_192_168_50_11.
func (t PeerType) descriptionPrefix() string {
	switch t {
	case Global:
		return "Global"
	case NodeSpecific:
		return "Node"
	}
	return "Mesh"
}

// description names a neighbor the way Calico names its BIRD protocols.
func description(t PeerType, addr netip.Addr) string {
	return t.descriptionPrefix() + "_" + strings.NewReplacer(".", "_", ":", "_").Replace(addr.String())
}

// typeFromDescription recovers the PeerType from a neighbor's description.
func typeFromDescription(d string) PeerType {
	prefix, _, _ := strings.Cut(d, "_")
	switch prefix {
	case "Global":
		return Global
	case "Node":
		return NodeSpecific
	}
	return Mesh
}

// Peer is a BGP neighbor to configure on a Speaker.
type Peer struct {
	// Address is the peer's address; sessions are opened to it and
	// accepted from it.
	Address netip.Addr
	// ASN is the peer's AS number. Zero means the speaker's own AS (iBGP,
	// as in Calico's node-to-node mesh); another value makes the session
	// eBGP.
	ASN uint32
	// Type is how the peer came to be configured; it is shown by
	// Peers and WriteStatus and changes nothing on the wire.
	Type PeerType
	// Port is the peer's TCP port; 0 means 179.
	Port int
	// LocalAddr is the source address of the sessions this speaker opens;
	// the zero Addr lets the kernel choose.
	LocalAddr netip.Addr
	// Password enables TCP MD5 signatures (RFC 2385) with this key.
	Password string
	// RouteReflectorClient makes this speaker a route reflector for the
	// peer: routes learned from other iBGP peers are reflected to it.
	RouteReflectorClient bool
	// Passive makes the speaker wait for the peer to open the session
	// instead of opening it too. GoBGP stays Idle for 5 s after a session
	// fails and refuses connections meanwhile; when both ends open sessions
	// to each other, a restarted peer and one whose session just failed
	// can refuse each other's attempts for tens of seconds (and, at a few
	// hundred sessions with equal timers, forever, in lockstep). With one
	// passive end per pair there is no such dance.
	Passive bool
	// ClusterID is the route reflector cluster ID used toward a
	// RouteReflectorClient peer; the zero Addr means the router ID.
	ClusterID netip.Addr
	// SharedNetwork is the network this speaker shares with an eBGP peer.
	// Routes whose next hop is in it are sent to the peer with that next
	// hop unchanged instead of this speaker's address (RFC 4271 5.1.3's
	// third-party next hop, as BIRD does on a shared subnet): the peer
	// then forwards straight to the node that owns the route. The zero
	// Prefix, or an iBGP peer, keeps GoBGP's next-hop-self.
	SharedNetwork netip.Prefix
	// KeepOriginalNextHop sends routes to the peer with their next hop
	// unchanged, also over eBGP (Calico's BGPPeer keepOriginalNextHop):
	// a peer on the node's own network then reaches each block at the
	// node that owns it, as BIRD's third-party next hop does, instead of
	// through this speaker.
	KeepOriginalNextHop bool
}

// BGP session states, the words BIRD uses for them. PeerStatus.State is one
// of them.
const (
	StateIdle        = "Idle"
	StateConnect     = "Connect"
	StateActive      = "Active"
	StateOpenSent    = "OpenSent"
	StateOpenConfirm = "OpenConfirm"
	StateEstablished = "Established"
)

// sessionState turns GoBGP's session state into BIRD's word for it.
func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_CONNECT:
		return StateConnect
	case api.PeerState_ACTIVE:
		return StateActive
	case api.PeerState_OPENSENT:
		return StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	}
	return StateIdle
}

// PeerStatus is the state of the session with one configured peer.
type PeerStatus struct {
	// Address is the peer's address.
	Address netip.Addr
	// Type is the peer's type as configured.
	Type PeerType
	// State is the BGP session state: StateIdle, StateConnect,
	// StateActive, StateOpenSent, StateOpenConfirm or StateEstablished.
	State string
	// Since is when the session last changed state (when it came up, if
	// it is Established), with a resolution of one second: GoBGP's uptime
	// or downtime.
	Since time.Time
	// Info is "Established" while the session is, otherwise the last
	// error in BIRD's words: "Received: Peer de-configured" (a
	// NOTIFICATION received), "BGP Error: Bad peer AS" (one sent),
	// "Socket: Connection refused"; empty when there was none. A
	// NOTIFICATION received before the session is Established reads
	// "Received: NOTIFICATION": GoBGP discards its error code.
	Info string
	// GracefulRestart reports that both ends enabled graceful restart in
	// the current (or last) session.
	GracefulRestart bool
	// EndOfRIB reports that the peer has sent its End-of-RIB marker in
	// this session for every address family with graceful restart: it
	// has sent every route it has. (Only tracked with graceful restart.)
	EndOfRIB bool
	// Received and Accepted count the prefixes the peer sent that are in
	// its Adj-RIB-In, and those accepted by policy; Advertised counts the
	// prefixes sent to it, filled only by PeersAdvertised (it costs a
	// walk of the RIB per peer).
	Received, Accepted, Advertised uint64
}

// Peers returns the state of every configured peer, sorted by address.
func (s *Speaker) Peers(ctx context.Context) ([]PeerStatus, error) {
	return s.peers(ctx, false)
}

// PeersAdvertised is Peers with each peer's count of advertised prefixes
// too (PeerStatus.Advertised), for metrics: GoBGP computes it by walking
// the RIB for every peer.
func (s *Speaker) PeersAdvertised(ctx context.Context) ([]PeerStatus, error) {
	return s.peers(ctx, true)
}

func (s *Speaker) peers(ctx context.Context, advertised bool) ([]PeerStatus, error) {
	if err := s.alive(); err != nil {
		return nil, err
	}
	var out []PeerStatus
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: advertised}, func(p *api.Peer) {
		if p.GetConf() == nil {
			return
		}
		addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		st := PeerStatus{
			Address: addr,
			Type:    typeFromDescription(p.GetConf().GetDescription()),
			State:   sessionState(p.GetState().GetSessionState()),
		}
		st.GracefulRestart = p.GetGracefulRestart().GetPeerRestartTime() > 0 || anyGR(p)
		st.EndOfRIB = endOfRIB(p)
		for _, a := range p.GetAfiSafis() {
			st.Received += a.GetState().GetReceived()
			st.Accepted += a.GetState().GetAccepted()
			st.Advertised += a.GetState().GetAdvertised()
		}
		timers := p.GetTimers().GetState()
		// GoBGP stamps Uptime when the session reaches Established and
		// Downtime at every other state change (and when the peer is
		// configured).
		if st.State == StateEstablished {
			if timers.GetUptime() != nil {
				st.Since = timers.GetUptime().AsTime()
			}
			st.Info = StateEstablished
		} else {
			if timers.GetDowntime() != nil {
				st.Since = timers.GetDowntime().AsTime()
			}
			st.Info = s.events.lastError(addr)
		}
		out = append(out, st)
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: list peers: %w", err)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return out, nil
}

// anyGR reports whether graceful restart was negotiated for a family.
func anyGR(p *api.Peer) bool {
	for _, a := range p.GetAfiSafis() {
		if s := a.GetMpGracefulRestart().GetState(); s.GetEnabled() && s.GetReceived() {
			return true
		}
	}
	return false
}

// endOfRIB reports whether End-of-RIB was received for every family with
// graceful restart (false when there is none).
func endOfRIB(p *api.Peer) bool {
	n := 0
	for _, a := range p.GetAfiSafis() {
		s := a.GetMpGracefulRestart().GetState()
		if !s.GetEnabled() || !s.GetReceived() {
			continue
		}
		if !s.GetEndOfRibReceived() {
			return false
		}
		n++
	}
	return n > 0
}

package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// ErrStopped is returned by the methods of a Speaker that has been stopped.
var ErrStopped = errors.New("bgp: speaker stopped")

// Config configures a Speaker.
type Config struct {
	// ASN is the speaker's AS number; Calico's default is 64512.
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address. The zero Addr means
	// ListenAddr, which must then be IPv4.
	RouterID netip.Addr
	// ListenAddr is the address to accept sessions on; the zero Addr
	// means every address (0.0.0.0 and ::).
	ListenAddr netip.Addr
	// ListenPort is the TCP port to accept sessions on: 0 means 179, -1
	// means not to listen at all (the speaker only opens sessions).
	ListenPort int
	// KeepaliveTime and HoldTime are proposed to every peer, rounded up to
	// whole seconds. Zero means GoBGP's defaults: a hold time of 90 s and
	// a keepalive time of a third of the hold time.
	KeepaliveTime, HoldTime time.Duration
	// ConnectRetry is how long to wait between attempts to open a
	// session, and before trying again after a session failed. Zero means
	// 5 s. (GoBGP's own defaults, 120 s and 30 s, make a lab slow to
	// converge after a node restarts.)
	ConnectRetry time.Duration
	// GracefulRestart enables BGP graceful restart (RFC 4724) with every
	// peer, for its address family: when a session with a peer that
	// also has it enabled fails (the peer's process died, its TCP
	// connection broke, its hold timer expired), the speaker keeps the
	// peer's routes, marked stale, until the peer is back and has sent
	// End-of-RIB, or for at most the restart time the peer asked for.
	GracefulRestart bool
	// RestartTime is the time the speaker asks its peers to keep its
	// routes while it restarts; zero means 120 s (BIRD's default).
	RestartTime time.Duration
	// Logger receives the speaker's logs; nil discards them. GoBGP's
	// informational messages are logged at slog.LevelDebug, except peers
	// coming up and going down (slog.LevelInfo); its debug messages at
	// slog.LevelDebug-4.
	Logger *slog.Logger
}

// defaultRestartTime is used when Config.RestartTime is zero.
const defaultRestartTime = 120 * time.Second

// defaultConnectRetry is used when Config.ConnectRetry is zero.
const defaultConnectRetry = 5 * time.Second

// Speaker is an embedded BGP speaker: a GoBGP server with the IPv4 and
// IPv6 unicast families, driven through net/netip types. Its methods are
// safe for concurrent use.
type Speaker struct {
	cfg    Config
	log    *slog.Logger
	srv    *server.BgpServer
	events *peerEvents

	mu        sync.Mutex
	stopped   bool
	announced map[netip.Prefix]*api.Path
	watches   map[*watch]struct{}
	policies  map[string]bool // export policies defined, by name
	keepNH    bool            // the keep-next-hop export policy is installed
}

// Start starts a speaker and, unless Config.ListenPort is -1, its listener.
// ctx bounds the start only; the speaker runs until Stop.
//
// GoBGP keeps its route selection options in package variables that
// StartBgp writes and every running server reads; starting a speaker while
// another one in the same process is exchanging routes is therefore a data
// race inside GoBGP. One speaker per process (the agent) is unaffected;
// tests start all their speakers before peering them.
func Start(ctx context.Context, cfg Config) (*Speaker, error) {
	if cfg.ASN == 0 {
		return nil, errors.New("bgp: ASN is required")
	}
	if !cfg.RouterID.IsValid() {
		cfg.RouterID = cfg.ListenAddr
	}
	if !cfg.RouterID.Unmap().Is4() {
		return nil, fmt.Errorf("bgp: router ID must be an IPv4 address, got %v", cfg.RouterID)
	}
	cfg.RouterID = cfg.RouterID.Unmap()
	if cfg.ListenPort < -1 || cfg.ListenPort > math.MaxUint16 {
		return nil, fmt.Errorf("bgp: invalid listen port %d", cfg.ListenPort)
	}
	if cfg.ConnectRetry <= 0 {
		cfg.ConnectRetry = defaultConnectRetry
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	s := &Speaker{
		cfg:       cfg,
		log:       log,
		events:    newPeerEvents(),
		announced: make(map[netip.Prefix]*api.Path),
		watches:   make(map[*watch]struct{}),
	}
	s.srv = server.NewBgpServer(server.LoggerOption(&gobgpLogger{log: log, events: s.events}))
	// Serve is GoBGP's main loop. In GoBGP v3 it never returns, even after
	// Stop: this goroutine (and the idle server it holds) outlives the
	// speaker.
	go s.srv.Serve()

	port := int32(cfg.ListenPort)
	if port == 0 {
		port = 179
	}
	global := &api.Global{
		Asn:        cfg.ASN,
		RouterId:   cfg.RouterID.String(),
		ListenPort: port,
	}
	if cfg.ListenAddr.IsValid() {
		global.ListenAddresses = []string{cfg.ListenAddr.Unmap().String()}
	}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		s.srv.Stop()
		return nil, fmt.Errorf("bgp: start: %w", err)
	}
	attrs := []any{"asn", cfg.ASN, "router-id", cfg.RouterID}
	if cfg.ListenPort >= 0 {
		listen := fmt.Sprintf("*:%d", port)
		if cfg.ListenAddr.IsValid() {
			listen = netip.AddrPortFrom(cfg.ListenAddr.Unmap(), uint16(port)).String()
		}
		attrs = append(attrs, "listen", listen)
	}
	log.Info("BGP speaker started", attrs...)
	return s, nil
}

// alive returns ErrStopped once Stop has been called.
func (s *Speaker) alive() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	return nil
}

// seconds rounds a duration up to whole seconds, GoBGP's timer unit; zero
// (or less) stays zero, which GoBGP reads as its default.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}

// AddPeer configures a peer. The speaker opens sessions to it (and accepts
// them from it, if listening) until DeletePeer or Stop.
func (s *Speaker) AddPeer(ctx context.Context, p Peer) error {
	if err := s.alive(); err != nil {
		return err
	}
	if !p.Address.IsValid() {
		return errors.New("bgp: peer address is required")
	}
	if p.Port < 0 || p.Port > math.MaxUint16 {
		return fmt.Errorf("bgp: peer %v: invalid port %d", p.Address, p.Port)
	}
	addr := p.Address.Unmap()
	asn := p.ASN
	if asn == 0 {
		asn = s.cfg.ASN
	}
	peer := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: addr.String(),
			PeerAsn:         asn,
			Description:     description(p.Type, addr),
			AuthPassword:    p.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               seconds(s.cfg.HoldTime),
			KeepaliveInterval:      seconds(s.cfg.KeepaliveTime),
			ConnectRetry:           seconds(s.cfg.ConnectRetry),
			IdleHoldTimeAfterReset: seconds(s.cfg.ConnectRetry),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port), PassiveMode: p.Passive},
	}
	if p.LocalAddr.IsValid() {
		peer.Transport.LocalAddress = p.LocalAddr.Unmap().String()
	}
	if s.cfg.GracefulRestart {
		restart := seconds(s.cfg.RestartTime)
		if restart == 0 {
			restart = uint64(defaultRestartTime / time.Second)
		}
		family := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
		if addr.Is6() {
			family.Afi = api.Family_AFI_IP6
		}
		peer.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(restart)}
		peer.AfiSafis = []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: family, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}},
		}}
	}
	if p.RouteReflectorClient {
		peer.RouteReflector = &api.RouteReflector{RouteReflectorClient: true}
		if p.ClusterID.IsValid() {
			peer.RouteReflector.RouteReflectorClusterId = p.ClusterID.Unmap().String()
		}
	}
	if p.SharedNetwork.IsValid() && asn != s.cfg.ASN {
		if err := s.keepNextHop(ctx, p.SharedNetwork.Masked(), addr); err != nil {
			return fmt.Errorf("bgp: add peer %v: %w", addr, err)
		}
	}
	if p.KeepOriginalNextHop {
		if err := s.keepOriginalNextHop(ctx, addr); err != nil {
			return fmt.Errorf("bgp: add peer %v: %w", addr, err)
		}
	}
	s.events.forget(addr)
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
		return fmt.Errorf("bgp: add peer %v: %w", addr, err)
	}
	return nil
}

// keepNextHop arranges for routes whose next hop is in network to be sent
// to the eBGP peer addr with that next hop unchanged. GoBGP applies one
// export policy to all peers that are not route-server clients (the global
// one), so the policy matches the peer by a neighbor set, one per network,
// to which each such peer is added.
func (s *Speaker) keepNextHop(ctx context.Context, network netip.Prefix, addr netip.Addr) error {
	name := "keep-next-hop-" + network.String()
	neighbors := &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: name, List: []string{netip.PrefixFrom(addr, addr.BitLen()).String()}}
	if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: neighbors}); err != nil {
		return fmt.Errorf("add %v to neighbor set %s: %w", addr, name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policies[name] {
		return nil
	}
	policy := &api.Policy{Name: name, Statements: []*api.Statement{{
		Name: name,
		Conditions: &api.Conditions{
			NeighborSet:   &api.MatchSet{Type: api.MatchSet_ANY, Name: name},
			NextHopInList: []string{network.String()},
		},
		Actions: &api.Actions{
			RouteAction: api.RouteAction_ACCEPT,
			Nexthop:     &api.NexthopAction{Unchanged: true},
		},
	}}}
	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: policy}); err != nil {
		return fmt.Errorf("define policy %s: %w", name, err)
	}
	assign := &api.PolicyAssignment{Name: "global", Direction: api.PolicyDirection_EXPORT,
		Policies: []*api.Policy{{Name: name}}, DefaultAction: api.RouteAction_ACCEPT}
	if err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: assign}); err != nil {
		return fmt.Errorf("assign export policy %s: %w", name, err)
	}
	if s.policies == nil {
		s.policies = map[string]bool{}
	}
	s.policies[name] = true
	return nil
}

// DeletePeer removes a peer, closing its session with a Cease NOTIFICATION
// (Peer De-configured); the routes learned from it are withdrawn.
func (s *Speaker) DeletePeer(ctx context.Context, addr netip.Addr) error {
	if err := s.alive(); err != nil {
		return err
	}
	addr = addr.Unmap()
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		return fmt.Errorf("bgp: delete peer %v: %w", addr, err)
	}
	s.events.forget(addr)
	return nil
}

// Announce originates prefix with origin IGP and the given next hop, which
// iBGP peers keep unchanged (Calico announces a node's blocks with the
// node's address as next hop). The zero Addr means next-hop-self: the
// local address of each session. Announcing a prefix again replaces the
// previous announcement.
func (s *Speaker) Announce(ctx context.Context, prefix netip.Prefix, nextHop netip.Addr) error {
	prefix = prefix.Masked()
	path, err := newPath(prefix, nextHop)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if _, err := s.srv.AddPath(ctx, &api.AddPathRequest{Path: path}); err != nil {
		return fmt.Errorf("bgp: announce %v: %w", prefix, err)
	}
	s.announced[prefix] = path
	return nil
}

// Withdraw withdraws a prefix announced by Announce; withdrawing a prefix
// that is not announced does nothing.
func (s *Speaker) Withdraw(ctx context.Context, prefix netip.Prefix) error {
	prefix = prefix.Masked()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	path, ok := s.announced[prefix]
	if !ok {
		return nil
	}
	// A DeletePathRequest without a path would delete every path of the
	// family: always name the one to withdraw.
	if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{Family: path.Family, Path: path}); err != nil {
		return fmt.Errorf("bgp: withdraw %v: %w", prefix, err)
	}
	delete(s.announced, prefix)
	return nil
}

// Stop closes every session (with a Cease NOTIFICATION, Peer
// De-configured), closes the listener and ends every Watch; no Watch
// function is called once Stop has returned. Stop waits for a Watch
// function that is running, so it must not be called from one. Calling
// Stop again does nothing.
func (s *Speaker) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	watches := make([]*watch, 0, len(s.watches))
	for w := range s.watches {
		watches = append(watches, w)
	}
	clear(s.watches)
	s.mu.Unlock()

	for _, w := range watches {
		w.close()
	}
	s.srv.Stop()
	s.log.Info("BGP speaker stopped", "router-id", s.cfg.RouterID)
}

// keepNextHopPolicy names the neighbor set and the global export policy
// that keep the next hop of routes sent to KeepOriginalNextHop peers.
const keepNextHopPolicy = "vrouter-keep-original-next-hop"

// keepOriginalNextHop adds addr to the peers routes are exported to with their
// next hop unchanged, installing the export policy on first use. (GoBGP
// applies export policies globally; the policy's neighbor condition
// matches the peer a route is sent to.)
func (s *Speaker) keepOriginalNextHop(ctx context.Context, addr netip.Addr) error {
	set := &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: keepNextHopPolicy,
		List: []string{netip.PrefixFrom(addr, addr.BitLen()).String()}}
	if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set}); err != nil {
		return fmt.Errorf("neighbor set: %w", err)
	}
	s.mu.Lock()
	installed := s.keepNH
	s.keepNH = true
	s.mu.Unlock()
	if installed {
		return nil
	}
	policy := &api.Policy{Name: keepNextHopPolicy, Statements: []*api.Statement{{
		Name:       keepNextHopPolicy,
		Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: keepNextHopPolicy}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_NONE, Nexthop: &api.NexthopAction{Unchanged: true}},
	}}}
	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: policy}); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	assign := &api.PolicyAssignment{Name: "global", Direction: api.PolicyDirection_EXPORT,
		Policies: []*api.Policy{{Name: keepNextHopPolicy}}, DefaultAction: api.RouteAction_ACCEPT}
	if err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: assign}); err != nil {
		return fmt.Errorf("policy assignment: %w", err)
	}
	return nil
}

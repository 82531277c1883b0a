package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/bgp"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// The cluster from the datastore (config.Node.MeshFromDatastore): the
// agent registers its Node resource in etcd and watches every resource;
// at each change it computes the BGP peers the node should have (the
// node-to-node mesh over every registered node, unless the default
// BGPConfiguration turns it off, plus the BGPPeer resources that apply to
// the node) and adds or deletes sessions to match, reprograms routes when
// a pool's ipipMode changes and sets the log level. The peers of the
// config's own list that are not of the mesh stay as they are.

// meshType is config.BGPPeer.Type of a mesh session.
const meshType = "node-to-node mesh"

// bgpPeer is the speaker's peer for a configured one.
func (a *Agent) bgpPeer(p config.BGPPeer, isNode bool) bgp.Peer {
	addr := a.cfg.Prefix.Addr()
	peer := bgp.Peer{Address: p.Address, ASN: p.ASN, Type: bgp.ParsePeerType(p.Type), Password: p.Password,
		RouteReflectorClient: p.RouteReflectorClient, ClusterID: p.ClusterID, KeepOriginalNextHop: p.KeepOriginalNextHop}
	if a.cfg.Prefix.Masked().Contains(p.Address) {
		peer.SharedNetwork = a.cfg.Prefix.Masked()
	}
	// Between two nodes, the one with the lower address opens the session
	// and the other waits: no connection collisions, which at a few
	// hundred sessions kept pairs from ever coming up. Sessions with a
	// password stay active on both ends: a password mismatch is then
	// visible on both (TCPMD5Failure counts on the receiver).
	if isNode && p.Address.Less(addr) && p.Password == "" {
		peer.Passive = true
	}
	return peer
}

// peerList returns the BGP peers the node has now: the config's, or,
// with the mesh from the datastore, those last computed from it.
func (a *Agent) peerList() []config.BGPPeer {
	if p := a.dynPeers.Load(); p != nil {
		return *p
	}
	return a.cfg.BGP.Peers
}

// staticPeers are the config's peers that stay whatever the datastore
// says: all of them, or, with the mesh from the datastore, those not of
// the mesh.
func (a *Agent) staticPeers() []config.BGPPeer {
	if !a.cfg.MeshFromDatastore {
		return a.cfg.BGP.Peers
	}
	var out []config.BGPPeer
	for _, p := range a.cfg.BGP.Peers {
		if p.Type != meshType && p.Type != "" {
			out = append(out, p)
		}
	}
	return out
}

// nodeResource is the node's Node resource as it registers it.
func (a *Agent) nodeResource() *resources.Node {
	asn := a.cfg.BGP.ASN
	n := &resources.Node{
		TypeMeta: resources.TypeMeta{Kind: resources.KindNode},
		Metadata: resources.Metadata{Name: a.cfg.Node, Labels: a.cfg.Labels},
		Spec: resources.NodeSpec{BGP: &resources.NodeBGPSpec{
			IPv4Address: a.cfg.Prefix.String(),
			ASNumber:    &asn,
		}},
	}
	if a.cfg.RouteReflectorClusterID.IsValid() {
		n.Spec.BGP.RouteReflectorClusterID = a.cfg.RouteReflectorClusterID.String()
	}
	a.mu.Lock()
	if a.tunnelAddr.IsValid() {
		n.Spec.BGP.IPv4IPIPTunnelAddr = a.tunnelAddr.String()
	}
	a.mu.Unlock()
	return n
}

// register writes the node's Node resource, keeping labels set in etcd
// that the config does not set; it retries until it succeeds or ctx ends.
func (a *Agent) register(ctx context.Context) {
	for {
		err := a.registerOnce(ctx)
		if err == nil {
			a.log.Info("node registered in etcd", "key", resources.Key(resources.KindNode, a.cfg.Node))
			return
		}
		a.log.Error("register the node in etcd (retrying)", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (a *Agent) registerOnce(ctx context.Context) error {
	n := a.nodeResource()
	old, err := a.res.Get(ctx, resources.KindNode, a.cfg.Node)
	switch {
	case err == nil:
		labels := map[string]string{}
		for k, v := range old.Meta().Labels {
			labels[k] = v
		}
		for k, v := range n.Metadata.Labels {
			labels[k] = v
		}
		if len(labels) > 0 {
			n.Metadata.Labels = labels
		}
	case !errors.Is(err, resources.ErrNotFound):
		return err
	}
	return a.res.Put(ctx, n)
}

// clusterPools returns the pools to run with: those in etcd if there are
// any (taking the MTU of the config's pool of the same CIDR); otherwise
// the config's, which it writes to etcd for the other nodes and for
// `vrouter get ippools`.
func (a *Agent) clusterPools(ctx context.Context, snap *resources.Snapshot) []config.Pool {
	if len(snap.IPPools) == 0 {
		for _, p := range a.cfg.Pools {
			r := &resources.IPPool{TypeMeta: resources.TypeMeta{Kind: resources.KindIPPool}, Metadata: resources.Metadata{Name: p.Name},
				Spec: resources.IPPoolSpec{CIDR: p.CIDR.String(), BlockSize: p.BlockSize, IPIPMode: p.IPIPMode, NATOutgoing: true}}
			if err := a.res.Create(ctx, r); err != nil && !errors.Is(err, resources.ErrExists) {
				a.log.Error("write the config's pool to etcd", "pool", p.Name, "err", err)
			}
		}
		return a.cfg.Pools
	}
	var out []config.Pool
	for _, r := range snap.IPPools {
		if r.Spec.Disabled {
			continue
		}
		p := config.Pool{Name: r.Metadata.Name, CIDR: r.Prefix(), BlockSize: r.Spec.BlockSize, IPIPMode: r.Spec.IPIPMode, MTU: a.cfg.MTU}
		if p.BlockSize == 0 {
			p.BlockSize = 26
		}
		if p.IPIPMode == "" {
			p.IPIPMode = resources.IPIPNever
		}
		for _, c := range a.cfg.Pools {
			if c.CIDR == p.CIDR && c.MTU != 0 {
				p.MTU = c.MTU
			}
		}
		out = append(out, p)
	}
	return out
}

// watchCluster applies the datastore's resources until ctx ends.
func (a *Agent) watchCluster(ctx context.Context) {
	a.res.Watch(ctx, func(snap *resources.Snapshot) { a.applyCluster(ctx, snap) }, resources.WatchOptions{
		OnError: func(err error) { a.log.Warn("etcd resources", "err", err) },
	})
}

// applyCluster makes the node's peers, pools and log level what snap
// says. It runs on the watch's goroutine only.
func (a *Agent) applyCluster(ctx context.Context, snap *resources.Snapshot) {
	def := snap.BGPConfiguration("default")
	own := snap.BGPConfiguration("node." + a.cfg.Node)
	for _, c := range []*resources.BGPConfiguration{def, own} {
		if c != nil && c.Spec.LogSeverityScreen != "" && a.logLevel != nil {
			a.logLevel.Set(slogLevel(c.Spec.LogSeverityScreen))
		}
	}
	a.learnNodes(snap)
	want := a.desiredPeers(snap)
	if err := a.setPeers(ctx, want); err != nil {
		a.log.Error("apply the BGP peers from etcd", "err", err)
	}
	a.applyPools(ctx, snap)
	a.applyClusterPolicies(snap)
}

// slogLevel maps Calico's logSeverityScreen to a slog level.
func slogLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warning":
		return slog.LevelWarn
	case "error", "fatal":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// nodeAS returns a node's AS: its own, the cluster's, or this node's
// config's.
func (a *Agent) nodeAS(n *resources.Node, def *resources.BGPConfiguration) uint32 {
	if n.Spec.BGP != nil && n.Spec.BGP.ASNumber != nil {
		return *n.Spec.BGP.ASNumber
	}
	if def != nil && def.Spec.ASNumber != nil {
		return *def.Spec.ASNumber
	}
	return a.cfg.BGP.ASN
}

// desiredPeers computes the node's peers from snap.
func (a *Agent) desiredPeers(snap *resources.Snapshot) []config.BGPPeer {
	def := snap.BGPConfiguration("default")
	me := snap.Node(a.cfg.Node)
	if me == nil {
		me = a.nodeResource() // not registered yet
	}
	myAddr := a.cfg.Prefix.Addr()
	byAddr := map[netip.Addr]config.BGPPeer{}
	var order []netip.Addr
	add := func(p config.BGPPeer) {
		if p.Address == myAddr || !p.Address.IsValid() {
			return
		}
		if _, ok := byAddr[p.Address]; !ok {
			order = append(order, p.Address)
		}
		byAddr[p.Address] = p
	}
	mesh := def == nil || def.Spec.NodeToNodeMeshEnabled == nil || *def.Spec.NodeToNodeMeshEnabled
	if mesh {
		for _, n := range snap.Nodes {
			pfx, ok := n.Address()
			if n.Metadata.Name == a.cfg.Node || !ok {
				continue
			}
			add(config.BGPPeer{Address: pfx.Addr(), ASN: a.nodeAS(n, def), Type: meshType, Node: n.Metadata.Name})
		}
	}
	matches := func(p *resources.BGPPeer, n *resources.Node) bool {
		switch {
		case p.Spec.Node != "":
			return p.Spec.Node == n.Metadata.Name
		case p.Spec.NodeSelector != "":
			sel, err := resources.ParseSelector(p.Spec.NodeSelector)
			return err == nil && sel.Matches(n.Metadata.Labels)
		}
		return true // global
	}
	myClusterID, iAmRR := me.ClusterID()
	for _, p := range snap.BGPPeers {
		typ := bgp.Global.String()
		if p.Spec.Node != "" || p.Spec.NodeSelector != "" {
			typ = bgp.NodeSpecific.String()
		}
		if p.Spec.PeerIP != "" {
			addr, err := p.PeerAddr()
			if err != nil || !matches(p, me) {
				continue
			}
			// No Node, even if a registered node has the address: the
			// other end may have no peer for this one, so this end opens
			// the session whatever the addresses.
			add(config.BGPPeer{Address: addr, ASN: p.Spec.ASNumber, Type: typ, Name: p.Metadata.Name, KeepOriginalNextHop: p.Spec.KeepOriginalNextHop})
			continue
		}
		sel, err := resources.ParseSelector(p.Spec.PeerSelector)
		if err != nil {
			continue
		}
		// Peering by selector is symmetric, as in Calico: the nodes the
		// peer applies to peer with the nodes it selects, and these with
		// those.
		for _, n := range snap.Nodes {
			if n.Metadata.Name == a.cfg.Node {
				continue
			}
			pfx, ok := n.Address()
			if !ok {
				continue
			}
			if !(matches(p, me) && sel.Matches(n.Metadata.Labels)) && !(sel.Matches(me.Metadata.Labels) && matches(p, n)) {
				continue
			}
			cp := config.BGPPeer{Address: pfx.Addr(), ASN: a.nodeAS(n, def), Type: typ, Node: n.Metadata.Name, Name: p.Metadata.Name}
			if _, peerIsRR := n.ClusterID(); iAmRR && !peerIsRR {
				cp.RouteReflectorClient, cp.ClusterID = true, myClusterID
			}
			add(cp)
		}
	}
	for _, p := range a.staticPeers() {
		add(p)
	}
	out := make([]config.BGPPeer, 0, len(order))
	for _, addr := range order {
		out = append(out, byAddr[addr])
	}
	slices.SortFunc(out, func(x, y config.BGPPeer) int { return x.Address.Compare(y.Address) })
	return out
}

// setPeers adds, changes and deletes BGP sessions so that the node has
// exactly want.
func (a *Agent) setPeers(ctx context.Context, want []config.BGPPeer) error {
	a.peersMu.Lock()
	defer a.peersMu.Unlock()
	have := map[netip.Addr]bgp.Peer{}
	for addr, p := range a.peers {
		have[addr] = p
	}
	var errs []error
	wantBGP := map[netip.Addr]bgp.Peer{}
	for _, p := range want {
		wantBGP[p.Address] = a.bgpPeer(p, p.Node != "")
	}
	for addr, old := range have {
		if np, ok := wantBGP[addr]; ok && np == old {
			continue
		}
		if err := a.bgp.DeletePeer(ctx, addr); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(a.peers, addr)
		if _, ok := wantBGP[addr]; !ok {
			a.log.Info("BGP peer removed", "peer", addr)
		}
	}
	for _, p := range want {
		np := wantBGP[p.Address]
		if old, ok := a.peers[p.Address]; ok && old == np {
			continue
		}
		if err := a.bgp.AddPeer(ctx, np); err != nil {
			errs = append(errs, err)
			continue
		}
		a.peers[p.Address] = np
		a.log.Info("BGP peer added", "peer", p.Address, "node", p.Node, "type", p.Type, "asn", p.ASN)
	}
	cur := make([]config.BGPPeer, 0, len(want))
	for _, p := range want {
		if _, ok := a.peers[p.Address]; ok {
			cur = append(cur, p)
		}
	}
	a.dynPeers.Store(&cur)
	a.mu.Lock()
	a.saveCacheLocked()
	a.mu.Unlock()
	return errors.Join(errs...)
}

// applyPools applies an edited pool's ipipMode; other changes (pools
// added, removed, resized) need a restart and are logged.
func (a *Agent) applyPools(ctx context.Context, snap *resources.Snapshot) {
	if len(snap.IPPools) == 0 {
		return
	}
	cur := a.currentPools()
	next := slices.Clone(cur)
	changed := false
	for i, p := range next {
		found := false
		for _, r := range snap.IPPools {
			if r.Prefix() != p.CIDR {
				continue
			}
			found = true
			mode := r.Spec.IPIPMode
			if mode == "" {
				mode = resources.IPIPNever
			}
			if mode != p.IPIPMode {
				next[i].IPIPMode, changed = mode, true
			}
		}
		if !found {
			a.log.Warn("pool removed from etcd: the node keeps it until it restarts", "pool", p.Name, "cidr", p.CIDR)
		}
	}
	for _, r := range snap.IPPools {
		if !slices.ContainsFunc(cur, func(p config.Pool) bool { return p.CIDR == r.Prefix() }) && !r.Spec.Disabled {
			a.log.Warn("pool added in etcd: the node takes it when it restarts", "pool", r.Metadata.Name, "cidr", r.Spec.CIDR)
		}
	}
	if !changed {
		return
	}
	if err := a.setPools(ctx, next); err != nil {
		a.log.Error("apply the pools from etcd", "err", err)
		return
	}
	a.log.Info("pools from etcd applied", "pools", fmt.Sprint(next))
	// tunl0 may have come up: its address goes into the Node resource.
	if err := a.registerOnce(ctx); err != nil {
		a.log.Error("update the node's registration", "err", err)
	}
}

// nodeAdder is a dataplane that learns nodes at run time (the userspace
// engine: its fabric neighbours and tunl0's sources).
type nodeAdder interface {
	AddNodes(network netip.Prefix, nodes map[netip.Addr]string) error
}

// learnNodes hands the registered nodes to a dataplane that needs them.
func (a *Agent) learnNodes(snap *resources.Snapshot) {
	na, ok := a.dp.(nodeAdder)
	if !ok {
		return
	}
	nodes := map[netip.Addr]string{}
	for _, n := range snap.Nodes {
		if pfx, ok := n.Address(); ok && n.Metadata.Name != a.cfg.Node {
			nodes[pfx.Addr()] = n.Metadata.Name
		}
	}
	if err := na.AddNodes(a.cfg.Prefix.Masked(), nodes); err != nil {
		a.log.Error("learn the registered nodes", "err", err)
	}
}

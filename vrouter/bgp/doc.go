// Package bgp is vrouter's BGP speaker: GoBGP (github.com/osrg/gobgp/v3)
// embedded in the node agent, driven through net/netip types, doing what
// BIRD does for a Calico node.
//
// Each node runs one Speaker in its AS (Calico's default is 64512),
// listening on the node address. It peers with the other nodes in a full
// iBGP mesh ("node-to-node mesh") or with configured peers ("global",
// "node specific"), announces the node's IPAM blocks with the node's own
// address as next hop (iBGP passes the next hop on unchanged, so every node
// routes a block straight to the node that owns it), and reports the best
// paths it learns, for the agent to install in its FIB:
//
//	s, err := bgp.Start(ctx, bgp.Config{ASN: 64512, ListenAddr: node})
//	if err != nil { ... }
//	defer s.Stop()
//	s.Watch(ctx, func(u bgp.RouteUpdate) {
//		// u.Prefix via u.NextHop, or u.Withdrawn
//	})
//	s.AddPeer(ctx, bgp.Peer{Address: other, Type: bgp.Mesh})
//	s.Announce(ctx, netip.MustParsePrefix("10.244.166.128/26"), node)
//
// Peers reports each session the way BIRD does (state, since, last
// error), and WriteStatus prints it exactly as `calicoctl node status`
// does.
//
// eBGP (a peer ASN other than the speaker's), route reflection
// (Peer.RouteReflectorClient, Peer.ClusterID) and TCP MD5 signatures
// (Peer.Password) are passed through to GoBGP's neighbor configuration.
package bgp

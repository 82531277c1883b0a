// Package config holds the configuration files of the per-node processes
// a lab starts: a node agent's (Node, read by `vrouter node run`) and an
// external router forwarder's (Router, read by `vrouter router run`),
// written by topology/lab as JSON, plus the names both sides derive from
// them (workload port names). Every path a process uses (control socket,
// fabric directory, files) is in its config: topology/lab computes them.
// It depends on nothing but the standard library, so the lab that writes
// the files and the processes that read them share it without importing
// each other.
package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"time"
)

// Node is everything one node agent needs. Deploy writes it as JSON.
type Node struct {
	Lab       string `json:"lab"`
	Node      string `json:"node"`
	Namespace string `json:"namespace"` // the node's network namespace

	// The agent's files, in the lab's state directory (topology/lab
	// computes every path there): its control socket, the fabric's
	// directory and where it keeps the routes it learned for a graceful
	// restart.
	Control string `json:"control"`
	Fabric  string `json:"fabric"`
	Routes  string `json:"routes"`

	// Underlay: the node's address on its network and the interface
	// (a TUN device in the node namespace) that carries it.
	Network   string       `json:"network"`
	Prefix    netip.Prefix `json:"prefix"` // node address with the network's length
	Interface string       `json:"interface"`
	MTU       int          `json:"mtu"`
	// Neighbors maps every underlay address on the network to the node that
	// owns it, as ARP would.
	Neighbors []Neighbor `json:"neighbors"`
	// Gateway is the node's default gateway on its network (`default via
	// GATEWAY dev ens33 proto static`): how it reaches nodes on other
	// networks. Invalid: none.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// TunnelSources are the underlay addresses of every lab node, on
	// every network: the outer sources tunl0 decapsulates. Empty means
	// the nodes among Neighbors.
	TunnelSources []netip.Addr `json:"tunnelSources,omitempty"`
	// LinkDown starts the agent with its underlay link down (set by
	// `vrouter link set NODE down`, so that a restart keeps the cable
	// pulled).
	LinkDown bool `json:"linkDown,omitempty"`

	Pools     []Pool `json:"pools"`
	Datastore string `json:"datastore"` // bbolt file shared by the lab's nodes
	// StrictAffinity forbids borrowing addresses from other nodes' blocks.
	StrictAffinity bool       `json:"strictAffinity,omitempty"`
	BGP            BGP        `json:"bgp"`
	Workloads      []Workload `json:"workloads"`
}

// NeighborTable maps each neighbour's address to its node, as a fabric
// endpoint's neighbour table wants it.
func NeighborTable(ns []Neighbor) map[netip.Addr]string {
	m := make(map[netip.Addr]string, len(ns))
	for _, n := range ns {
		m[n.Address] = n.Node
	}
	return m
}

// Neighbor is an underlay address and the node that owns it.
type Neighbor struct {
	Node    string     `json:"node"`
	Address netip.Addr `json:"address"`
}

// Pool is an IP pool as the agent sees it.
type Pool struct {
	Name      string       `json:"name"`
	CIDR      netip.Prefix `json:"cidr"`
	BlockSize int          `json:"blockSize"`
	IPIPMode  string       `json:"ipipMode"`
	MTU       int          `json:"mtu,omitempty"` // of its workloads' interfaces; 0: the underlay's
}

// BGP is the node's BGP speaker configuration.
type BGP struct {
	ASN           uint32        `json:"asNumber"`
	KeepaliveTime time.Duration `json:"keepaliveTime"`
	HoldTime      time.Duration `json:"holdTime"`
	// GracefulRestart enables BGP graceful restart: peers keep this node's
	// routes while its agent restarts, and a restarted agent forwards
	// along the routes it had until BGP brings them back.
	GracefulRestart bool          `json:"gracefulRestart,omitempty"`
	RestartTime     time.Duration `json:"restartTime,omitempty"`
	Peers           []BGPPeer     `json:"peers"`
	// RouteNodes are the nodes whose blocks this node learns over BGP,
	// directly or through a route reflector; the agent is ready once they
	// are routed. Empty means the nodes of Peers.
	RouteNodes []string `json:"routeNodes,omitempty"`
}

// BGPPeer is one configured BGP session.
type BGPPeer struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asNumber"`
	Type    string     `json:"type"`           // "node-to-node mesh", "global", "node specific"
	Node    string     `json:"node,omitempty"` // the lab node at Address, if any
	// Name is the BGPPeer resource the peer comes from; empty for the mesh.
	Name string `json:"name,omitempty"`
	// Password is the TCP MD5 key (RFC 2385) of the session.
	Password string `json:"password,omitempty"`
	// RouteReflectorClient makes this node a route reflector for the peer,
	// with cluster ID ClusterID.
	RouteReflectorClient bool       `json:"routeReflectorClient,omitempty"`
	ClusterID            netip.Addr `json:"clusterID,omitzero"`
	// KeepOriginalNextHop sends routes to the peer with their next hop
	// unchanged (set for peers outside the lab on the node's network, so
	// each block is reached at its own node, as BIRD does).
	KeepOriginalNextHop bool `json:"keepOriginalNextHop,omitempty"`
}

// Workload is a workload namespace whose eth0 this node's engine serves.
type Workload struct {
	Name      string     `json:"name"`
	Namespace string     `json:"namespace"`
	Address   netip.Addr `json:"address,omitempty"` // fixed address; zero for IPAM's choice
}

// LoadNode reads a node config file.
func LoadNode(path string) (*Node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read node config: %w", err)
	}
	var c Node
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("parse node config %s: %w", path, err)
	}
	if c.Node == "" || !c.Prefix.IsValid() || c.Interface == "" {
		return nil, fmt.Errorf("node config %s: node, prefix and interface are required", path)
	}
	if c.Control == "" || c.Fabric == "" || c.Routes == "" {
		return nil, fmt.Errorf("node config %s: control, fabric and routes are required (a config from an older vrouter: destroy the lab and deploy it again)", path)
	}
	return &c, nil
}

// WriteFile writes c as indented JSON.
func (c *Node) WriteFile(path string) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

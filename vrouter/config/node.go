// Package config holds the configuration files of the per-node processes
// a lab starts: a node agent's (Node, read by `vrouter node run`) and an
// external router forwarder's (Router, read by `vrouter router run`),
// written by topology/lab as JSON, plus the names both sides derive from
// them (workload port names). A real host's node file
// (/etc/vrouter/node.yaml) is the same Node in YAML, checked field by
// field (ParseNodeYAML, LoadNodeFile). Every path an agent uses comes
// from its Node (paths.go): a lab sets each one (topology/lab computes
// them), a host's derive from its StateDir. It depends on nothing but the
// standard library and the YAML decoder, so the lab that writes the files
// and the processes that read them share it without importing each other.
package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Node is everything one node agent needs. Deploy writes it as JSON.
type Node struct {
	Lab  string `json:"lab"`
	Node string `json:"node"`
	// StateDir is where a host's agent keeps its files (the node file's
	// stateDir); the paths below that are empty derive from it (paths.go).
	StateDir  string `json:"stateDir,omitempty"`
	Namespace string `json:"namespace"` // the node's network namespace
	// Dataplane is what forwards the node's packets: DataplaneUserspace
	// (the default, also when empty) or DataplaneKernel.
	Dataplane string `json:"dataplane,omitempty"`

	// The agent's files: its control socket, the fabric's directory,
	// where it keeps the routes it learned (for a graceful restart) and
	// the workloads added through its API. A lab sets each (topology/lab
	// computes every path of its state directory); empty ones derive from
	// StateDir (ControlSocket, FabricDir, RoutesFile, WorkloadsFile).
	Control        string `json:"control,omitempty"`
	Fabric         string `json:"fabric,omitempty"`
	Routes         string `json:"routes,omitempty"`
	AddedWorkloads string `json:"addedWorkloads,omitempty"`

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
	// Impairment is applied to the underlay link when the agent starts
	// (a lab file's impairments, `vrouter link set NODE --delay ...`, so
	// that a restart keeps it); nil: none.
	Impairment *Impairment `json:"impairment,omitempty"`
	// RouteRefreshInterval is the kernel dataplane's period of full
	// resyncs of its routes with the kernel's table (Felix's
	// routeRefreshInterval); zero: Felix's default, 90 s.
	RouteRefreshInterval time.Duration `json:"routeRefreshInterval,omitempty"`
	// MetricsAddr, when set, is a TCP address (host:port) where the agent
	// serves Prometheus metrics at /metrics besides its control socket
	// (`vrouter node run --metrics-addr`; Felix uses port 9091).
	MetricsAddr string `json:"metricsAddr,omitempty"`

	Pools []Pool `json:"pools"`
	// Datastore is the bbolt file shared by the lab's nodes, the IPAM
	// datastore when DatastoreType is DatastoreBolt.
	Datastore string `json:"datastore"`
	// DatastoreType selects the IPAM datastore: DatastoreBolt (the
	// default, also when empty), the file Datastore; or DatastoreEtcd, the
	// etcd cluster Etcd.
	DatastoreType string `json:"datastoreType,omitempty"`
	// Etcd is the etcd cluster of DatastoreEtcd.
	Etcd Etcd `json:"etcd,omitzero"`
	// MeshFromDatastore (only with DatastoreEtcd) makes the agent register
	// its Node resource in etcd and build its node-to-node mesh from the
	// registered nodes, watching them, instead of from BGP.Peers' mesh
	// entries; IP pools, BGPConfiguration and BGPPeer resources in etcd
	// apply too (package resources).
	MeshFromDatastore bool `json:"meshFromDatastore,omitempty"`
	// RouteReflectorClusterID, when valid, makes the node a route
	// reflector with that cluster ID (its Node resource's
	// routeReflectorClusterID), for BGPPeers that select it.
	RouteReflectorClusterID netip.Addr `json:"routeReflectorClusterID,omitzero"`
	// Labels are the node's labels (its Node resource's), matched by
	// BGPPeer node selectors.
	Labels map[string]string `json:"labels,omitempty"`
	// StrictAffinity forbids borrowing addresses from other nodes' blocks.
	StrictAffinity bool       `json:"strictAffinity,omitempty"`
	BGP            BGP        `json:"bgp"`
	Workloads      []Workload `json:"workloads"`
}

// The datastores a node can keep IPAM state in.
const (
	// DatastoreBolt is a bbolt file shared by the nodes of one machine.
	DatastoreBolt = "bbolt"
	// DatastoreEtcd is an etcd cluster shared by nodes on many hosts,
	// in Calico's key layout.
	DatastoreEtcd = "etcd"
)

// Etcd says how to reach an etcd cluster (Calico's ETCD_ENDPOINTS,
// ETCD_CERT_FILE, ETCD_KEY_FILE and ETCD_CA_CERT_FILE).
type Etcd struct {
	// Endpoints are the members' client URLs, e.g. https://10.0.0.1:2379.
	Endpoints []string `json:"endpoints,omitempty"`
	// CertFile and KeyFile are a client certificate and its key (PEM);
	// CAFile the CA bundle that signed the members' certificates.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	CAFile   string `json:"caFile,omitempty"`
	// Timeout bounds one datastore transaction (zero: the store's
	// default); with every member down, IPAM calls fail after it.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// CheckDatastore returns an error unless c's datastore selection is
// complete: a file for bbolt, endpoints for etcd (https ones when TLS
// files are given), a key with a client certificate.
func (c *Node) CheckDatastore() error {
	switch c.DatastoreType {
	case "", DatastoreBolt:
		if c.Datastore == "" {
			return fmt.Errorf("datastore %s needs a file", DatastoreBolt)
		}
	case DatastoreEtcd:
		e := c.Etcd
		if len(e.Endpoints) == 0 {
			return fmt.Errorf("datastore %s needs endpoints", DatastoreEtcd)
		}
		if (e.CertFile == "") != (e.KeyFile == "") {
			return fmt.Errorf("datastore %s: a client certificate needs its key and a key its certificate", DatastoreEtcd)
		}
		for _, ep := range e.Endpoints {
			if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
				return fmt.Errorf("datastore %s: endpoint %q is not an http:// or https:// URL", DatastoreEtcd, ep)
			}
		}
	default:
		return fmt.Errorf("unknown datastore %q: want %s or %s", c.DatastoreType, DatastoreBolt, DatastoreEtcd)
	}
	if c.MeshFromDatastore && c.DatastoreType != DatastoreEtcd {
		return fmt.Errorf("meshFromDatastore needs datastore %s (the nodes register there)", DatastoreEtcd)
	}
	return nil
}

// The dataplanes a node can have.
const (
	// DataplaneUserspace is the userspace engine: the underlay is a
	// fabric endpoint, workloads are TUN devices.
	DataplaneUserspace = "userspace"
	// DataplaneKernel is the Linux kernel of the node's namespace: the
	// underlay is the namespace's real interface, workloads are veth
	// pairs, routes go into the main table through netlink.
	DataplaneKernel = "kernel"
)

// The stacks a workload can have.
const (
	// StackNamespace is a network namespace whose eth0 is the
	// workload's port (a TUN device, or a veth in kernel mode): any
	// tool runs in it.
	StackNamespace = "namespace"
	// StackNetstack is a gVisor TCP/IP stack inside the node agent,
	// attached to the userspace engine's port in memory: no namespace,
	// no device. It answers ICMP echo and runs the workload's Serve.
	StackNetstack = "netstack"
)

// CheckStack returns an error unless name is a workload stack's name or
// empty (the default, a namespace).
func CheckStack(name string) error {
	switch name {
	case "", StackNamespace, StackNetstack:
		return nil
	}
	return fmt.Errorf("unknown workload stack %q: want %s or %s", name, StackNamespace, StackNetstack)
}

// IsNetstack reports whether w runs in a gVisor stack.
func (w Workload) IsNetstack() bool { return w.Stack == StackNetstack }

// CheckDataplane returns an error unless name is a dataplane's name or
// empty (the default, userspace).
func CheckDataplane(name string) error {
	switch name {
	case "", DataplaneUserspace, DataplaneKernel:
		return nil
	}
	return fmt.Errorf("unknown dataplane %q: want %s or %s", name, DataplaneUserspace, DataplaneKernel)
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

// Workload is a workload whose port this node's dataplane serves: a
// namespace's eth0, or (Stack StackNetstack) a gVisor stack inside the
// agent.
type Workload struct {
	Name string `json:"name"`
	// Namespace is the workload's network namespace: a name under
	// /run/netns, or (kernel mode) a namespace file's path such as
	// /proc/PID/ns/net or a CNI runtime's CNI_NETNS. Empty for a
	// netstack workload.
	Namespace string `json:"namespace"`
	// Stack is what runs the workload's TCP/IP: StackNamespace (also
	// when empty) or StackNetstack.
	Stack string `json:"stack,omitempty"`
	// Serve are the services a netstack workload runs,
	// PROTO:PORT:KIND: tcp:80:http, tcp:7:echo, udp:53:echo,
	// tcp:5201:sink (package netstack). ICMP echo is always answered.
	Serve   []string   `json:"serve,omitempty"`
	Address netip.Addr `json:"address,omitempty"` // fixed address; zero for IPAM's choice
	// PodInterface is the workload side's interface (a CNI runtime's
	// CNI_IFNAME); empty: eth0.
	PodInterface string `json:"podInterface,omitempty"`
	// PolicyNamespace and Labels are what network policy sees of the
	// workload: its Kubernetes-style namespace (empty: "default") and
	// labels. Pod is its Kubernetes pod name (a CNI runtime's
	// K8S_POD_NAME), if any. An agent with the cluster in etcd writes
	// them in the workload's WorkloadEndpoint.
	PolicyNamespace string            `json:"policyNamespace,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Pod             string            `json:"pod,omitempty"`
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
	if err := CheckDataplane(c.Dataplane); err != nil {
		return nil, fmt.Errorf("node config %s: %w", path, err)
	}
	if c.DatastoreType != "" {
		if err := c.CheckDatastore(); err != nil {
			return nil, fmt.Errorf("node config %s: %w", path, err)
		}
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

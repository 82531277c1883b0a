// Package resources keeps Calico's v3 resources that a cluster of nodes
// shares in etcd: Node, IPPool, BGPConfiguration and BGPPeer, as JSON in
// Calico's shape (apiVersion projectcalico.org/v3, kind, metadata, spec)
// under Calico's keys:
//
//	/calico/resources/v3/projectcalico.org/nodes/<name>
//	/calico/resources/v3/projectcalico.org/ippools/<name>
//	/calico/resources/v3/projectcalico.org/bgpconfigurations/<name>
//	/calico/resources/v3/projectcalico.org/bgppeers/<name>
//
// and the policy kinds (NetworkPolicy, GlobalNetworkPolicy) with the
// WorkloadEndpoints their selectors match (see policy.go).
//
// A Store puts, gets, lists, deletes and watches them (the node agent
// registers its Node and builds its mesh from the others; `vrouter apply`
// and `vrouter get` are calicoctl's apply and get); ParseYAML reads
// calicoctl's multi-document resource files, checked field by field.
package resources

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// APIVersion is the apiVersion of every resource.
const APIVersion = "projectcalico.org/v3"

// Prefix is the etcd key prefix of every resource.
const Prefix = "/calico/resources/v3/projectcalico.org/"

// The kinds of resources.
const (
	KindNode             = "Node"
	KindIPPool           = "IPPool"
	KindBGPConfiguration = "BGPConfiguration"
	KindBGPPeer          = "BGPPeer"

	KindNetworkPolicy       = "NetworkPolicy"
	KindGlobalNetworkPolicy = "GlobalNetworkPolicy"
	KindWorkloadEndpoint    = "WorkloadEndpoint"
)

// Kinds lists the kinds, in the order apply writes them.
var Kinds = []string{KindIPPool, KindBGPConfiguration, KindBGPPeer, KindNode,
	KindGlobalNetworkPolicy, KindNetworkPolicy, KindWorkloadEndpoint}

// plurals maps each kind to its key segment (and calicoctl's plural).
var plurals = map[string]string{
	KindNode:             "nodes",
	KindIPPool:           "ippools",
	KindBGPConfiguration: "bgpconfigurations",
	KindBGPPeer:          "bgppeers",

	KindNetworkPolicy:       "networkpolicies",
	KindGlobalNetworkPolicy: "globalnetworkpolicies",
	KindWorkloadEndpoint:    "workloadendpoints",
}

// Namespaced reports whether kind's resources have a namespace (their
// keys are <plural>/<namespace>/<name>).
func Namespaced(kind string) bool {
	return kind == KindNetworkPolicy || kind == KindWorkloadEndpoint
}

// ID returns what names r under its kind's prefix: <namespace>/<name> for
// a namespaced kind, the name otherwise.
func ID(r Resource) string {
	if Namespaced(r.Type().Kind) {
		return r.Meta().Namespace + "/" + r.Meta().Name
	}
	return r.Meta().Name
}

// Plural returns the plural of kind, as in its keys and in calicoctl get.
func Plural(kind string) string { return plurals[kind] }

// aliases are calicoctl's short names of kinds.
var aliases = map[string]string{"np": KindNetworkPolicy, "gnp": KindGlobalNetworkPolicy, "wep": KindWorkloadEndpoint,
	"policy": KindNetworkPolicy, "weps": KindWorkloadEndpoint}

// KindOf returns the kind a name of it means: the kind, its plural or
// its singular lower-cased ("nodes", "node", "Node", "ippool", ...), or
// calicoctl's short names np, gnp and wep.
func KindOf(name string) (string, bool) {
	if k, ok := aliases[strings.ToLower(name)]; ok {
		return k, true
	}
	for k, p := range plurals {
		if strings.EqualFold(name, k) || strings.EqualFold(name, p) {
			return k, true
		}
	}
	return "", false
}

// KindPrefix returns the etcd key prefix of kind's resources.
func KindPrefix(kind string) string { return Prefix + plurals[kind] + "/" }

// Key returns the etcd key of the resource kind/name (name is
// <namespace>/<name> for a namespaced kind).
func Key(kind, name string) string { return KindPrefix(kind) + name }

// Metadata is a resource's metadata (Kubernetes' ObjectMeta, the fields
// Calico uses).
type Metadata struct {
	Name string `json:"name"`
	// Namespace is the namespace of a namespaced kind's resource.
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// ResourceVersion is the etcd mod revision the resource was read at;
	// it is not stored.
	ResourceVersion   string `json:"resourceVersion,omitempty"`
	CreationTimestamp string `json:"creationTimestamp,omitempty"`
	UID               string `json:"uid,omitempty"`
}

// TypeMeta is a resource's apiVersion and kind.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// Resource is one of the kinds.
type Resource interface {
	// Type returns the resource's TypeMeta, Meta its metadata.
	Type() *TypeMeta
	Meta() *Metadata
	// Validate reports the first thing wrong with the resource's spec as
	// a FieldError (field paths like "spec.peerIP").
	Validate() error
}

// Node is a node of the cluster, as its agent registers it.
type Node struct {
	TypeMeta `json:",inline"`
	Metadata Metadata `json:"metadata"`
	Spec     NodeSpec `json:"spec"`
}

// NodeSpec is a Node's spec.
type NodeSpec struct {
	BGP *NodeBGPSpec `json:"bgp,omitempty"`
}

// NodeBGPSpec is a Node's BGP spec.
type NodeBGPSpec struct {
	// IPv4Address is the node's address with its network's length, e.g.
	// "192.168.50.10/24".
	IPv4Address string `json:"ipv4Address,omitempty"`
	// ASNumber is the node's AS; nil means the cluster's
	// (BGPConfiguration default's asNumber, or 64512).
	ASNumber *uint32 `json:"asNumber,omitempty"`
	// RouteReflectorClusterID makes the node a route reflector with that
	// cluster ID.
	RouteReflectorClusterID string `json:"routeReflectorClusterID,omitempty"`
	// IPv4IPIPTunnelAddr is the node's tunl0 address.
	IPv4IPIPTunnelAddr string `json:"ipv4IPIPTunnelAddr,omitempty"`
}

// IPPool is a pool of workload addresses.
type IPPool struct {
	TypeMeta `json:",inline"`
	Metadata Metadata   `json:"metadata"`
	Spec     IPPoolSpec `json:"spec"`
}

// IPPoolSpec is an IPPool's spec.
type IPPoolSpec struct {
	CIDR string `json:"cidr"`
	// BlockSize is the prefix length of the pool's blocks; 0 means 26.
	BlockSize int `json:"blockSize,omitempty"`
	// IPIPMode is Never (or empty), Always or CrossSubnet.
	IPIPMode     string `json:"ipipMode,omitempty"`
	VXLANMode    string `json:"vxlanMode,omitempty"`
	NATOutgoing  bool   `json:"natOutgoing,omitempty"`
	Disabled     bool   `json:"disabled,omitempty"`
	NodeSelector string `json:"nodeSelector,omitempty"`
}

// BGPConfiguration is the cluster's BGP settings ("default") or one
// node's ("node.<name>").
type BGPConfiguration struct {
	TypeMeta `json:",inline"`
	Metadata Metadata             `json:"metadata"`
	Spec     BGPConfigurationSpec `json:"spec"`
}

// BGPConfigurationSpec is a BGPConfiguration's spec.
type BGPConfigurationSpec struct {
	// LogSeverityScreen is the agent's log level: Debug, Info, Warning,
	// Error or Fatal.
	LogSeverityScreen string `json:"logSeverityScreen,omitempty"`
	// NodeToNodeMeshEnabled: nil means true.
	NodeToNodeMeshEnabled *bool `json:"nodeToNodeMeshEnabled,omitempty"`
	// ASNumber is the AS of nodes that set none; nil means 64512.
	ASNumber *uint32 `json:"asNumber,omitempty"`
}

// BGPPeer is an explicit BGP peer: of every node (no node, no node
// selector), of one node, or of the nodes a selector picks; the peer is
// an address (peerIP) or the nodes peerSelector picks.
type BGPPeer struct {
	TypeMeta `json:",inline"`
	Metadata Metadata    `json:"metadata"`
	Spec     BGPPeerSpec `json:"spec"`
}

// BGPPeerSpec is a BGPPeer's spec.
type BGPPeerSpec struct {
	Node                string `json:"node,omitempty"`
	PeerIP              string `json:"peerIP,omitempty"`
	ASNumber            uint32 `json:"asNumber,omitempty"`
	NodeSelector        string `json:"nodeSelector,omitempty"`
	PeerSelector        string `json:"peerSelector,omitempty"`
	KeepOriginalNextHop bool   `json:"keepOriginalNextHop,omitempty"`
}

func (r *Node) Type() *TypeMeta             { return &r.TypeMeta }
func (r *Node) Meta() *Metadata             { return &r.Metadata }
func (r *IPPool) Type() *TypeMeta           { return &r.TypeMeta }
func (r *IPPool) Meta() *Metadata           { return &r.Metadata }
func (r *BGPConfiguration) Type() *TypeMeta { return &r.TypeMeta }
func (r *BGPConfiguration) Meta() *Metadata { return &r.Metadata }
func (r *BGPPeer) Type() *TypeMeta          { return &r.TypeMeta }
func (r *BGPPeer) Meta() *Metadata          { return &r.Metadata }

// New returns an empty resource of kind, with its TypeMeta set.
func New(kind string) (Resource, error) {
	var r Resource
	switch kind {
	case KindNode:
		r = &Node{}
	case KindIPPool:
		r = &IPPool{}
	case KindBGPConfiguration:
		r = &BGPConfiguration{}
	case KindBGPPeer:
		r = &BGPPeer{}
	case KindNetworkPolicy:
		r = &NetworkPolicy{}
	case KindGlobalNetworkPolicy:
		r = &GlobalNetworkPolicy{}
	case KindWorkloadEndpoint:
		r = &WorkloadEndpoint{}
	default:
		return nil, fmt.Errorf("unknown kind %q: want Node, IPPool, BGPConfiguration, BGPPeer, NetworkPolicy, GlobalNetworkPolicy or WorkloadEndpoint", kind)
	}
	*r.Type() = TypeMeta{APIVersion: APIVersion, Kind: kind}
	return r, nil
}

// FieldError is a problem with one field of a resource.
type FieldError struct {
	Field string // like "spec.cidr"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// nameRE is a Kubernetes resource name (DNS subdomain).
var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// validateMeta checks the name and labels (and that only resources of a
// namespaced kind have a namespace, see Default).
func validateMeta(m *Metadata) error {
	if m.Name == "" {
		return fieldErr("metadata.name", "missing")
	}
	if !nameRE.MatchString(m.Name) {
		return fieldErr("metadata.name", "%q is not a resource name (lower-case letters, digits, '-', '.')", m.Name)
	}
	for k, v := range m.Labels {
		if !labelKeyRE.MatchString(k) {
			return fieldErr("metadata.labels", "%q is not a label name", k)
		}
		if !labelValueRE.MatchString(v) {
			return fieldErr("metadata.labels."+k, "%q is not a label value", v)
		}
	}
	return nil
}

// CheckLabels reports the first label whose name or value Kubernetes
// would refuse.
func CheckLabels(labels map[string]string) error {
	return validateMeta(&Metadata{Name: "x", Labels: labels})
}

var (
	labelKeyRE   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

// Validate checks a Node.
func (r *Node) Validate() error {
	if err := validateMeta(&r.Metadata); err != nil {
		return err
	}
	b := r.Spec.BGP
	if b == nil {
		return nil
	}
	if b.IPv4Address != "" {
		p, err := netip.ParsePrefix(b.IPv4Address)
		if err != nil || !p.Addr().Is4() {
			return fieldErr("spec.bgp.ipv4Address", "%q is not an IPv4 address with its network's length, such as 192.168.50.10/24", b.IPv4Address)
		}
	}
	if b.ASNumber != nil && *b.ASNumber == 0 {
		return fieldErr("spec.bgp.asNumber", "0 is not an AS number")
	}
	if b.RouteReflectorClusterID != "" {
		if a, err := netip.ParseAddr(b.RouteReflectorClusterID); err != nil || !a.Is4() {
			return fieldErr("spec.bgp.routeReflectorClusterID", "%q is not an IPv4 address such as 224.0.0.1", b.RouteReflectorClusterID)
		}
	}
	if b.IPv4IPIPTunnelAddr != "" {
		if a, err := netip.ParseAddr(b.IPv4IPIPTunnelAddr); err != nil || !a.Is4() {
			return fieldErr("spec.bgp.ipv4IPIPTunnelAddr", "%q is not an IPv4 address", b.IPv4IPIPTunnelAddr)
		}
	}
	return nil
}

// Address returns the node's BGP address with its network's length, if
// it has one.
func (r *Node) Address() (netip.Prefix, bool) {
	if r.Spec.BGP == nil {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(r.Spec.BGP.IPv4Address)
	return p, err == nil
}

// ClusterID returns the node's route reflector cluster ID, if it is a
// route reflector.
func (r *Node) ClusterID() (netip.Addr, bool) {
	if r.Spec.BGP == nil || r.Spec.BGP.RouteReflectorClusterID == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(r.Spec.BGP.RouteReflectorClusterID)
	return a, err == nil
}

// IPIP modes of a pool.
const (
	IPIPNever       = "Never"
	IPIPAlways      = "Always"
	IPIPCrossSubnet = "CrossSubnet"
)

// Validate checks an IPPool.
func (r *IPPool) Validate() error {
	if err := validateMeta(&r.Metadata); err != nil {
		return err
	}
	s := r.Spec
	cidr, err := netip.ParsePrefix(s.CIDR)
	switch {
	case s.CIDR == "":
		return fieldErr("spec.cidr", "missing")
	case err != nil || !cidr.Addr().Is4():
		return fieldErr("spec.cidr", "%q is not an IPv4 CIDR such as 10.244.0.0/16", s.CIDR)
	case cidr.Masked() != cidr:
		return fieldErr("spec.cidr", "%s has host bits set (the network is %s)", cidr, cidr.Masked())
	}
	if s.BlockSize != 0 && (s.BlockSize < 20 || s.BlockSize > 32) {
		return fieldErr("spec.blockSize", "%d: want 20 to 32", s.BlockSize)
	}
	if s.BlockSize != 0 && s.BlockSize < cidr.Bits() {
		return fieldErr("spec.blockSize", "/%d blocks do not fit in %s", s.BlockSize, cidr)
	}
	switch s.IPIPMode {
	case "", IPIPNever, IPIPAlways, IPIPCrossSubnet:
	default:
		return fieldErr("spec.ipipMode", "%q: want Never, Always or CrossSubnet", s.IPIPMode)
	}
	switch s.VXLANMode {
	case "", "Never":
	default:
		return fieldErr("spec.vxlanMode", "%q: only Never is supported (vrouter encapsulates with IPIP)", s.VXLANMode)
	}
	if s.NodeSelector != "" && s.NodeSelector != "all()" {
		if _, err := ParseSelector(s.NodeSelector); err != nil {
			return fieldErr("spec.nodeSelector", "%v", err)
		}
	}
	return nil
}

// Prefix returns the pool's CIDR.
func (r *IPPool) Prefix() netip.Prefix {
	p, _ := netip.ParsePrefix(r.Spec.CIDR)
	return p
}

// logSeverities are the values of logSeverityScreen.
var logSeverities = []string{"Debug", "Info", "Warning", "Error", "Fatal"}

// Validate checks a BGPConfiguration.
func (r *BGPConfiguration) Validate() error {
	if err := validateMeta(&r.Metadata); err != nil {
		return err
	}
	if n := r.Metadata.Name; n != "default" && !strings.HasPrefix(n, "node.") {
		return fieldErr("metadata.name", "%q: a BGPConfiguration is named default (the cluster's) or node.<node> (one node's)", n)
	}
	s := r.Spec
	if s.LogSeverityScreen != "" && !containsFold(logSeverities, s.LogSeverityScreen) {
		return fieldErr("spec.logSeverityScreen", "%q: want %s", s.LogSeverityScreen, strings.Join(logSeverities, ", "))
	}
	if s.ASNumber != nil && *s.ASNumber == 0 {
		return fieldErr("spec.asNumber", "0 is not an AS number")
	}
	if r.Metadata.Name != "default" && s.NodeToNodeMeshEnabled != nil {
		return fieldErr("spec.nodeToNodeMeshEnabled", "only the default BGPConfiguration sets it")
	}
	return nil
}

func containsFold(list []string, s string) bool {
	for _, l := range list {
		if strings.EqualFold(l, s) {
			return true
		}
	}
	return false
}

// Validate checks a BGPPeer.
func (r *BGPPeer) Validate() error {
	if err := validateMeta(&r.Metadata); err != nil {
		return err
	}
	s := r.Spec
	switch {
	case s.PeerIP == "" && s.PeerSelector == "":
		return fieldErr("spec.peerIP", "missing: a BGPPeer needs peerIP (and asNumber) or peerSelector")
	case s.PeerIP != "" && s.PeerSelector != "":
		return fieldErr("spec.peerSelector", "set with peerIP: give one or the other")
	case s.Node != "" && s.NodeSelector != "":
		return fieldErr("spec.nodeSelector", "set with node: give one or the other")
	}
	if s.PeerIP != "" {
		if _, err := r.PeerAddr(); err != nil {
			return fieldErr("spec.peerIP", "%q is not an IP address (optionally with :port)", s.PeerIP)
		}
		if s.ASNumber == 0 {
			return fieldErr("spec.asNumber", "missing: a peer by peerIP needs its AS number")
		}
	}
	if s.Node != "" && !nameRE.MatchString(s.Node) {
		return fieldErr("spec.node", "%q is not a node name", s.Node)
	}
	for _, f := range []struct{ field, sel string }{{"spec.nodeSelector", s.NodeSelector}, {"spec.peerSelector", s.PeerSelector}} {
		if f.sel == "" {
			continue
		}
		if _, err := ParseSelector(f.sel); err != nil {
			return fieldErr(f.field, "%v", err)
		}
	}
	return nil
}

// PeerAddr returns the peer's address (peerIP without a port).
func (r *BGPPeer) PeerAddr() (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(r.Spec.PeerIP); err == nil {
		return ap.Addr(), nil
	}
	return netip.ParseAddr(r.Spec.PeerIP)
}

// Default gives a resource of a namespaced kind that names no namespace
// the namespace "default", as calicoctl does.
func Default(r Resource) {
	if Namespaced(r.Type().Kind) && r.Meta().Namespace == "" {
		r.Meta().Namespace = "default"
	}
}

// check validates r, and that only a namespaced kind's resource has a
// namespace.
func check(r Resource) error {
	if !Namespaced(r.Type().Kind) && r.Meta().Namespace != "" {
		return fieldErr("metadata.namespace", "a %s has no namespace", r.Type().Kind)
	}
	return r.Validate()
}

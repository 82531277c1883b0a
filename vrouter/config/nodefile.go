package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults of a node file (a real host's /etc/vrouter/node.yaml).
const (
	// DefaultNodeFile is where `vrouter node run` on a real host reads
	// its config (the systemd unit names it).
	DefaultNodeFile = "/etc/vrouter/node.yaml"
	// DefaultStateDir holds the control socket (nodes/NODE.sock, which
	// the CNI plugin finds there by default) and the agent's state files.
	DefaultStateDir = "/run/vrouter"
	// DefaultDatastore is the node's IPAM datastore.
	DefaultDatastore = "/var/lib/vrouter/ipam.db"
	// HostLab is the lab name of a real host's node: IPAM handles of its
	// CNI workloads read k8s-pod-network.<container ID>, as Calico's.
	HostLab = "k8s-pod-network"
	// MaxNodeFileSize is the largest node file read.
	MaxNodeFileSize = 1 << 20
)

// The fields of a node file, in the order messages list them.
var (
	nodeFileFields = []string{"node", "address", "interface", "gateway", "mtu", "dataplane", "asNumber",
		"keepaliveTime", "holdTime", "gracefulRestart", "restartTime", "peers", "ipPools", "strictAffinity",
		"datastore", "datastoreType", "etcdEndpoints", "etcdCertFile", "etcdKeyFile", "etcdCACertFile", "etcdTimeout", "meshFromDatastore", "labels", "routeReflectorClusterID", "stateDir", "routeRefreshInterval"}
	nodePeerFields = []string{"address", "asNumber", "node", "password", "routeReflectorClient", "clusterID"}
	nodePoolFields = []string{"name", "cidr", "blockSize", "ipipMode", "mtu"}
)

// FileProblem is one thing wrong with a file (a node file, or a resource
// file of package resources).
type FileProblem struct {
	Line  int    // 1-based; 0 when unknown
	Field string // like "peers[1].address"; empty for the file as a whole
	Msg   string
}

// FileError lists every problem found in a file, one per line as
// FILE:LINE: FIELD: message (the lab file's style).
type FileError struct {
	File     string
	Problems []FileProblem
}

// NodeFileError is the error of a node file.
type NodeFileError = FileError

func (e *FileError) Error() string {
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		var b strings.Builder
		b.WriteString(e.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
		if p.Field != "" {
			b.WriteString(p.Field + ": ")
		}
		b.WriteString(p.Msg)
		lines = append(lines, b.String())
	}
	return strings.Join(lines, "\n")
}

// LoadNodeFile reads a node config file: YAML (a real host's node.yaml)
// or JSON (what deploy writes). A name ending in .json, or contents
// starting with '{', are JSON (LoadNode); anything else is YAML
// (ParseNodeYAML).
func LoadNodeFile(path string) (*Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read node config: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read node config: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxNodeFileSize+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read node config: %w", err)
	}
	if len(data) > MaxNodeFileSize {
		return nil, fmt.Errorf("node config %s: larger than %d bytes", path, MaxNodeFileSize)
	}
	var n *Node
	if strings.HasSuffix(path, ".json") || bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		n, err = LoadNode(path)
	} else {
		n, err = ParseNodeYAML(path, data)
	}
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && n.holdsSecrets() {
		return nil, fmt.Errorf("node config %s holds BGP passwords but other users may read it (mode %04o); make it root's alone: chmod 600 %s", path, perm, path)
	}
	return n, nil
}

// holdsSecrets reports whether the node's config holds a BGP password.
func (n *Node) holdsSecrets() bool {
	for _, p := range n.BGP.Peers {
		if p.Password != "" {
			return true
		}
	}
	return false
}

// nodeParser collects the problems of a node file.
type nodeParser struct{ probs []FileProblem }

func (p *nodeParser) errorf(line int, field, format string, a ...any) {
	p.probs = append(p.probs, FileProblem{Line: line, Field: field, Msg: fmt.Sprintf(format, a...)})
}

var yamlLine = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// ParseNodeYAML reads a node file in YAML (see deploy/node.yaml in the
// repository): the node's name, address, interface, AS, peers, pools,
// datastore and dataplane. Every problem is reported at once, with its
// line and field, as a *NodeFileError; name is the file's name in them.
// Defaults: node, the host name; mtu, 1500; dataplane, kernel; a peer's
// asNumber, the node's; datastore, DefaultDatastore; stateDir,
// DefaultStateDir. The IPAM datastore is the bbolt file datastore, or,
// with datastoreType etcdv3, etcd at etcdEndpoints (with etcdCertFile,
// etcdKeyFile and etcdCACertFile for TLS), in calicoctl's field names.
func ParseNodeYAML(name string, data []byte) (cfg *Node, err error) {
	p := &nodeParser{}
	defer func() {
		// The YAML library is not ours: never let it take the agent down.
		if r := recover(); r != nil {
			cfg, err = nil, &NodeFileError{File: name, Problems: []FileProblem{{Msg: fmt.Sprintf("invalid YAML: %v", r)}}}
		}
	}()
	root := p.decode(data)
	if root == nil {
		return nil, &NodeFileError{File: name, Problems: p.probs}
	}
	c := p.node(root)
	if len(p.probs) > 0 {
		sort.SliceStable(p.probs, func(i, j int) bool { return p.probs[i].Line < p.probs[j].Line })
		return nil, &NodeFileError{File: name, Problems: p.probs}
	}
	return c, nil
}

func (p *nodeParser) decode(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "", "the file is empty; a node needs at least address, interface, asNumber and ipPools")
		} else if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			p.errorf(line, "", "invalid YAML: %s", m[2])
		} else {
			p.errorf(0, "", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil && len(next.Content) > 0 {
		p.errorf(next.Line, "", "a node file holds one YAML document; remove the second one (after ---)")
		return nil
	}
	if len(doc.Content) == 0 || isNullNode(doc.Content[0]) {
		p.errorf(0, "", "the file is empty; a node needs at least address, interface, asNumber and ipPools")
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "", "a node file is a YAML mapping with the fields %s", strings.Join(nodeFileFields, ", "))
		return nil
	}
	return root
}

func isNullNode(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fields calls fn for each field of mapping n, reporting non-scalar,
// repeated, unknown and alias keys.
func (p *nodeParser) fields(n *yaml.Node, path string, known []string, fn func(key string, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k.Line, path, "field names must be plain names")
		case seen[k.Value] > 0:
			p.errorf(k.Line, joinField(path, k.Value), "given twice (first on line %d)", seen[k.Value])
		case !slicesContains(known, k.Value):
			p.errorf(k.Line, joinField(path, k.Value), "unknown field (known: %s)", strings.Join(known, ", "))
		case v.Kind == yaml.AliasNode:
			seen[k.Value] = k.Line
			p.errorf(v.Line, joinField(path, k.Value), "YAML aliases are not supported; write the value out")
		default:
			seen[k.Value] = k.Line
			fn(k.Value, v)
		}
	}
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// scalar returns n's text, reporting what is not a non-empty scalar.
func (p *nodeParser) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n.Line, path, "must be a single value, not a %s", map[yaml.Kind]string{yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}[n.Kind])
		return "", false
	}
	if n.Tag == "!!null" || n.Value == "" {
		p.errorf(n.Line, path, "must not be empty")
		return "", false
	}
	return n.Value, true
}

func (p *nodeParser) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err == nil && n.Tag == "!!str":
		p.errorf(n.Line, path, "must be a number, not the string %q (remove the quotes)", s)
	case err != nil || n.Tag != "!!int":
		p.errorf(n.Line, path, "%q is not a whole number", s)
	case i < lo || i > hi:
		p.errorf(n.Line, path, "%d is outside %d-%d", i, lo, hi)
	default:
		return i, true
	}
	return 0, false
}

func (p *nodeParser) boolean(n *yaml.Node, path string) (bool, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return false, false
	}
	switch {
	case n.Tag == "!!bool" && (s == "true" || s == "True" || s == "TRUE"):
		return true, true
	case n.Tag == "!!bool" && (s == "false" || s == "False" || s == "FALSE"):
		return false, true
	}
	p.errorf(n.Line, path, "%q is not true or false", s)
	return false, false
}

func (p *nodeParser) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 24*time.Hour {
		p.errorf(n.Line, path, "%q is not a duration such as 90s or 2m (at most 24h)", s)
		return 0, false
	}
	return d, true
}

func (p *nodeParser) addr(n *yaml.Node, path string) (netip.Addr, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		p.errorf(n.Line, path, "%q is not an IPv4 address", s)
		return netip.Addr{}, false
	}
	return a, true
}

func (p *nodeParser) prefix(n *yaml.Node, path, example string) (netip.Prefix, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return netip.Prefix{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		p.errorf(n.Line, path, "%s has no prefix length: give it, such as %s", s, example)
		return netip.Prefix{}, false
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil || !pf.Addr().Is4() {
		p.errorf(n.Line, path, "%q is not an IPv4 address with a prefix length, such as %s", s, example)
		return netip.Prefix{}, false
	}
	return pf, true
}

func (p *nodeParser) path(n *yaml.Node, field string) (string, bool) {
	s, ok := p.scalar(n, field)
	if ok && !filepath.IsAbs(s) {
		p.errorf(n.Line, field, "%q is not an absolute path", s)
		return "", false
	}
	return s, ok
}

// ifName matches what Linux takes as an interface name.
var ifName = regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,15}$`)

// nodeName matches a node name (a host name, as Calico's).
var nodeName = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_.\-]{0,252})$`)

func (p *nodeParser) node(root *yaml.Node) *Node {
	c := &Node{Lab: HostLab, MTU: 1500, Dataplane: DataplaneKernel, Datastore: DefaultDatastore, StateDir: DefaultStateDir, Network: "underlay"}
	var haveAddr, haveIface, haveAS, havePools bool
	var restartLine, typeLine, endpointsLine, certLine, meshLine int
	var peerLines, poolLines []int
	p.fields(root, "", nodeFileFields, func(key string, v *yaml.Node) {
		switch key {
		case "node":
			if s, ok := p.scalar(v, key); ok {
				if !nodeName.MatchString(s) {
					p.errorf(v.Line, key, "%q is not a node name (letters, digits, '.', '_', '-')", s)
				}
				c.Node = s
			}
		case "address":
			if a, ok := p.prefix(v, key, "192.168.50.10/24"); ok {
				if a.Bits() == 32 {
					p.errorf(v.Line, key, "%s: give the network's length, such as %s/24", a, a.Addr())
				}
				c.Prefix, haveAddr = a, true
			}
		case "interface":
			if s, ok := p.scalar(v, key); ok {
				if !ifName.MatchString(s) {
					p.errorf(v.Line, key, "%q is not an interface name (at most 15 characters)", s)
				}
				c.Interface, haveIface = s, true
			}
		case "gateway":
			if a, ok := p.addr(v, key); ok {
				c.Gateway = a
			}
		case "mtu":
			if i, ok := p.integer(v, key, 576, 9000); ok {
				c.MTU = int(i)
			}
		case "dataplane":
			if s, ok := p.scalar(v, key); ok {
				switch err := CheckDataplane(s); {
				case err != nil:
					p.errorf(v.Line, key, "%v", err)
				case s != DataplaneKernel:
					p.errorf(v.Line, key, "%q: a node file is a real host's, whose kernel forwards (kernel); the userspace engine runs in labs (vrouter deploy)", s)
				}
				c.Dataplane = s
			}
		case "asNumber":
			if i, ok := p.integer(v, key, 1, 4294967295); ok {
				c.BGP.ASN, haveAS = uint32(i), true
			}
		case "keepaliveTime":
			c.BGP.KeepaliveTime, _ = p.duration(v, key)
		case "holdTime":
			c.BGP.HoldTime, _ = p.duration(v, key)
		case "gracefulRestart":
			c.BGP.GracefulRestart, _ = p.boolean(v, key)
		case "restartTime":
			c.BGP.RestartTime, _ = p.duration(v, key)
			restartLine = v.Line
		case "strictAffinity":
			c.StrictAffinity, _ = p.boolean(v, key)
		case "datastore":
			if s, ok := p.path(v, key); ok {
				c.Datastore = s
			}
		case "datastoreType":
			if s, ok := p.scalar(v, key); ok {
				switch s {
				case DatastoreBolt:
					c.DatastoreType = DatastoreBolt
				case DatastoreEtcd, "etcdv3": // etcdv3: calicoctl's name
					c.DatastoreType = DatastoreEtcd
				default:
					p.errorf(v.Line, key, "%q: want bbolt (the default) or etcdv3", s)
				}
				typeLine = v.Line
			}
		case "etcdEndpoints":
			// A list, or calicoctl's comma-separated string.
			eps := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				eps = v.Content
				if len(eps) > 100 {
					p.errorf(v.Line, key, "%d items: at most 100", len(eps))
					eps = nil
				}
			}
			for _, n := range eps {
				s, ok := p.scalar(n, key)
				if !ok {
					continue
				}
				for _, ep := range strings.Split(s, ",") {
					ep = strings.TrimSpace(ep)
					u, err := url.Parse(ep)
					if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasPrefix(ep, u.Scheme+"://") {
						p.errorf(n.Line, key, "%q is not an etcd client URL such as https://10.0.0.1:2379", ep)
						continue
					}
					c.Etcd.Endpoints = append(c.Etcd.Endpoints, ep)
				}
			}
			endpointsLine = v.Line
		case "etcdCertFile":
			c.Etcd.CertFile, _ = p.path(v, key)
			certLine = v.Line
		case "etcdKeyFile":
			c.Etcd.KeyFile, _ = p.path(v, key)
			certLine = v.Line
		case "etcdCACertFile":
			c.Etcd.CAFile, _ = p.path(v, key)
		case "etcdTimeout":
			c.Etcd.Timeout, _ = p.duration(v, key)
		case "routeRefreshInterval":
			c.RouteRefreshInterval, _ = p.duration(v, key)
		case "meshFromDatastore":
			c.MeshFromDatastore, _ = p.boolean(v, key)
			meshLine = v.Line
		case "labels":
			p.labels(c, v, key)
		case "routeReflectorClusterID":
			if a, ok := p.addr(v, key); ok {
				if !a.Is4() {
					p.errorf(v.Line, key, "%s: want an IPv4 address such as 224.0.0.1", a)
				}
				c.RouteReflectorClusterID = a
			}
		case "stateDir":
			if s, ok := p.path(v, key); ok {
				c.StateDir = s
			}
		case "peers":
			p.list(v, key, func(i int, item *yaml.Node, path string) {
				p.peer(c, item, path)
				peerLines = append(peerLines, item.Line)
			})
		case "ipPools":
			havePools = p.list(v, key, func(i int, item *yaml.Node, path string) {
				p.pool(c, item, path)
				poolLines = append(poolLines, item.Line)
			}) > 0
		}
	})
	if c.Node == "" {
		h, err := os.Hostname()
		if err != nil || !nodeName.MatchString(h) {
			p.errorf(root.Line, "node", "missing, and the host name %q cannot stand in for it", h)
		}
		c.Node = h
	}
	for _, f := range []struct {
		field string
		have  bool
	}{{"address", haveAddr}, {"interface", haveIface}, {"asNumber", haveAS}, {"ipPools", havePools}} {
		if !f.have && !p.reported(f.field) {
			p.errorf(root.Line, f.field, "missing (see deploy/node.yaml)")
		}
	}
	switch {
	case c.DatastoreType == DatastoreEtcd && len(c.Etcd.Endpoints) == 0 && !p.reported("etcdEndpoints"):
		p.errorf(typeLine, "etcdEndpoints", "missing: datastoreType etcdv3 needs the etcd members' client URLs")
	case c.DatastoreType != DatastoreEtcd && endpointsLine > 0:
		p.errorf(endpointsLine, "etcdEndpoints", "set without datastoreType: etcdv3")
	}
	if (c.Etcd.CertFile == "") != (c.Etcd.KeyFile == "") && !p.reported("etcdCertFile") && !p.reported("etcdKeyFile") {
		p.errorf(certLine, "etcdCertFile", "etcdCertFile and etcdKeyFile go together: a client certificate and its key")
	}
	if c.MeshFromDatastore && c.DatastoreType != DatastoreEtcd {
		p.errorf(meshLine, "meshFromDatastore", "set without datastoreType: etcdv3 (the nodes register in etcd)")
	}
	if c.BGP.RestartTime > 0 && !c.BGP.GracefulRestart {
		p.errorf(restartLine, "restartTime", "set without gracefulRestart: true")
	}
	if c.BGP.HoldTime > 0 && c.BGP.KeepaliveTime > 0 && c.BGP.KeepaliveTime*3 > c.BGP.HoldTime {
		p.errorf(root.Line, "keepaliveTime", "%s is more than a third of holdTime %s", c.BGP.KeepaliveTime, c.BGP.HoldTime)
	}
	seen := map[netip.Addr]int{}
	for i, peer := range c.BGP.Peers {
		if peer.ASN == 0 {
			c.BGP.Peers[i].ASN = c.BGP.ASN
		}
		if haveAddr && peer.Address == c.Prefix.Addr() {
			p.errorf(peerLines[i], fmt.Sprintf("peers[%d].address", i), "%s is the node's own address", peer.Address)
		}
		if j, dup := seen[peer.Address]; dup {
			p.errorf(peerLines[i], fmt.Sprintf("peers[%d].address", i), "%s is peers[%d]'s too", peer.Address, j)
		}
		seen[peer.Address] = i
		if peer.Node != "" {
			c.Neighbors = append(c.Neighbors, Neighbor{Node: peer.Node, Address: peer.Address})
			c.TunnelSources = append(c.TunnelSources, peer.Address)
		}
	}
	for i := range c.Pools {
		for j := range i {
			if c.Pools[i].CIDR.IsValid() && c.Pools[j].CIDR.IsValid() && c.Pools[i].CIDR.Overlaps(c.Pools[j].CIDR) {
				p.errorf(poolLines[i], fmt.Sprintf("ipPools[%d].cidr", i), "%s overlaps ipPools[%d] (%s)", c.Pools[i].CIDR, j, c.Pools[j].CIDR)
			}
		}
	}
	return c
}

// labelKey and labelValue are what Kubernetes allows in a label (the
// key's optional DNS prefix included).
var (
	labelKey   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValue = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

// labels reads the node's labels, a mapping of strings.
func (p *nodeParser) labels(c *Node, v *yaml.Node, field string) {
	if v.Kind != yaml.MappingNode {
		p.errorf(v.Line, field, "want a mapping of label names to values, such as {rack: r1}")
		return
	}
	if len(v.Content) > 2*100 {
		p.errorf(v.Line, field, "%d labels: at most 100", len(v.Content)/2)
		return
	}
	c.Labels = map[string]string{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		path := field + "." + k.Value
		if k.Kind != yaml.ScalarNode || !labelKey.MatchString(k.Value) {
			p.errorf(k.Line, field, "%q is not a label name", k.Value)
			continue
		}
		s, ok := p.scalar(val, path)
		if !ok {
			continue
		}
		if !labelValue.MatchString(s) {
			p.errorf(val.Line, path, "%q is not a label value (at most 63 letters, digits, '-', '_', '.')", s)
			continue
		}
		c.Labels[k.Value] = s
	}
}

// reported says whether a problem names field already.
func (p *nodeParser) reported(field string) bool {
	for _, pr := range p.probs {
		if pr.Field == field {
			return true
		}
	}
	return false
}

// list calls fn for each item of the list n and returns how many there
// are.
func (p *nodeParser) list(n *yaml.Node, path string, fn func(i int, item *yaml.Node, path string)) int {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, path, "must be a list (items starting with -)")
		return 0
	}
	if len(n.Content) > 1000 {
		p.errorf(n.Line, path, "%d items: at most 1000", len(n.Content))
		return 0
	}
	for i, item := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		if item.Kind != yaml.MappingNode {
			p.errorf(item.Line, ip, "must be a mapping of fields")
			continue
		}
		fn(i, item, ip)
	}
	return len(n.Content)
}

func (p *nodeParser) peer(c *Node, n *yaml.Node, path string) {
	peer := BGPPeer{Type: "global"}
	var have bool
	p.fields(n, path, nodePeerFields, func(key string, v *yaml.Node) {
		f := path + "." + key
		switch key {
		case "address":
			peer.Address, have = p.addr(v, f)
		case "asNumber":
			if i, ok := p.integer(v, f, 1, 4294967295); ok {
				peer.ASN = uint32(i)
			}
		case "node":
			if s, ok := p.scalar(v, f); ok {
				if !nodeName.MatchString(s) {
					p.errorf(v.Line, f, "%q is not a node name", s)
				}
				peer.Node, peer.Type = s, "node-to-node mesh"
			}
		case "password":
			peer.Password, _ = p.scalar(v, f)
		case "routeReflectorClient":
			peer.RouteReflectorClient, _ = p.boolean(v, f)
		case "clusterID":
			peer.ClusterID, _ = p.addr(v, f)
		}
	})
	if !have && !p.reported(path+".address") {
		p.errorf(n.Line, path+".address", "missing")
	}
	if peer.RouteReflectorClient && !peer.ClusterID.IsValid() {
		p.errorf(n.Line, path+".clusterID", "missing: a route reflector needs a cluster ID")
	}
	c.BGP.Peers = append(c.BGP.Peers, peer)
}

func (p *nodeParser) pool(c *Node, n *yaml.Node, path string) {
	pool := Pool{BlockSize: 26, IPIPMode: "Never"}
	var haveCIDR bool
	p.fields(n, path, nodePoolFields, func(key string, v *yaml.Node) {
		f := path + "." + key
		switch key {
		case "name":
			pool.Name, _ = p.scalar(v, f)
		case "cidr":
			pool.CIDR, haveCIDR = p.prefix(v, f, "10.244.0.0/16")
			if haveCIDR && pool.CIDR != pool.CIDR.Masked() {
				p.errorf(v.Line, f, "%s has host bits set; the network is %s", pool.CIDR, pool.CIDR.Masked())
				pool.CIDR, haveCIDR = netip.Prefix{}, false
			}
		case "blockSize":
			if i, ok := p.integer(v, f, 20, 32); ok {
				pool.BlockSize = int(i)
			}
		case "ipipMode":
			if s, ok := p.scalar(v, f); ok {
				if s != "Never" && s != "Always" && s != "CrossSubnet" {
					p.errorf(v.Line, f, "%q: want Never, Always or CrossSubnet", s)
				}
				pool.IPIPMode = s
			}
		case "mtu":
			if i, ok := p.integer(v, f, 576, 9000); ok {
				pool.MTU = int(i)
			}
		}
	})
	if !haveCIDR && !p.reported(path+".cidr") {
		p.errorf(n.Line, path+".cidr", "missing")
	}
	if haveCIDR && pool.CIDR.Bits() > pool.BlockSize {
		p.errorf(n.Line, path+".blockSize", "/%d blocks do not fit in %s", pool.BlockSize, pool.CIDR)
	}
	if pool.Name == "" {
		pool.Name = fmt.Sprintf("pool-%d", len(c.Pools))
	}
	c.Pools = append(c.Pools, pool)
}

package topology

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/netstack"
)

var (
	mustAddr   = netip.MustParseAddr
	mustPrefix = netip.MustParsePrefix
)

// The example lab is the seed's network: three nodes on one LAN, a /16 pool
// cut into /26 blocks, a full mesh.
func TestExample(t *testing.T) {
	lab, err := Load("../examples/calico-bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Lab{
		Name: "calico-bgp", Dataplane: DataplaneUserspace, Datastore: DatastoreBolt,
		IPPools: []IPPool{
			{Name: "default-ipv4-ippool", CIDR: mustPrefix("10.244.0.0/16"), BlockSize: 26, IPIPMode: IPIPNever},
		},
		BGP: BGP{ASNumber: 64512, NodeToNodeMesh: true, KeepaliveTime: 3 * time.Second, HoldTime: 9 * time.Second, RestartTime: 120 * time.Second},
		Networks: []Network{
			{Name: "lan", CIDR: mustPrefix("192.168.50.0/24"), MTU: 1500},
		},
		Nodes: []Node{
			{Name: "node1", Network: "lan", Address: mustAddr("192.168.50.10"), Interface: "ens33", ASNumber: 64512},
			{Name: "node2", Network: "lan", Address: mustAddr("192.168.50.11"), Interface: "ens33", ASNumber: 64512},
			{Name: "node3", Network: "lan", Address: mustAddr("192.168.50.12"), Interface: "ens33", ASNumber: 64512},
		},
		Workloads: []Workload{
			{Name: "web-1", Node: "node1", Address: mustAddr("10.244.166.128")},
			{Name: "db-1", Node: "node1"},
			{Name: "web-2", Node: "node2", Address: mustAddr("10.244.104.1")},
			{Name: "db-2", Node: "node2"},
			{Name: "web-3", Node: "node3", Address: mustAddr("10.244.135.1")},
		},
	}
	if !reflect.DeepEqual(lab, want) {
		t.Errorf("Load(example) =\n%+v\nwant\n%+v", lab, want)
	}
	checkInvariants(t, lab)
}

// The example spells out every default; the same lab without them must come
// out the same.
func TestDefaults(t *testing.T) {
	const minimal = `name: calico-bgp
ipPools:
  - {name: default-ipv4-ippool, cidr: 10.244.0.0/16}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
  node3: {network: lan, address: 192.168.50.12}
workloads:
  - {name: web-1, node: node1, address: 10.244.166.128}
  - {name: db-1, node: node1}
  - {name: web-2, node: node2, address: 10.244.104.1}
  - {name: db-2, node: node2}
  - {name: web-3, node: node3, address: 10.244.135.1}
`
	got, err := Parse("minimal.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	full, err := Load("../examples/calico-bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, full) {
		t.Errorf("defaults:\n%+v\nwant the example's\n%+v", got, full)
	}
}

// Values given in the file override the defaults.
func TestOverrides(t *testing.T) {
	const file = `name: ipip
ipPools:
  - {name: a, cidr: 10.244.0.0/16, blockSize: 24, ipipMode: Always}
  - {name: b, cidr: 10.96.0.0/12, blockSize: 32, ipipMode: CrossSubnet}
bgp: {asNumber: 4200000000, nodeToNodeMesh: false, keepaliveTime: 10s, holdTime: 30s}
networks:
  - {name: rack-1, cidr: 192.168.50.0/24, mtu: 9000}
  - {name: rack-2, cidr: 192.168.60.0/30, mtu: 576}
nodes:
  n1: {network: rack-1, address: 192.168.50.10, interface: eth0}
  n2: {network: rack-2, address: 192.168.60.2, interface: enp0s31f6}
workloads:
  - {name: w, node: n2, address: 10.96.0.1}
`
	lab, err := Parse("overrides.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	want := &Lab{
		Name: "ipip", Dataplane: DataplaneUserspace, Datastore: DatastoreBolt,
		IPPools: []IPPool{
			{Name: "a", CIDR: mustPrefix("10.244.0.0/16"), BlockSize: 24, IPIPMode: IPIPAlways},
			{Name: "b", CIDR: mustPrefix("10.96.0.0/12"), BlockSize: 32, IPIPMode: IPIPCrossSubnet},
		},
		BGP: BGP{ASNumber: 4200000000, NodeToNodeMesh: false, KeepaliveTime: 10 * time.Second, HoldTime: 30 * time.Second, RestartTime: 120 * time.Second},
		Networks: []Network{
			{Name: "rack-1", CIDR: mustPrefix("192.168.50.0/24"), MTU: 9000},
			{Name: "rack-2", CIDR: mustPrefix("192.168.60.0/30"), MTU: 576},
		},
		Nodes: []Node{
			{Name: "n1", Network: "rack-1", Address: mustAddr("192.168.50.10"), Interface: "eth0", ASNumber: 4200000000},
			{Name: "n2", Network: "rack-2", Address: mustAddr("192.168.60.2"), Interface: "enp0s31f6", ASNumber: 4200000000},
		},
		Workloads: []Workload{{Name: "w", Node: "n2", Address: mustAddr("10.96.0.1")}},
	}
	if !reflect.DeepEqual(lab, want) {
		t.Errorf("got\n%+v\nwant\n%+v", lab, want)
	}
	checkInvariants(t, lab)
}

// When only one BGP timer is given, the other keeps the 1:3 ratio RFC 4271
// suggests.
func TestTimerDefaults(t *testing.T) {
	const base = "name: t\nipPools: [{name: p, cidr: 10.244.0.0/16}]\nnetworks: [{name: lan, cidr: 192.168.50.0/24}]\nnodes: {n1: {network: lan, address: 192.168.50.10}}\n"
	for _, tc := range []struct {
		bgp             string
		keepalive, hold time.Duration
	}{
		{"", 3 * time.Second, 9 * time.Second},
		{"bgp: {keepaliveTime: 10s}", 10 * time.Second, 30 * time.Second},
		{"bgp: {keepaliveTime: 30000s}", 30000 * time.Second, 65535 * time.Second},
		{"bgp: {holdTime: 90s}", 30 * time.Second, 90 * time.Second},
		{"bgp: {holdTime: 10s}", 3 * time.Second, 10 * time.Second},
		{"bgp: {holdTime: 3s}", time.Second, 3 * time.Second},
		{"bgp: {holdTime: 0s}", 0, 0},
		{"bgp: {holdTime: 0s, keepaliveTime: 5s}", 5 * time.Second, 0},
		{"bgp: {keepaliveTime: 1m, holdTime: 3m}", time.Minute, 3 * time.Minute},
	} {
		lab, err := Parse("timers.yaml", []byte(base+tc.bgp+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.bgp, err)
			continue
		}
		if lab.BGP.KeepaliveTime != tc.keepalive || lab.BGP.HoldTime != tc.hold {
			t.Errorf("%q: keepalive %v hold %v, want %v %v", tc.bgp, lab.BGP.KeepaliveTime, lab.BGP.HoldTime, tc.keepalive, tc.hold)
		}
	}
}

// Nodes keep the file's order, not the order of their names.
func TestNodeOrder(t *testing.T) {
	const file = "name: t\nipPools: [{name: p, cidr: 10.244.0.0/16}]\nnetworks: [{name: lan, cidr: 192.168.50.0/24}]\n" +
		"nodes:\n  zeta: {network: lan, address: 192.168.50.3}\n  alpha: {network: lan, address: 192.168.50.1}\n  mid: {network: lan, address: 192.168.50.2}\n"
	lab, err := Parse("order.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range lab.Nodes {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, " "); got != "zeta alpha mid" {
		t.Errorf("node order %q, want %q", got, "zeta alpha mid")
	}
}

// YAML anchors and aliases are ordinary YAML and work.
func TestAliases(t *testing.T) {
	const file = "name: t\nipPools: [{name: p, cidr: &pool 10.244.0.0/16}]\nnetworks: [{name: &net lan, cidr: 192.168.50.0/24}]\n" +
		"nodes:\n  n1: {network: *net, address: 192.168.50.1}\n  n2: {network: *net, address: 192.168.50.2}\n"
	lab, err := Parse("aliases.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if lab.Nodes[1].Network != "lan" {
		t.Errorf("n2 network %q, want lan", lab.Nodes[1].Network)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) error %v, want fs.ErrNotExist", err)
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		t.Errorf("a missing file is not a validation error: %v", err)
	}
}

func TestHelpers(t *testing.T) {
	lab, err := Load("../examples/calico-bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := lab.Node("node2"); !ok || n.Address != mustAddr("192.168.50.11") {
		t.Errorf("Node(node2) = %+v, %v", n, ok)
	}
	if _, ok := lab.Node("web-1"); ok {
		t.Error("Node(web-1) found a workload")
	}
	if w, ok := lab.Workload("db-2"); !ok || w.Node != "node2" {
		t.Errorf("Workload(db-2) = %+v, %v", w, ok)
	}
	if _, ok := lab.Workload("node1"); ok {
		t.Error("Workload(node1) found a node")
	}
	if n, ok := lab.Network("lan"); !ok || n.CIDR != mustPrefix("192.168.50.0/24") {
		t.Errorf("Network(lan) = %+v, %v", n, ok)
	}
	if n, ok := lab.NetworkOf("node3"); !ok || n.Name != "lan" || n.MTU != 1500 {
		t.Errorf("NetworkOf(node3) = %+v, %v", n, ok)
	}
	if _, ok := lab.NetworkOf("nope"); ok {
		t.Error("NetworkOf(nope) found a network")
	}
	if got := lab.NamespaceName("web-1"); got != "vr-calico-bgp.web-1" {
		t.Errorf("NamespaceName(web-1) = %q", got)
	}
	if got := lab.StateDir(); got != "/run/vrouter/calico-bgp" {
		t.Errorf("StateDir() = %q", got)
	}
	old := StateRoot
	StateRoot = "/tmp/x"
	if got := lab.StateDir(); got != "/tmp/x/calico-bgp" {
		t.Errorf("StateDir() with StateRoot /tmp/x = %q", got)
	}
	StateRoot = old
	if p, ok := lab.PoolFor(mustAddr("10.244.166.128")); !ok || p.Name != "default-ipv4-ippool" {
		t.Errorf("PoolFor(10.244.166.128) = %+v, %v", p, ok)
	}
	if _, ok := lab.PoolFor(mustAddr("192.168.50.10")); ok {
		t.Error("PoolFor(node address) found a pool")
	}
}

func TestBroadcast(t *testing.T) {
	for c, want := range map[string]string{
		"192.168.50.0/24": "192.168.50.255",
		"10.0.0.0/8":      "10.255.255.255",
		"192.168.60.0/30": "192.168.60.3",
		"0.0.0.0/0":       "255.255.255.255",
		"10.1.2.3/32":     "10.1.2.3",
	} {
		if got := broadcast(mustPrefix(c)); got != mustAddr(want) {
			t.Errorf("broadcast(%s) = %s, want %s", c, got, want)
		}
	}
}

// checkInvariants checks, independently of the validation code, what every
// Lab returned without error promises.
func checkInvariants(t *testing.T, lab *Lab) {
	t.Helper()
	switch lab.Datastore {
	case DatastoreBolt:
	case DatastoreEtcd:
		subnet, ok := lab.EtcdSubnet()
		if !ok {
			t.Errorf("etcd lab without an etcd subnet")
		}
		for _, n := range lab.Networks {
			if n.CIDR.Overlaps(subnet) {
				t.Errorf("etcd subnet %s overlaps network %s", subnet, n.CIDR)
			}
		}
		for _, n := range lab.Nodes {
			if n.Interface == EtcdInterface || slices.Contains(EtcdMemberNames(), n.Name) {
				t.Errorf("etcd lab node %s: interface %s", n.Name, n.Interface)
			}
		}
	default:
		t.Errorf("datastore %q", lab.Datastore)
	}
	label := func(s string, limit int) bool {
		if len(s) == 0 || len(s) > limit || s[0] == '-' || s[len(s)-1] == '-' {
			return false
		}
		for _, c := range s {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
		return true
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("invariant broken: "+format, args...)
	}
	if !label(lab.Name, MaxLabNameLen) {
		fail("lab name %q", lab.Name)
	}
	if len(lab.IPPools) == 0 || len(lab.Networks) == 0 || len(lab.Nodes) == 0 {
		fail("%d pools, %d networks, %d nodes", len(lab.IPPools), len(lab.Networks), len(lab.Nodes))
	}
	for _, w := range lab.Workloads {
		if w.Stack != "" && w.Stack != config.StackNetstack {
			fail("workload %s stack %q", w.Name, w.Stack)
		}
		if len(w.Serve) > 0 && !w.IsNetstack() {
			fail("workload %s serves %v without a netstack", w.Name, w.Serve)
		}
		if _, err := netstack.ParseServices(w.Serve); err != nil {
			fail("workload %s serve: %v", w.Name, err)
		}
	}
	for _, w := range lab.Workloads {
		if n, ok := lab.Node(w.Node); ok && lab.KernelNode(n) && w.IsNetstack() {
			fail("netstack workload %s on kernel-mode node %s", w.Name, n.Name)
		}
	}
	for _, n := range lab.Nodes {
		if err := n.Impairment.Validate(); err != nil {
			fail("node %s impairment %+v: %v", n.Name, n.Impairment, err)
		}
	}
	for _, r := range lab.RouterNodes {
		for _, ri := range r.Interfaces {
			if err := ri.Impairment.Validate(); err != nil {
				fail("router %s %s impairment %+v: %v", r.Name, ri.Name, ri.Impairment, err)
			}
		}
	}
	reserved := []netip.Prefix{mustPrefix("0.0.0.0/8"), mustPrefix("127.0.0.0/8"), mustPrefix("169.254.0.0/16"), mustPrefix("224.0.0.0/3")}
	var ranges []netip.Prefix
	poolNames := map[string]bool{}
	for _, p := range lab.IPPools {
		if p.Name == "" || poolNames[p.Name] {
			fail("pool name %q empty or repeated", p.Name)
		}
		poolNames[p.Name] = true
		if !p.CIDR.IsValid() || !p.CIDR.Addr().Is4() || p.CIDR != p.CIDR.Masked() {
			fail("pool %s cidr %v", p.Name, p.CIDR)
		}
		if p.BlockSize < 20 || p.BlockSize > 32 || p.BlockSize < p.CIDR.Bits() {
			fail("pool %s blockSize %d for %v", p.Name, p.BlockSize, p.CIDR)
		}
		if p.IPIPMode != IPIPNever && p.IPIPMode != IPIPAlways && p.IPIPMode != IPIPCrossSubnet {
			fail("pool %s ipipMode %q", p.Name, p.IPIPMode)
		}
		ranges = append(ranges, p.CIDR)
	}
	b := lab.BGP
	if b.ASNumber == 0 || b.ASNumber == 23456 {
		fail("AS %d", b.ASNumber)
	}
	if b.HoldTime%time.Second != 0 || b.KeepaliveTime%time.Second != 0 || b.HoldTime > 65535*time.Second || b.KeepaliveTime > 65535*time.Second || b.KeepaliveTime < 0 {
		fail("timers %v %v", b.KeepaliveTime, b.HoldTime)
	}
	if b.HoldTime != 0 && (b.HoldTime < 3*time.Second || b.KeepaliveTime <= 0 || b.KeepaliveTime >= b.HoldTime) {
		fail("keepalive %v hold %v", b.KeepaliveTime, b.HoldTime)
	}
	nets := map[string]Network{}
	for _, n := range lab.Networks {
		if !label(n.Name, MaxNameLen) {
			fail("network name %q", n.Name)
		}
		if _, dup := nets[n.Name]; dup {
			fail("network %s repeated", n.Name)
		}
		nets[n.Name] = n
		if !n.CIDR.IsValid() || !n.CIDR.Addr().Is4() || n.CIDR != n.CIDR.Masked() || n.CIDR.Bits() > 30 {
			fail("network %s cidr %v", n.Name, n.CIDR)
		}
		if n.MTU < 576 || n.MTU > 9000 {
			fail("network %s mtu %d", n.Name, n.MTU)
		}
		ranges = append(ranges, n.CIDR)
	}
	for i, a := range ranges {
		for _, r := range reserved {
			if a.Overlaps(r) {
				fail("%v overlaps reserved %v", a, r)
			}
		}
		for _, b := range ranges[:i] {
			if a.Overlaps(b) {
				fail("%v overlaps %v", a, b)
			}
		}
	}
	names := map[string]bool{}
	addrs := map[netip.Addr]bool{}
	for _, n := range lab.Nodes {
		if !label(n.Name, MaxNameLen) || names[n.Name] {
			fail("node name %q invalid or repeated", n.Name)
		}
		names[n.Name] = true
		net, ok := lab.NetworkOf(n.Name)
		if !ok || net.Name != n.Network {
			fail("node %s network %q", n.Name, n.Network)
		}
		if !net.CIDR.Contains(n.Address) || n.Address == net.CIDR.Addr() || n.Address == broadcast(net.CIDR) || addrs[n.Address] {
			fail("node %s address %v in %v", n.Name, n.Address, net.CIDR)
		}
		addrs[n.Address] = true
		if len(n.Interface) == 0 || len(n.Interface) > 15 || strings.ContainsAny(n.Interface, "/: \t\n") || n.Interface == "." || n.Interface == ".." {
			fail("node %s interface %q", n.Name, n.Interface)
		}
		if !strings.HasPrefix(lab.NamespaceName(n.Name), "vr-"+lab.Name+".") {
			fail("namespace %q", lab.NamespaceName(n.Name))
		}
	}
	for _, r := range lab.RouterNodes {
		if !label(r.Name, MaxNameLen) || names[r.Name] {
			fail("router node name %q invalid or repeated", r.Name)
		}
		names[r.Name] = true
		if len(r.Interfaces) == 0 || len(r.Interfaces) > MaxRouterInterfaces {
			fail("router node %s has %d interfaces", r.Name, len(r.Interfaces))
		}
		ifNames, ifNets := map[string]bool{}, map[string]bool{}
		own := map[netip.Addr]bool{}
		for _, i := range r.Interfaces {
			net, ok := lab.Network(i.Network)
			if !ok || ifNets[i.Network] || ifNames[i.Name] || i.Name == "" || len(i.Name) > 15 || strings.ContainsAny(i.Name, "/: \t\n") {
				fail("router node %s interface %+v", r.Name, i)
			}
			ifNames[i.Name], ifNets[i.Network], own[i.Address] = true, true, true
			if !net.CIDR.Contains(i.Address) || i.Address == net.CIDR.Addr() || i.Address == broadcast(net.CIDR) || addrs[i.Address] {
				fail("router node %s address %v in %v", r.Name, i.Address, net.CIDR)
			}
			addrs[i.Address] = true
		}
		dsts := map[netip.Prefix]bool{}
		for _, rt := range r.Routes {
			if !rt.Dst.IsValid() || rt.Dst != rt.Dst.Masked() || dsts[rt.Dst] || own[rt.Via] || !rt.Via.Is4() {
				fail("router node %s route %+v", r.Name, rt)
			}
			dsts[rt.Dst] = true
		}
	}
	for _, n := range lab.Networks {
		if n.Gateway.IsValid() && !n.CIDR.Contains(n.Gateway) {
			fail("network %s gateway %v", n.Name, n.Gateway)
		}
	}
	for _, w := range lab.Workloads {
		if !label(w.Name, MaxNameLen) || names[w.Name] {
			fail("workload name %q invalid or repeated", w.Name)
		}
		names[w.Name] = true
		if _, ok := lab.Node(w.Node); !ok {
			fail("workload %s on unknown node %q", w.Name, w.Node)
		}
		if w.Address.IsValid() {
			if _, ok := lab.PoolFor(w.Address); !ok || addrs[w.Address] {
				fail("workload %s address %v", w.Name, w.Address)
			}
			addrs[w.Address] = true
		}
	}
}

// dataplane: kernel makes a kernel lab; without it a lab is userspace.
func TestDataplaneField(t *testing.T) {
	data, err := os.ReadFile("../examples/calico-bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lab, err := Parse("calico-bgp.yaml", data)
	if err != nil || lab.Dataplane != DataplaneUserspace || lab.Kernel() {
		t.Fatalf("Parse: %v; dataplane %q, want userspace", err, lab.Dataplane)
	}
	for _, v := range []string{"kernel", "userspace"} {
		lab, err := Parse("k.yaml", append(append([]byte{}, data...), []byte("\ndataplane: "+v+"\n")...))
		if err != nil || lab.Dataplane != v || lab.Kernel() != (v == "kernel") {
			t.Errorf("dataplane: %s: %v; got %q", v, err, lab.Dataplane)
		}
	}
}

// datastore: etcd makes an etcd lab, with an etcd network clear of the
// lab's networks and pools; without it a lab keeps IPAM in bbolt.
func TestDatastoreField(t *testing.T) {
	data, err := os.ReadFile("../examples/calico-bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lab, err := Parse("calico-bgp.yaml", data)
	if err != nil || lab.Datastore != DatastoreBolt || lab.Etcd() {
		t.Fatalf("Parse: %v; datastore %q, want bbolt", err, lab.Datastore)
	}
	for _, v := range []string{"etcd", "bbolt"} {
		lab, err := Parse("e.yaml", append(append([]byte{}, data...), []byte("\ndatastore: "+v+"\n")...))
		if err != nil || lab.Datastore != v || lab.Etcd() != (v == "etcd") {
			t.Errorf("datastore: %s: %v; got %q", v, err, lab.Datastore)
		}
	}
	_, err = Parse("e.yaml", append(append([]byte{}, data...), []byte("\ndatastore: Etcd\n")...))
	if err == nil || !strings.Contains(err.Error(), `"Etcd" is not a datastore (valid: bbolt, etcd); did you mean etcd?`) {
		t.Errorf("datastore: Etcd: %v", err)
	}
}

// An etcd lab's etcd network skips the prefixes the lab uses.
func TestEtcdSubnet(t *testing.T) {
	l := &Lab{
		Networks: []Network{{CIDR: netip.MustParsePrefix("198.18.0.0/24")}},
		IPPools:  []IPPool{{CIDR: netip.MustParsePrefix("198.18.4.0/22")}},
		BGPPeers: []BGPPeer{{PeerIP: netip.MustParseAddr("198.18.9.1")}},
	}
	got, ok := l.EtcdSubnet()
	if want := netip.MustParsePrefix("198.18.12.0/22"); !ok || got != want {
		t.Errorf("EtcdSubnet = %v %v, want %v", got, ok, want)
	}
	l.IPPools = []IPPool{{CIDR: netip.MustParsePrefix("198.16.0.0/14")}}
	if got, ok := l.EtcdSubnet(); ok {
		t.Errorf("EtcdSubnet = %v with 198.18.0.0/15 taken, want none", got)
	}
}

// A node's dataplane field overrides the lab's, both ways; a network with
// kernel nodes is a kernel network, mixed when a userspace member (node or
// router) is on it too. Routers may join a lab with kernel nodes.
func TestNodeDataplane(t *testing.T) {
	lab, err := Parse("mixed.yaml", []byte(`name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks:
  - {name: lan, cidr: 192.168.50.0/24}
  - {name: dc, cidr: 192.168.60.0/24}
  - {name: far, cidr: 192.168.70.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11, dataplane: userspace}
  node3: {network: dc, address: 192.168.60.10}
  node4: {network: far, address: 192.168.70.10, dataplane: userspace}
dataplane: kernel
`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, n := range lab.Nodes {
		got[n.Name] = lab.KernelNode(n)
	}
	if want := map[string]bool{"node1": true, "node2": false, "node3": true, "node4": false}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kernel nodes %v, want %v", got, want)
	}
	for net, want := range map[string][2]bool{"lan": {true, true}, "dc": {true, false}, "far": {false, false}} {
		if k, m := lab.KernelNetwork(net), lab.MixedNetwork(net); k != want[0] || m != want[1] {
			t.Errorf("network %s: kernel %v mixed %v, want %v", net, k, m, want)
		}
	}
	// Without a lab-wide dataplane a node's own is the only kernel one.
	lab, err = Parse("one.yaml", []byte(`name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks: [{name: lan, cidr: 192.168.50.0/24}]
nodes:
  node1: {network: lan, address: 192.168.50.10, dataplane: kernel}
  node2: {network: lan, address: 192.168.50.11}
`))
	if err != nil || lab.Kernel() || !lab.KernelNode(lab.Nodes[0]) || lab.KernelNode(lab.Nodes[1]) || !lab.MixedNetwork("lan") {
		t.Errorf("Parse: %v; lab kernel %v, nodes %+v", err, lab != nil && lab.Kernel(), lab)
	}
	// (not testdata/*.yaml: those are all broken files, deployed by
	// TestEveryBadLabFileCreatesNothing)
	if _, err := Load("testdata/dataplane-kernel-routers.lab"); err != nil {
		t.Errorf("a kernel lab with routers: %v", err)
	}
}

// A netstack workload's stack and services come out of the lab file as
// written (services normalised), a namespace workload's stack is the
// default (empty) whether written or not.
func TestWorkloadStackServe(t *testing.T) {
	const file = `name: t
ipPools:
  - {name: p, cidr: 10.244.0.0/16}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
workloads:
  - {name: api-1, node: node1, stack: netstack, serve: [tcp:80:http, tcp:5201:sink, udp:53:echo, tcp:7:echo]}
  - {name: bare, node: node1, stack: netstack}
  - {name: web-1, node: node1, stack: namespace}
  - {name: web-2, node: node1}
`
	lab, err := Parse("t.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	want := []Workload{
		{Name: "api-1", Node: "node1", Stack: config.StackNetstack, Serve: []string{"tcp:80:http", "tcp:5201:sink", "udp:53:echo", "tcp:7:echo"}},
		{Name: "bare", Node: "node1", Stack: config.StackNetstack},
		{Name: "web-1", Node: "node1"},
		{Name: "web-2", Node: "node1"},
	}
	if !reflect.DeepEqual(lab.Workloads, want) {
		t.Errorf("workloads\n%+v\nwant\n%+v", lab.Workloads, want)
	}
	if !lab.Workloads[0].IsNetstack() || lab.Workloads[2].IsNetstack() {
		t.Error("IsNetstack wrong")
	}
}

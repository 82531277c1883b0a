package topology

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// want is one expected problem: its line, its field, and a piece of its
// message.
type want struct {
	line  int
	field string
	msg   string
}

// ruleTests pairs each validation rule with a file in testdata that breaks
// it, and the problems that file must produce: no more, no fewer.
var ruleTests = []struct {
	rule, file string
	want       []want
}{
	// The file as a whole.
	{"YAML syntax error keeps yaml's line", "syntax.yaml", []want{
		{4, "", "invalid YAML: found character that cannot start any token"}}},
	{"empty file", "empty.yaml", []want{
		{0, "", "the file is empty"}}},
	{"one document only", "two-documents.yaml", []want{
		{8, "", "holds one YAML document"}}},
	{"top level is a mapping", "not-a-mapping.yaml", []want{
		{1, "", "a lab file is a YAML mapping with the fields name, ipPools, ipam, bgp, networks, nodes, workloads, bgpPeers"}}},
	{"unknown fields", "unknown-field.yaml", []want{
		{7, "nodes.node1.adress", "unknown field (known: kind, network, address, interface, asNumber, labels, routeReflectorClusterID, cpuSet, impairments, dataplane)"},
		{7, "nodes.node1.address", "is required"},
		{8, "routeReflectors", "unknown field (known: name, ipPools, ipam, bgp, networks, nodes, workloads, bgpPeers, routers, dataplane, datastore, policies)"}}},
	{"field names are case-sensitive", "unknown-field-case.yaml", []want{
		{9, "bgp.asnumber", "unknown field (known: asNumber, nodeToNodeMesh, keepaliveTime, holdTime, gracefulRestart, restartTime)"}}},
	{"a key given twice", "duplicate-key.yaml", []want{
		{8, "nodes.node1", "given twice (first on line 7)"}}},
	{"merge keys", "merge-key.yaml", []want{
		{8, "nodes.node2.network", "is required"},
		{9, "nodes.node2.<<", "merge keys are not supported"}}},
	{"lists and mappings in their place", "wrong-shape.yaml", []want{
		{2, "ipPools", "must be a list of IP pools, not a mapping"},
		{6, "nodes", "must be a mapping of node name to node (e.g. node1: {network: lan, address: 192.168.50.10}), not a list"}}},
	{"list items are mappings", "wrong-item.yaml", []want{
		{9, "workloads[0]", `must be a workload (a mapping), not "web-1"`}}},
	{"values are single values", "not-a-value.yaml", []want{
		{1, "name", "must be a single value, not a list"},
		{7, "nodes.node1.address", "must be a single value, not a mapping"}}},

	// The lab's name.
	{"lab name required", "name-missing.yaml", []want{
		{1, "name", "is required"}}},
	{"lab name not empty", "name-empty.yaml", []want{
		{1, "name", "must not be empty"}}},
	{"lab name is a DNS label", "name-invalid.yaml", []want{
		{1, "name", `"Calico_BGP" is not a valid lab name: use lowercase letters, digits and '-', starting and ending with a letter or digit`}}},
	{"lab name in upper case", "name-uppercase.yaml", []want{
		{1, "name", `did you mean "calicobgp"?`}}},
	{"lab name at most 16 characters", "name-too-long.yaml", []want{
		{1, "name", `"calico-bgp-ipip-lab" is 19 characters long; lab names are at most 16`}}},

	// IP pools.
	{"ipPools required", "pools-missing.yaml", []want{
		{1, "ipPools", "at least one IP pool is required"}}},
	{"ipPools not empty", "pools-empty.yaml", []want{
		{2, "ipPools", "at least one IP pool is required"}}},
	{"pool name and cidr required", "pool-missing-fields.yaml", []want{
		{3, "ipPools[0].name", "is required"},
		{3, "ipPools[0].cidr", "is required"}}},
	{"pool name is a DNS subdomain", "pool-name-invalid.yaml", []want{
		{3, "ipPools[0].name", `"Default_Pool" is not a valid IP pool name`}}},
	{"pool names unique", "pool-name-duplicate.yaml", []want{
		{4, "ipPools[1].name", "IP pool p is already defined on line 3"}}},
	{"pool cidr is an IPv4 CIDR", "pool-cidr-invalid.yaml", []want{
		{3, "ipPools[0].cidr", `"10.244.0.0/33" is not a CIDR`},
		{4, "ipPools[1].cidr", "10.245.0.0 has no prefix length"},
		{5, "ipPools[2].cidr", "fd00::/48 is not an IPv4 CIDR"}}},
	{"pool cidr without host bits", "pool-host-bits.yaml", []want{
		{3, "ipPools[0].cidr", "10.244.1.0/16 has host bits set; did you mean 10.244.0.0/16?"}}},
	{"pools do not overlap", "pool-overlap.yaml", []want{
		{4, "ipPools[1].cidr", "10.244.128.0/24 overlaps ipPools[0] a (10.244.0.0/16, line 3)"}}},
	{"pools avoid reserved ranges", "pool-reserved.yaml", []want{
		{3, "ipPools[0].cidr", "169.254.0.0/16 overlaps the link-local range 169.254.0.0/16"}}},
	{"blockSize 20-32", "blocksize-range.yaml", []want{
		{3, "ipPools[0].blockSize", "33 is outside 20-32"},
		{4, "ipPools[1].blockSize", "19 is outside 20-32"}}},
	{"a block fits in its pool", "blocksize-bigger-than-pool.yaml", []want{
		{3, "ipPools[0].blockSize", "20 makes blocks (/20) bigger than the pool 10.244.0.0/24; use a blockSize of at least 24"},
		{4, "ipPools[1].cidr", "10.245.0.0/28 is smaller than one block (blockSize 26 by default)"}}},
	{"blockSize is a whole number", "blocksize-type.yaml", []want{
		{3, "ipPools[0].blockSize", `must be a number, not the string "26"`},
		{4, "ipPools[1].blockSize", `"26.5" is not a whole number`}}},
	{"ipipMode is Always, CrossSubnet or Never", "ipipmode-invalid.yaml", []want{
		{3, "ipPools[0].ipipMode", `"always" is not an IPIP mode; did you mean Always? (valid: Always, CrossSubnet, Never; case matters)`},
		{4, "ipPools[1].ipipMode", "did you mean CrossSubnet?"},
		{5, "ipPools[2].ipipMode", `"Sometimes" is not an IPIP mode (valid: Always, CrossSubnet, Never)`},
		{6, "ipPools[3].ipipMode", "true is not an IPIP mode; did you mean Always or Never?"}}},

	// BGP.
	{"AS number not 0", "as-zero.yaml", []want{
		{8, "bgp.asNumber", "0 is outside 1-4294967295"}}},
	{"AS number fits 32 bits", "as-too-big.yaml", []want{
		{8, "bgp.asNumber", "4294967296 is outside 1-4294967295"}}},
	{"AS number not AS_TRANS", "as-trans.yaml", []want{
		{8, "bgp.asNumber", "23456 is AS_TRANS (RFC 6793)"}}},
	{"nodeToNodeMesh is a boolean", "mesh-not-bool.yaml", []want{
		{8, "bgp.nodeToNodeMesh", `"yes" is not true or false`}}},
	{"bgp is a mapping", "bgp-not-mapping.yaml", []want{
		{8, "bgp", `must be a mapping (fields: asNumber, nodeToNodeMesh, keepaliveTime, holdTime, gracefulRestart, restartTime), not "64512"`}}},
	{"holdTime 0 or at least 3s", "holdtime-too-short.yaml", []want{
		{8, "bgp.holdTime", "2s is too short; RFC 4271 allows 0 (no hold timer) or at least 3s"}}},
	{"restartTime fits the capability", "restart-time-range.yaml", []want{
		{8, "bgp.restartTime", "1h23m20s is out of range; the graceful restart capability carries 1s to 4095s (RFC 4724)"}}},
	{"keepalive shorter than hold", "keepalive-not-shorter.yaml", []want{
		{8, "bgp.keepaliveTime", "9s must be shorter than holdTime 9s"}}},
	{"keepalive 0 only without hold timer", "keepalive-zero.yaml", []want{
		{8, "bgp.keepaliveTime", "0s sends no keepalives, which only works with holdTime 0; use e.g. 3s"}}},
	{"timers are durations of whole seconds", "timer-format.yaml", []want{
		{9, "bgp.keepaliveTime", "3 needs a unit; did you mean 3s?"},
		{10, "bgp.holdTime", "1500ms is not a whole number of seconds"}}},
	{"timers 0-65535s", "timer-range.yaml", []want{
		{9, "bgp.keepaliveTime", "-1s is negative"},
		{10, "bgp.holdTime", "19h is longer than BGP's maximum of 65535s"}}},

	// Underlay networks.
	{"networks required", "networks-missing.yaml", []want{
		{1, "networks", "at least one underlay network is required"}}},
	{"network name and cidr required", "network-missing-fields.yaml", []want{
		{5, "networks[0].name", "is required"},
		{5, "networks[0].cidr", "is required"}}},
	{"network name is a DNS label", "network-name-invalid.yaml", []want{
		{5, "networks[0].name", `"LAN.1" is not a valid network name`}}},
	{"network names unique", "network-name-duplicate.yaml", []want{
		{6, "networks[1].name", "network lan is already defined on line 5"}}},
	{"network at least a /30", "network-too-small.yaml", []want{
		{6, "networks[1].cidr", "192.168.60.0/31 is too small for nodes; an underlay network is a /30 or bigger"},
		{7, "networks[2].cidr", "192.168.70.4/32 is too small"}}},
	{"networks do not overlap", "network-overlap.yaml", []want{
		{6, "networks[1].cidr", "192.168.50.0/24 overlaps network lan (192.168.0.0/16, line 5)"}}},
	{"networks do not overlap pools", "network-overlaps-pool.yaml", []want{
		{5, "networks[0].cidr", "10.0.0.0/8 overlaps ipPools[0] p (10.244.0.0/16, line 3)"}}},
	{"networks avoid reserved ranges", "network-reserved.yaml", []want{
		{5, "networks[0].cidr", "127.0.0.0/24 overlaps the loopback range 127.0.0.0/8"}}},
	{"mtu 576-9000", "mtu-range.yaml", []want{
		{5, "networks[0].mtu", "9001 is outside 576-9000"},
		{6, "networks[1].mtu", "575 is outside 576-9000"}}},

	// Nodes.
	{"nodes required", "nodes-missing.yaml", []want{
		{1, "nodes", "a lab needs at least one node"}}},
	{"nodes not empty", "nodes-empty.yaml", []want{
		{6, "nodes", "a lab needs at least one node"}}},
	{"node name is a DNS label", "node-name-invalid.yaml", []want{
		{7, "nodes.Node_1", `"Node_1" is not a valid node name`}}},
	{"node name at most 40 characters", "node-name-too-long.yaml", []want{
		{7, "nodes.node-with-a-name-that-is-far-too-long-abcd", "is 42 characters long; node names are at most 40"}}},
	{"node network and address required", "node-missing-fields.yaml", []want{
		{7, "nodes.node1.network", "is required (known: lan)"},
		{7, "nodes.node1.address", "is required"},
		{8, "nodes.node2.network", "is required"},
		{8, "nodes.node2.address", "is required"}}},
	{"node on a known network", "node-unknown-network.yaml", []want{
		{8, "nodes.node2.network", "unknown network wan (known: lan)"}}},
	{"node address is an IPv4 address", "node-address-invalid.yaml", []want{
		{8, "nodes.node2.address", `"192.168.50.300" is not an IPv4 address`},
		{9, "nodes.node3.address", "192.168.50.12/24: write the address without a prefix length; the prefix length comes from the node's network"},
		{10, "nodes.node4.address", "fd00::1 is not an IPv4 address (only IPv4 is supported)"}}},
	{"node address in its network", "node-address-outside-network.yaml", []want{
		{8, "nodes.node2.address", "192.168.60.10 is not in network lan (192.168.50.0/24)"}}},
	{"node address a host address", "node-address-network-broadcast.yaml", []want{
		{8, "nodes.node2.address", "192.168.50.0 is the network address of lan (192.168.50.0/24)"},
		{9, "nodes.node3.address", "192.168.50.255 is the broadcast address of lan (192.168.50.0/24)"}}},
	{"node addresses unique", "node-address-duplicate.yaml", []want{
		{8, "nodes.node2.address", "192.168.50.10 is already the address of node node1 (line 7)"}}},
	{"interface is a Linux interface name", "interface-invalid.yaml", []want{
		{8, "nodes.node2.interface", `"enp0s31f6-uplink" is 16 bytes long; Linux interface names are at most 15`},
		{9, "nodes.node3.interface", `"eth/0" contains '/'`},
		{10, "nodes.node4.interface", "tunl0 is the node's IPIP tunnel device"},
		{11, "nodes.node5.interface", `".." is not a valid Linux interface name`},
		{12, "nodes.node6.interface", `"eth 0" contains ' '`},
		{13, "nodes.node7.interface", `"cali0" starts with cali`}}},

	{"impairments in range", "impairments-invalid.yaml", []want{
		{8, "nodes.node2.impairments.loss", `"150%" is not from 0% to 100%`},
		{9, "nodes.node3.impairments.delay", `"-5ms" is negative`},
		{15, "nodes.node4.impairments.jitter", "10ms is more than the delay (5ms): a frame cannot leave early"},
		{16, "nodes.node5.impairments.rate", `"100mb" is not a rate such as 100mbit (units: kbit, mbit, gbit)`},
		{17, "nodes.node6.impairments.lag", "unknown field (known: delay, jitter, loss, rate, duplicate, corrupt)"},
		{18, "nodes.node7.impairments", "must be a mapping (fields: delay, jitter, loss, rate, duplicate, corrupt, e.g. {delay: 20ms, loss: 1%}), not"},
		{19, "nodes.node8.impairments.delay", "must not be empty (leave it out for none)"},
		{23, "nodes.tor.interfaces[0].impairments.loss", `"-1%" is not from 0% to 100%`}}},

	// Workloads.
	{"workload name and node required", "workload-missing-fields.yaml", []want{
		{9, "workloads[0].name", "is required"},
		{9, "workloads[0].node", "is required (known: node1)"}}},
	{"workload name is a DNS label", "workload-name-invalid.yaml", []want{
		{9, "workloads[0].name", `"web_1" is not a valid workload name`},
		{10, "workloads[1].name", `"-web" is not a valid workload name`}}},
	{"workload names unique", "workload-name-duplicate.yaml", []want{
		{10, "workloads[1].name", "workload web-1 is already defined on line 9"}}},
	{"workload and node names distinct", "workload-named-like-node.yaml", []want{
		{9, "workloads[0].name", "node1 is already the name of a node (line 7); nodes and workloads share names"}}},
	{"workload on a known node", "workload-unknown-node.yaml", []want{
		{9, "workloads[0].node", "unknown node node9 (known: node1)"}}},
	{"workload address in a pool", "workload-address-outside-pools.yaml", []want{
		{9, "workloads[0].address", "10.245.0.9 is not in any IP pool (10.244.0.0/16)"}}},
	{"workload addresses unique", "workload-address-duplicate.yaml", []want{
		{10, "workloads[1].address", "10.244.104.9 is already the address of workload web-1 (line 9)"}}},
	{"workload address not a node's", "workload-address-of-node.yaml", []want{
		{5, "networks[0].cidr", "10.244.0.0/24 overlaps ipPools[0] p"},
		{9, "workloads[0].address", "10.244.0.10 is the address of node node1 (line 7)"}}},

	// Router nodes (kind: router) and network gateways.
	{"node kind is calico or router", "node-kind-invalid.yaml", []want{
		{9, "nodes.tor.kind", `"Router" is not a kind of node (valid: calico, router); did you mean router? (case matters)`},
		{10, "nodes.node2.kind", `"switch" is not a kind of node (valid: calico, router)`},
		{10, "nodes.node2.bogus", "unknown field (known for calico nodes: kind, network, address, interface, asNumber, labels, routeReflectorClusterID, cpuSet, impairments, dataplane; for router nodes: kind, interfaces, routes)"}}},
	{"router and calico nodes keep to their fields", "router-node-calico-fields.yaml", []want{
		{11, "nodes.tor.network", "is a field of calico nodes; a router node has interfaces instead (fields of a router node: kind, interfaces, routes)"},
		{12, "nodes.tor.address", "is a field of calico nodes; a router node has interfaces instead"},
		{14, "nodes.tor.asNumber", "is a field of calico nodes"},
		{15, "nodes.tor.peers", "unknown field (known: kind, interfaces, routes)"},
		{19, "nodes.node2.routes", "is a field of router nodes (kind: router)"}}},
	{"router node interfaces required, a list", "router-node-interfaces-missing.yaml", []want{
		{9, "nodes.tor1.interfaces", "is required: a router node has interfaces"},
		{10, "nodes.tor2.interfaces", "a router node needs at least one interface"},
		{11, "nodes.tor3.interfaces", `must be a list of interfaces, not "lan"`},
		{12, "nodes.tor4.interfaces[0]", `must be an interface (a mapping), not "lan"`}}},
	{"router node at most 8 interfaces", "router-node-too-many-interfaces.yaml", []want{
		{18, "nodes.tor.interfaces", "9 interfaces are too many; a router node has at most 8"}}},
	{"router node interface names", "router-node-interface-name.yaml", []want{
		{13, "nodes.tor.interfaces[1].name", "eth1, the default name of this interface, is already the name of nodes.tor.interfaces[0] (line 12)"},
		{17, "nodes.tor2.interfaces[0].name", "tunl0 is the node's IPIP tunnel device"},
		{18, "nodes.tor2.interfaces[1].name", `"eth/0" contains '/'`},
		{23, "nodes.tor3.interfaces[1].name", "up is already the name of nodes.tor3.interfaces[0] (line 22)"}}},
	{"router node interface networks", "router-node-interface-network.yaml", []want{
		{12, "nodes.tor.interfaces[0].network", "is required (known: lan, wan)"},
		{13, "nodes.tor.interfaces[1].network", "unknown network dmz (known: lan, wan)"},
		{15, "nodes.tor.interfaces[3].network", "nodes.tor.interfaces[2] (line 14) is already on network wan; a router node has one interface per network"}}},
	{"router node interface addresses", "router-node-interface-address.yaml", []want{
		{12, "nodes.tor.interfaces[0].address", "is required"},
		{13, "nodes.tor.interfaces[1].address", "192.168.50.1 is not in network wan (192.168.60.0/24)"},
		{17, "nodes.tor2.interfaces[0].address", "192.168.50.0 is the network address of lan"},
		{18, "nodes.tor2.interfaces[1].address", "192.168.60.255 is the broadcast address of wan"},
		{22, "nodes.tor3.interfaces[0].address", "192.168.50.10 is already the address of node node1 (line 8)"},
		{23, "nodes.tor3.interfaces[1].address", "192.168.60.1/24: write the address without a prefix length"},
		{29, "nodes.tor5.interfaces[0].address", "192.168.60.9 is already the address of router node tor4 (nodes.tor4.interfaces[1], line 28)"}}},
	{"router node static routes", "router-node-routes.yaml", []want{
		{15, "nodes.tor.routes[0].dst", "10.10.0.1/16 has host bits set; did you mean 10.10.0.0/16?"},
		{16, "nodes.tor.routes[1].via", "is required"},
		{17, "nodes.tor.routes[2].dst", "is required (a CIDR such as 10.10.0.0/16, or default)"},
		{18, "nodes.tor.routes[3].via", "192.168.60.1 is the router's own address (nodes.tor.interfaces[1])"},
		{19, "nodes.tor.routes[4].dst", "a route to 0.0.0.0/0 is already given on line 18"},
		{19, "nodes.tor.routes[4].via", "192.168.70.1 is on none of the router's networks (lan 192.168.50.0/24, wan 192.168.60.0/24)"},
		{20, "nodes.tor.routes[5].dev", "unknown field (known: dst, via)"},
		{21, "nodes.tor.routes[6].dst", "10.13.0.0 has no prefix length"}}},
	{"network gateway", "network-gateway.yaml", []want{
		{5, "networks[0].gateway", "192.168.50.10 is the address of node node1 (line 10); the gateway is a router's address"},
		{6, "networks[1].gateway", "192.168.50.1 is not in network wan (192.168.60.0/24)"},
		{7, "networks[2].gateway", "192.168.70.1/24: write the address without a prefix length"},
		{8, "networks[3].gateway", "192.168.80.255 is the broadcast address of ext"}}},
	{"router node names shared", "router-node-name.yaml", []want{
		{9, "nodes.Tor_1", `"Tor_1" is not a valid node name`},
		{12, "workloads[0].name", "tor is already the name of a router node (line 10)"},
		{14, "routers.tor", "tor is already the name of a router node"},
		{15, "routers.ext.address", "192.168.60.1 is already the address of router node tor"}}},
	{"router nodes carry no workloads and run no BGP", "workload-on-router-node.yaml", []want{
		{11, "workloads[0].node", "tor is a router node (line 9): routers carry no workloads; put the workload on a calico node (known: node1)"},
		{13, "bgpPeers[0].node", "tor is a router node (line 9), which runs no BGP; name a calico node (known: node1)"}}},
	{"dataplane is userspace or kernel", "dataplane-invalid.yaml", []want{
		{2, "dataplane", `"Kernel" is not a dataplane (valid: userspace, kernel); did you mean kernel? (case matters)`}}},
	{"datastore is bbolt or etcd", "datastore-invalid.yaml", []want{
		{2, "datastore", `"consul" is not a datastore (valid: bbolt, etcd)`}}},
	{"an etcd lab's nodes leave mgmt0 to etcd, and its etcd network needs room", "datastore-etcd-interface.yaml", []want{
		{2, "datastore", "no /22 in 198.18.0.0/15 is free for the lab's etcd network"},
		{8, "nodes.node1.interface", "mgmt0 is the interface that joins a node to the lab's etcd network (datastore: etcd, line 2)"}}},
	{"an etcd lab's members' names are taken", "datastore-etcd-names.yaml", []want{
		{8, "nodes.etcd0", "etcd0 is the name of one of the lab's etcd members (datastore: etcd, line 2)"},
		{10, "workloads[0].name", "etcd2 is the name of one of the lab's etcd members"}}},
	{"dataplane is a string", "dataplane-other.yaml", []want{
		{2, "dataplane", "must be"}}},
	{"a node's dataplane is userspace or kernel; a kernel node has no impairments", "dataplane-node.yaml", []want{
		{7, "nodes.node1.dataplane", `"Kernel" is not a dataplane (valid: userspace, kernel); did you mean kernel? (case matters)`},
		{8, "nodes.node2.dataplane", "must be"},
		{9, "nodes.node3.impairments", "link impairments are not supported on a kernel-mode node yet (dataplane: kernel, line 9)"}}},
	{"a workload's stack and services", "workload-stack-serve.yaml", []want{
		{9, "workloads[0].stack", `"gvisor" is not a workload stack (valid: namespace, netstack; case matters)`},
		{10, "workloads[1].serve", "services are for netstack workloads (stack: netstack); a namespace workload runs its own servers (vrouter exec b -- ...)"},
		{16, "workloads[2].serve[1]", `no udp service "http" (tcp: http, echo, sink; udp: echo, sink)`},
		{17, "workloads[2].serve[2]", `port "0" is not 1-65535`},
		{18, "workloads[2].serve[3]", "tcp port 80 is already served (line 15); a port serves one service per protocol"},
		{19, "workloads[2].serve[4]", "must be a single value, not a list"},
		{20, "workloads[3].serve", `must be a list of services (e.g. [tcp:80:http, udp:53:echo]), not "tcp:80:http"`}}},
	{"a kernel lab has no netstack workloads", "dataplane-kernel-netstack.yaml", []want{
		{10, "workloads[0].stack", "netstack workloads need the userspace engine; node node1 is kernel-mode (dataplane: kernel, line 2)"}}},
	{"a calico node required", "nodes-only-routers.yaml", []want{
		{7, "nodes", "a lab needs at least one calico node"}}},
}

func TestRules(t *testing.T) {
	for _, tc := range ruleTests {
		t.Run(tc.rule, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			lab, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", path, lab)
			}
			if lab != nil {
				t.Errorf("Load(%s) returned a lab along with the error", path)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Load(%s) error %T %v, want *ValidationError", path, err, err)
			}
			if ve.File != path {
				t.Errorf("File = %q, want %q", ve.File, path)
			}
			checkProblems(t, ve, tc.want)
			// Every line of the message names the file, the line and the field.
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("Error() has %d lines, want %d:\n%s", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				prefix := path + ":" + fmt.Sprint(w.line) + ": "
				if w.line == 0 {
					prefix = path + ": "
				}
				if w.field != "" {
					prefix += w.field + ": "
				}
				if !strings.HasPrefix(lines[i], prefix) || !strings.Contains(lines[i], w.msg) {
					t.Errorf("Error() line %d = %q, want %q...%q", i, lines[i], prefix, w.msg)
				}
			}
		})
	}
}

// checkProblems compares the problems found with those wanted, in order.
func checkProblems(t *testing.T, ve *ValidationError, wants []want) {
	t.Helper()
	got := ve.Problems
	for i := 0; i < max(len(got), len(wants)); i++ {
		switch {
		case i >= len(got):
			t.Errorf("missing problem: line %d %s: ...%s...", wants[i].line, wants[i].field, wants[i].msg)
		case i >= len(wants):
			t.Errorf("unexpected problem: %s", got[i].format(ve.File))
		case got[i].Line != wants[i].line || got[i].Field != wants[i].field || !strings.Contains(got[i].Msg, wants[i].msg):
			t.Errorf("problem %d = %s\nwant line %d field %q message containing %q", i, got[i].format(ve.File), wants[i].line, wants[i].field, wants[i].msg)
		}
	}
}

func TestManyProblemsAtOnce(t *testing.T) {
	_, err := Load("testdata/many-problems.yaml")
	const want = `testdata/many-problems.yaml:1: name: "Lab" is not a valid lab name: use lowercase letters, digits and '-', starting and ending with a letter or digit; did you mean "lab"?
testdata/many-problems.yaml:3: ipPools[0].blockSize: 33 is outside 20-32
testdata/many-problems.yaml:3: ipPools[0].ipipMode: "never" is not an IPIP mode; did you mean Never? (valid: Always, CrossSubnet, Never; case matters)
testdata/many-problems.yaml:4: bgp.asNumber: 23456 is AS_TRANS (RFC 6793), reserved for 4-byte AS transition; pick another AS number, e.g. 64512
testdata/many-problems.yaml:4: bgp.holdTime: 1s is too short; RFC 4271 allows 0 (no hold timer) or at least 3s
testdata/many-problems.yaml:6: networks[0].mtu: 100000 is outside 576-9000
testdata/many-problems.yaml:8: nodes.node1.address: 192.168.60.10 is not in network lan (192.168.50.0/24)
testdata/many-problems.yaml:9: nodes.node2.adress: unknown field (known: kind, network, address, interface, asNumber, labels, routeReflectorClusterID, cpuSet, impairments, dataplane)
testdata/many-problems.yaml:9: nodes.node2.address: is required (the node's address on its network)
testdata/many-problems.yaml:11: workloads[0].node: unknown node node3 (known: node1, node2)`
	if err == nil || err.Error() != want {
		t.Errorf("Load error:\n%v\nwant:\n%s", err, want)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 10 {
		t.Fatalf("want a *ValidationError with 10 problems, got %#v", err)
	}
}

func TestProblemFormat(t *testing.T) {
	ve := &ValidationError{File: "bad.yaml", Problems: []Problem{
		{Line: 3, Field: "ipPools[0].blockSize", Msg: "33 is outside 20-32"},
		{Line: 2, Msg: "invalid YAML: did not find expected key"},
		{Msg: "the file is empty"},
	}}
	const want = "bad.yaml:3: ipPools[0].blockSize: 33 is outside 20-32\n" +
		"bad.yaml:2: invalid YAML: did not find expected key\n" +
		"bad.yaml: the file is empty"
	if got := ve.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
}

// Each testdata file breaks exactly the rule its test names: fixing that
// one problem must make it valid. The valid twin here shows the files are
// otherwise sound, so a test cannot pass by an unrelated problem.
func TestTestdataBaseIsValid(t *testing.T) {
	const base = "name: t\nipPools:\n  - {name: p, cidr: 10.244.0.0/16}\nnetworks:\n  - {name: lan, cidr: 192.168.50.0/24}\nnodes:\n  node1: {network: lan, address: 192.168.50.10}\n"
	if _, err := Parse("base.yaml", []byte(base)); err != nil {
		t.Fatal(err)
	}
}

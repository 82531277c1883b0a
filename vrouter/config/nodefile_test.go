package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The example node file in the repository (deploy/node.yaml) reads as
// the host it describes, with the defaults filled in.
func TestExampleNodeFile(t *testing.T) {
	c, err := LoadNodeFile("../../deploy/node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ma := netip.MustParseAddr
	want := &Node{
		Lab: HostLab, Node: "host1", StateDir: "/run/vrouter", Dataplane: DataplaneKernel,
		Network: "underlay", Prefix: netip.MustParsePrefix("192.168.50.10/24"), Interface: "ens33", MTU: 1500,
		Neighbors:      []Neighbor{{Node: "host2", Address: ma("192.168.50.11")}},
		TunnelSources:  []netip.Addr{ma("192.168.50.11")},
		Pools:          []Pool{{Name: "default-ipv4-ippool", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26, IPIPMode: "Never", MTU: 1440}},
		Datastore:      "/var/lib/vrouter/ipam.db",
		StrictAffinity: true,
		BGP: BGP{ASN: 64512, GracefulRestart: true, RestartTime: 120 * time.Second,
			Peers: []BGPPeer{{Address: ma("192.168.50.11"), ASN: 64512, Type: "node-to-node mesh", Node: "host2"}}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("deploy/node.yaml:\n%+v\nwant:\n%+v", c, want)
	}
}

// LoadNodeFile takes the JSON deploy writes too, by name or by content.
func TestLoadNodeFileJSON(t *testing.T) {
	dir := t.TempDir()
	c := &Node{Lab: "l", Node: "node1", Prefix: netip.MustParsePrefix("192.168.50.10/24"), Interface: "ens33", Dataplane: DataplaneKernel}
	for _, name := range []string{"node1.json", "node1.conf"} {
		path := filepath.Join(dir, name)
		if err := c.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		got, err := LoadNodeFile(path)
		if err != nil || got.Node != "node1" || got.Lab != "l" || got.Dataplane != DataplaneKernel {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
	if _, err := LoadNodeFile(filepath.Join(dir, "none.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// Defaults: node is the host name, peers get the node's AS, a peer
// without node is a global peer, pools get /26 blocks and Never.
func TestNodeFileDefaults(t *testing.T) {
	c, err := ParseNodeYAML("n.yaml", []byte("address: 10.0.0.5/24\ninterface: eth1\nasNumber: 65001\npeers:\n  - address: 10.0.0.1\n    asNumber: 65000\n  - address: 10.0.0.6\nipPools:\n  - cidr: 10.48.0.0/16\n"))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if c.Node != host || c.MTU != 1500 || c.Dataplane != DataplaneKernel || c.StateDir != DefaultStateDir || c.Datastore != DefaultDatastore || c.Lab != HostLab {
		t.Errorf("defaults: %+v", c)
	}
	if p := c.BGP.Peers; len(p) != 2 || p[0].ASN != 65000 || p[1].ASN != 65001 || p[0].Type != "global" || len(c.Neighbors) != 0 {
		t.Errorf("peers %+v, neighbors %+v", p, c.Neighbors)
	}
	if p := c.Pools; len(p) != 1 || p[0].BlockSize != 26 || p[0].IPIPMode != "Never" || p[0].Name == "" {
		t.Errorf("pools %+v", p)
	}
}

// Every problem is reported at once, as FILE:LINE: FIELD: message.
func TestNodeFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"empty", "", []string{"n.yaml: the file is empty"}},
		{"not a mapping", "- a\n- b\n", []string{"n.yaml:1: a node file is a YAML mapping"}},
		{"bad YAML", "address: [\n", []string{"n.yaml:1: invalid YAML"}},
		{"two documents", "asNumber: 1\n---\nasNumber: 2\n", []string{"n.yaml:2: a node file holds one YAML document"}},
		{"peer at the node's address", "address: 10.0.0.5/24\ninterface: eth1\nasNumber: 65001\npeers:\n  - address: 10.0.0.5\nipPools:\n  - cidr: 10.48.0.0/16\n",
			[]string{"n.yaml:5: peers[0].address: 10.0.0.5 is the node's own address"}},
		{"restartTime alone", "address: 10.0.0.5/24\ninterface: eth1\nasNumber: 65001\nrestartTime: 30s\nipPools:\n  - cidr: 10.48.0.0/16\n",
			[]string{"n.yaml:4: restartTime: set without gracefulRestart: true"}},
		{"missing fields", "node: a\n", []string{
			"n.yaml:1: address: missing", "n.yaml:1: interface: missing", "n.yaml:1: asNumber: missing", "n.yaml:1: ipPools: missing"}},
		{"every field wrong", strings.Join([]string{
			"node: a/b",              // 1
			"address: 192.168.50.10", // 2
			"interface: a-very-long-interface-name",
			"gateway: nope",               // 4
			"mtu: \"1500\"",               // 5
			"dataplane: userspace",        // 6
			"asNumber: 0",                 // 7
			"restartTime: 2 minutes",      // 8
			"gracefulRestart: yes-please", // 9
			"datastore: ipam.db",          // 10
			"colour: blue",                // 11
			"peers:",                      // 12
			"  - address: 192.168.50.10",  // 13
			"  - asNumber: 5",             // 14
			"  - address: 192.168.50.11",  // 15
			"  - address: 192.168.50.11",  // 16
			"ipPools:",                    // 17
			"  - cidr: 10.244.0.1/16",     // 18
			"    ipipMode: Sometimes",     // 19
			"  - cidr: 10.0.0.0/8",        // 20
			"  - cidr: 10.10.0.0/16",      // 21
			"    blockSize: 12",           // 22
			"asNumber: 5",                 // 23
		}, "\n"), []string{
			`n.yaml:1: node: "a/b" is not a node name`,
			"n.yaml:2: address: 192.168.50.10 has no prefix length: give it, such as 192.168.50.10/24",
			`n.yaml:3: interface: "a-very-long-interface-name" is not an interface name`,
			`n.yaml:4: gateway: "nope" is not an IPv4 address`,
			`n.yaml:5: mtu: must be a number, not the string "1500" (remove the quotes)`,
			`n.yaml:6: dataplane: "userspace": a node file is a real host's`,
			"n.yaml:7: asNumber: 0 is outside 1-4294967295",
			`n.yaml:8: restartTime: "2 minutes" is not a duration`,
			`n.yaml:9: gracefulRestart: "yes-please" is not true or false`,
			`n.yaml:10: datastore: "ipam.db" is not an absolute path`,
			"n.yaml:11: colour: unknown field (known: node, address,",
			"n.yaml:14: peers[1].address: missing",
			"n.yaml:16: peers[3].address: 192.168.50.11 is peers[2]'s too",
			"n.yaml:18: ipPools[0].cidr: 10.244.0.1/16 has host bits set",
			`n.yaml:19: ipPools[0].ipipMode: "Sometimes": want Never, Always or CrossSubnet`,
			"n.yaml:21: ipPools[2].cidr: 10.10.0.0/16 overlaps ipPools[1] (10.0.0.0/8)",
			"n.yaml:22: ipPools[2].blockSize: 12 is outside 20-32",
			"n.yaml:23: asNumber: given twice (first on line 7)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseNodeYAML("n.yaml", []byte(tc.file))
			var fe *NodeFileError
			if c != nil || !errors.As(err, &fe) {
				t.Fatalf("ParseNodeYAML = %+v, %v; want a *NodeFileError", c, err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i < len(lines) && !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d:\n%s\nwant it to start with:\n%s", i, lines[i], w)
				}
			}
		})
	}
}

// FuzzParseNodeYAML: any input gives a config or a *NodeFileError listing
// problems with lines in order, never both and never a panic; an accepted
// config has what the agent needs.
func FuzzParseNodeYAML(f *testing.F) {
	if data, err := os.ReadFile("../../deploy/node.yaml"); err == nil {
		f.Add(data)
	}
	for _, s := range []string{"", "a: [", "address: 10.0.0.5/24\ninterface: eth1\nasNumber: 65001\nipPools:\n  - cidr: 10.48.0.0/16\n",
		"peers:\n  - &x {address: 1.2.3.4}\n  - *x\n",
		"address: 10.0.0.5/24\ninterface: eth1\nasNumber: 65001\nipPools:\n  - cidr: 10.48.0.0/16\ndatastoreType: etcdv3\netcdEndpoints: http://10.0.0.1:2379,https://x:2379\n", "ipPools: {cidr: 1}\n", "node: ~\nmtu: 1e9\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseNodeYAML("f.yaml", data)
		if (c == nil) == (err == nil) {
			t.Fatalf("ParseNodeYAML(%q) = %v, %v: want exactly one", data, c, err)
		}
		if err != nil {
			var fe *NodeFileError
			if !errors.As(err, &fe) || len(fe.Problems) == 0 {
				t.Fatalf("error %v is no NodeFileError with problems", err)
			}
			for i := 1; i < len(fe.Problems); i++ {
				if fe.Problems[i].Line < fe.Problems[i-1].Line {
					t.Fatalf("problems out of line order: %v", fe.Problems)
				}
			}
			return
		}
		if c.Node == "" || !c.Prefix.IsValid() || c.Interface == "" || c.BGP.ASN == 0 || len(c.Pools) == 0 || c.Dataplane != DataplaneKernel {
			t.Fatalf("accepted %q as %+v", data, c)
		}
		for _, p := range c.Pools {
			if !p.CIDR.IsValid() || p.BlockSize < p.CIDR.Bits() {
				t.Fatalf("accepted pool %+v", p)
			}
		}
		if err := c.CheckDatastore(); err != nil {
			t.Fatalf("accepted %q with datastore problem %v", data, err)
		}
	})
}

// A node file selects etcd in calicoctl's field names: datastoreType
// etcdv3, etcdEndpoints (a list or calicoctl's comma-separated string) and
// the TLS files.
func TestNodeFileEtcd(t *testing.T) {
	base := "address: 10.0.0.5/24\ninterface: eth1\nasNumber: 65001\nipPools:\n  - cidr: 10.48.0.0/16\n"
	c, err := ParseNodeYAML("n.yaml", []byte(base+strings.Join([]string{
		"datastoreType: etcdv3",
		"etcdEndpoints: https://10.0.0.1:2379, https://10.0.0.2:2379",
		"etcdCertFile: /etc/vrouter/etcd.pem",
		"etcdKeyFile: /etc/vrouter/etcd-key.pem",
		"etcdCACertFile: /etc/vrouter/etcd-ca.pem",
		"etcdTimeout: 5s",
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := Etcd{Endpoints: []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}, CertFile: "/etc/vrouter/etcd.pem",
		KeyFile: "/etc/vrouter/etcd-key.pem", CAFile: "/etc/vrouter/etcd-ca.pem", Timeout: 5 * time.Second}
	if c.DatastoreType != DatastoreEtcd || !reflect.DeepEqual(c.Etcd, want) {
		t.Errorf("etcd = %q %+v, want %+v", c.DatastoreType, c.Etcd, want)
	}
	if err := c.CheckDatastore(); err != nil {
		t.Error(err)
	}
	c, err = ParseNodeYAML("n.yaml", []byte(base+"datastoreType: etcdv3\netcdEndpoints: http://a:2379\nmeshFromDatastore: true\nlabels: {rack: r1, route-reflector: \"true\"}\nrouteReflectorClusterID: 224.0.0.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.MeshFromDatastore || !reflect.DeepEqual(c.Labels, map[string]string{"rack": "r1", "route-reflector": "true"}) || c.RouteReflectorClusterID.String() != "224.0.0.1" {
		t.Errorf("mesh %v labels %v cluster ID %v", c.MeshFromDatastore, c.Labels, c.RouteReflectorClusterID)
	}
	c, err = ParseNodeYAML("n.yaml", []byte(base+"datastoreType: etcd\netcdEndpoints:\n  - http://127.0.0.1:2379\n"))
	if err != nil || !reflect.DeepEqual(c.Etcd.Endpoints, []string{"http://127.0.0.1:2379"}) {
		t.Errorf("endpoints as a list: %+v, %v", c, err)
	}
	for _, tc := range []struct{ file, want string }{
		{"datastoreType: consul\n", `n.yaml:6: datastoreType: "consul": want bbolt (the default) or etcdv3`},
		{"datastoreType: etcdv3\n", "n.yaml:6: etcdEndpoints: missing: datastoreType etcdv3 needs"},
		{"etcdEndpoints: http://127.0.0.1:2379\n", "n.yaml:6: etcdEndpoints: set without datastoreType: etcdv3"},
		{"datastoreType: etcdv3\netcdEndpoints: 127.0.0.1:2379\n", `n.yaml:7: etcdEndpoints: "127.0.0.1:2379" is not an etcd client URL`},
		{"datastoreType: etcdv3\netcdEndpoints: https://a:2379\netcdCertFile: /c.pem\n", "n.yaml:8: etcdCertFile: etcdCertFile and etcdKeyFile go together"},
		{"datastoreType: etcdv3\netcdEndpoints: https://a:2379\netcdCACertFile: ca.pem\n", `n.yaml:8: etcdCACertFile: "ca.pem" is not an absolute path`},
		{"meshFromDatastore: true\n", "n.yaml:6: meshFromDatastore: set without datastoreType: etcdv3"},
		{"labels: [a]\n", "n.yaml:6: labels: want a mapping"},
		{"labels: {rack: \"a b\"}\n", `n.yaml:6: labels.rack: "a b" is not a label value`},
		{"labels: {\"-x\": a}\n", `n.yaml:6: labels: "-x" is not a label name`},
		{"routeReflectorClusterID: 1.2.3\n", "n.yaml:6: routeReflectorClusterID:"},
	} {
		_, err := ParseNodeYAML("n.yaml", []byte(base+tc.file))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %s", tc.file, err, tc.want)
		}
	}
}

// A node file holding a BGP password is refused while other users may read
// it; without a password, or once it is root's alone, it loads.
func TestNodeFileWithPasswordMustBePrivate(t *testing.T) {
	dir := t.TempDir()
	const withPassword = "address: 10.0.0.5/24\ninterface: eth1\nasNumber: 65001\npeers:\n  - address: 10.0.0.1\n    asNumber: 65000\n    password: s3cret\nipPools:\n  - cidr: 10.48.0.0/16\n"
	const without = "address: 10.0.0.5/24\ninterface: eth1\nasNumber: 65001\npeers:\n  - address: 10.0.0.1\n    asNumber: 65000\nipPools:\n  - cidr: 10.48.0.0/16\n"
	for _, c := range []struct {
		data    string
		mode    os.FileMode
		refused bool
	}{
		{withPassword, 0o644, true}, {withPassword, 0o640, true}, {withPassword, 0o600, false},
		{without, 0o644, false},
	} {
		path := filepath.Join(dir, "node.yaml")
		if err := os.WriteFile(path, []byte(c.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, c.mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadNodeFile(path)
		if c.refused != (err != nil) || c.refused && !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o, password %v: %v", c.mode, c.data == withPassword, err)
		}
	}
}

// routeRefreshInterval sets the kernel dataplane's periodic resync, as
// Felix's field of that name; it is a positive duration.
func TestNodeFileRouteRefreshInterval(t *testing.T) {
	base := "address: 10.0.0.5/24\ninterface: eth1\nasNumber: 65001\nipPools:\n  - cidr: 10.48.0.0/16\n"
	c, err := ParseNodeYAML("n.yaml", []byte(base+"routeRefreshInterval: 30s\n"))
	if err != nil || c.RouteRefreshInterval != 30*time.Second {
		t.Errorf("routeRefreshInterval 30s: %v, %v", c, err)
	}
	if _, err := ParseNodeYAML("n.yaml", []byte(base+"routeRefreshInterval: often\n")); err == nil || !strings.HasPrefix(err.Error(), `n.yaml:6: routeRefreshInterval: "often" is not a duration`) {
		t.Errorf("routeRefreshInterval: often: %v", err)
	}
}

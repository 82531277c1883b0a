package config

import (
	"crypto/sha1"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestInterfaceName(t *testing.T) {
	got := InterfaceName("calico-bgp", "web-1")
	// Computed independently: "cali" + the first 11 hex digits of
	// sha1("calico-bgp.web-1").
	want := "cali" + fmt.Sprintf("%x", sha1.Sum([]byte("calico-bgp.web-1")))[:11]
	if got != want {
		t.Fatalf("InterfaceName = %q, want %q", got, want)
	}
	if !regexp.MustCompile(`^cali[0-9a-f]{11}$`).MatchString(got) || len(got) != 15 {
		t.Fatalf("%q is not a 15-byte caliXXXXXXXXXXX name", got)
	}
	if InterfaceName("calico-bgp", "web-2") == got || InterfaceName("other", "web-1") == got {
		t.Fatal("different workloads share an interface name")
	}
}

func TestConfigRoundTrip(t *testing.T) {
	c := &Node{
		Lab: "l", Node: "node1", StateDir: "/run/vrouter/l", Namespace: "vr-l.node1", Dataplane: DataplaneKernel,
		Control: "/run/vrouter/l/nodes/node1.sock", Fabric: "/run/vrouter/l/fabric", Routes: "/run/vrouter/l/nodes/node1.routes.json", AddedWorkloads: "/run/vrouter/l/nodes/node1.workloads.json",
		Network: "lan", Prefix: netip.MustParsePrefix("192.168.50.10/24"), Interface: "ens33", MTU: 1500,
		Neighbors: []Neighbor{{Node: "node2", Address: netip.MustParseAddr("192.168.50.11")}},
		Pools:     []Pool{{Name: "p", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26, IPIPMode: "Never"}},
		Datastore: "/run/vrouter/l/ipam.db",
		BGP: BGP{ASN: 64512, KeepaliveTime: 3 * time.Second, HoldTime: 9 * time.Second,
			Peers: []BGPPeer{{Address: netip.MustParseAddr("192.168.50.11"), ASN: 64512, Type: "node-to-node mesh", Node: "node2"}}},
		Workloads: []Workload{{Name: "web-1", Namespace: "vr-l.web-1", Address: netip.MustParseAddr("10.244.1.1")}},
	}
	path := filepath.Join(t.TempDir(), "node1.json")
	if err := c.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadNode(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v", got, c)
	}
	if _, err := LoadNode(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("LoadConfig of a missing file succeeded")
	}
}

// A node config names a known dataplane, or none (userspace).
func TestDataplaneField(t *testing.T) {
	base := `{"node":"node1","prefix":"192.168.50.10/24","interface":"ens33"`
	for _, tc := range []struct {
		field, want string
		ok          bool
	}{
		{"", "", true},
		{`,"dataplane":"kernel"`, DataplaneKernel, true},
		{`,"dataplane":"userspace"`, DataplaneUserspace, true},
		{`,"dataplane":"ebpf"`, "", false},
	} {
		path := filepath.Join(t.TempDir(), "node.json")
		if err := os.WriteFile(path, []byte(base+tc.field+"}"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadNode(path)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.field, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "unknown dataplane")):
			t.Errorf("%s: LoadNode = %v, want an unknown dataplane error", tc.field, err)
		case tc.ok && c.Dataplane != tc.want:
			t.Errorf("%s: Dataplane = %q, want %q", tc.field, c.Dataplane, tc.want)
		}
	}
}

// A node config selects bbolt (by default) or etcd, with what each needs.
func TestDatastoreField(t *testing.T) {
	base := `{"node":"node1","prefix":"192.168.50.10/24","interface":"ens33","datastore":"/run/vrouter/l/ipam.db"`
	for _, tc := range []struct {
		field string
		want  Etcd
		err   string
	}{
		{"", Etcd{}, ""},
		{`,"datastoreType":"bbolt"`, Etcd{}, ""},
		{`,"datastoreType":"etcd","etcd":{"endpoints":["http://127.0.0.1:2379"]}`, Etcd{Endpoints: []string{"http://127.0.0.1:2379"}}, ""},
		{`,"datastoreType":"etcd","etcd":{"endpoints":["https://10.0.0.1:2379","https://10.0.0.2:2379"],"certFile":"c.pem","keyFile":"k.pem","caFile":"ca.pem"}`,
			Etcd{Endpoints: []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}, CertFile: "c.pem", KeyFile: "k.pem", CAFile: "ca.pem"}, ""},
		{`,"datastoreType":"etcd"`, Etcd{}, "needs endpoints"},
		{`,"datastoreType":"etcd","etcd":{"endpoints":["10.0.0.1:2379"]}`, Etcd{}, "not an http:// or https:// URL"},
		{`,"datastoreType":"etcd","etcd":{"endpoints":["https://10.0.0.1:2379"],"certFile":"c.pem"}`, Etcd{}, "needs its key"},
		{`,"datastoreType":"consul"`, Etcd{}, "unknown datastore"},
	} {
		path := filepath.Join(t.TempDir(), "node.json")
		if err := os.WriteFile(path, []byte(base+tc.field+"}"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadNode(path)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.field, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: LoadNode = %v, want an error with %q", tc.field, err, tc.err)
		case err == nil && !reflect.DeepEqual(c.Etcd, tc.want):
			t.Errorf("%s: Etcd = %+v, want %+v", tc.field, c.Etcd, tc.want)
		}
	}
	// The bbolt default needs its file.
	if err := (&Node{}).CheckDatastore(); err == nil {
		t.Error("bbolt without a file: no error")
	}
}

package config

import (
	"crypto/sha1"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
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
		Lab: "l", Node: "node1", Namespace: "vr-l.node1",
		Control: "/run/vrouter/l/nodes/node1.sock", Fabric: "/run/vrouter/l/fabric", Routes: "/run/vrouter/l/nodes/node1.routes.json",
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

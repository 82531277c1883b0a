package lab

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
)

// An etcd lab's plan: members and nodes on the etcd subnet, every file
// under the state directory's etcd/, the agents configured with the
// members' endpoints and a mesh from etcd (no mesh peers).
func TestPlanEtcd(t *testing.T) {
	etcdtest.RequireEtcd(t)
	data, err := os.ReadFile("../../examples/calico-etcd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l, err := topology.Parse("calico-etcd.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	dir := "/run/vrouter/calico-etcd"
	e, err := planEtcd(l, dir)
	if err != nil {
		t.Fatal(err)
	}
	if e.Subnet != netip.MustParsePrefix("198.18.0.0/22") || e.Address != netip.MustParseAddr("198.18.0.10") || e.Namespace != "vr-calico-etcd.etcd.net" {
		t.Errorf("etcd network: %+v", e)
	}
	wantEPs := []string{"http://198.18.0.1:2379", "http://198.18.0.2:2379", "http://198.18.0.3:2379"}
	if !slices.Equal(e.Endpoints(), wantEPs) {
		t.Errorf("endpoints %v, want %v", e.Endpoints(), wantEPs)
	}
	for i, m := range e.Members {
		if m.Name != etcdMemberName(i) || m.Namespace != "vr-calico-etcd."+m.Name+".etcd" ||
			m.DataDir != filepath.Join(dir, "etcd", m.Name) || m.PIDFile != filepath.Join(dir, "etcd", m.Name+".pid") || m.Log != filepath.Join(dir, "etcd", m.Name+".log") {
			t.Errorf("member %d: %+v", i, m)
		}
		args := strings.Join(e.memberArgs("etcd", l.Name, m), " ")
		if !strings.Contains(args, "--initial-cluster etcd0=http://198.18.0.1:2380,etcd1=http://198.18.0.2:2380,etcd2=http://198.18.0.3:2380") ||
			!strings.Contains(args, "--data-dir "+m.DataDir) || !strings.Contains(args, "--listen-client-urls "+m.ClientURL()+",") {
			t.Errorf("member %s: args %s", m.Name, args)
		}
	}
	if len(e.Nodes) != 4 || e.Nodes[3] != (EtcdNode{Node: "node4", Address: netip.MustParseAddr("198.18.0.19")}) {
		t.Errorf("nodes on the etcd network: %+v", e.Nodes)
	}
	c, err := nodeConfig(l, dir, l.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.DatastoreType != config.DatastoreEtcd || !slices.Equal(c.Etcd.Endpoints, wantEPs) || !c.MeshFromDatastore || len(c.BGP.Peers) != 0 || c.Etcd.Timeout != labEtcdTimeout {
		t.Errorf("node1's config: datastore %q %+v, mesh from datastore %v, peers %+v", c.DatastoreType, c.Etcd, c.MeshFromDatastore, c.BGP.Peers)
	}
	if cn, err := planCalicoNode(l, dir, l.Nodes[0]); err != nil || cn.meshPeers != 3 {
		t.Errorf("node1 waits for %d mesh sessions (%v), want 3", cn.meshPeers, err)
	}
	if err := c.CheckDatastore(); err != nil {
		t.Errorf("node1's config: %v", err)
	}
	// Load refuses a state whose etcd member files lie outside its
	// directory.
	st := &State{Name: "calico-etcd", Dir: dir, Etcd: e}
	if p, ok := st.pathOutside(); ok {
		t.Errorf("pathOutside = %s", p)
	}
	e.Members[1].DataDir = "/var/lib/etcd"
	if p, ok := st.pathOutside(); !ok || p != "/var/lib/etcd" {
		t.Errorf("pathOutside = %q %v, want /var/lib/etcd", p, ok)
	}
}

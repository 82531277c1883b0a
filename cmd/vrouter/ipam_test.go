package main

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
)

// fillIPAM assigns three addresses on node1 and one on node2 from
// 10.244.0.0/16 in blocks of /26.
func fillIPAM(t *testing.T, store ipam.Datastore) {
	t.Helper()
	m, err := ipam.New(store, []ipam.Pool{{Name: "default-ipv4-ippool", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}})
	if err != nil {
		t.Fatal(err)
	}
	for i, node := range []string{"node1", "node1", "node1", "node2"} {
		if _, err := m.AutoAssign(context.Background(), ipam.AssignArgs{Node: node, Handle: "h" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
}

// `ipam show` prints calicoctl's table from a bbolt file or from etcd
// (over TLS), given by flags.
func TestIPAMShow(t *testing.T) {
	// node1's first block is 10.244.197.0/26, node2's 10.244.11.64/26
	// (FNV-1a of the node name; see the ipam conformance tests).
	want := []string{
		"GROUPING   CIDR              IPS TOTAL   IPS IN USE   IPS FREE",
		"IP Pool    10.244.0.0/16     65536       4 (0%)       65532 (100%)",
		"Block      10.244.11.64/26   64          1 (2%)       63 (98%)",
		"Block      10.244.197.0/26   64          3 (5%)       61 (95%)",
	}
	check := func(t *testing.T, args ...string) {
		t.Helper()
		out, err := run(t, append([]string{"ipam", "show", "--pool", "10.244.0.0/16", "--show-blocks"}, args...)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		got := strings.Split(strings.TrimRight(out, "\n"), "\n")
		for i := range got {
			got[i] = strings.TrimRight(got[i], " ")
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("ipam show:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		out, err = run(t, append([]string{"ipam", "show"}, args...)...)
		if err != nil || !strings.Contains(out, "All blocks   -      128         4 (3%)       124 (97%)") {
			t.Errorf("ipam show without pools: %v\n%s", err, out)
		}
	}
	t.Run("bbolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ipam.db")
		store, err := ipam.OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		fillIPAM(t, store)
		check(t, "--db", path)
		if _, err := run(t, "ipam", "show", "--db", path+".missing"); err == nil {
			t.Error("ipam show of a missing file succeeded")
		}
	})
	t.Run("etcd", func(t *testing.T) {
		srv := etcdtest.Start(t, etcdtest.Options{TLS: true})
		f := srv.TLS
		store, err := ipam.OpenEtcd(context.Background(), ipam.EtcdConfig{Endpoints: srv.Endpoints, CertFile: f.ClientCert, KeyFile: f.ClientKey, CAFile: f.CA})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		fillIPAM(t, store)
		check(t, "--datastore", "etcd", "--etcd-endpoints", srv.Endpoints[0], "--etcd-cert", f.ClientCert, "--etcd-key", f.ClientKey, "--etcd-ca", f.CA)
	})
	if _, err := run(t, "ipam", "show", "--db", "x", "--pool", "10.244.0.1/16"); err == nil || !strings.Contains(err.Error(), "not a CIDR") {
		t.Errorf("--pool with host bits: %v", err)
	}
}

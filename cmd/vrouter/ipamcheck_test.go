package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// ipam check reports a gone node's addresses and blocks (nodes from the
// Node resources in etcd); ipam release --node gives them back, after
// which check is clean; a node that exists is not released without
// --force; release --ip frees one address.
func TestIPAMCheckRelease(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	ctx := context.Background()
	es, err := ipam.OpenEtcd(ctx, ipam.EtcdConfig{Endpoints: srv.Endpoints, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	fillIPAM(t, es)
	if err := resources.FromIPAM(es).Put(ctx, &resources.Node{TypeMeta: resources.TypeMeta{Kind: resources.KindNode}, Metadata: resources.Metadata{Name: "node1"}}); err != nil {
		t.Fatal(err)
	}
	etcd := []string{"--datastore", "etcd", "--etcd-endpoints", strings.Join(srv.Endpoints, ",")}
	out, err := run(t, append([]string{"ipam", "check"}, etcd...)...)
	for _, want := range []string{
		"Found 2 IPAM blocks.",
		"IPAM blocks record 4 allocations.",
		"10.244.11.64 leaked: allocated to node node2, which is gone (handle hd)",
		"block 10.244.11.64/26 is affine to node node2, which is gone (1 addresses in use)",
		"Check complete; found 2 problems.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ipam check:\n%s\nlacks %q", out, want)
		}
	}
	if err == nil {
		t.Error("ipam check with problems succeeded")
	}
	if _, err := run(t, append([]string{"ipam", "release", "--node", "node1"}, etcd...)...); err == nil || !strings.Contains(err.Error(), "node node1 exists") {
		t.Errorf("release of an existing node: %v", err)
	}
	out, err = run(t, append([]string{"ipam", "release", "--node", "node2"}, etcd...)...)
	if err != nil || !strings.Contains(out, "Released 1 addresses and 1 blocks of node node2") {
		t.Fatalf("release --node: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"ipam", "check"}, etcd...)...)
	if err != nil || !strings.Contains(out, "Check complete; found 0 problems.") {
		t.Fatalf("check after release: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"ipam", "release", "--ip", "10.244.197.1"}, etcd...)...)
	if err != nil || !strings.Contains(out, "Successfully released 10.244.197.1") {
		t.Fatalf("release --ip: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"ipam", "show"}, etcd...)...)
	if err != nil || !strings.Contains(out, "64          2 (3%)") {
		t.Errorf("show after releases: %v\n%s", err, out)
	}

	// A bbolt file, with no node list: the datastore's own consistency.
	path := filepath.Join(t.TempDir(), "ipam.db")
	store, err := ipam.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	fillIPAM(t, store)
	store.Close()
	out, err = run(t, "ipam", "check", "--db", path)
	if err != nil || !strings.Contains(out, "node and workload checks skipped") || !strings.Contains(out, "found 0 problems") {
		t.Errorf("check of a bbolt file: %v\n%s", err, out)
	}
}

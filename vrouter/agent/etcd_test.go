package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
)

// etcdConfig is testConfig for node on the etcd srv (with its client
// certificate, for a TLS server).
func etcdConfig(t *testing.T, srv *etcdtest.Server, node string, addr string) *config.Node {
	cfg := testConfig(t)
	cfg.Node = node
	cfg.Prefix = netip.MustParsePrefix(addr + "/24")
	cfg.Datastore = ""
	cfg.DatastoreType = config.DatastoreEtcd
	cfg.Etcd = config.Etcd{Endpoints: srv.Endpoints, Timeout: 2 * time.Second}
	if srv.TLS != nil {
		cfg.Etcd.CertFile, cfg.Etcd.KeyFile, cfg.Etcd.CAFile = srv.TLS.ClientCert, srv.TLS.ClientKey, srv.TLS.CA
	}
	return cfg
}

// Two agents on one etcd (over TLS, with client certificates) take their
// workloads' addresses from blocks each claims there, never the same; with
// etcd down, adding a workload fails within the datastore's timeout,
// naming etcd; with etcd back, it works again.
func TestAgentsOnEtcd(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{TLS: true})
	ctx := context.Background()
	cfgs := []*config.Node{etcdConfig(t, srv, "node1", "192.168.50.10"), etcdConfig(t, srv, "node2", "192.168.50.11")}
	var nodes []*testNode
	var clients []*control.Client
	for _, cfg := range cfgs {
		nodes = append(nodes, startTestNode(t, cfg))
		clients = append(clients, control.NewClient(control.Socket(cfg.StateDir, cfg.Node)))
	}
	seen := map[netip.Addr]string{}
	blocks := map[netip.Prefix]string{}
	for i := range 3 {
		for n, c := range clients {
			name := fmt.Sprintf("w%d-%d", n, i)
			info, err := c.AddWorkload(ctx, config.Workload{Name: name, Namespace: "vr-t." + name})
			if err != nil {
				t.Fatal(err)
			}
			if prev, dup := seen[info.Address]; dup {
				t.Fatalf("%s given to %s and %s", info.Address, prev, name)
			}
			seen[info.Address] = name
			b, _ := info.Address.Prefix(26)
			if owner, ok := blocks[b]; ok && owner != cfgs[n].Node {
				t.Fatalf("block %s used by %s and %s", b, owner, cfgs[n].Node)
			}
			blocks[b] = cfgs[n].Node
			if got := nodes[n].dp.route(b.String()); got != "blackhole "+b.String()+" proto bird" {
				t.Errorf("%s: block route %q", cfgs[n].Node, got)
			}
		}
	}
	if len(blocks) != 2 {
		t.Errorf("blocks %v, want one per node", blocks)
	}

	srv.Stop()
	start := time.Now()
	_, err := clients[0].AddWorkload(ctx, config.Workload{Name: "during-outage", Namespace: "vr-t.during-outage"})
	took := time.Since(start)
	if err == nil {
		t.Fatal("workload added with etcd down")
	}
	if !strings.Contains(err.Error(), "etcd at "+srv.Endpoints[0]) || took > 10*time.Second {
		t.Errorf("with etcd down, add failed after %v with %v; want an error naming etcd within about 2s", took, err)
	}
	t.Logf("with etcd down: %v after %v", err, took)
	srv.Start()
	info, err := clients[1].AddWorkload(ctx, config.Workload{Name: "after-outage", Namespace: "vr-t.after-outage"})
	if err != nil {
		t.Fatalf("after etcd came back: %v", err)
	}
	if _, dup := seen[info.Address]; dup {
		t.Fatalf("%s handed out twice", info.Address)
	}
}

// A node config naming etcd that does not answer fails the start, naming
// etcd.
func TestAgentEtcdUnreachable(t *testing.T) {
	cfg := testConfig(t)
	cfg.DatastoreType = config.DatastoreEtcd
	cfg.Etcd = config.Etcd{Endpoints: []string{"http://127.0.0.1:1"}}
	if _, err := OpenDatastore(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "etcd at http://127.0.0.1:1") {
		t.Fatalf("OpenDatastore = %v", err)
	}
}

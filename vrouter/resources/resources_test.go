package resources

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
)

func openStore(t *testing.T, srv *etcdtest.Server) *Store {
	t.Helper()
	s, err := Open(context.Background(), ipam.EtcdConfig{Endpoints: srv.Endpoints, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func u32(v uint32) *uint32 { return &v }

// Resources go to Calico's keys as Calico's JSON; Get, List and Delete
// see them; Create refuses an existing one; a replaced one keeps its
// creation time.
func TestStoreCRUD(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	s := openStore(t, srv)
	ctx := context.Background()
	n := &Node{TypeMeta: TypeMeta{Kind: KindNode}, Metadata: Metadata{Name: "node1", Labels: map[string]string{"rack": "r1"}},
		Spec: NodeSpec{BGP: &NodeBGPSpec{IPv4Address: "192.168.50.10/24", ASNumber: u32(64512), RouteReflectorClusterID: "224.0.0.1"}}}
	if err := s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, n); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "/calico/resources/v3/projectcalico.org/nodes/node1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw get: %v %v", resp, err)
	}
	raw := string(resp.Kvs[0].Value)
	for _, want := range []string{`"apiVersion":"projectcalico.org/v3"`, `"kind":"Node"`, `"name":"node1"`, `"ipv4Address":"192.168.50.10/24"`, `"asNumber":64512`, `"routeReflectorClusterID":"224.0.0.1"`, `"labels":{"rack":"r1"}`} {
		if !strings.Contains(raw, want) {
			t.Errorf("stored %s lacks %s", raw, want)
		}
	}
	if strings.Contains(raw, "resourceVersion") {
		t.Errorf("stored %s has a resourceVersion", raw)
	}
	got, err := s.Get(ctx, KindNode, "node1")
	if err != nil {
		t.Fatal(err)
	}
	g := got.(*Node)
	if g.Spec.BGP.IPv4Address != "192.168.50.10/24" || g.Metadata.ResourceVersion == "" || g.Metadata.CreationTimestamp == "" {
		t.Errorf("got %+v", g)
	}
	created := g.Metadata.CreationTimestamp
	n.Spec.BGP.IPv4Address = "192.168.50.20/24"
	n.Metadata.CreationTimestamp = ""
	if err := s.Put(ctx, n); err != nil {
		t.Fatal(err)
	}
	if n.Metadata.CreationTimestamp != created {
		t.Errorf("replaced node's creation time %q, want %q", n.Metadata.CreationTimestamp, created)
	}
	pool := &IPPool{TypeMeta: TypeMeta{Kind: KindIPPool}, Metadata: Metadata{Name: "default-ipv4-ippool"}, Spec: IPPoolSpec{CIDR: "10.244.0.0/16", BlockSize: 26, IPIPMode: "Always"}}
	if err := s.Put(ctx, pool); err != nil {
		t.Fatal(err)
	}
	bad := &IPPool{TypeMeta: TypeMeta{Kind: KindIPPool}, Metadata: Metadata{Name: "bad"}, Spec: IPPoolSpec{CIDR: "10.244.0.1/16"}}
	if err := s.Put(ctx, bad); err == nil || !strings.Contains(err.Error(), "spec.cidr") {
		t.Errorf("Put of an invalid pool = %v", err)
	}
	list, err := s.List(ctx, KindIPPool)
	if err != nil || len(list) != 1 || list[0].(*IPPool).Spec.IPIPMode != "Always" {
		t.Fatalf("List = %v, %v", list, err)
	}
	if err := s.Delete(ctx, KindNode, "node1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, KindNode, "node1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v", err)
	}
	if err := s.Delete(ctx, KindNode, "node1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v", err)
	}
}

// Watch delivers a snapshot at once and after every change, and catches
// up after an etcd outage.
func TestStoreWatch(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	s := openStore(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var last *Snapshot
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, func(snap *Snapshot) { mu.Lock(); last = snap; mu.Unlock() }, WatchOptions{Retry: 100 * time.Millisecond})
	}()
	waitFor := func(what string, ok func(*Snapshot) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			snap := last
			mu.Unlock()
			if snap != nil && ok(snap) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no snapshot with %s", what)
	}
	waitFor("nothing", func(s *Snapshot) bool { return len(s.Nodes) == 0 })
	for _, name := range []string{"a", "b"} {
		if err := s.Put(ctx, &Node{TypeMeta: TypeMeta{Kind: KindNode}, Metadata: Metadata{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("nodes a and b", func(s *Snapshot) bool { return len(s.Nodes) == 2 && s.Node("a") != nil && s.Node("b") != nil })
	if err := s.Delete(ctx, KindNode, "a"); err != nil {
		t.Fatal(err)
	}
	waitFor("node b only", func(s *Snapshot) bool { return len(s.Nodes) == 1 && s.Node("b") != nil })

	srv.Stop()
	srv.Start()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, Key(KindBGPPeer, "rr"), `{"apiVersion":"projectcalico.org/v3","kind":"BGPPeer","metadata":{"name":"rr"},"spec":{"peerIP":"192.168.50.1","asNumber":64513}}`); err != nil {
		t.Fatal(err)
	}
	waitFor("peer rr after the restart", func(s *Snapshot) bool { return len(s.BGPPeers) == 1 && s.BGPPeers[0].Spec.ASNumber == 64513 })
	cancel()
	<-done

}

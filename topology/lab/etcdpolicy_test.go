package lab_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// Policies in etcd on kernel nodes: in a lab with datastore: etcd, each
// agent writes its workloads' WorkloadEndpoints (labels and namespace
// from the lab file); a GlobalNetworkPolicy written with `vrouter apply
// -f --lab` (the lab's etcd) is enforced as nftables within seconds:
// w1 (client, node1) keeps TCP 80 to w2 (server, node2, namespace prod)
// and loses ping and TCP 81; deleted from etcd, everything passes again.
func TestEtcdLabPolicy(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "nft", "nftables")
	etcdtest.RequireEtcd(t)
	netnstest.GuardRoot(t)
	name := labName(t, "etcdpol")
	dir := t.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`name: %s
datastore: etcd
dataplane: kernel
ipPools:
  - {name: default-ipv4-ippool, cidr: 10.244.0.0/16}
networks:
  - {name: lan, cidr: 192.168.50.0/24}
nodes:
  node1: {network: lan, address: 192.168.50.10}
  node2: {network: lan, address: 192.168.50.11}
workloads:
  - {name: w1, node: node1, labels: {app: client}}
  - {name: w2, node: node2, namespace: prod, labels: {app: server}}
`, name)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	st, err := lab.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	es, err := st.OpenEtcd(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res := resources.Owning(es)
	defer res.Close()

	// w2's endpoint, as node2's agent wrote it.
	var w2 string
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := res.Get(context.Background(), resources.KindWorkloadEndpoint, "prod/node2-vrouter-w2-eth0")
		if err == nil {
			wep := r.(*resources.WorkloadEndpoint)
			if wep.Metadata.Labels["app"] != "server" || len(wep.Spec.IPNetworks) != 1 {
				t.Fatalf("w2's endpoint: %+v %+v", wep.Metadata, wep.Spec)
			}
			w2 = strings.TrimSuffix(wep.Spec.IPNetworks[0], "/32")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no endpoint of w2 in the lab's etcd: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Servers on TCP 80 and 81 in w2.
	err = netns.Do(topology.LabNamespacePrefix(name)+"w2", func() error {
		for _, port := range []string{":80", ":81"} {
			l, err := net.Listen("tcp4", port)
			if err != nil {
				return err
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Write([]byte("ok\n"))
					c.Close()
				}
			}()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w1ns := topology.LabNamespacePrefix(name) + "w1"
	// row probes w1 -> w2: TCP 80, TCP 81, ping, as T/t/P or '.'.
	row := func() string {
		b := []byte("...")
		for k, c := range map[int]byte{0: 'T', 1: 't', 3: 'P'} {
			if matrixProbe(w1ns, k, w2, time.Second) {
				b[map[int]int{0: 0, 1: 1, 3: 2}[k]] = c
			}
		}
		return string(b)
	}
	waitRow := func(what, want string) {
		t.Helper()
		start := time.Now()
		got := ""
		for time.Since(start) < 20*time.Second {
			if got = row(); got == want {
				t.Logf("%s: w1 -> w2 %s after %v", what, got, time.Since(start).Round(time.Millisecond))
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s: w1 -> w2 %s, want %s (T: TCP 80, t: TCP 81, P: ping)", what, got, want)
	}
	waitRow("no policy", "TtP")

	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(`apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: server-web-only
spec:
  selector: app == 'server'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'client'
    destination:
      ports: [80]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustVR(t, "apply", "-f", pol, "--lab", name); !strings.Contains(out, "GlobalNetworkPolicy server-web-only applied") {
		t.Errorf("apply:\n%s", out)
	}
	waitRow("policy applied in etcd", "T..")
	// node2 renders it as nftables in its own table.
	if out := mustVR(t, "exec", "--lab", name, "node2", "--", "nft", "list", "table", "ip", "vrouter"); !strings.Contains(out, "server-web-only") {
		t.Errorf("node2's table ip vrouter does not name the policy:\n%s", out)
	}
	if err := res.Delete(context.Background(), resources.KindGlobalNetworkPolicy, "server-web-only"); err != nil {
		t.Fatal(err)
	}
	waitRow("policy deleted from etcd", "TtP")
}

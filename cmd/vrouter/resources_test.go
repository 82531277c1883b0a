package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
)

const resourcesFile = `apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  ipipMode: CrossSubnet
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  nodeToNodeMeshEnabled: false
  asNumber: 64512
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
spec:
  peerIP: 192.168.50.1
  asNumber: 64513
`

// apply -f writes Calico resources to etcd after checking the whole file;
// get prints them as calicoctl does; delete removes one.
func TestApplyGetDeleteEtcd(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	etcd := []string{"--datastore", "etcd", "--etcd-endpoints", strings.Join(srv.Endpoints, ",")}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(resourcesFile+"---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: x\nspec:\n  peerIP: 192.168.50.300\n  asNumber: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, append([]string{"apply", "-f", bad}, etcd...)...)
	if err == nil || !strings.Contains(err.Error(), bad+":31: spec.peerIP:") {
		t.Fatalf("apply of a bad file: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"get", "ippools"}, etcd...)...)
	if err != nil || strings.Contains(out, "10.244") {
		t.Fatalf("a bad file wrote something: %v\n%s", err, out)
	}

	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(resourcesFile), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, append([]string{"apply", "-f", good}, etcd...)...)
	if err != nil || !strings.Contains(out, "Successfully applied 3 resource(s)") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"get", "ippools", "-o", "wide"}, []string{"NAME                  CIDR            SELECTOR   NAT    IPIPMODE      VXLANMODE   DISABLED", "default-ipv4-ippool   10.244.0.0/16   all()      true   CrossSubnet   Never       false"}},
		{[]string{"get", "bgppeers"}, []string{"NAME   PEERIP         NODE       ASN", "tor    192.168.50.1   (global)   64513"}},
		{[]string{"get", "bgpconfigurations"}, []string{"NAME      LOGSEVERITY   MESHENABLED   ASNUMBER", "default                 false         64512"}},
		{[]string{"get", "bgppeer", "tor", "-o", "yaml"}, []string{"kind: BGPPeer", "peerIP: 192.168.50.1", "apiVersion: projectcalico.org/v3"}},
	} {
		out, err := run(t, append(tc.args, etcd...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v:\n%s\nlacks %q", tc.args, out, w)
			}
		}
	}
	out, err = run(t, append([]string{"delete", "bgppeer", "tor"}, etcd...)...)
	if err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, err = run(t, append([]string{"get", "bgppeers"}, etcd...)...); err != nil || strings.Contains(out, "tor") {
		t.Errorf("after delete: %v\n%s", err, out)
	}
	if _, err := run(t, "apply", "-f", good, "-t", "lab.yaml"); err == nil {
		t.Error("apply took -f and -t together")
	}
	if _, err := run(t, "apply", "-f", good); err == nil || !strings.Contains(err.Error(), "--datastore etcd") {
		t.Errorf("apply -f without a datastore: %v", err)
	}
}

// apply -f, get and delete work on policies and workload endpoints,
// namespaced ones under their namespace.
func TestApplyGetDeletePoliciesEtcd(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	etcd := []string{"--datastore", "etcd", "--etcd-endpoints", strings.Join(srv.Endpoints, ",")}
	dir := t.TempDir()
	file := filepath.Join(dir, "pol.yaml")
	doc := `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: db
  namespace: prod
spec:
  order: 10
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'web'
    destination:
      ports: [5432]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-icmp
spec:
  ingress:
  - action: Deny
    protocol: ICMP
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node2-k8s-db--0-eth0
  namespace: prod
  labels:
    app: db
spec:
  node: node2
  pod: db-0
  ipNetworks: [10.244.1.5/32]
`
	if err := os.WriteFile(file, []byte(doc+"---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: x\nspec:\n  egress:\n  - action: Allow\n    destination:\n      ports: [80]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, append([]string{"apply", "-f", file}, etcd...)...)
	if err == nil || !strings.Contains(err.Error(), file+":46: spec.egress[0].destination.ports: ports need protocol") {
		t.Fatalf("apply of a bad file: %v\n%s", err, out)
	}
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, append([]string{"apply", "-f", file}, etcd...)...)
	if err != nil || !strings.Contains(out, "NetworkPolicy prod/db applied") || !strings.Contains(out, "Successfully applied 3 resource(s)") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"get", "networkpolicies", "-o", "wide"}, []string{"NAMESPACE   NAME   ORDER   SELECTOR      TYPES     INGRESS   EGRESS", "prod        db     10      app == 'db'   Ingress   1         0"}},
		{[]string{"get", "gnp"}, []string{"NAME", "deny-icmp"}},
		{[]string{"get", "workloadendpoints", "-n", "prod", "-o", "wide"}, []string{"prod        db-0       node2   10.244.1.5/32"}},
		{[]string{"get", "networkpolicy", "db", "-n", "prod", "-o", "yaml"}, []string{"kind: NetworkPolicy", "namespace: prod", "- 5432"}},
	} {
		out, err := run(t, append(tc.args, etcd...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v:\n%s\nlacks %q", tc.args, out, w)
			}
		}
	}
	if out, err := run(t, append([]string{"get", "networkpolicies", "-n", "other"}, etcd...)...); err != nil || strings.Contains(out, "db") {
		t.Errorf("namespace other: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"delete", "networkpolicy", "db"}, etcd...)...); err == nil {
		t.Errorf("delete in namespace default found prod's policy:\n%s", out)
	}
	if out, err := run(t, append([]string{"delete", "networkpolicy", "db", "-n", "prod"}, etcd...)...); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"get", "networkpolicies"}, etcd...)...); err != nil || strings.Contains(out, "prod") {
		t.Errorf("after delete: %v\n%s", err, out)
	}
}

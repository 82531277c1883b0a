package resources

import (
	"strings"
	"testing"
)

const goodFile = `apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: CrossSubnet
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 64512
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rr-peers
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node1
  labels:
    route-reflector: "true"
spec:
  bgp:
    ipv4Address: 192.168.50.10/24
    routeReflectorClusterID: 224.0.0.1
`

func TestParseYAML(t *testing.T) {
	rs, err := ParseYAML("r.yaml", []byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("%d resources", len(rs))
	}
	pool := rs[0].(*IPPool)
	if pool.Spec.CIDR != "10.244.0.0/16" || pool.Spec.IPIPMode != "CrossSubnet" || !pool.Spec.NATOutgoing {
		t.Errorf("pool %+v", pool)
	}
	c := rs[1].(*BGPConfiguration)
	if c.Spec.NodeToNodeMeshEnabled == nil || *c.Spec.NodeToNodeMeshEnabled || *c.Spec.ASNumber != 64512 {
		t.Errorf("config %+v", c.Spec)
	}
	n := rs[3].(*Node)
	if n.Metadata.Labels["route-reflector"] != "true" || n.Spec.BGP.RouteReflectorClusterID != "224.0.0.1" {
		t.Errorf("node %+v", n)
	}
}

// A kind List holds resources under items, as calicoctl get -o yaml
// prints several.
func TestParseYAMLList(t *testing.T) {
	rs, err := ParseYAML("l.yaml", []byte("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {name: a}\n  spec: {cidr: 10.1.0.0/16}\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {name: b}\n  spec: {cidr: 10.2.0.0/16, ipipMode: Sometimes}\n"))
	if err == nil || !strings.Contains(err.Error(), `l.yaml:11: spec.ipipMode: "Sometimes"`) {
		t.Fatalf("list with a bad item: %v %v", rs, err)
	}
}

func TestParseYAMLErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.244.0.1/16\n", "f.yaml:6: spec.cidr: 10.244.0.1/16 has host bits set"},
		{"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.244.0.0/16\n  ipipmode: Always\n", "f.yaml:7: spec.ipipmode: unknown field"},
		{"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.244.0.0/16\n  blockSize: big\n", "f.yaml:7: spec.blockSize: \"big\": want a whole number"},
		{"apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: x\nspec:\n  peerIP: 10.0.0.300\n  asNumber: 1\n", "f.yaml:6: spec.peerIP: \"10.0.0.300\" is not an IP address"},
		{"apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: x\nspec:\n  peerSelector: a ==\n", "f.yaml:6: spec.peerSelector: selector"},
		{"apiVersion: projectcalico.org/v3\nkind: Pod\nmetadata:\n  name: x\n", "f.yaml:2: kind: unknown kind \"Pod\""},
		{"apiVersion: v1\nkind: IPPool\n", "f.yaml:1: apiVersion: \"v1\""},
		{"kind: IPPool\n", "f.yaml:1: apiVersion: missing"},
		{"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.0.0.0/8\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.0.0.0/8\n", "f.yaml:8: metadata.name: IPPool p is also at line 1"},
		{"apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: other\n", "f.yaml:4: metadata.name: \"other\""},
		{"", "f.yaml: no resources"},
		{"a: [\n", "f.yaml:1: yaml: line 1"},
	} {
		_, err := ParseYAML("f.yaml", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseYAML(%q) = %v, want %q", tc.file, err, tc.want)
		}
	}
}

func TestSelector(t *testing.T) {
	labels := map[string]string{"rack": "r1", "route-reflector": "true"}
	for sel, want := range map[string]bool{
		"all()":                true,
		"":                     false,
		"has(rack)":            true,
		"!has(rack)":           false,
		"rack == 'r1'":         true,
		"rack != 'r1'":         false,
		"rack in {'r2', 'r1'}": true,
		"rack not in {'r1'}":   false,
		"zone == 'a' || route-reflector == \"true\"": true,
		"has(rack) && (zone == 'a' || !has(zone))":   true,
	} {
		s, err := ParseSelector(sel)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", sel, err)
			continue
		}
		if got := s.Matches(labels); got != want {
			t.Errorf("%q matches %v = %v, want %v", sel, labels, got, want)
		}
	}
	for _, bad := range []string{"rack ==", "has(rack", "rack = 'x'", "(a == 'b'", "a in {'x'"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) accepted", bad)
		}
	}
}

func FuzzParseYAML(f *testing.F) {
	f.Add([]byte(goodFile))
	f.Add([]byte("apiVersion: projectcalico.org/v3\nkind: List\nitems:\n- kind: IPPool\n"))
	f.Add([]byte(policyFile))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseYAML("f", data)
		if err == nil {
			for _, r := range rs {
				if check(r) != nil {
					t.Fatalf("returned an invalid %s", r.Type().Kind)
				}
				// What is stored decodes to what was parsed.
				v, err := encode(r)
				if err != nil {
					t.Fatal(err)
				}
				back, err := Decode(r.Type().Kind, []byte(v))
				if err != nil || check(back) != nil {
					t.Fatalf("stored %s does not decode: %v", v, err)
				}
			}
		}
	})
}

func FuzzSelector(f *testing.F) {
	for _, s := range []string{"all()", "has(a) && b in {'x','y'}", "!(a == 'b') || c != \"d\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err == nil {
			sel.Matches(map[string]string{"a": "b"})
		}
	})
}

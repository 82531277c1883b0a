package topology

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes. It must never panic; a lab it
// accepts must keep every promise of a valid Lab; a file it rejects must get
// a *ValidationError whose problems point inside the file.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("../examples/calico-bgp.yaml"); err == nil {
		f.Add(data)
		// A kernel lab, and a dataplane of the wrong case.
		f.Add(append(append([]byte{}, data...), "\ndataplane: kernel\n"...))
		f.Add(append(append([]byte{}, data...), "\ndataplane: Userspace\n"...))
		// An etcd lab, and a datastore of the wrong case.
		f.Add(append(append([]byte{}, data...), "\ndatastore: etcd\n"...))
		f.Add(append(append([]byte{}, data...), "\ndatastore: Etcd\n"...))
		// A mixed lab: node1's own dataplane.
		f.Add(bytes.Replace(data, []byte("interface: ens33}"), []byte("interface: ens33, dataplane: kernel}"), 1))
		// Netstack workloads and their services, good and bad.
		f.Add(append(append([]byte{}, data...), "  - {name: api-1, node: node1, stack: netstack, serve: [tcp:80:http, tcp:5201:sink, udp:53:echo, tcp:7:echo]}\n"...))
		f.Add(append(append([]byte{}, data...), "  - {name: api-2, node: node1, stack: netstack, serve: [udp:80:http, tcp:80:echo, tcp:80:sink, 'tcp:65536:echo']}\n"...))
	}
	// an external router with the fields that shape its generated
	// configuration
	f.Add([]byte(routersBase + "  rr1: {network: lan, address: 192.168.50.100, daemon: bird2, routeReflectorClusterID: 244.0.0.2, password: k, holdTime: 30s, impairments: {delay: 20ms, loss: 1%}}\nbgpPeers: [{name: rr1, peerIP: 192.168.50.100}]\n"))
	// Valid labs with policies (testdata/*.yaml are all broken files).
	for _, name := range []string{"../examples/calico-policy.yaml", "testdata/policy-valid.lab"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lab, err := Parse("fuzz.yaml", data)
		if err == nil {
			if lab == nil {
				t.Fatal("Parse returned neither a lab nor an error")
			}
			checkInvariants(t, lab)
			return
		}
		if lab != nil {
			t.Fatalf("Parse returned a lab and an error: %v", err)
		}
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Problems) == 0 {
			t.Fatalf("error %T %v, want a *ValidationError with problems", err, err)
		}
		// Lines are YAML's: a bare CR or a NEL ends a line too, so
		// " \r\r0" has three and its problem is on the third.
		lines := yamlLines(data)
		for _, p := range ve.Problems {
			if p.Msg == "" || p.Line < 0 || p.Line > lines+1 {
				t.Errorf("problem %+v in a file of %d lines", p, lines)
			}
		}
		// Parsing is deterministic: the same file, the same report.
		if _, again := Parse("fuzz.yaml", data); again == nil || again.Error() != err.Error() {
			t.Errorf("second Parse reported\n%v\nfirst\n%v", again, err)
		}
	})
}

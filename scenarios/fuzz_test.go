package scenarios

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vrouter-lab/vrouter/topology"
)

// FuzzParse feeds Parse arbitrary bytes. It must never panic; a scenario
// it accepts has a name, a lab and steps that can run; a file it rejects
// gets a *topology.ValidationError whose problems point inside the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte(labHead))
	f.Add([]byte(labHead + "  - impair: {node: node2, delay: 20ms, jitter: 5ms, loss: 1%, rate: 100mbit}\n  - impair: {node: node2, clear: true}\n"))
	f.Add([]byte(labHead + "  - captureStart: lan\n  - packets: {capture: lan, match: {proto: ipip, inner: {proto: icmp}}}\n"))
	f.Add([]byte("name: x\nlab: &l {name: a}\nsteps:\n  - apply: *l\n"))
	f.Add([]byte("name: x\nlab: {name: a, nodes: {n: {network: lan}}}\nsteps: [{deploy: }]\n"))
	for _, dir := range []string{"suite", "testdata"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("testdata/fuzz.yaml", data)
		if err == nil {
			if s == nil || s.Name == "" || s.Lab == nil || len(s.Steps) == 0 {
				t.Fatalf("accepted an incomplete scenario: %+v", s)
			}
			for _, st := range s.Steps {
				if st.act == nil || st.Describe() == "" || st.Line < 1 || (st.Assert && st.Timeout <= 0) {
					t.Fatalf("accepted a step that cannot run: %+v", st)
				}
			}
			return
		}
		var ve *topology.ValidationError
		if !errors.As(err, &ve) || len(ve.Problems) == 0 {
			t.Fatalf("error is not a ValidationError with problems: %v", err)
		}
		// YAML breaks lines at \n, \r and \r\n
		lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) + 2
		for _, p := range ve.Problems {
			if p.Line < 0 || p.Line > lines {
				t.Fatalf("problem on line %d of a %d-line file: %v", p.Line, lines, p)
			}
		}
	})
}

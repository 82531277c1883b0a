package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
)

// FuzzLabNames feeds arbitrary lab names to every command that takes one.
// Whatever the name, a command either refuses it or resolves it to a
// direct child of the state root; it never touches anything outside (a
// victim directory beside the state root, the root's own files), and its
// error repeats the name at most once, cut short.
func FuzzLabNames(f *testing.F) {
	for _, s := range []string{"calico-bgp", "..", ".", "../victim", "../../tmp/victim", "a/b", "", "-", "UPPER",
		strings.Repeat("x", 1000), "lab\x00", "lab\n", "é", "/", "lab.lock", "a..b"} {
		f.Add(s)
	}
	parent := f.TempDir()
	root := filepath.Join(parent, "state")
	victim := filepath.Join(parent, "victim")
	for _, d := range []string{root, victim} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	precious := []string{filepath.Join(victim, "lab.json"), filepath.Join(root, "lab.json")}
	for _, p := range precious {
		if err := os.WriteFile(p, []byte(`{"name":"victim"}`), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	old := topology.StateRoot
	topology.StateRoot = root
	f.Cleanup(func() { topology.StateRoot = old })
	f.Fuzz(func(t *testing.T, name string) {
		dir, err := lab.Dir(name)
		if err == nil {
			if filepath.Dir(dir) != root || filepath.Base(dir) != name || strings.ContainsAny(name, "/.\x00") {
				t.Fatalf("Dir(%q) = %q: not a direct child of %s", name, dir, root)
			}
		} else if n := strings.Count(err.Error(), topology.Shorten(name)); len(name) > 8 && n > 1 {
			t.Fatalf("error repeats the name %d times: %v", n, err)
		}
		if s := topology.Shorten(name); len(s) > 70 || !strings.HasPrefix(name, strings.TrimSuffix(s, "...")) || (utf8.ValidString(name) && !utf8.ValidString(s)) {
			t.Fatalf("Shorten(%q) = %q", name, s)
		}
		// Commands that only read, with any name; destroy only with names
		// no lab may have (a valid one might be another test's running lab).
		cmds := [][]string{{"inspect", "--lab=" + name}, {"route", "node1", "--lab=" + name}, {"get", "nodes", "--lab=" + name}}
		if err != nil {
			cmds = append(cmds, []string{"destroy", "--lab=" + name}, []string{"destroy", "--name=" + name},
				[]string{"workload", "del", "w", "--lab=" + name}, []string{"node", "restart", "node1", "--lab=" + name})
		}
		for _, args := range cmds {
			out, cerr := run(t, args...)
			if cerr == nil {
				t.Fatalf("vrouter %q succeeded on an empty state root:\n%s", args, out)
			}
			if len(cerr.Error()) > 600 {
				t.Fatalf("vrouter %q: error of %d characters", args, len(cerr.Error()))
			}
		}
		for _, p := range precious {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("after name %q: %s is gone: %v", name, p, err)
			}
		}
	})
}

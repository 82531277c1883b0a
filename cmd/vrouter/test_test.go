package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// A scenario file with mistakes is refused before anything is created,
// with FILE:LINE: FIELD: message for each, and so is a --run matching
// nothing.
func TestTestCommandRefusesBadScenarios(t *testing.T) {
	netnstest.RequireRoot(t) // every lab command checks for root first
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: bad\nlab: {name: x}\nsteps:\n  - routes: {node: node1, contains: x}\n  - wiat: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	art := filepath.Join(dir, "art")
	out, err := run(t, "test", bad, "--artifacts", art)
	if err == nil {
		t.Fatalf("a bad scenario ran:\n%s", out)
	}
	for _, want := range []string{
		bad + ":2: lab.nodes: a lab needs at least one node",
		bad + ":4: steps[0].routes: the lab is not deployed at this step",
		bad + ":5: steps[1].wiat: unknown step",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(art); err == nil {
		t.Error("the artifacts directory was created for a refused suite")
	}
	if _, err := run(t, "test", "../../scenarios/suite", "--run", "^no-such-scenario$", "--artifacts", art); err == nil || !strings.Contains(err.Error(), "matches none of the") {
		t.Errorf("--run matching nothing: %v", err)
	}
	if _, err := run(t, "test", filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing path was accepted")
	}
	out, _ = run(t, "--help")
	if !strings.Contains(out, "  test ") {
		t.Errorf("--help does not list test:\n%s", out)
	}
}

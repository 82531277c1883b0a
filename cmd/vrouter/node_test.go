package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `node run` takes --dataplane (userspace or kernel) and refuses any other
// name, in the flag or in the config file, before starting anything.
func TestNodeRunDataplane(t *testing.T) {
	out, err := run(t, "node", "run", "--help")
	if err != nil || !strings.Contains(out, "--dataplane") || !strings.Contains(out, "kernel") {
		t.Fatalf("node run --help: %v\n%s", err, out)
	}
	dir := t.TempDir()
	write := func(extra string) string {
		path := filepath.Join(dir, "node.json")
		cfg := `{"node":"node1","prefix":"192.168.50.10/24","interface":"ens33"` + extra + `}`
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if _, err := run(t, "node", "run", "--config", write(""), "--dataplane", "ebpf"); err == nil || !strings.Contains(err.Error(), `unknown dataplane "ebpf"`) {
		t.Errorf("--dataplane ebpf: %v, want an unknown dataplane error", err)
	}
	if _, err := run(t, "node", "run", "--config", write(`,"dataplane":"ebpf"`)); err == nil || !strings.Contains(err.Error(), `unknown dataplane "ebpf"`) {
		t.Errorf(`"dataplane": "ebpf" in the config: %v, want an unknown dataplane error`, err)
	}
}

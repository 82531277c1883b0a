package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every command that reads a lab file (deploy, destroy, apply) refuses one
// over topology.MaxLabFileSize before reading it whole, naming the file,
// its size and the limit, and before doing anything else.
func TestLabFileTooLarge(t *testing.T) {
	huge := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(huge, []byte("name: t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 50<<20); err != nil {
		t.Fatal(err)
	}
	for _, file := range []struct{ path, want string }{
		{huge, "lab file " + huge + " is 50 MiB (52428800 bytes), larger than the limit of 4 MiB (topology.MaxLabFileSize)"},
		{"/dev/zero", "lab file /dev/zero is larger than the limit of 4 MiB (topology.MaxLabFileSize)"},
	} {
		for _, command := range []string{"deploy", "destroy", "apply"} {
			start := time.Now()
			_, err := run(t, command, "-t", file.path)
			if err == nil || !strings.Contains(err.Error(), file.want) {
				t.Errorf("%s -t %s: error %v, want %q", command, file.path, err, file.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("%s -t %s took %v", command, file.path, d)
			}
		}
	}
}

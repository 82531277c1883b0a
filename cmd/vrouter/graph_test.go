package main

import (
	"strings"
	"testing"
)

func TestGraphCommand(t *testing.T) {
	for format, want := range map[string]string{
		"dot":     `graph "calico-bgp" {`,
		"mermaid": "flowchart TB\n",
		"html":    "<!DOCTYPE html>",
	} {
		out, err := run(t, "graph", "-t", "../../examples/calico-bgp.yaml", "-o", format)
		if err != nil || !strings.Contains(out, want) || !strings.Contains(out, "node3") || !strings.Contains(out, "web-1") {
			t.Errorf("graph -o %s: %v\n%.300s", format, err, out)
		}
	}
	if _, err := run(t, "graph", "-t", "../../examples/calico-bgp.yaml", "-o", "png"); err == nil || !strings.Contains(err.Error(), "dot, mermaid, html") {
		t.Errorf("graph -o png: %v", err)
	}
	if _, err := run(t, "graph", "-t", "../../examples/calico-bgp.yaml", "--lab", "x"); err == nil {
		t.Error("graph with -t and --lab accepted")
	}
	if _, err := run(t, "graph", "-t", "no-such-file.yaml"); err == nil {
		t.Error("graph of a missing file succeeded")
	}
}

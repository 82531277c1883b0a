package topology

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const smallLab = "name: t\nipPools:\n  - {name: p, cidr: 10.244.0.0/16}\nnetworks:\n  - {name: lan, cidr: 192.168.50.0/24}\nnodes:\n  node1: {network: lan, address: 192.168.50.10}\n"

// loadQuickly runs Load and fails the test if it takes longer than limit.
func loadQuickly(t *testing.T, path string, limit time.Duration) (*Lab, error) {
	t.Helper()
	start := time.Now()
	lab, err := Load(path)
	if d := time.Since(start); d > limit {
		t.Errorf("Load(%s) took %v, want under %v", path, d, limit)
	}
	return lab, err
}

// A file over the limit is refused by its size, before it is read: a 50 MB
// file (sparse, so the test writes nothing) is refused at once, with the
// file, its size and the limit in the message.
func TestLoadRefusesLargeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(path, []byte(smallLab), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 50<<20); err != nil {
		t.Fatal(err)
	}
	lab, err := loadQuickly(t, path, time.Second)
	if lab != nil || !errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("Load = %v, %v; want ErrFileTooLarge", lab, err)
	}
	want := "lab file " + path + " is 50 MiB (52428800 bytes), larger than the limit of 4 MiB (topology.MaxLabFileSize)"
	if err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		t.Error("a file too large is not a validation error")
	}
}

// A lab padded with comments to exactly MaxLabFileSize loads; one byte
// more is refused.
func TestLoadAtLimit(t *testing.T) {
	dir := t.TempDir()
	pad := func(n int) string {
		var b strings.Builder
		b.WriteString(smallLab)
		for b.Len() < n {
			line := "# " + strings.Repeat("x", min(77, n-b.Len()-3)) + "\n"
			if n-b.Len() < 3 {
				line = strings.Repeat("\n", n-b.Len())
			}
			b.WriteString(line)
		}
		return b.String()
	}
	at := filepath.Join(dir, "at.yaml")
	over := filepath.Join(dir, "over.yaml")
	for path, n := range map[string]int{at: MaxLabFileSize, over: MaxLabFileSize + 1} {
		data := pad(n)
		if len(data) != n {
			t.Fatalf("padded to %d bytes, want %d", len(data), n)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if lab, err := Load(at); err != nil || lab.Name != "t" {
		t.Errorf("Load(%d bytes) = %v, %v; want the lab", MaxLabFileSize, lab, err)
	}
	if _, err := Load(over); !errors.Is(err, ErrFileTooLarge) || !strings.Contains(err.Error(), "(4194305 bytes)") {
		t.Errorf("Load(%d bytes) error %v, want ErrFileTooLarge with its size", MaxLabFileSize+1, err)
	}
}

// An endless stream has no size to check: it is cut off one byte past the
// limit, quickly.
func TestLoadRefusesDevZero(t *testing.T) {
	lab, err := loadQuickly(t, "/dev/zero", 5*time.Second)
	if lab != nil || !errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("Load(/dev/zero) = %v, %v; want ErrFileTooLarge", lab, err)
	}
	want := "lab file /dev/zero is larger than the limit of 4 MiB (topology.MaxLabFileSize): it gave more than 4194304 bytes"
	if err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

// A FIFO (or a shell's <(...)) is read like a file: a small lab through it
// loads, an endless writer is cut off at the limit.
func TestLoadFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := func(name string, write func(f *os.File)) string {
		path := filepath.Join(dir, name)
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			write(f)
		}()
		t.Cleanup(func() { <-done })
		return path
	}
	small := fifo("small.yaml", func(f *os.File) { _, _ = f.WriteString(smallLab) })
	if lab, err := Load(small); err != nil || lab.Name != "t" {
		t.Errorf("Load(FIFO with a lab) = %v, %v; want the lab", lab, err)
	}
	endless := fifo("endless.yaml", func(f *os.File) {
		line := []byte("# an endless comment\n")
		for {
			if _, err := f.Write(line); err != nil {
				return // EPIPE once Load closed its end
			}
		}
	})
	lab, err := loadQuickly(t, endless, 10*time.Second)
	if lab != nil || !errors.Is(err, ErrFileTooLarge) || !strings.Contains(err.Error(), endless) {
		t.Fatalf("Load(endless FIFO) = %v, %v; want ErrFileTooLarge naming it", lab, err)
	}
}

// Parse, for callers that read the file themselves, refuses data over the
// limit too, without decoding it.
func TestParseRefusesLargeData(t *testing.T) {
	data := []byte(smallLab + strings.Repeat("#\n", MaxLabFileSize/2))
	_, err := Parse("big.yaml", data)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error %v, want a *ValidationError", err)
	}
	checkProblems(t, ve, []want{{0, "", fmt.Sprintf("the file is 4.0 MiB (%d bytes), larger than the limit of 4 MiB (topology.MaxLabFileSize)", len(data))}})
}

// countLab returns a lab with the given numbers of nodes, networks and IP
// pools, otherwise valid; the nodes section starts on the line returned.
func countLab(nodes, networks, pools int) (string, map[string]int) {
	var b strings.Builder
	lines := map[string]int{}
	n := 1
	add := func(format string, args ...any) {
		fmt.Fprintf(&b, format+"\n", args...)
		n++
	}
	add("name: t")
	lines["ipPools"] = n
	add("ipPools:")
	for i := range pools {
		add("  - {name: p%d, cidr: 10.%d.%d.0/24}", i, 100+i/256, i%256)
	}
	lines["networks"] = n
	add("networks:")
	add("  - {name: n0, cidr: 10.0.0.0/24}")
	for i := 1; i < networks; i++ {
		add("  - {name: n%d, cidr: 172.%d.%d.0/24}", i, 16+i/256, i%256)
	}
	lines["nodes"] = n
	add("nodes:")
	for i := range nodes {
		add("  node%d: {network: n0, address: 10.0.0.%d}", i, 1+i%250)
	}
	return b.String(), lines
}

// At most MaxNodes nodes, MaxNetworks networks and MaxIPPools pools: a lab
// over a limit is refused with that problem alone, on the section's line;
// one at every limit is checked as usual (the nodes' addresses clash past
// the 250th, which shows its nodes were checked one by one).
func TestCountLimits(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		nodes, networks, pools int
		field, msg             string
	}{
		{"nodes", MaxNodes + 1, 1, 1, "nodes", "1001 entries; a lab has at most 1000 nodes (calico and router nodes together; topology.MaxNodes)"},
		{"networks", 1, MaxNetworks + 1, 1, "networks", "1001 entries; a lab has at most 1000 networks (topology.MaxNetworks)"},
		{"IP pools", 1, 1, MaxIPPools + 1, "ipPools", "101 entries; a lab has at most 100 IP pools (topology.MaxIPPools)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, lines := countLab(tc.nodes, tc.networks, tc.pools)
			_, err := Parse("count.yaml", []byte(data))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error %v, want a *ValidationError", err)
			}
			checkProblems(t, ve, []want{{lines[tc.field], tc.field, tc.msg}})
		})
	}
	// At the limits, each entry is checked: node 250 and on reuse addresses.
	data, _ := countLab(MaxNodes, MaxNetworks, MaxIPPools)
	_, err := Parse("count.yaml", []byte(data))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != MaxNodes-250 {
		t.Fatalf("Parse at the limits: %d problems, want %d address clashes", len(ve.Problems), MaxNodes-250)
	}
	if p := ve.Problems[0]; p.Field != "nodes.node250.address" || !strings.Contains(p.Msg, "already the address of node node0") {
		t.Errorf("first problem %+v, want node250's address clash", p)
	}
	// And with distinct addresses (a /22 network) the lab is valid.
	data = strings.Replace(data, "10.0.0.0/24", "10.0.0.0/22", 1)
	for i := MaxNodes - 1; i >= 250; i-- {
		data = strings.Replace(data, fmt.Sprintf("node%d: {network: n0, address: 10.0.0.%d}", i, 1+i%250),
			fmt.Sprintf("node%d: {network: n0, address: 10.0.%d.%d}", i, i/250, 1+i%250), 1)
	}
	if _, err := Parse("count.yaml", []byte(data)); err != nil {
		t.Fatalf("a lab at every limit: %.500v", err)
	}
}

// A "(known: ...)" hint lists ten names and how many there are, not a
// thousand names for each of a hundred thousand bad references.
func TestKnownHintIsShort(t *testing.T) {
	data, _ := countLab(12, 1, 1)
	data += "workloads:\n  - {name: w, node: nodex}\n"
	_, err := Parse("known.yaml", []byte(data))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error %v, want a *ValidationError", err)
	}
	checkProblems(t, ve, []want{{20, "workloads[0].node", "unknown node nodex (known: node0, node1, node10, node11, node2, node3, node4, node5, node6, node7, ... (12 in all))"}})
	if got := known(map[string]int{"b": 1, "a": 2}); got != "known: a, b" {
		t.Errorf("known(a, b) = %q", got)
	}
}

// Error lists the first 100 problems and counts the rest.
func TestErrorListsAtMost100(t *testing.T) {
	ve := &ValidationError{File: "f.yaml"}
	for i := range 150 {
		ve.Problems = append(ve.Problems, Problem{Line: i + 1, Field: "f", Msg: "bad"})
	}
	lines := strings.Split(ve.Error(), "\n")
	if len(lines) != 101 || lines[99] != "f.yaml:100: f: bad" || lines[100] != "f.yaml: ... and 50 more problems" {
		t.Errorf("Error() has %d lines, ending %q", len(lines), lines[len(lines)-2:])
	}
	ve.Problems = ve.Problems[:100]
	if lines := strings.Split(ve.Error(), "\n"); len(lines) != 100 {
		t.Errorf("100 problems: Error() has %d lines", len(lines))
	}
}

package topology

import (
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// Limits on the size of a lab. They keep a careless or hostile lab file
// from costing minutes and gigabytes before anything is created: the file
// is refused before it is read whole, and a lab over a count limit is
// refused before its entries are checked one against another (which for
// pools and networks costs the square of their number).
const (
	// MaxLabFileSize is the largest lab file Load reads, 4 MiB: a hundred
	// times the largest example, room for every limit below.
	MaxLabFileSize = 4 << 20
	// MaxNodes bounds the nodes of a lab, calico and router nodes
	// together. Each is a namespace and an agent process of about 30 MB
	// (docs/benchmarks.md: 200 nodes with two route reflectors deploy in
	// 25 s and take 6 GB), so 1,000 nodes ask for some 30 GB.
	MaxNodes = 1000
	// MaxNetworks bounds the underlay networks of a lab: a network for each
	// node is the most a lab can use.
	MaxNetworks = MaxNodes
	// MaxIPPools bounds the IP pools of a lab. Calico clusters have a
	// handful; every pool is checked against every other.
	MaxIPPools = 100
)

// ErrFileTooLarge is matched (errors.Is) by the error Load returns for a
// lab file larger than MaxLabFileSize.
var ErrFileTooLarge = errors.New("lab file too large")

// fileTooLargeError names the file, its size when known (a regular file's)
// or -1 (a stream such as a pipe or /dev/zero), and the limit.
type fileTooLargeError struct {
	path string
	size int64
}

func (e *fileTooLargeError) Error() string {
	if e.size < 0 {
		return fmt.Sprintf("lab file %s is larger than the limit of %s (topology.MaxLabFileSize): it gave more than %d bytes", e.path, mib(MaxLabFileSize), MaxLabFileSize)
	}
	return fmt.Sprintf("lab file %s is %s, larger than the limit of %s (topology.MaxLabFileSize)", e.path, size(e.size), mib(MaxLabFileSize))
}

func (e *fileTooLargeError) Unwrap() error { return ErrFileTooLarge }

// mib renders a size in MiB, with one decimal unless whole.
func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// size renders a file size in MiB and exact bytes.
func size(n int64) string {
	return fmt.Sprintf("%s (%d bytes)", mib(n), n)
}

// readLabFile reads the lab file at path, refusing one over MaxLabFileSize
// before reading it whole: a regular file by its size, anything else (a
// pipe, a device such as /dev/zero) once it has given one byte more than
// the limit.
func readLabFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read lab file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read lab file: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("read lab file %s: is a directory", path)
	}
	if fi.Mode().IsRegular() && fi.Size() > MaxLabFileSize {
		return nil, &fileTooLargeError{path: path, size: fi.Size()}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxLabFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read lab file: %w", err)
	}
	if len(data) > MaxLabFileSize {
		size := int64(-1) // a stream: its size is unknown
		if fi.Mode().IsRegular() {
			size = max(fi.Size(), int64(len(data))) // it grew while being read
		}
		return nil, &fileTooLargeError{path: path, size: size}
	}
	return data, nil
}

// overLimits reports each section of the lab (the top-level mapping root)
// that holds more entries than its limit, and whether there was one. Such a
// lab is not checked further: the count is the problem to fix first.
func (p *parser) overLimits(root *yaml.Node) bool {
	over := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := deref(root.Content[i]), root.Content[i+1]
		line := root.Content[i].Line
		if k.Kind != yaml.ScalarNode {
			continue
		}
		v = deref(v)
		var n, limit int
		var what string
		switch {
		case k.Value == "nodes" && v.Kind == yaml.MappingNode:
			n, limit, what = len(v.Content)/2, MaxNodes, "nodes (calico and router nodes together; topology.MaxNodes)"
		case k.Value == "networks" && v.Kind == yaml.SequenceNode:
			n, limit, what = len(v.Content), MaxNetworks, "networks (topology.MaxNetworks)"
		case k.Value == "ipPools" && v.Kind == yaml.SequenceNode:
			n, limit, what = len(v.Content), MaxIPPools, "IP pools (topology.MaxIPPools)"
		default:
			continue
		}
		if n > limit {
			p.errorf(line, k.Value, "%d entries; a lab has at most %d %s", n, limit, what)
			over = true
		}
	}
	return over
}

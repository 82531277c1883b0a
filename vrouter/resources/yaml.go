package resources

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest resource file ParseYAML reads.
const MaxFileSize = 4 << 20

// maxDocuments bounds the documents of one file.
const maxDocuments = 10000

// Problem is one thing wrong in a resource file.
type Problem = config.FileProblem

// FileError lists every problem of a resource file, one per line as
// FILE:LINE: FIELD: message.
type FileError = config.FileError

// ParseYAML reads calicoctl's resource files: YAML documents separated by
// ---, each one resource (apiVersion projectcalico.org/v3, kind Node,
// IPPool, BGPConfiguration, BGPPeer, NetworkPolicy, GlobalNetworkPolicy
// or WorkloadEndpoint, metadata, spec), or a kind List
// of them under items. Every document is checked, field by field: an
// unknown field, a value of the wrong type or an invalid spec is a
// Problem with its line. Nothing is returned unless the whole file is
// valid.
func ParseYAML(name string, data []byte) ([]Resource, error) {
	fe := &FileError{File: name}
	if len(data) > MaxFileSize {
		fe.Problems = append(fe.Problems, Problem{Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)})
		return nil, fe
	}
	var out []Resource
	seen := map[string]int{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for n := 0; ; n++ {
		if n >= maxDocuments {
			fe.Problems = append(fe.Problems, Problem{Msg: fmt.Sprintf("more than %d documents", maxDocuments)})
			break
		}
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fe.Problems = append(fe.Problems, Problem{Line: yamlErrLine(err), Msg: err.Error()})
			break
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if isNull(root) {
			continue
		}
		for _, item := range listItems(root, fe) {
			r, p := parseDoc(item)
			if p != nil {
				fe.Problems = append(fe.Problems, *p)
				continue
			}
			id := r.Type().Kind + "/" + ID(r)
			if line, dup := seen[id]; dup {
				fe.Problems = append(fe.Problems, Problem{Line: item.Line, Field: "metadata.name", Msg: fmt.Sprintf("%s %s is also at line %d", r.Type().Kind, ID(r), line)})
				continue
			}
			seen[id] = item.Line
			out = append(out, r)
		}
	}
	if len(fe.Problems) > 0 {
		return nil, fe
	}
	if len(out) == 0 {
		fe.Problems = append(fe.Problems, Problem{Msg: "no resources in it"})
		return nil, fe
	}
	return out, nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// yamlErrLine digs the line out of a yaml.v3 error ("yaml: line 3: ...").
func yamlErrLine(err error) int {
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		rest := s[i+5:]
		j := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if j > 0 {
			n, _ := strconv.Atoi(rest[:j])
			return n
		}
	}
	return 0
}

// field returns the value of key in mapping n.
func field(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// listItems returns the documents of a List, or root itself.
func listItems(root *yaml.Node, fe *FileError) []*yaml.Node {
	k := field(root, "kind")
	if k == nil || !strings.HasSuffix(k.Value, "List") {
		return []*yaml.Node{root}
	}
	items := field(root, "items")
	if items == nil || items.Kind != yaml.SequenceNode {
		fe.Problems = append(fe.Problems, Problem{Line: root.Line, Field: "items", Msg: "a List needs a list of items"})
		return nil
	}
	return items.Content
}

// parseDoc checks and decodes one resource document.
func parseDoc(root *yaml.Node) (Resource, *Problem) {
	if root.Kind != yaml.MappingNode {
		return nil, &Problem{Line: root.Line, Msg: "a resource is a mapping with apiVersion, kind, metadata and spec"}
	}
	av := field(root, "apiVersion")
	switch {
	case av == nil:
		return nil, &Problem{Line: root.Line, Field: "apiVersion", Msg: "missing (want " + APIVersion + ")"}
	case av.Value != APIVersion:
		return nil, &Problem{Line: av.Line, Field: "apiVersion", Msg: fmt.Sprintf("%q: want %s", av.Value, APIVersion)}
	}
	k := field(root, "kind")
	if k == nil {
		return nil, &Problem{Line: root.Line, Field: "kind", Msg: "missing (Node, IPPool, BGPConfiguration, BGPPeer, NetworkPolicy, GlobalNetworkPolicy or WorkloadEndpoint)"}
	}
	r, err := New(k.Value)
	if err != nil {
		return nil, &Problem{Line: k.Line, Field: "kind", Msg: err.Error()}
	}
	if field(root, "metadata") == nil {
		return nil, &Problem{Line: root.Line, Field: "metadata", Msg: "missing (metadata.name names the resource)"}
	}
	if p := checkFields(root, reflect.TypeOf(r).Elem(), ""); p != nil {
		return nil, p
	}
	// The fields are known and typed right: decode through JSON, by the
	// structs' JSON names.
	var v any
	if err := root.Decode(&v); err != nil {
		return nil, &Problem{Line: yamlErrLine(err), Msg: err.Error()}
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, &Problem{Line: root.Line, Msg: err.Error()}
	}
	if err := json.Unmarshal(data, r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, &Problem{Line: lineOf(root, te.Field), Field: te.Field, Msg: fmt.Sprintf("want a %s, not a %s", te.Type, te.Value)}
		}
		return nil, &Problem{Line: root.Line, Msg: err.Error()}
	}
	Default(r)
	if err := check(r); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return nil, &Problem{Line: lineOf(root, fe.Field), Field: fe.Field, Msg: fe.Msg}
		}
		return nil, &Problem{Line: root.Line, Msg: err.Error()}
	}
	r.Meta().ResourceVersion = ""
	return r, nil
}

// lineOf returns the line of the field at path (dotted, with list
// indexes: spec.ingress[0].protocol), or of the nearest field on the way
// that has it not.
func lineOf(root *yaml.Node, path string) int {
	n := root
	line := root.Line
	for _, part := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(part, "[")
		v := field(n, name)
		if v == nil {
			return line
		}
		n, line = v, v.Line
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			rest = strings.TrimPrefix(after, "[")
			i, err := strconv.Atoi(idx)
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		}
	}
	return line
}

// checkFields reports the first unknown field, or value of the wrong
// shape, in n, which t (by its JSON names) describes.
func checkFields(n *yaml.Node, t reflect.Type, path string) *Problem {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	if isNull(n) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return &Problem{Line: n.Line, Field: path, Msg: "want a mapping"}
		}
		fields := jsonFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				names := orderedJSONFields(t)
				return &Problem{Line: k.Line, Field: join(k.Value), Msg: "unknown field (known: " + strings.Join(names, ", ") + ")"}
			}
			if p := checkFields(v, ft, join(k.Value)); p != nil {
				return p
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return &Problem{Line: n.Line, Field: path, Msg: "want a mapping"}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if p := checkFields(n.Content[i+1], t.Elem(), join(n.Content[i].Value)); p != nil {
				return p
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return &Problem{Line: n.Line, Field: path, Msg: "want a list"}
		}
		for i, it := range n.Content {
			if p := checkFields(it, t.Elem(), path+"["+strconv.Itoa(i)+"]"); p != nil {
				return p
			}
		}
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			return &Problem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%q: want a number", n.Value)}
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return &Problem{Line: n.Line, Field: path, Msg: "want a single value"}
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return &Problem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%q: want true or false", n.Value)}
		}
	case reflect.Int, reflect.Uint32:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return &Problem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%q: want a whole number", n.Value)}
		}
		bits := 63
		if t.Kind() == reflect.Uint32 {
			bits = 32
		}
		if _, err := strconv.ParseUint(n.Value, 0, bits); err != nil {
			return &Problem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%s: want a whole number from 0 to %d", n.Value, uint64(1)<<bits-1)}
		}
	}
	return nil
}

// jsonFields maps a struct's JSON field names (inlined structs' too) to
// their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			for k, v := range jsonFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

// orderedJSONFields lists a struct's JSON field names in declaration
// order.
func orderedJSONFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			out = append(out, orderedJSONFields(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

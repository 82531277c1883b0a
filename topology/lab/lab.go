// Package lab deploys, inspects and destroys a vrouter lab: one network
// namespace and one `vrouter node run` process per node, one namespace per
// workload, and a state directory under /run/vrouter/<lab> holding the node
// configs, pid files, logs, control sockets, the IPAM datastore and the
// underlay fabric's sockets (statedir.go computes every path of it).
//
// Each node and router of a lab is a Node of a kind (kind.go): calicoNode
// (the node agent), routerNode (kind: router, the forwarder alone) and
// externalRouter (the forwarder beside a BGP daemon, whose part is bird,
// frr or gobgpd). Deploy takes them through its phases: plan, provision,
// start, wait (deploy.go).
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// stateFile is the name of the file in a lab's state directory that records
// what the lab is made of.
const stateFile = "lab.json"

// State records what a deployed lab is made of, so that inspect and destroy
// need nothing but the lab's name.
type State struct {
	Name      string          `json:"name"`
	File      string          `json:"file"` // the lab file it came from
	Dir       string          `json:"dir"`  // state directory
	Created   time.Time       `json:"created"`
	Spec      *topology.Lab   `json:"spec"` // the validated lab file
	Nodes     []NodeState     `json:"nodes"`
	Workloads []WorkloadState `json:"workloads"`
	Routers   []RouterState   `json:"routers,omitempty"`
	// Bridges are a kernel lab's networks (kernel.go).
	Bridges []BridgeState `json:"bridges,omitempty"`
	// Etcd is an etcd lab's cluster (etcd.go); nil on bbolt.
	Etcd *EtcdState `json:"etcd,omitempty"`
}

// NodeState is one node of a deployed lab.
type NodeState struct {
	Name      string     `json:"name"`
	Namespace string     `json:"namespace"`
	Address   netip.Addr `json:"address"`
	Network   string     `json:"network"`
	Interface string     `json:"interface"`
	Config    string     `json:"config"`  // node agent config file
	Control   string     `json:"control"` // agent control socket
	Log       string     `json:"log"`
	PIDFile   string     `json:"pidFile"`
}

// WorkloadState is one workload of a deployed lab.
type WorkloadState struct {
	Name      string `json:"name"`
	Node      string `json:"node"`
	Namespace string `json:"namespace"` // empty for a netstack workload
	Interface string `json:"interface"` // the engine port, caliXXXXXXXXXXX
	// Stack is config.StackNetstack for a gVisor stack in the node's
	// agent, empty for a namespace.
	Stack string `json:"stack,omitempty"`
}

// IsNetstack reports whether the workload is a gVisor stack in its node's
// agent (it has no namespace).
func (w WorkloadState) IsNetstack() bool { return w.Stack == config.StackNetstack }

// StackName is the workload's stack as listings show it: namespace or
// netstack.
func (w WorkloadState) StackName() string {
	if w.IsNetstack() {
		return config.StackNetstack
	}
	return config.StackNamespace
}

// Workload returns the named workload's state.
func (s *State) Workload(name string) (WorkloadState, bool) {
	for _, w := range s.Workloads {
		if w.Name == name {
			return w, true
		}
	}
	return WorkloadState{}, false
}

// Load reads the state of the deployed lab called name. The name must be a
// valid lab name, and the state must be the lab's own: its recorded name
// and directory match, and every path it records lies inside its
// directory.
func Load(name string) (*State, error) {
	dir, err := Dir(name)
	if err != nil {
		return nil, err
	}
	if err := checkDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("lab %s is not deployed (no %s)", name, dir)
		}
		return nil, err
	}
	data, err := readStateFile(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lab %s is not deployed (no %s)", name, statePath(dir))
	}
	if err != nil {
		return nil, fmt.Errorf("load lab %s: %w", name, err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("load lab %s: %s: %w", name, statePath(dir), err)
	}
	if s.Name != name || s.Dir != dir {
		return nil, fmt.Errorf("load lab %s: %s records lab %q in %q, not this lab", name, statePath(dir), topology.Shorten(s.Name), topology.Shorten(s.Dir))
	}
	if p, ok := s.pathOutside(); ok {
		return nil, fmt.Errorf("load lab %s: %s records a path outside %s: %q", name, statePath(dir), dir, topology.Shorten(p))
	}
	return &s, nil
}

// pathOutside returns a path the state records that is not inside its
// directory, if there is one.
func (s *State) pathOutside() (string, bool) {
	var paths []string
	for _, n := range s.Nodes {
		paths = append(paths, n.Config, n.Control, n.Log, n.PIDFile)
	}
	for _, r := range s.Routers {
		paths = append(paths, r.Config, r.Control, r.Log, r.PIDFile, r.Dir)
		for _, p := range r.Processes {
			paths = append(paths, p.PIDFile, p.Log)
		}
	}
	if s.Etcd != nil {
		for _, m := range s.Etcd.Members {
			paths = append(paths, m.DataDir, m.Log, m.PIDFile)
		}
	}
	for _, p := range paths {
		if p != "" && !strings.HasPrefix(filepath.Clean(p), s.Dir+"/") {
			return p, true
		}
	}
	return "", false
}

func (s *State) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(statePath(s.Dir), append(data, '\n'), fileMode); err != nil {
		return fmt.Errorf("save lab state: %w", err)
	}
	return nil
}

// List returns the names of the labs that have a state directory. Entries
// of the state root that are not valid lab names, or not real
// directories, are no labs and are skipped.
func List() ([]string, error) {
	ents, err := os.ReadDir(topology.StateRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list labs: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && topology.CheckLabName(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// Node returns the named node's state.
func (s *State) Node(name string) (NodeState, bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeState{}, false
}

// Namespace returns the namespace of the named node or workload.
func (s *State) Namespace(name string) (string, bool) {
	if n, ok := s.Node(name); ok {
		return n.Namespace, true
	}
	for _, w := range s.Workloads {
		if w.Name == name {
			return w.Namespace, true
		}
	}
	if r, ok := s.Router(name); ok {
		return r.Namespace, true
	}
	if s.Etcd != nil {
		if m, ok := s.Etcd.Member(name); ok {
			return m.Namespace, true
		}
	}
	return "", false
}

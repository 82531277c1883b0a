package lab

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// shellJoin quotes what a shell would split or expand, so a printed
// command line can be pasted back.
func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"vtysh", "--vty_socket", "/run/vrouter/x/r1", "-c", "show bgp summary", "it's", ""})
	if want := `vtysh --vty_socket /run/vrouter/x/r1 -c 'show bgp summary' 'it'\''s' ''`; got != want {
		t.Errorf("shellJoin = %s, want %s", got, want)
	}
}

// Every router a lab file can hold has a kind, found by the Daemon its
// state records; an unknown one is an error, not a guess.
func TestRouterKinds(t *testing.T) {
	for d, want := range map[topology.Daemon]string{
		KindRouterNode:       topology.KindRouter,
		topology.DaemonBIRD:  "bird",
		topology.DaemonBIRD2: "bird2",
		topology.DaemonFRR:   "frr",
		topology.DaemonGoBGP: "gobgpd",
	} {
		n, err := routerKind(forwarder{rs: RouterState{Name: "r1", Daemon: d}})
		if err != nil {
			t.Errorf("daemon %q: %v", d, err)
			continue
		}
		if n.Kind() != want || n.Name() != "r1" {
			t.Errorf("daemon %q: kind %q, name %q; want %q, r1", d, n.Kind(), n.Name(), want)
		}
	}
	if _, err := routerKind(forwarder{rs: RouterState{Name: "r1", Daemon: "quagga"}}); err == nil || !strings.Contains(err.Error(), `unknown daemon "quagga"`) {
		t.Errorf("unknown daemon: %v", err)
	}
}

// Each kind says how to reach its daemon's CLI and where to look for its
// BGP sessions: `vrouter node status` and `vrouter exec` hints come from
// the kind, not from switches over daemon names.
func TestKindCLIAndStatus(t *testing.T) {
	st := &State{Name: "l1", Nodes: []NodeState{{Name: "node1", Control: "/nonexistent/node1.sock"}}}
	for _, c := range []struct {
		daemon topology.Daemon
		cli    []string // CLIArgs("a b", "c")
		status string   // what Status says
	}{
		{topology.DaemonBIRD, []string{"/bin/birdc", "-s", "/s", "a b", "c"}, "ask it: vrouter exec r-bird -- /bin/birdc -s /s show protocols"},
		{topology.DaemonBIRD2, []string{"/bin/birdc", "-s", "/s", "a b", "c"}, "running bird2; ask it: vrouter exec r-bird2 -- /bin/birdc -s /s show protocols"},
		{topology.DaemonFRR, []string{"/bin/birdc", "--vty_socket", "/s", "-c", "a b", "-c", "c"}, "vrouter exec r-frr -- /bin/birdc --vty_socket /s -c 'show bgp summary'"},
		{topology.DaemonGoBGP, []string{"/bin/birdc", "--target", "unix:///s", "a b", "c"}, "vrouter exec r-gobgpd -- /bin/birdc --target unix:///s neighbor"},
		{KindRouterNode, nil, "r- is a router (kind: router): it runs no BGP; its routes: vrouter route r-"},
	} {
		rs := RouterState{Name: "r-" + string(c.daemon), Daemon: c.daemon, CLI: "/bin/birdc", Socket: "/s"}
		st.Routers = append(st.Routers, rs)
		if got := rs.CLIArgs("a b", "c"); !slices.Equal(got, c.cli) {
			t.Errorf("%s: CLIArgs = %q, want %q", c.daemon, got, c.cli)
		}
		n, err := st.Member(rs.Name)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = n.Status(context.Background(), &out)
		if err == nil || !strings.Contains(err.Error(), c.status) || out.Len() > 0 {
			t.Errorf("%s: Status = %v (wrote %q), want an error saying %q", c.daemon, err, out.String(), c.status)
		}
	}
	// A calico node's agent is asked; here none runs.
	n, err := st.Member("node1")
	if err != nil || n.Kind() != topology.KindCalico {
		t.Fatalf("Member(node1) = %v, %v", n, err)
	}
	if _, err := st.Member("nope"); err == nil || !strings.Contains(err.Error(), `lab l1 has no node "nope"`) {
		t.Errorf("Member(nope): %v", err)
	}
}

// planLab has calico nodes on two racks and a router node between them.
const planLab = `name: plan
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks:
  - {name: rack1, cidr: 192.168.50.0/24}
  - {name: rack2, cidr: 192.168.60.0/24}
nodes:
  node1: {network: rack1, address: 192.168.50.10}
  node2: {network: rack2, address: 192.168.60.10}
  tor:
    kind: router
    interfaces:
      - {name: eth0, network: rack1, address: 192.168.50.1}
      - {name: eth1, network: rack2, address: 192.168.60.1}
workloads:
  - {name: w1, node: node1}
`

// The plan computes every path a lab's processes use from statedir.go's
// layout, and hands each process its own through its config: the config
// and the state name the same control socket, and every path lies in the
// lab's state directory.
func TestPlanPathsFromStateDir(t *testing.T) {
	root := tempStateRoot(t)
	l, err := topology.Parse("plan.yaml", []byte(planLab))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPlan(l)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "plan")
	if p.dir != dir || p.frr {
		t.Errorf("plan dir %q frr %v, want %q false", p.dir, p.frr, dir)
	}
	st := &State{Name: "plan", Dir: dir}
	var kinds []string
	for _, n := range p.nodes {
		n.record(st)
		kinds = append(kinds, n.Name()+":"+n.Kind())
	}
	if want := []string{"node1:calico", "node2:calico", "tor:router"}; !slices.Equal(kinds, want) {
		t.Errorf("plan nodes %q, want %q (calico nodes first)", kinds, want)
	}
	if p, ok := st.pathOutside(); ok {
		t.Errorf("path outside the state directory: %s", p)
	}
	n, _ := st.Node("node1")
	want := NodeState{Name: "node1", Namespace: l.NamespaceName("node1"), Address: n.Address, Network: "rack1", Interface: n.Interface,
		Config: dir + "/nodes/node1.json", Control: dir + "/nodes/node1.sock", Log: dir + "/nodes/node1.log", PIDFile: dir + "/nodes/node1.pid"}
	if n != want {
		t.Errorf("node1 state\n%+v, want\n%+v", n, want)
	}
	c := p.nodes[0].(*calicoNode).cfg
	if c.Control != n.Control || c.Fabric != dir+"/fabric" || c.Routes != dir+"/nodes/node1.routes.json" || c.AddedWorkloads != dir+"/nodes/node1.workloads.json" || c.Datastore != dir+"/ipam.db" {
		t.Errorf("node1 config paths: control %s fabric %s routes %s datastore %s", c.Control, c.Fabric, c.Routes, c.Datastore)
	}
	r, _ := st.Router("tor")
	if r.Config != dir+"/routers/tor.json" || r.Control != dir+"/nodes/tor.sock" || r.Dir != dir+"/routers/tor" || r.PIDFile != dir+"/routers/tor.pid" {
		t.Errorf("tor state paths: %+v", r)
	}
	rc := p.nodes[2].(*routerNode).cfg
	if rc.Control != r.Control || rc.Fabric != dir+"/fabric" {
		t.Errorf("tor config paths: control %s fabric %s", rc.Control, rc.Fabric)
	}
	if pid, log := daemonProcessPaths(r.Dir, "bgpd"); pid != dir+"/routers/tor.bgpd.pid" || log != dir+"/routers/tor.bgpd.log" {
		t.Errorf("daemon process files %s %s", pid, log)
	}
	if got := startFile(n.PIDFile); got != dir+"/nodes/node1.start" {
		t.Errorf("start file %s", got)
	}
	if len(p.workloads) != 1 || p.workloads[0].Namespace != l.NamespaceName("w1") || p.workloads[0].Interface != config.InterfaceName("plan", "w1") {
		t.Errorf("workloads %+v", p.workloads)
	}
	// Nothing exists yet.
	if _, err := os.Lstat(dir); err == nil {
		t.Errorf("planning made %s", dir)
	}
}

// A lab already deployed (its state file is there) is refused at plan,
// before anything is made.
func TestPlanRefusesDeployedLab(t *testing.T) {
	root := tempStateRoot(t)
	l, err := topology.Parse("plan.yaml", []byte(planLab))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "plan"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "plan", stateFile), []byte(`{"name":"plan"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newPlan(l); err == nil || !strings.Contains(err.Error(), "already deployed") {
		t.Errorf("newPlan of a deployed lab: %v", err)
	}
}

// pidFiles finds every process's pid file in the layout, routers first,
// without a state file.
func TestPIDFiles(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{nodesDir(dir), routersDir(dir), daemonDir(dir, "r1")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	bird, _ := daemonProcessPaths(daemonDir(dir, "r1"), "bird")
	files := []string{nodePaths(dir, "node1").PIDFile, nodePaths(dir, "node1").Config, routerPaths(dir, "r1").PIDFile, bird, daemonFile(daemonDir(dir, "r1"), bgpdPIDFile)}
	for _, f := range files {
		if err := os.WriteFile(f, []byte("1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{dir + "/routers/r1.bird.pid", dir + "/routers/r1.pid", dir + "/nodes/node1.pid"}
	if got := pidFiles(dir); !slices.Equal(got, want) {
		t.Errorf("pidFiles = %q, want %q", got, want)
	}
}

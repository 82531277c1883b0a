package scenarios

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
)

// labHead is a valid scenario header with an inline lab; its lab ends on
// line 14, steps start on line 15.
const labHead = `name: t
description: test
rfc: RFC 0
lab:
  name: t
  ipPools:
    - {name: pool, cidr: 10.244.0.0/16}
  networks:
    - {name: lan, cidr: 192.168.50.0/24}
  nodes:
    node1: {network: lan, address: 192.168.50.10}
    node2: {network: lan, address: 192.168.50.11}
  workloads:
    - {name: a, node: node1}
steps:
  - deploy:
`

func TestParseValid(t *testing.T) {
	s, err := Parse("ok.yaml", []byte(labHead+`  - captureStart: lan
  - routes: {node: node1, contains: [x, y], lacks: z, matches: '^a', equals: "b\n", timeout: 5s}
  - bgp: {node: node1, peer: 192.168.50.11, established: true}
  - ping: {from: a, to: 10.244.0.1, expect: failure, ttl: 1, output: exceeded}
  - traceroute: {from: a, to: a, hops: [192.168.50.10, '*', 10.0.0.1 !N], maxHops: 5}
  - tcp: {from: a, to: a, port: 80, listen: true}
  - workloadAdd: {name: b, node: node2}
  - tcp: {from: b, to: a, port: 80, expect: refused}
  - workloadDel: b
  - linkDown: node2
  - linkUp: {node: node2}
  - restart: {node: node2, kill: true, wait: false}
  - wait: 1.5
  - captureStop: lan
  - packets: {capture: lan, match: {proto: ipip, inner: {proto: icmp, icmpType: 8}}, check: {ttl: 63, df: true}, count: 3}
  - bgpMessages: {capture: lan, open: {as: 64512, holdTime: 9s, routerID: 1.2.3.4, capabilities: [4-octet-as]}, interval: {min: 1s, max: 4s}}
  - bgpMessages: {capture: lan, update: {nlri: [10.244.0.0/26], asPath: [], clusterList: [1.1.1.1]}, expect: absent}
  - bgpMessages: {capture: lan, notification: {code: 2, subcode: 2}}
  - destroy:
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "t" || s.RFC != "RFC 0" || s.Lab == nil || s.Lab.Name != "t" || len(s.Steps) != 20 {
		t.Fatalf("parsed %+v", s)
	}
	if st := s.Steps[2]; st.Kind != "routes" || !st.Assert || st.Timeout != 5*time.Second || st.Line != 18 {
		t.Errorf("routes step: %+v", st)
	}
	if st := s.Steps[3]; st.Timeout != DefaultAssertTimeout {
		t.Errorf("bgp step timeout %s", st.Timeout)
	}
	if w := s.Steps[13].act.(waitStep); w.d != 1500*time.Millisecond {
		t.Errorf("wait: %s", w.d)
	}
	if r := s.Steps[12].act.(restartStep); !r.kill || !r.noWait {
		t.Errorf("restart: %+v", r)
	}
}

// Every problem is reported as FILE:LINE: FIELD: message, all at once.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"empty", "", []string{"f.yaml: the file is empty"}},
		{"syntax", "name: [", []string{"f.yaml:1: YAML:"}},
		{"not a mapping", "- a\n", []string{"f.yaml:1: must be a mapping"}},
		{"missing", "name: x\n", []string{"f.yaml:1: lab: missing", "f.yaml:1: steps: missing"}},
		{"unknown field", labHead + "nmae: x\n", []string{"f.yaml:17: nmae: unknown field"}},
		{"unknown step", labHead + "  - deplyo:\n", []string{"f.yaml:17: steps[1].deplyo: unknown step (known: deploy,"}},
		{"two keys", labHead + "  - {wait: 1s, deploy: }\n", []string{"f.yaml:17: steps[1]: a step is a mapping with one key"}},
		// a problem inside the inline lab carries its line in this file
		{"inline lab", strings.Replace(labHead, "192.168.50.11}", "192.168.51.11}", 1), []string{"f.yaml:12: lab.nodes.node2.address:"}},
		{"bad node", labHead + "  - routes: {node: node9, contains: x}\n", []string{`f.yaml:17: steps[1].routes.node: the lab has no node or router "node9" (its nodes: node1, node2)`}},
		{"no node no dut", labHead + "  - routes: {contains: x}\n", []string{"f.yaml:17: steps[1].routes.node: missing (and the scenario names no dut)"}},
		{"nothing to check", labHead + "  - routes: {node: node1}\n", []string{"f.yaml:17: steps[1].routes: say what to check"}},
		{"bad regex", labHead + "  - routes: {node: node1, matches: '('}\n", []string{"f.yaml:17: steps[1].routes.matches: bad regular expression"}},
		{"bad peer", labHead + "  - bgp: {node: node1, peer: nope, established: true}\n", []string{`f.yaml:17: steps[1].bgp.peer: "nope" is not an IPv4 address`}},
		{"bad state", labHead + "  - bgp: {node: node1, peer: 1.2.3.4, state: Established}\n", []string{"steps[1].bgp.state: must be up, start or down"}},
		{"bad workload", labHead + "  - ping: {from: zz, to: a}\n", []string{`f.yaml:17: steps[1].ping.from: the lab has no workload "zz" (its workloads: a)`}},
		{"deleted workload", labHead + "  - workloadDel: a\n  - ping: {from: a, to: 1.2.3.4}\n", []string{`f.yaml:18: steps[2].ping.from: the lab has no workload "a"`}},
		{"expect", labHead + "  - ping: {from: a, to: a, expect: maybe}\n", []string{"steps[1].ping.expect: must be success or failure"}},
		{"timeout", labHead + "  - ping: {from: a, to: a, timeout: forever}\n", []string{"steps[1].ping.timeout: must be a duration"}},
		{"zero timeout", labHead + "  - ping: {from: a, to: a, timeout: 0s}\n", []string{"steps[1].ping.timeout: must be more than 0"}},
		{"hops", labHead + "  - traceroute: {from: a, to: a, hops: [node1], maxHops: 1}\n", []string{`steps[1].traceroute.hops[0]: "node1" is not a hop`}},
		{"too many hops", labHead + "  - traceroute: {from: a, to: a, hops: ['*', '*'], maxHops: 1}\n", []string{"steps[1].traceroute: 2 hops expected but maxHops is 1"}},
		{"running capture", labHead + "  - captureStart: lan\n  - packets: {capture: lan, expect: absent}\n", []string{"f.yaml:18: steps[2].packets: capture lan still runs: stop it (captureStop) before asserting absence or an exact count"}},
		{"port", labHead + "  - tcp: {from: a, to: a, port: 70000}\n", []string{"steps[1].tcp.port: 70000 is out of range 1-65535"}},
		{"listen on address", labHead + "  - tcp: {from: a, to: 10.0.0.1, port: 80, listen: true}\n", []string{"steps[1].tcp.listen: listen needs to to name a workload"}},
		{"no capture", labHead + "  - packets: {capture: lan}\n", []string{`f.yaml:17: steps[1].packets.capture: no capture "lan" was started before this step`}},
		{"bad network", labHead + "  - captureStart: wan\n", []string{`f.yaml:17: steps[1].captureStart: the lab has no network "wan" (its networks: lan)`}},
		{"capture twice", labHead + "  - captureStart: lan\n  - captureStart: lan\n", []string{`f.yaml:18: steps[2].captureStart: a capture "lan" was already started`}},
		{"bad filter", labHead + "  - captureStart: lan\n  - packets: {capture: lan, match: {proto: icmp, ttl: 300, src: 10.0.0.0/33, colour: red}}\n",
			[]string{"steps[2].packets.match.colour: unknown field", "steps[2].packets.match.ttl: 300 is out of range 0-255", `steps[2].packets.match.src: "10.0.0.0/33" is not an IPv4 address or prefix`}},
		{"absent with count", labHead + "  - captureStart: lan\n  - packets: {capture: lan, expect: absent, count: 2}\n", []string{"steps[2].packets: expect: absent takes no count or min"}},
		{"bad message type", labHead + "  - captureStart: lan\n  - bgpMessages: {capture: lan, type: hello}\n", []string{"steps[2].bgpMessages.type: must be open, update"}},
		{"type clash", labHead + "  - captureStart: lan\n  - bgpMessages: {capture: lan, type: keepalive, open: {as: 1}}\n", []string{"steps[2].bgpMessages.open: type says another message type"}},
		{"hold time", labHead + "  - captureStart: lan\n  - bgpMessages: {capture: lan, open: {holdTime: 1.5s}}\n", []string{"steps[2].bgpMessages.open.holdTime: must be whole seconds"}},
		{"as path", labHead + "  - captureStart: lan\n  - bgpMessages: {capture: lan, update: {asPath: 65000}}\n", []string{"steps[2].bgpMessages.update.asPath: must be a list of AS numbers"}},
		{"interval", labHead + "  - captureStart: lan\n  - bgpMessages: {capture: lan, interval: {min: 5s, max: 1s}}\n", []string{"steps[2].bgpMessages.interval: min is more than max"}},
		{"before deploy", strings.Replace(labHead, "  - deploy:\n", "  - linkDown: node1\n  - deploy:\n", 1), []string{"f.yaml:16: steps[0].linkDown: the lab is not deployed at this step"}},
		{"deploy twice", labHead + "  - deploy:\n", []string{"f.yaml:17: steps[1].deploy: the lab is already deployed"}},
		{"destroy twice", labHead + "  - destroy:\n  - destroy:\n", []string{"f.yaml:18: steps[2].destroy: the lab is not deployed at this step"}},
		{"dut", strings.Replace(labHead, "steps:", "dut: nodeX\nsteps:", 1), []string{`f.yaml:15: dut: the lab has no node or router "nodeX"`}},
		{"lab path", "name: x\nlab: no-such-lab.yaml\nsteps:\n  - deploy:\n", []string{"f.yaml:2: lab: read lab file: open no-such-lab.yaml"}},
		{"two documents", labHead + "---\nname: y\n", []string{"f.yaml:17: a scenario file holds one scenario"}},
		{"duplicate key", labHead + "name: u\n", []string{"f.yaml:17: name: given twice"}},
		{"pause unknown", labHead + "  - pause: node9\n", []string{`f.yaml:17: steps[1].pause: the lab has no node or router "node9"`}},
		{"resume mapping", labHead + "  - resume: {node: node1}\n", []string{"f.yaml:17: steps[1].resume: must be a"}},
		{"stop wait", labHead + "  - stop: {node: node1, wait: false}\n", []string{"f.yaml:17: steps[1].stop.wait: unknown field (known: node, interface, kill)"}},
		{"start kill", labHead + "  - start: {node: node1, kill: true}\n", []string{"f.yaml:17: steps[1].start.kill: unknown field (known: node, interface, wait, timeout)"}},
		{"start interface", labHead + "  - start: {node: node1, interface: ens33}\n", []string{"f.yaml:17: steps[1].start.interface: start takes no interface"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.data))
			var ve *topology.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *topology.ValidationError, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// A lab named by path is resolved beside the scenario; its problems name
// the lab file and its line.
func TestParseLabPath(t *testing.T) {
	s, err := Load("testdata/by-path.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Lab == nil || s.Lab.Name != "two" || s.LabFile != filepath.Join("testdata", "two-nodes.yaml") || s.DUT != "node2" {
		t.Fatalf("lab %+v from %q, dut %q", s.Lab, s.LabFile, s.DUT)
	}
	if r := s.Steps[1].act.(routesAssert); r.node != "node2" {
		t.Errorf("routes without node should check the dut, got %q", r.node)
	}
	_, err = Parse("testdata/x.yaml", []byte("name: x\nlab: bad-lab.yaml\nsteps:\n  - deploy:\n"))
	if err == nil || !strings.Contains(err.Error(), "testdata/x.yaml:2: lab: testdata/bad-lab.yaml:5: nodes.node1.address:") {
		t.Fatalf("error %v", err)
	}
}

// Every shipped scenario parses, names what it checks, and has a unique
// name.
func TestShippedSuiteParses(t *testing.T) {
	files, err := Discover([]string{"suite"})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Errorf("the suite has %d scenarios, want at least 10", len(files))
	}
	list, err := LoadAll(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.RFC == "" || s.Description == "" {
			t.Errorf("%s: says neither which RFC section or seed behaviour it checks (rfc) nor what (description)", s.File)
		}
		if base := strings.TrimSuffix(filepath.Base(s.File), ".yaml"); base != s.Name {
			t.Errorf("%s: scenario name %q differs from its file name", s.File, s.Name)
		}
	}
}

// Discover finds YAML files recursively, skips testdata, and refuses a
// path without scenarios.
func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"b.yaml", "a.yml", "sub/c.yaml", "testdata/x.yaml", ".hidden/y.yaml", "notes.txt"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Discover([]string{dir + "/..."})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yaml"), filepath.Join(dir, "sub/c.yaml")}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Discover = %v, want %v", got, want)
	}
	if _, err := Discover([]string{filepath.Join(dir, "sub", "..", "testdata", "..", ".hidden", "..", "none")}); err == nil {
		t.Error("a missing path was accepted")
	}
	empty := t.TempDir()
	if _, err := Discover([]string{empty}); err == nil || !strings.Contains(err.Error(), "no scenario files") {
		t.Errorf("empty directory: %v", err)
	}
}

// Two scenarios with one name are refused, every file's problems together.
func TestLoadAllDuplicateNames(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.yaml", "b.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(labHead), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("name: c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, _ := Discover([]string{dir})
	_, err := LoadAll(files)
	if err == nil || !strings.Contains(err.Error(), `b.yaml: name: scenario "t" is also in`) || !strings.Contains(err.Error(), "c.yaml:1: lab: missing") {
		t.Fatalf("LoadAll: %v", err)
	}
}

// The README's complete scenario is a valid one.
func TestREADMEExampleParses(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "A complete scenario")
	if !ok {
		t.Fatal("README has no complete scenario")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	example, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README's example is not closed")
	}
	s, err := Parse("README.md", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Steps) < 5 || s.DUT != "node1" {
		t.Errorf("README example parsed to %+v", s)
	}
}

package scenarios

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
	"testing"
	"time"
)

// xmlNode is a generic XML element, to check the output against the JUnit
// schema's required elements and attributes without trusting our own
// types.
type xmlNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []xmlNode  `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n xmlNode) attr(name string) (string, bool) {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func (n xmlNode) children(name string) []xmlNode {
	var out []xmlNode
	for _, c := range n.Nodes {
		if c.XMLName.Local == name {
			out = append(out, c)
		}
	}
	return out
}

func TestWriteJUnit(t *testing.T) {
	pass := &Scenario{File: "suite/a.yaml", Name: "a", RFC: "RFC 4271 4.2", Steps: []Step{{Kind: "wait", act: waitStep{d: time.Second}}}}
	fail := &Scenario{File: "suite/a.yaml", Name: "b", DUT: "node1"}
	other := &Scenario{File: "suite/c.yaml", Name: "c"}
	results := []*Result{
		{Scenario: pass, Lab: "sc1-1", Passed: true, Duration: 1500 * time.Millisecond, Captures: []string{"/art/a/lan.pcapng"}, Steps: []StepResult{{Step: pass.Steps[0], Duration: time.Second}}},
		{Scenario: fail, Lab: "sc1-2", Failure: "step 2 (routes node1, line 9): node1's table lacks \"x\"; observed:\n    y ]]> <&>", FailedStep: 2, Duration: time.Second, Captures: []string{"/art/b/lan.pcapng"}},
		{Scenario: other, Lab: "sc1-3", Passed: true},
	}
	var b bytes.Buffer
	if err := WriteJUnit(&b, results); err != nil {
		t.Fatal(err)
	}
	var root xmlNode
	if err := xml.Unmarshal(b.Bytes(), &root); err != nil {
		t.Fatalf("invalid XML: %v\n%s", err, b.String())
	}
	if root.XMLName.Local != "testsuites" {
		t.Fatalf("root element %s", root.XMLName.Local)
	}
	suites := root.children("testsuite")
	if len(suites) != 2 {
		t.Fatalf("%d testsuites, want one per file (2)", len(suites))
	}
	for _, s := range suites {
		// Ant's junit.xsd: required attributes and elements of a testsuite
		for _, a := range []string{"name", "tests", "failures", "errors", "time", "timestamp", "hostname", "id", "package"} {
			if v, ok := s.attr(a); !ok || v == "" {
				t.Errorf("testsuite lacks attribute %s", a)
			}
		}
		for _, e := range []string{"properties", "system-out", "system-err"} {
			if len(s.children(e)) != 1 {
				t.Errorf("testsuite lacks element %s", e)
			}
		}
		if ts, _ := s.attr("timestamp"); len(ts) != len("2006-01-02T15:04:05") {
			t.Errorf("timestamp %q is not ISO 8601 without zone", ts)
		}
		for _, c := range s.children("testcase") {
			for _, a := range []string{"name", "classname", "time"} {
				if _, ok := c.attr(a); !ok {
					t.Errorf("testcase lacks attribute %s", a)
				}
			}
		}
	}
	a := suites[0]
	if n, _ := a.attr("name"); n != "suite/a.yaml" {
		t.Errorf("first suite %s", n)
	}
	if v, _ := a.attr("tests"); v != "2" {
		t.Errorf("tests=%s, want 2", v)
	}
	if v, _ := a.attr("failures"); v != "1" {
		t.Errorf("failures=%s, want 1", v)
	}
	if v, _ := a.attr("time"); v != "2.500" {
		t.Errorf("time=%s, want 2.500", v)
	}
	cases := a.children("testcase")
	if len(cases) != 2 || len(cases[0].children("failure")) != 0 {
		t.Fatalf("cases %+v", cases)
	}
	f := cases[1].children("failure")
	if len(f) != 1 {
		t.Fatal("the failed scenario has no failure element")
	}
	if msg, _ := f[0].attr("message"); msg != `step 2 (routes node1, line 9): node1's table lacks "x"; observed:` {
		t.Errorf("failure message %q", msg)
	}
	if typ, ok := f[0].attr("type"); !ok || typ == "" {
		t.Error("failure lacks type")
	}
	if !strings.Contains(f[0].Text, "y ]]> <&>") {
		t.Errorf("failure text lost the observed table: %q", f[0].Text)
	}
	out := cases[1].children("system-out")
	if len(out) != 1 || !strings.Contains(out[0].Text, "pcapng: /art/b/lan.pcapng") || !strings.Contains(out[0].Text, "device under test: node1") {
		t.Errorf("system-out %+v", out)
	}
	if out := cases[0].children("system-out"); len(out) != 1 || !strings.Contains(out[0].Text, "step 1 wait 1s: ok (1s)") || !strings.Contains(out[0].Text, "checks: RFC 4271 4.2") {
		t.Errorf("system-out %+v", out)
	}
	if v, _ := root.attr("tests"); v != "3" {
		t.Errorf("testsuites tests=%s", v)
	}
	// the suite's properties name what it checks and its device under test
	props := map[string]string{}
	for _, p := range a.children("properties")[0].children("property") {
		n, _ := p.attr("name")
		v, _ := p.attr("value")
		props[n] = v
	}
	if props["dut"] != "node1" || props["rfc"] != "RFC 4271 4.2" {
		t.Errorf("testsuite properties %v, want dut node1 and rfc RFC 4271 4.2", props)
	}
}

func TestSummary(t *testing.T) {
	s := &Scenario{}
	got := Summary([]*Result{{Scenario: s, Passed: true}, {Scenario: s}, {Scenario: s, Passed: true}})
	if got != "2 passed, 1 failed" {
		t.Errorf("Summary = %q", got)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteJUnitError(t *testing.T) {
	if err := WriteJUnit(failingWriter{}, nil); err == nil {
		t.Error("a write error was lost")
	}
}

package metrics

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// exposition serves a snapshot as the agent does and returns the text.
func exposition(t *testing.T, s *Snapshot) []byte {
	t.Helper()
	h := Handler(NewCollector(func(context.Context) (*Snapshot, error) { return s, nil }, 0))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	return rec.Body.Bytes()
}

func TestMerge(t *testing.T) {
	s1, s2 := userspaceSnapshot(), userspaceSnapshot()
	s2.Engine.Forwarder.Forwarded = 200
	var out bytes.Buffer
	err := Merge(&out, []Node{
		{Name: "node1", Text: exposition(t, s1)},
		{Name: "node2", Text: exposition(t, s2)},
		{Name: "node3", Err: errors.New("agent is not running")},
		{Name: "node4", Text: []byte("garbage{\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"# TYPE vrouter_packets_forwarded_total counter\n",
		`vrouter_packets_forwarded_total{node="node1"} 100` + "\n",
		`vrouter_packets_forwarded_total{node="node2"} 200` + "\n",
		`vrouter_bgp_sessions{node="node2",state="Established"} 1` + "\n",
		`vrouter_node_up{node="node1"} 1` + "\n",
		`vrouter_node_up{node="node3"} 0` + "\n",
		`vrouter_node_up{node="node4"} 0` + "\n",
		`go_goroutines{node="node1"} `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("merged exposition lacks %q", want)
		}
	}
	// One HELP and TYPE per family, families sorted, every sample labelled.
	fams, err := Parse(out.Bytes())
	if err != nil {
		t.Fatalf("merged exposition does not parse: %v", err)
	}
	if n := strings.Count(text, "# TYPE vrouter_packets_forwarded_total "); n != 1 {
		t.Errorf("%d TYPE lines for one family", n)
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			node := ""
			for _, l := range m.Label {
				if l.GetName() == NodeLabel {
					node = l.GetValue()
				}
			}
			if node == "" {
				t.Errorf("%s: a sample without a node label", name)
			}
		}
	}
	var last string
	for _, line := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			if name < last {
				t.Errorf("family %s after %s", name, last)
			}
			last = name
		}
	}
	checkPromtool(t, out.Bytes())
}

// TestMergeRelabels: a node label already there is replaced, and a family
// of another type on a later node is left out.
func TestMergeRelabels(t *testing.T) {
	var out bytes.Buffer
	err := Merge(&out, []Node{
		{Name: "a", Text: []byte("# TYPE x counter\nx_total{node=\"old\",k=\"v\"} 1\n# TYPE y gauge\ny 1\n")},
		{Name: "b", Text: []byte("# TYPE y counter\ny 2\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !strings.Contains(text, `x_total{node="a",k="v"} 1`) || strings.Contains(text, "old") {
		t.Errorf("node label not replaced:\n%s", text)
	}
	if !strings.Contains(text, `y{node="a"} 1`) || strings.Contains(text, `y{node="b"}`) {
		t.Errorf("family of another type merged:\n%s", text)
	}
}

func FuzzMerge(f *testing.F) {
	f.Add([]byte("# TYPE x counter\nx_total{k=\"v\"} 1\n"))
	f.Add([]byte("# HELP y h\n# TYPE y histogram\ny_bucket{le=\"1\"} 1\ny_bucket{le=\"+Inf\"} 2\ny_sum 3\ny_count 2\n"))
	f.Add([]byte("z{node=\"q\"} NaN 123\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		var out bytes.Buffer
		if err := Merge(&out, []Node{{Name: "n1", Text: text}, {Name: "n2", Text: text}}); err != nil {
			return
		}
		// What Merge writes parses, and says whether the node's text did.
		fams, err := Parse(out.Bytes())
		if err != nil {
			t.Fatalf("merged output does not parse: %v\n%s", err, out.Bytes())
		}
		_, perr := Parse(text)
		up := fams[nodeUp]
		if up == nil || len(up.Metric) != 2 {
			t.Fatalf("vrouter_node_up missing or wrong: %v", up)
		}
		if want := perr == nil; (up.Metric[0].GetGauge().GetValue() == 1) != want {
			t.Fatalf("node_up %v, but the text parses: %v", up.Metric[0].GetGauge().GetValue(), want)
		}
	})
}

package graph_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/graph"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"golang.org/x/net/html"
)

// build loads a lab file and makes its graph, with the sessions deploy
// would configure.
func build(t *testing.T, file string) *graph.Graph {
	t.Helper()
	l, err := topology.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var sessions []graph.Session
	for _, s := range lab.Sessions(l) {
		sessions = append(sessions, graph.Session{A: s.A, B: s.B, Type: s.Type, EBGP: s.EBGP, RouteReflectorClient: s.RouteReflectorClient})
	}
	return graph.Build(l, sessions)
}

// labFiles are the test lab and every example.
func labFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("examples: %v %v", files, err)
	}
	return append([]string{"testdata/every-kind.yaml"}, files...)
}

func render(t *testing.T, format string, g *graph.Graph) string {
	t.Helper()
	var b bytes.Buffer
	if err := graph.Write(&b, format, g); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestBuild(t *testing.T) {
	g := build(t, "testdata/every-kind.yaml")
	kinds := map[string]string{}
	for _, n := range g.Nodes {
		kinds[n.Name] = n.Kind
	}
	want := map[string]string{
		"node1": graph.KindNode, "node2": graph.KindNode, "node3": graph.KindNode, "node4": graph.KindNode,
		"tor": graph.KindRouter, "ext1": graph.KindExternal, "192.168.60.200": graph.KindPeer,
	}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("nodes %v, want %v", kinds, want)
	}
	sessions := map[string]string{}
	for _, s := range g.Sessions {
		sessions[s.A+"-"+s.B] = s.Label()
	}
	for pair, label := range map[string]string{
		"node1-node2":          "iBGP RR client",
		"node1-node3":          "iBGP RR client",
		"node2-node3":          "iBGP node-to-node mesh",
		"node1-node4":          "eBGP node-to-node mesh",
		"node1-ext1":           "eBGP node specific",
		"node2-ext1":           "eBGP node specific",
		"node3-192.168.60.200": "eBGP node specific",
	} {
		if sessions[pair] != label {
			t.Errorf("session %s: %q, want %q", pair, sessions[pair], label)
		}
	}
	if len(g.Sessions) != 9 {
		t.Errorf("%d sessions, want 9 (4 mesh nodes: 6, ext1: 2, the outside peer: 1): %v", len(g.Sessions), sessions)
	}
	links := 0
	for _, l := range g.Links {
		if l.Node == "tor" {
			links++
		}
	}
	if links != 2 {
		t.Errorf("tor has %d links, want 2", links)
	}
}

// TestFormatsNameEverything: every format names every network, node,
// workload and session of every example.
func TestFormatsNameEverything(t *testing.T) {
	for _, file := range labFiles(t) {
		g := build(t, file)
		for _, format := range graph.Formats {
			out := render(t, format, g)
			var names []string
			for _, n := range g.Networks {
				names = append(names, n.Name, n.CIDR)
			}
			for _, n := range g.Nodes {
				names = append(names, n.Name)
			}
			for _, w := range g.Workloads {
				names = append(names, w.Name)
			}
			for _, l := range g.Links {
				names = append(names, l.Address)
			}
			for _, name := range names {
				if !strings.Contains(out, name) {
					t.Errorf("%s, -o %s: %q missing", file, format, name)
				}
			}
			if n := strings.Count(out, "BGP "); n < len(g.Sessions) {
				t.Errorf("%s, -o %s: %d session labels, want at least %d", file, format, n, len(g.Sessions))
			}
		}
	}
}

var (
	dotNode = regexp.MustCompile(`^  ("(?:[^"\\]|\\.)*") \[.*\];$`)
	dotEdge = regexp.MustCompile(`^  ("(?:[^"\\]|\\.)*") -- ("(?:[^"\\]|\\.)*")( \[.*\])?;$`)
)

// TestDOT checks the DOT's structure: every edge joins declared nodes,
// one per link, workload and session; dot renders it where installed.
func TestDOT(t *testing.T) {
	for _, file := range labFiles(t) {
		g := build(t, file)
		out := render(t, "dot", g)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if !strings.HasPrefix(lines[1], "graph ") || lines[len(lines)-1] != "}" {
			t.Fatalf("%s: not a graph:\n%s", file, out)
		}
		declared := map[string]bool{}
		edges := 0
		for _, line := range lines[2 : len(lines)-1] {
			if m := dotEdge.FindStringSubmatch(line); m != nil {
				if !declared[m[1]] || !declared[m[2]] {
					t.Errorf("%s: edge between undeclared nodes: %s", file, line)
				}
				edges++
				continue
			}
			if m := dotNode.FindStringSubmatch(line); m != nil {
				declared[m[1]] = true
				continue
			}
			if !strings.HasPrefix(line, "  graph [") && !strings.HasPrefix(line, "  node [") && !strings.HasPrefix(line, "  edge [") {
				t.Errorf("%s: unexpected line %q", file, line)
			}
		}
		if want := len(g.Links) + len(g.Workloads) + len(g.Sessions); edges != want {
			t.Errorf("%s: %d edges, want %d", file, edges, want)
		}
		if want := len(g.Networks) + len(g.Nodes) + len(g.Workloads); len(declared) != want {
			t.Errorf("%s: %d nodes declared, want %d", file, len(declared), want)
		}
		if dot, err := exec.LookPath("dot"); err == nil {
			cmd := exec.Command(dot, "-Tsvg")
			cmd.Stdin = strings.NewReader(out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: dot -Tsvg: %v\n%s", file, err, msg)
			}
		}
	}
}

var (
	mmNode = regexp.MustCompile(`^  ([a-z]+[0-9]+)(\[\[".*"\]\]|\["[^"]*"\]|\{\{"[^"]*"\}\}|\[/"[^"]*"/\]|\(\["[^"]*"\]\))$`)
	mmLink = regexp.MustCompile(`^  ([a-z]+[0-9]+) (---|-\.-)(\|[A-Za-z0-9 ./:-]*\|)? ([a-z]+[0-9]+)$`)
)

// TestMermaid checks the flowchart's structure: every link joins defined
// nodes, linkStyle indexes are links.
func TestMermaid(t *testing.T) {
	for _, file := range labFiles(t) {
		g := build(t, file)
		out := render(t, "mermaid", g)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if lines[0] != "flowchart TB" {
			t.Fatalf("%s: first line %q", file, lines[0])
		}
		defined := map[string]bool{}
		links := 0
		for _, line := range lines[1:] {
			switch {
			case strings.HasPrefix(line, "  %%"), strings.HasPrefix(line, "  classDef "):
			case strings.HasPrefix(line, "  class "):
				if f := strings.Fields(line); len(f) != 3 || !defined[f[1]] {
					t.Errorf("%s: class of an undefined node: %q", file, line)
				}
			case strings.HasPrefix(line, "  linkStyle "):
				for _, n := range strings.Split(strings.Fields(line)[1], ",") {
					if i, err := strconv.Atoi(n); err != nil || i < 0 || i >= links {
						t.Errorf("%s: linkStyle of link %s, there are %d", file, n, links)
					}
				}
			case mmLink.MatchString(line):
				m := mmLink.FindStringSubmatch(line)
				if !defined[m[1]] || !defined[m[4]] {
					t.Errorf("%s: link between undefined nodes: %q", file, line)
				}
				links++
			case mmNode.MatchString(line):
				defined[mmNode.FindStringSubmatch(line)[1]] = true
			default:
				t.Errorf("%s: unexpected line %q", file, line)
			}
		}
		if want := len(g.Links) + len(g.Workloads) + len(g.Sessions); links != want {
			t.Errorf("%s: %d links, want %d", file, links, want)
		}
	}
}

// attr returns n's attribute key.
func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// TestHTML parses the page (HTML5 and strict XML), finds every network,
// node, workload and session in the SVG and the tables, checks the layout
// keeps boxes apart and inside the drawing, and that the page loads
// nothing from elsewhere.
func TestHTML(t *testing.T) {
	for _, file := range labFiles(t) {
		g := build(t, file)
		out := render(t, "html", g)

		d := xml.NewDecoder(strings.NewReader(out))
		d.Strict = true
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: not well-formed: %v", file, err)
			}
		}
		for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
			if strings.Contains(out, bad) {
				t.Errorf("%s: the page contains %q: it must load nothing", file, bad)
			}
		}

		doc, err := html.Parse(strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]map[string]bool{"network": {}, "node": {}, "workload": {}, "session": {}}
		type rect struct {
			name       string
			x, y, w, h float64
		}
		var boxes []rect
		var svgW, svgH float64
		rows := map[string]int{}
		var walk func(n *html.Node, table string)
		walk = func(n *html.Node, table string) {
			if n.Type == html.ElementNode {
				class := strings.Fields(attr(n, "class"))
				switch {
				case n.Data == "svg":
					svgW, _ = strconv.ParseFloat(attr(n, "width"), 64)
					svgH, _ = strconv.ParseFloat(attr(n, "height"), 64)
				case n.Data == "table":
					table = attr(n, "id")
				case n.Data == "tr" && table != "":
					rows[table]++
				case len(class) > 0 && (class[0] == "network" || class[0] == "node" || class[0] == "workload"):
					found[class[0]][attr(n, "data-name")] = true
					if class[0] != "network" {
						for c := n.FirstChild; c != nil; c = c.NextSibling {
							if c.Type == html.ElementNode && (c.Data == "rect" || c.Data == "polygon") {
								var r rect
								r.name = attr(n, "data-name")
								if c.Data == "rect" {
									r.x, _ = strconv.ParseFloat(attr(c, "x"), 64)
									r.y, _ = strconv.ParseFloat(attr(c, "y"), 64)
									r.w, _ = strconv.ParseFloat(attr(c, "width"), 64)
									r.h, _ = strconv.ParseFloat(attr(c, "height"), 64)
								} else {
									var xs, ys []float64
									for _, p := range strings.Fields(attr(c, "points")) {
										x, y, _ := strings.Cut(p, ",")
										fx, _ := strconv.ParseFloat(x, 64)
										fy, _ := strconv.ParseFloat(y, 64)
										xs, ys = append(xs, fx), append(ys, fy)
									}
									r.x, r.y = minOf(xs), minOf(ys)
									r.w, r.h = maxOf(xs)-r.x, maxOf(ys)-r.y
								}
								boxes = append(boxes, r)
							}
						}
					}
				case len(class) > 0 && class[0] == "session":
					found["session"][attr(n, "data-a")+"-"+attr(n, "data-b")] = true
				}
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				walk(c, table)
			}
		}
		walk(doc, "")
		for _, n := range g.Networks {
			if !found["network"][n.Name] {
				t.Errorf("%s: network %s not drawn", file, n.Name)
			}
		}
		for _, n := range g.Nodes {
			if !found["node"][n.Name] {
				t.Errorf("%s: node %s not drawn", file, n.Name)
			}
		}
		for _, w := range g.Workloads {
			if !found["workload"][w.Name] {
				t.Errorf("%s: workload %s not drawn", file, w.Name)
			}
		}
		for _, s := range g.Sessions {
			if !found["session"][s.A+"-"+s.B] {
				t.Errorf("%s: session %s-%s not drawn", file, s.A, s.B)
			}
		}
		for id, want := range map[string]int{"networks": len(g.Networks), "nodes": len(g.Nodes), "workloads": len(g.Workloads), "sessions": len(g.Sessions)} {
			if rows[id] != want+1 {
				t.Errorf("%s: table %s has %d rows, want %d and a header", file, id, rows[id], want)
			}
		}
		for i, a := range boxes {
			if a.x < 0 || a.y < 0 || a.x+a.w > svgW || a.y+a.h > svgH {
				t.Errorf("%s: %s at %+v outside the %vx%v drawing", file, a.name, a, svgW, svgH)
			}
			for _, b := range boxes[i+1:] {
				if a.x < b.x+b.w && b.x < a.x+a.w && a.y < b.y+b.h && b.y < a.y+a.h {
					t.Errorf("%s: %s and %s overlap", file, a.name, b.name)
				}
			}
		}
	}
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// TestEscaping: names with characters special to each format stay text
// (lab names are checked, but the writers do not rely on it).
func TestEscaping(t *testing.T) {
	g := &graph.Graph{
		Name:      `a"b<c>&`,
		Networks:  []graph.Network{{Name: `n"<&>`, CIDR: "10.0.0.0/24"}},
		Nodes:     []graph.Node{{Name: `x"\y`, Kind: graph.KindNode, Detail: "<b>"}},
		Links:     []graph.Link{{Node: `x"\y`, Network: `n"<&>`, Interface: "e|0", Address: "10.0.0.1"}},
		Workloads: []graph.Workload{{Name: "w&", Node: `x"\y`}},
	}
	dot := render(t, "dot", g)
	if !strings.Contains(dot, `"node:x\"\\y"`) {
		t.Errorf("DOT did not escape a quote and a backslash:\n%s", dot)
	}
	mm := render(t, "mermaid", g)
	if strings.Contains(mm, `x"\y`) || !strings.Contains(mm, "#quot;") || strings.Contains(mm, "e|0") {
		t.Errorf("Mermaid did not escape:\n%s", mm)
	}
	page := render(t, "html", g)
	if strings.Contains(page, "<b>") || strings.Contains(page, `n"<&>`) {
		t.Errorf("HTML did not escape")
	}
	d := xml.NewDecoder(strings.NewReader(page))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("page with odd names not well-formed: %v", err)
		}
	}
	if err := graph.Write(io.Discard, "png", g); err == nil {
		t.Error("-o png accepted")
	}
}

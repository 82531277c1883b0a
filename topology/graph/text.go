package graph

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Colours shared by every format.
const (
	colNetwork  = "#dbe9f6"
	colNode     = "#fde9c9"
	colRouter   = "#e2f0d9"
	colExternal = "#eadcf2"
	colPeer     = "#eeeeee"
	colWorkload = "#ffffff"
	colIBGP     = "#1f77b4"
	colEBGP     = "#d62728"
	colRR       = "#2ca02c"
)

func nodeColour(kind string) string {
	switch kind {
	case KindRouter:
		return colRouter
	case KindExternal:
		return colExternal
	case KindPeer:
		return colPeer
	}
	return colNode
}

func sessionColour(s Session) string {
	switch {
	case s.RouteReflectorClient:
		return colRR
	case s.EBGP:
		return colEBGP
	}
	return colIBGP
}

// dotID quotes s as a DOT ID.
func dotID(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// dotLabel quotes lines as one DOT label, one line each.
func dotLabel(lines ...string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", " ")
	for i, l := range lines {
		lines[i] = r.Replace(l)
	}
	return `"` + strings.Join(lines, `\n`) + `"`
}

func workloadText(w Workload) string {
	if w.Address == "" {
		return "from IPAM"
	}
	return w.Address
}

// WriteDOT writes the graph in Graphviz's DOT language: networks are
// boxes, nodes rounded boxes (router nodes hexagons, external routers
// and outside peers octagons), workloads ellipses; BGP sessions are
// dashed edges, blue iBGP, red eBGP, green route-reflector clients.
// `dot -Tsvg` draws it.
func WriteDOT(w io.Writer, g *Graph) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "// lab %s, drawn by vrouter graph; render with: dot -Tsvg -o lab.svg\n", g.Name)
	fmt.Fprintf(b, "graph %s {\n", dotID(g.Name))
	fmt.Fprintf(b, "  graph [label=%s, labelloc=t, fontname=\"Helvetica\", splines=true, nodesep=0.4];\n", dotLabel("lab "+g.Name))
	b.WriteString("  node [fontname=\"Helvetica\", fontsize=10, style=filled];\n")
	b.WriteString("  edge [fontname=\"Helvetica\", fontsize=8];\n")
	for _, n := range g.Networks {
		lines := []string{n.Name, n.CIDR}
		if n.Gateway != "" {
			lines = append(lines, "gateway "+n.Gateway)
		}
		fmt.Fprintf(b, "  %s [label=%s, shape=box, fillcolor=%q, width=3];\n", dotID("net:"+n.Name), dotLabel(lines...), colNetwork)
	}
	for _, n := range g.Nodes {
		shape, style := "box", "rounded,filled"
		switch n.Kind {
		case KindRouter:
			shape, style = "hexagon", "filled"
		case KindExternal, KindPeer:
			shape, style = "octagon", "filled"
		}
		fmt.Fprintf(b, "  %s [label=%s, shape=%s, style=%q, fillcolor=%q];\n", dotID("node:"+n.Name), dotLabel(n.Name, n.Kind, n.Detail), shape, style, nodeColour(n.Kind))
	}
	for _, wl := range g.Workloads {
		fmt.Fprintf(b, "  %s [label=%s, shape=ellipse, fillcolor=%q];\n", dotID("wl:"+wl.Name), dotLabel(wl.Name, workloadText(wl)), colWorkload)
	}
	for _, l := range g.Links {
		fmt.Fprintf(b, "  %s -- %s [label=%s];\n", dotID("node:"+l.Node), dotID("net:"+l.Network), dotLabel(l.Interface, l.Address))
	}
	for _, wl := range g.Workloads {
		fmt.Fprintf(b, "  %s -- %s;\n", dotID("wl:"+wl.Name), dotID("node:"+wl.Node))
	}
	for _, s := range g.Sessions {
		fmt.Fprintf(b, "  %s -- %s [style=dashed, color=%q, fontcolor=%q, label=%s, constraint=false];\n",
			dotID("node:"+s.A), dotID("node:"+s.B), sessionColour(s), sessionColour(s), dotLabel(s.Label()))
	}
	b.WriteString("}\n")
	return b.Flush()
}

// mermaidText escapes s for a quoted Mermaid label.
func mermaidText(s string) string {
	return strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", " ").Replace(s)
}

// mermaidEdgeText keeps the characters a Mermaid edge label may hold
// unquoted.
func mermaidEdgeText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == ' ', r == '.', r == '/', r == '-', r == ':':
			return r
		}
		return ' '
	}, s)
}

// WriteMermaid writes the graph as a Mermaid flowchart (GitHub renders
// it in a ```mermaid block): networks as subroutine boxes, nodes as
// rectangles, router nodes as hexagons, external routers and outside
// peers as parallelograms, workloads as stadiums; BGP sessions are dotted
// links.
func WriteMermaid(w io.Writer, g *Graph) error {
	b := bufio.NewWriter(w)
	ids := map[string]string{}
	id := func(prefix, name string) string {
		k := prefix + ":" + name
		if v, ok := ids[k]; ok {
			return v
		}
		v := fmt.Sprintf("%s%d", prefix, len(ids))
		ids[k] = v
		return v
	}
	b.WriteString("flowchart TB\n")
	fmt.Fprintf(b, "  %%%% lab %s, drawn by vrouter graph\n", mermaidEdgeText(g.Name))
	for _, n := range g.Networks {
		fmt.Fprintf(b, "  %s[[\"%s\"]]\n", id("net", n.Name), mermaidText(n.Name)+"<br/>"+mermaidText(n.CIDR))
	}
	for _, n := range g.Nodes {
		text := mermaidText(n.Name) + "<br/>" + mermaidText(n.Detail)
		switch n.Kind {
		case KindRouter:
			fmt.Fprintf(b, "  %s{{\"%s\"}}\n", id("n", n.Name), text)
		case KindExternal, KindPeer:
			fmt.Fprintf(b, "  %s[/\"%s\"/]\n", id("n", n.Name), text)
		default:
			fmt.Fprintf(b, "  %s[\"%s\"]\n", id("n", n.Name), text)
		}
	}
	for _, wl := range g.Workloads {
		fmt.Fprintf(b, "  %s([\"%s\"])\n", id("w", wl.Name), mermaidText(wl.Name)+"<br/>"+mermaidText(workloadText(wl)))
	}
	for _, l := range g.Links {
		fmt.Fprintf(b, "  %s ---|%s| %s\n", id("n", l.Node), mermaidEdgeText(l.Interface+" "+l.Address), id("net", l.Network))
	}
	for _, wl := range g.Workloads {
		fmt.Fprintf(b, "  %s --- %s\n", id("w", wl.Name), id("n", wl.Node))
	}
	var ibgp, ebgp, rr []int
	link := len(g.Links) + len(g.Workloads) // Mermaid numbers links in order
	for _, s := range g.Sessions {
		fmt.Fprintf(b, "  %s -.-|%s| %s\n", id("n", s.A), mermaidEdgeText(s.Label()), id("n", s.B))
		switch {
		case s.RouteReflectorClient:
			rr = append(rr, link)
		case s.EBGP:
			ebgp = append(ebgp, link)
		default:
			ibgp = append(ibgp, link)
		}
		link++
	}
	fmt.Fprintf(b, "  classDef vrnetwork fill:%s,stroke:#4a7ab0\n", colNetwork)
	fmt.Fprintf(b, "  classDef vrnode fill:%s,stroke:#b07a2a\n", colNode)
	fmt.Fprintf(b, "  classDef vrrouter fill:%s,stroke:#4f8a3a\n", colRouter)
	fmt.Fprintf(b, "  classDef vrexternal fill:%s,stroke:#7a4f9a\n", colExternal)
	fmt.Fprintf(b, "  classDef vrpeer fill:%s,stroke:#888888\n", colPeer)
	for _, n := range g.Networks {
		fmt.Fprintf(b, "  class %s vrnetwork\n", id("net", n.Name))
	}
	for _, n := range g.Nodes {
		fmt.Fprintf(b, "  class %s vr%s\n", id("n", n.Name), n.Kind)
	}
	for _, set := range []struct {
		links  []int
		colour string
	}{{ibgp, colIBGP}, {ebgp, colEBGP}, {rr, colRR}} {
		if len(set.links) == 0 {
			continue
		}
		nums := make([]string, len(set.links))
		for i, n := range set.links {
			nums[i] = fmt.Sprint(n)
		}
		fmt.Fprintf(b, "  linkStyle %s stroke:%s\n", strings.Join(nums, ","), set.colour)
	}
	return b.Flush()
}

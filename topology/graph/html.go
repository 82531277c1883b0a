package graph

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
)

// Layout sizes, in SVG user units (pixels).
const (
	margin    = 40
	nodeW     = 140
	nodeH     = 48
	wlW       = 104
	wlH       = 34
	wlGap     = 10
	cellGap   = 36
	barH      = 14
	titleH    = 30
	linkStep  = 18  // between a router node's lines
	labelRoom = 120 // for an interface's label beside its line
)

// box is a laid-out node or workload: its top-left corner and size.
type box struct{ x, y, w, h float64 }

func (b box) cx() float64 { return b.x + b.w/2 }
func (b box) cy() float64 { return b.y + b.h/2 }

// bar is a laid-out network.
type bar struct{ x1, x2, y float64 }

// layout is where everything goes.
type layout struct {
	w, h      float64
	bars      map[string]bar
	nodes     map[string]box
	workloads map[string]box
	linkX     map[[2]string]float64 // the x of a router node's line to a network
}

// lay computes the drawing: each network is a horizontal bar in a band of
// its own, one under the other; the nodes on one network only sit above
// its bar, each with its workloads above it; router nodes (several
// networks) get a column each at the right, in the band of their first
// network, with a line down to each of their networks' bars (a bar ends
// just past its own lines, so lines to lower bars pass beside it); peers
// outside the lab are in a last row.
func lay(g *Graph) *layout {
	L := &layout{bars: map[string]bar{}, nodes: map[string]box{}, workloads: map[string]box{}, linkX: map[[2]string]float64{}}
	nb := len(g.Networks)
	band := map[string]int{}
	for i, n := range g.Networks {
		band[n.Name] = i
	}
	// Which band each node goes in; router nodes on several networks go
	// in columns.
	inBand := make([][]Node, nb+1) // the last: peers outside the lab
	var columns []Node
	for _, n := range g.Nodes {
		links := g.linksOf(n.Name)
		switch {
		case n.Kind == KindPeer || len(links) == 0:
			inBand[nb] = append(inBand[nb], n)
		case len(links) == 1:
			inBand[band[links[0].Network]] = append(inBand[band[links[0].Network]], n)
		default:
			columns = append(columns, n)
		}
	}
	firstBand := func(n Node) int {
		b := nb
		for _, l := range g.linksOf(n.Name) {
			b = min(b, band[l.Network])
		}
		return b
	}
	// Band heights: room for workloads and nodes only where there are.
	hasNodes, hasWl := make([]bool, nb+1), make([]bool, nb+1)
	for b, ns := range inBand {
		for _, n := range ns {
			hasNodes[b] = true
			hasWl[b] = hasWl[b] || len(g.workloadsOf(n.Name)) > 0
		}
	}
	for _, n := range columns {
		hasNodes[firstBand(n)] = true
	}
	nodeY, barY, top := make([]float64, nb+1), make([]float64, nb+1), float64(titleH)
	for b := range nb + 1 {
		y := top
		if hasWl[b] {
			y += wlH + 40
		}
		nodeY[b] = y
		if hasNodes[b] {
			y += nodeH + 50
		}
		barY[b] = y
		top = y + 50
		if b == nb && !hasNodes[b] {
			top = barY[b-min(b, 1)] + 50
		}
	}
	L.h = top
	// Nodes, band by band, left to right.
	right := float64(margin + nodeW)
	for b, ns := range inBand {
		x := float64(margin)
		for _, n := range ns {
			wls := g.workloadsOf(n.Name)
			cell := max(nodeW, float64(len(wls))*(wlW+wlGap)-wlGap)
			box0 := box{x: x + (cell-nodeW)/2, y: nodeY[b], w: nodeW, h: nodeH}
			L.nodes[n.Name] = box0
			wx := box0.cx() - (float64(len(wls))*(wlW+wlGap)-wlGap)/2
			for _, w := range wls {
				L.workloads[w.Name] = box{x: wx, y: nodeY[b] - wlH - 40, w: wlW, h: wlH}
				wx += wlW + wlGap
			}
			x += cell + cellGap
			right = max(right, x-cellGap)
		}
	}
	// Bars end past their nodes' lines.
	barEnd := map[string]float64{}
	for _, l := range g.Links {
		if b, ok := L.nodes[l.Node]; ok {
			barEnd[l.Network] = max(barEnd[l.Network], b.cx()+linkStep)
		}
	}
	// Router columns: the box in its first network's band, one line per
	// network, left to right from the top network down.
	x := right + cellGap + labelRoom
	for _, n := range columns {
		links := g.linksOf(n.Name)
		slices.SortFunc(links, func(a, b Link) int { return band[a.Network] - band[b.Network] })
		bw := max(nodeW, float64(len(links))*linkStep+2*linkStep)
		rb := box{x: x, y: nodeY[firstBand(n)], w: bw, h: nodeH}
		L.nodes[n.Name] = rb
		for k, l := range links {
			lx := rb.x + linkStep*float64(k+1)
			L.linkX[[2]string{n.Name, l.Network}] = lx
			barEnd[l.Network] = max(barEnd[l.Network], lx+linkStep)
		}
		x += bw + labelRoom + cellGap
	}
	L.w = float64(margin + nodeW)
	for _, n := range g.Networks {
		end := max(barEnd[n.Name], margin+nodeW)
		L.bars[n.Name] = bar{x1: margin, x2: end, y: barY[band[n.Name]]}
		L.w = max(L.w, end)
	}
	L.w = max(L.w, right+labelRoom/2, x-cellGap-labelRoom) + margin
	return L
}

// linkX returns the x of the line from node n to network net: a router
// node's own line, else the node's centre.
func (L *layout) lineX(n string, net string) float64 {
	if x, ok := L.linkX[[2]string{n, net}]; ok {
		return x
	}
	return L.nodes[n].cx()
}

// esc escapes text for HTML and SVG (XML) alike.
func esc(s string) string { return html.EscapeString(s) }

// WriteHTML writes a self-contained HTML page: an SVG drawing of the lab
// (networks as bars, nodes above them with their workloads, router nodes
// joining bars, BGP sessions as dashed curves, blue iBGP, red eBGP, green
// route-reflector clients; hover for details) and tables of everything.
// It loads nothing: no script, no stylesheet, no font from elsewhere.
// The page is well-formed XML too (every element closed).
func WriteHTML(w io.Writer, g *Graph) error {
	L := lay(g)
	b := bufio.NewWriter(w)
	title := "vrouter lab " + g.Name
	fmt.Fprintf(b, `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>%s</title>
<style>
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
.legend span { display: inline-block; margin-right: 1.2em; }
.sw { display: inline-block; width: 1em; height: 0.8em; border: 1px solid #888; vertical-align: middle; margin-right: 0.3em; }
svg text { font-family: Helvetica, Arial, sans-serif; }
svg .session { fill: none; stroke-width: 2; stroke-dasharray: 6 4; opacity: 0.8; }
svg .session:hover { stroke-width: 4; opacity: 1; }
</style>
</head>
<body>
<h1>%s</h1>
`, esc(title), esc(title))
	b.WriteString(`<p class="legend">`)
	for _, item := range []struct{ colour, text string }{
		{colNetwork, "network"}, {colNode, "Calico node"}, {colRouter, "router node"}, {colExternal, "external router"},
		{colPeer, "peer outside the lab"}, {colWorkload, "workload"},
		{colIBGP, "iBGP session"}, {colEBGP, "eBGP session"}, {colRR, "route-reflector client"},
	} {
		fmt.Fprintf(b, `<span><span class="sw" style="background:%s"></span>%s</span>`, item.colour, esc(item.text))
	}
	b.WriteString("</p>\n")
	writeSVG(b, g, L)
	writeTables(b, g)
	b.WriteString("</body>\n</html>\n")
	return b.Flush()
}

// WriteSVG writes the SVG drawing of g alone, as WriteHTML draws it: for
// a page of its own, such as vrouter ui's, which marks it up live (nodes
// are g.node elements with data-name, workloads g.workload, a node's
// interface on a network g.link with data-node and data-network, sessions
// path.session with data-a and data-b).
func WriteSVG(w io.Writer, g *Graph) error {
	b := bufio.NewWriter(w)
	writeSVG(b, g, lay(g))
	return b.Flush()
}

func writeSVG(b *bufio.Writer, g *Graph, L *layout) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" id="topology" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`+"\n",
		L.w, L.h, L.w, L.h, esc("lab "+g.Name))
	fmt.Fprintf(b, `<rect x="0" y="0" width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", L.w, L.h)
	// Networks.
	for _, n := range g.Networks {
		r := L.bars[n.Name]
		fmt.Fprintf(b, `<g class="network" id="%s" data-name="%s"><title>%s</title>`, esc("net-"+n.Name), esc(n.Name), esc(networkTitle(n)))
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" rx="4" fill="%s" stroke="#4a7ab0"/>`, r.x1, r.y, r.x2-r.x1, barH, colNetwork)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="12" font-weight="bold">%s</text>`, r.x1+4, r.y+barH+15, esc(n.Name+"  "+n.CIDR))
		b.WriteString("</g>\n")
	}
	// Links: a node's interfaces, then workloads to their nodes.
	for _, l := range g.Links {
		nb, ok := L.nodes[l.Node]
		r, ok2 := L.bars[l.Network]
		if !ok || !ok2 {
			continue
		}
		x := L.lineX(l.Node, l.Network)
		y1 := nb.y + nb.h
		if r.y < nb.y {
			y1 = nb.y
		}
		fmt.Fprintf(b, `<g class="link" data-node="%s" data-network="%s"><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#555" stroke-width="1.5"/>`,
			esc(l.Node), esc(l.Network), x, y1, x, r.y)
		// The label just above the bar: right of a node's line, left of a
		// router node's (its other lines are on the right).
		lx, anchor := x+4, "start"
		if _, router := L.linkX[[2]string{l.Node, l.Network}]; router {
			lx, anchor = x-4, "end"
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" fill="#444" text-anchor="%s">%s</text></g>`+"\n", lx, r.y-5, anchor, esc(l.Interface+" "+l.Address))
	}
	for _, w := range g.Workloads {
		wb, ok := L.workloads[w.Name]
		nb, ok2 := L.nodes[w.Node]
		if !ok || !ok2 {
			continue
		}
		fmt.Fprintf(b, `<line class="attach" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-width="1"/>`+"\n", wb.cx(), wb.y+wb.h, nb.cx(), nb.y)
	}
	// Sessions, under the boxes.
	for _, s := range g.Sessions {
		a, ok := L.nodes[s.A]
		c, ok2 := L.nodes[s.B]
		if !ok || !ok2 {
			continue
		}
		x1, y1, x2, y2 := a.cx(), a.cy(), c.cx(), c.cy()
		dx, dy := x2-x1, y2-y1
		d := math.Hypot(dx, dy)
		if d == 0 {
			d = 1
		}
		bend := 30 + 0.18*d
		// The control point, to the left of A→B: curves between nodes of
		// one row rise above it.
		mx, my := (x1+x2)/2+dy/d*bend, (y1+y2)/2-dx/d*bend
		if dx < 0 {
			mx, my = (x1+x2)/2-dy/d*bend, (y1+y2)/2+dx/d*bend
		}
		fmt.Fprintf(b, `<path class="session" data-a="%s" data-b="%s" d="M %.1f %.1f Q %.1f %.1f %.1f %.1f" fill="none" stroke="%s" stroke-width="2" stroke-dasharray="6 4"><title>%s</title></path>`+"\n",
			esc(s.A), esc(s.B), x1, y1, mx, my, x2, y2, sessionColour(s), esc(s.A+" – "+s.B+": "+s.Label()))
	}
	// Nodes and workloads.
	for _, n := range g.Nodes {
		nb, ok := L.nodes[n.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(b, `<g class="node kind-%s" id="%s" data-name="%s"><title>%s</title>`, esc(n.Kind), esc("node-"+n.Name), esc(n.Name), esc(n.Name+" ("+n.Kind+"): "+n.Detail))
		switch n.Kind {
		case KindRouter:
			fmt.Fprintf(b, `<polygon points="%s" fill="%s" stroke="#4f8a3a"/>`, hexagon(nb), colRouter)
		case KindExternal, KindPeer:
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="14" fill="%s" stroke="#7a4f9a" stroke-dasharray="%s"/>`,
				nb.x, nb.y, nb.w, nb.h, nodeColour(n.Kind), map[bool]string{true: "4 3", false: "none"}[n.Kind == KindPeer])
		default:
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="6" fill="%s" stroke="#b07a2a"/>`, nb.x, nb.y, nb.w, nb.h, colNode)
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`, nb.cx(), nb.y+20, esc(n.Name))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle" fill="#444">%s</text>`, nb.cx(), nb.y+36, esc(shorten(n.Detail, 26)))
		b.WriteString("</g>\n")
	}
	for _, w := range g.Workloads {
		wb, ok := L.workloads[w.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(b, `<g class="workload" id="%s" data-name="%s" data-node="%s"><title>%s</title>`, esc("wl-"+w.Name), esc(w.Name), esc(w.Node), esc(w.Name+" on "+w.Node+": "+workloadText(w)))
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="16" fill="%s" stroke="#888"/>`, wb.x, wb.y, wb.w, wb.h, colWorkload)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>`, wb.cx(), wb.y+14, esc(shorten(w.Name, 16)))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle" fill="#444">%s</text>`, wb.cx(), wb.y+27, esc(workloadText(w)))
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
}

// hexagon returns the points of a hexagon filling b.
func hexagon(b box) string {
	i := 14.0
	return fmt.Sprintf("%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f",
		b.x+i, b.y, b.x+b.w-i, b.y, b.x+b.w, b.cy(), b.x+b.w-i, b.y+b.h, b.x+i, b.y+b.h, b.x, b.cy())
}

// shorten cuts s to n characters, with an ellipsis.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func networkTitle(n Network) string {
	t := fmt.Sprintf("%s %s, MTU %d", n.Name, n.CIDR, n.MTU)
	if n.Gateway != "" {
		t += ", gateway " + n.Gateway
	}
	return t
}

// writeTables lists everything the drawing shows.
func writeTables(b *bufio.Writer, g *Graph) {
	table := func(id, caption string, header []string, rows [][]string) {
		fmt.Fprintf(b, "<h2>%s</h2>\n<table id=\"%s\">\n<tr>", esc(caption), esc(id))
		for _, h := range header {
			fmt.Fprintf(b, "<th>%s</th>", esc(h))
		}
		b.WriteString("</tr>\n")
		for _, r := range rows {
			b.WriteString("<tr>")
			for _, c := range r {
				fmt.Fprintf(b, "<td>%s</td>", esc(c))
			}
			b.WriteString("</tr>\n")
		}
		b.WriteString("</table>\n")
	}
	var rows [][]string
	for _, n := range g.Networks {
		gw := n.Gateway
		if gw == "" {
			gw = "none"
		}
		rows = append(rows, []string{n.Name, n.CIDR, fmt.Sprint(n.MTU), gw})
	}
	table("networks", "Networks", []string{"network", "CIDR", "MTU", "gateway"}, rows)
	rows = nil
	for _, n := range g.Nodes {
		var ifs []string
		for _, l := range g.linksOf(n.Name) {
			ifs = append(ifs, l.Interface+" "+l.Address+" ("+l.Network+")")
		}
		rows = append(rows, []string{n.Name, n.Kind, n.Detail, strings.Join(ifs, ", ")})
	}
	table("nodes", "Nodes and routers", []string{"name", "kind", "detail", "interfaces"}, rows)
	rows = nil
	for _, w := range g.Workloads {
		rows = append(rows, []string{w.Name, w.Node, workloadText(w)})
	}
	table("workloads", "Workloads", []string{"workload", "node", "address"}, rows)
	rows = nil
	for _, s := range g.Sessions {
		rows = append(rows, []string{s.A, s.B, s.Label()})
	}
	table("sessions", "BGP sessions", []string{"end", "end", "type"}, rows)
}

package ui

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/vrouter-lab/vrouter/topology/graph"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

// queryTimeout bounds each question to an agent or forwarder: one that
// hangs must not stall the page.
const queryTimeout = 2 * time.Second

// LabSource reads the deployed lab called Name: its state file, its
// agents' and forwarders' status, links and metrics over their control
// sockets. It reads the state file at each call, so a lab destroyed (or
// deployed again) meanwhile shows as such.
type LabSource struct{ Name string }

// Graph draws the lab as `vrouter graph` does.
func (ls LabSource) Graph(context.Context) (*graph.Graph, error) {
	st, err := lab.Load(ls.Name)
	if err != nil {
		return nil, err
	}
	return graph.Build(st.Spec, graphSessions(st)), nil
}

func graphSessions(st *lab.State) []graph.Session {
	var out []graph.Session
	for _, s := range lab.Sessions(st.Spec) {
		out = append(out, graph.Session{A: s.A, B: s.B, Type: s.Type, EBGP: s.EBGP, RouteReflectorClient: s.RouteReflectorClient})
	}
	return out
}

// member is a node or router of the lab and what it answered.
type member struct {
	name, kind string
	client     *control.Client
	status     *control.Status
	links      []control.Link
	ports      map[string][2]uint64 // packets received, sent, by port
	err        error
}

// Sample asks every node and router, at once, for its status, links and
// metrics.
func (ls LabSource) Sample(ctx context.Context) (*Sample, error) {
	st, err := lab.Load(ls.Name)
	if err != nil {
		return nil, err
	}
	var ms []*member
	for _, n := range st.Nodes {
		ms = append(ms, &member{name: n.Name, kind: graph.KindNode, client: control.NewClient(n.Control)})
	}
	for _, r := range st.Routers {
		kind := graph.KindExternal
		if r.Daemon == lab.KindRouterNode {
			kind = graph.KindRouter
		}
		ms = append(ms, &member{name: r.Name, kind: kind, client: control.NewRouterClient(r.Control)})
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.ask(ctx)
		}()
	}
	wg.Wait()

	sm := &Sample{Lab: st.Name, Time: time.Now()}
	byName := map[string]*member{}
	served := map[string]string{} // workload: address
	for _, m := range ms {
		byName[m.name] = m
		ns := NodeState{Name: m.name, Kind: m.kind}
		if m.err != nil {
			ns.Error = m.err.Error()
		} else {
			ns.Up, ns.Ready, ns.Routes = true, m.status.Ready, m.status.Routes
			for _, w := range m.status.Workloads {
				served[w.Name] = w.Address.String()
			}
		}
		sm.Nodes = append(sm.Nodes, ns)
	}
	sm.Links = links(st, byName)
	sm.Sessions = sessions(st, byName)
	for _, w := range st.Workloads {
		ws := WorkloadState{Name: w.Name, Node: w.Node, Address: served[w.Name], State: "running"}
		if ws.Address == "" {
			ws.State = "down"
		}
		sm.Workloads = append(sm.Workloads, ws)
	}
	return sm, nil
}

// ask reads m's status, links and port counters.
func (m *member) ask(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if m.status, m.err = m.client.Status(ctx); m.err != nil {
		return
	}
	if m.kind == graph.KindNode {
		l, err := m.client.Link(ctx)
		if err != nil {
			m.err = err
			return
		}
		m.links = []control.Link{*l}
	} else if m.links, m.err = m.client.Links(ctx); m.err != nil {
		return
	}
	// Counters are a bonus: a node whose metrics fail still shows its
	// state.
	if text, err := m.client.Metrics(ctx); err == nil {
		m.ports = portPackets(text)
	}
}

// portPackets picks each port's packet counters out of a metrics
// exposition (vrouter_port_receive_packets_total and
// vrouter_port_transmit_packets_total, by their port label).
func portPackets(text string) map[string][2]uint64 {
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil
	}
	out := map[string][2]uint64{}
	for i, name := range []string{"vrouter_port_receive_packets_total", "vrouter_port_transmit_packets_total"} {
		f := fams[name]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			port := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "port" {
					port = l.GetValue()
				}
			}
			v := out[port]
			if c := m.GetCounter().GetValue(); c > 0 && c < math.MaxUint64 { // NaN and negatives: 0
				v[i] = uint64(c)
			}
			out[port] = v
		}
	}
	return out
}

// links lists every interface the drawing has, in the lab's order, with
// what its node said about it.
func links(st *lab.State, byName map[string]*member) []LinkState {
	var out []LinkState
	add := func(node, iface, network string) {
		ls := LinkState{Node: node, Interface: iface, Network: network}
		if m := byName[node]; m != nil && m.err == nil {
			for _, l := range m.links {
				if l.Interface != iface && !(len(m.links) == 1 && l.Interface == "") {
					continue
				}
				ls.Known, ls.Up = true, l.Up
				if l.Impairment != nil && !l.Impairment.IsZero() {
					ls.Impairment = l.Impairment.String()
				}
			}
			c := m.ports[iface]
			ls.RxPackets, ls.TxPackets = c[0], c[1]
		}
		out = append(out, ls)
	}
	for _, n := range st.Nodes {
		add(n.Name, n.Interface, n.Network)
	}
	for _, r := range st.Routers {
		add(r.Name, r.Interface, r.Network)
		for _, i := range r.Interfaces {
			add(r.Name, i.Name, i.Network)
		}
	}
	return out
}

// sessions lists the lab's BGP sessions with their state as one end
// reports it: the first end that is a node of the lab and answered.
func sessions(st *lab.State, byName map[string]*member) []SessionState {
	addr := map[string]netip.Addr{}
	for _, n := range st.Nodes {
		addr[n.Name] = n.Address
	}
	for _, r := range st.Routers {
		addr[r.Name] = r.Address
	}
	addrOf := func(name string) netip.Addr {
		if a, ok := addr[name]; ok {
			return a
		}
		a, _ := netip.ParseAddr(name) // a peer outside the lab is its address
		return a
	}
	stateAt := func(node, peer string) (string, bool) {
		m := byName[node]
		if m == nil || m.err != nil || m.kind != graph.KindNode {
			return "", false
		}
		pa := addrOf(peer)
		for _, p := range m.status.Peers {
			if p.Address == pa {
				return p.State, true
			}
		}
		return "", false
	}
	var out []SessionState
	for _, s := range graphSessions(st) {
		state, ok := stateAt(s.A, s.B)
		if !ok {
			state, ok = stateAt(s.B, s.A)
		}
		if !ok {
			state = "unknown"
		}
		out = append(out, SessionState{A: s.A, B: s.B, Type: s.Label(), State: state})
	}
	return out
}

// Detail asks a node for its routes and BGP status, a router for its
// routes (its BGP, if any, is its daemon's: Detail says how to ask it).
func (ls LabSource) Detail(ctx context.Context, name string) (*Detail, error) {
	st, err := lab.Load(ls.Name)
	if err != nil {
		return nil, err
	}
	n, err := st.Member(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	d := &Detail{Name: name, Kind: n.Kind()}
	var c *control.Client
	if ns, ok := st.Node(name); ok {
		c = control.NewClient(ns.Control)
	} else if r, ok := st.Router(name); ok {
		c = control.NewRouterClient(r.Control)
	} else {
		return nil, fmt.Errorf("lab %s has no node or router %q", st.Name, name)
	}
	if d.Routes, err = c.Routes(ctx); err != nil {
		d.Error = err.Error()
	}
	var bgp bytes.Buffer
	if r, ok := st.Router(name); ok && r.StatusCommand() != nil {
		// An external router's sessions are its daemon's: ask it.
		cmd := r.StatusCommand()
		bgp.WriteString("$ " + strings.Join(cmd, " ") + "\n")
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.Namespace}, cmd...)...).CombinedOutput()
		bgp.Write(out)
		if err != nil {
			fmt.Fprintf(&bgp, "(%v)\n", err)
		}
	} else if err := n.Status(ctx, &bgp); err != nil {
		bgp.WriteString(err.Error())
	}
	d.BGP = bgp.String()
	return d, nil
}

package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/probe"
)

// Address resolves what a probe targets: an IPv4 address as it is, a
// workload's name to the address its node's agent gave it, a node's or
// router's name to its underlay address.
func (s *State) Address(ctx context.Context, name string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return a, nil
	}
	if w, ok := s.Workload(name); ok {
		n, ok := s.Node(w.Node)
		if !ok {
			return netip.Addr{}, fmt.Errorf("workload %s: lab %s has no node %s", name, s.Name, w.Node)
		}
		info, err := control.NewClient(n.Control).Workload(ctx, name)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("workload %s: %w", name, err)
		}
		return info.Address, nil
	}
	if n, ok := s.Node(name); ok {
		return n.Address, nil
	}
	if r, ok := s.Router(name); ok {
		return r.Address, nil
	}
	return netip.Addr{}, fmt.Errorf("lab %s has no workload, node or router %q, and it is no IPv4 address", s.Name, topology.Shorten(name))
}

// Probe runs req from the lab member from (a workload, or a node or
// router, whose namespace sends) to to (a name Address resolves, or an
// address). req.To is filled in; an HTTP probe's req.URL may be empty
// (http://TO/), a path (/healthz) or a URL whose host is a name Address
// resolves. A netstack workload probes from its stack, through its
// node's agent; any other member from its namespace, with this process's
// sockets opened there. A probe that ran and failed is a Result with OK
// false; the error is for one that could not run.
func Probe(ctx context.Context, st *State, from, to string, req probe.Request) (*probe.Result, error) {
	addr, err := st.Address(ctx, to)
	if err != nil {
		return nil, err
	}
	req.To = addr
	if req.Kind == probe.KindHTTP {
		if req.URL, err = probeURL(ctx, st, req.URL, addr); err != nil {
			return nil, err
		}
	}
	if err := req.Check(); err != nil {
		return nil, err
	}
	if w, ok := st.Workload(from); ok && w.IsNetstack() {
		n, ok := st.Node(w.Node)
		if !ok {
			return nil, fmt.Errorf("workload %s: lab %s has no node %s", from, st.Name, w.Node)
		}
		res, err := control.NewClient(n.Control).Probe(ctx, from, req)
		if res != nil && to != addr.String() {
			res.Target = to
		}
		return res, err
	}
	ns, ok := st.Namespace(from)
	if !ok {
		return nil, fmt.Errorf("lab %s has no workload, node or router %q to probe from", st.Name, topology.Shorten(from))
	}
	if !netns.Exists(ns) {
		return nil, fmt.Errorf("%s: its namespace %s no longer exists", from, ns)
	}
	pctx, cancel := context.WithTimeout(ctx, req.Longest())
	defer cancel()
	res := probe.Run(pctx, probe.NamespaceDialer{Namespace: ns}, req)
	res.From = from
	if to != addr.String() {
		res.Target = to
	}
	return &res, nil
}

// probeURL makes an HTTP probe's URL absolute with the target's address as
// its host.
func probeURL(ctx context.Context, st *State, raw string, to netip.Addr) (string, error) {
	switch {
	case raw == "":
		return "http://" + to.String() + "/", nil
	case strings.HasPrefix(raw, "/"):
		return "http://" + to.String() + raw, nil
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--http: %w", err)
	}
	host := u.Hostname()
	a, err := netip.ParseAddr(host)
	if err != nil {
		if a, err = st.Address(ctx, host); err != nil {
			return "", fmt.Errorf("--http %s: %w", raw, err)
		}
	}
	if a != to {
		return "", fmt.Errorf("--http %s: its host is %s, not the target %s", raw, a, to)
	}
	if p := u.Port(); p != "" {
		u.Host = net.JoinHostPort(a.String(), p)
	} else {
		u.Host = a.String()
	}
	return u.String(), nil
}

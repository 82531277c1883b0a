// Package control is the control API of the lab's per-node processes (a
// node agent, an external router's forwarder): HTTP with JSON bodies on a
// unix socket in the lab's state directory. It owns the request and
// response types, the client that cmd/vrouter and topology/lab use, and
// the one helper both servers listen with.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/probe"
)

// Socket returns the control socket of the agent of node on a host whose
// state directory is stateDir (config.HostControlSocket). A lab's agents
// and forwarders get theirs from topology/lab, through their config.
func Socket(stateDir, node string) string {
	return config.HostControlSocket(stateDir, node)
}

// Status is what an agent reports about itself.
type Status struct {
	Node             string         `json:"node"`
	Address          netip.Addr     `json:"address"`
	Started          time.Time      `json:"started"`
	Ready            bool           `json:"ready"` // every session Established, every remote block routed
	PeersEstablished int            `json:"peersEstablished"`
	Peers            []PeerStatus   `json:"peers"`
	Routes           int            `json:"routes"`
	LinkUp           bool           `json:"linkUp"`      // the underlay link's state (vrouter link set)
	StaleRoutes      int            `json:"staleRoutes"` // routes restored at a graceful restart, not yet learned again
	Workloads        []WorkloadInfo `json:"workloads"`
	Blocks           []netip.Prefix `json:"blocks"`
	// TunnelAddress is tunl0's address when a pool uses IPIP.
	TunnelAddress netip.Addr `json:"tunnelAddress,omitzero"`
	// Tunnel says which tunl0 carries IPIP: TunnelKernel,
	// TunnelUserspace or TunnelEngine; empty when no pool uses IPIP.
	Tunnel string `json:"tunnel,omitempty"`
	// Dataplane is what forwards the node's packets (config.Node's
	// Dataplane: userspace or kernel).
	Dataplane string `json:"dataplane,omitempty"`

	// Impairment is the underlay link's impairment (vrouter link set
	// --delay); nil: none.
	Impairment *config.Impairment `json:"impairment,omitempty"`
	// DatastoreError says why the IPAM datastore did not answer the
	// status's readiness check (etcd down): BGP and forwarding go on,
	// Ready is false; empty when it answered.
	DatastoreError string `json:"datastoreError,omitempty"`
}

// Which tunl0 a node uses, as Status.Tunnel says.
const (
	// TunnelKernel is the kernel's tunl0 (the ipip module), in kernel
	// mode.
	TunnelKernel = "kernel"
	// TunnelUserspace is kernel mode's userspace tunl0 on a kernel
	// without the ipip module: a TUN device named tunl0 and a raw IPIP
	// socket held by the agent.
	TunnelUserspace = "userspace"
	// TunnelEngine is the userspace engine's tunl0 (userspace
	// dataplane).
	TunnelEngine = "engine"
)

// PeerStatus is one BGP session as `vrouter node status` shows it.
type PeerStatus struct {
	Address netip.Addr `json:"address"`
	Type    string     `json:"type"`
	State   string     `json:"state"`
	Since   time.Time  `json:"since"`
	Info    string     `json:"info"`
	// GracefulRestart: both ends enabled graceful restart.
	GracefulRestart bool `json:"gracefulRestart"`
}

// Link is the state of a node's underlay link: a down link is a pulled
// cable, every frame the engine sends or receives on it is dropped.
type Link struct {
	Interface string `json:"interface,omitempty"`
	Network   string `json:"network,omitempty"`
	Up        bool   `json:"up"`
	// Impairment is what the link does to the frames sent on it
	// (`vrouter link set --delay`); nil: none.
	Impairment *config.Impairment `json:"impairment,omitempty"`
}

// LinkImpairment is the body of PUT /v1/impairment: the impairment to
// apply to interface Interface (empty: a node's underlay, a router's only
// interface); the zero Impairment clears it.
type LinkImpairment struct {
	Interface  string            `json:"interface,omitempty"`
	Impairment config.Impairment `json:"impairment"`
}

// ErrImpairmentUnsupported is what the agent answers (the client's error
// matches it) when its dataplane cannot impair its link: a kernel-mode
// node has no fabric endpoint.
var ErrImpairmentUnsupported = errors.New("link impairments are not supported on this dataplane yet")

// WorkloadInfo is one workload served by a node.
type WorkloadInfo struct {
	Name      string     `json:"name"`
	Namespace string     `json:"namespace"` // a name, or a namespace file's path
	Interface string     `json:"interface"` // the node side: caliXXXXXXXXXXX
	Address   netip.Addr `json:"address"`
	// PodInterface is the workload side (eth0 unless the workload named
	// another) and MTU both ends' MTU, as the dataplane made them.
	PodInterface string `json:"podInterface,omitempty"`
	MTU          int    `json:"mtu,omitempty"`
	// Stack is "netstack" for a workload in a gVisor stack (no
	// namespace), empty for a namespace.
	Stack string `json:"stack,omitempty"`
}

// ErrNotRunning is what a client's errors match (errors.Is) when nothing
// answers on the control socket: the socket is missing, or the process
// that listened on it is gone (killed, crashed) and the connection is
// refused.
var ErrNotRunning = errors.New("agent is not running")

// Client talks to a node agent (or a router forwarder) over its control
// socket (HTTP on a unix socket, JSON bodies).
type Client struct {
	// Name is the node (or router) the socket belongs to: the socket's
	// file name without ".sock", as Socket and topology/lab name it.
	Name   string
	router bool
	socket string
	http   *http.Client
}

// NewClient returns a client for the node agent listening on socket.
func NewClient(socket string) *Client {
	return &Client{
		Name:   strings.TrimSuffix(filepath.Base(socket), ".sock"),
		socket: socket,
		http: &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", socket)
				},
			},
		},
	}
}

// NewRouterClient returns a client for the forwarder of an external router
// listening on socket.
func NewRouterClient(socket string) *Client {
	c := NewClient(socket)
	c.router = true
	return c
}

// notRunning is the error of a request nothing answered: it says which
// process is not running and how to start it again, and matches
// ErrNotRunning and the dial error.
type notRunning struct {
	c     *Client
	cause error
}

func (e *notRunning) Error() string {
	if e.c.router {
		return fmt.Sprintf("forwarder of router %s is not running (no answer on %s)", e.c.Name, e.c.socket)
	}
	return fmt.Sprintf("node %s: agent is not running (no answer on %s); start it with: vrouter node restart %s", e.c.Name, e.c.socket, e.c.Name)
}

func (e *notRunning) Unwrap() []error { return []error{ErrNotRunning, e.cause} }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return &notRunning{c: c, cause: err}
	}
	if err != nil {
		return fmt.Errorf("agent at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("agent at %s: %w", c.socket, err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
	case http.StatusNotFound:
		return NotFoundf("agent: %s", bytes.TrimSpace(data))
	default:
		return fmt.Errorf("agent: %s", bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	if s, ok := out.(*string); ok {
		*s = string(data)
		return nil
	}
	return json.Unmarshal(data, out)
}

// Status returns the agent's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Links returns the state of a router's interfaces' links, in no
// particular order.
func (c *Client) Links(ctx context.Context) ([]Link, error) {
	var ls []Link
	if err := c.do(ctx, http.MethodGet, "/v1/links", nil, &ls); err != nil {
		return nil, err
	}
	return ls, nil
}

// Routes returns the agent's FIB in `ip route` format.
func (c *Client) Routes(ctx context.Context) (string, error) {
	var s string
	err := c.do(ctx, http.MethodGet, "/v1/routes", nil, &s)
	return s, err
}

// Metrics returns the agent's Prometheus metrics in the text exposition
// format (GET /metrics).
func (c *Client) Metrics(ctx context.Context) (string, error) {
	var s string
	err := c.do(ctx, http.MethodGet, "/metrics", nil, &s)
	return s, err
}

// AddWorkload asks the agent to serve a workload whose namespace exists.
func (c *Client) AddWorkload(ctx context.Context, w config.Workload) (*WorkloadInfo, error) {
	var info WorkloadInfo
	if err := c.do(ctx, http.MethodPost, "/v1/workloads", w, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Workload returns the workload named name that the agent serves; the
// error matches ErrNotFound if it serves none of that name.
func (c *Client) Workload(ctx context.Context, name string) (*WorkloadInfo, error) {
	var info WorkloadInfo
	if err := c.do(ctx, http.MethodGet, "/v1/workloads/"+url.PathEscape(name), nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// DeleteWorkload asks the agent to stop serving a workload and release its
// address.
func (c *Client) DeleteWorkload(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/workloads/"+url.PathEscape(name), nil, nil)
}

// Probe runs a probe from inside netstack workload name's stack (the
// agent's API answers only for netstack workloads; a namespace
// workload's probe runs in its namespace: probe.NamespaceDialer). It
// waits as long as the probe may take.
func (c *Client) Probe(ctx context.Context, name string, req probe.Request) (*probe.Result, error) {
	if err := req.Check(); err != nil {
		return nil, err
	}
	long := *c
	hc := *c.http
	hc.Timeout = req.Longest() + 10*time.Second
	long.http = &hc
	var res probe.Result
	if err := long.do(ctx, http.MethodPost, "/v1/workloads/"+url.PathEscape(name)+"/probe", req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Stats returns the engine's counters by name.
func (c *Client) Stats(ctx context.Context) (map[string]uint64, error) {
	var m map[string]uint64
	err := c.do(ctx, http.MethodGet, "/v1/stats", nil, &m)
	return m, err
}

// SetPools replaces the node's IP pool settings (ipipMode, mtu) on the
// running agent, which reprograms its routes.
func (c *Client) SetPools(ctx context.Context, pools []config.Pool) error {
	return c.do(ctx, http.MethodPut, "/v1/pools", pools, nil)
}

// SetLink sets the link of interface iface (a router's; empty for a
// node's underlay or a router's only interface) up or down and returns its
// state.
func (c *Client) SetLink(ctx context.Context, iface string, up bool) (*Link, error) {
	var l Link
	if err := c.do(ctx, http.MethodPut, "/v1/link", Link{Interface: iface, Up: up}, &l); err != nil {
		return nil, fmt.Errorf("set link: %w", err)
	}
	return &l, nil
}

// Link returns the state of a node's underlay link.
func (c *Client) Link(ctx context.Context) (*Link, error) {
	var l Link
	if err := c.do(ctx, http.MethodGet, "/v1/link", nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// SetImpairment applies imp to the link of interface iface (empty for a
// node's underlay or a router's only interface); the zero imp clears it.
// It returns the link's state.
func (c *Client) SetImpairment(ctx context.Context, iface string, imp config.Impairment) (*Link, error) {
	var l Link
	if err := c.do(ctx, http.MethodPut, "/v1/impairment", LinkImpairment{Interface: iface, Impairment: imp}, &l); err != nil {
		if strings.Contains(err.Error(), ErrImpairmentUnsupported.Error()) {
			return nil, fmt.Errorf("set impairment: %w", ErrImpairmentUnsupported)
		}
		return nil, fmt.Errorf("set impairment: %w", err)
	}
	return &l, nil
}

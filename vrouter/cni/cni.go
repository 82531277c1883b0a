// Package cni is vrouter's CNI plugin (CNI spec 1.0): the `vrouter`
// binary run as `vrouter-cni` (a link to it named so, the plugin's "type"
// in the network config), or as `vrouter cni`. A container runtime
// (containerd, CRI-O, kubelet through them) runs it on the host with the
// command in CNI_COMMAND and the network config on stdin:
//
//   - ADD asks the node agent, through its control socket, to serve the
//     container as a workload: the agent takes an address from its IPAM
//     blocks, makes the veth pair Calico's way (host side cali*, pod side
//     CNI_IFNAME in CNI_NETNS, the /32 and the default route via
//     169.254.1.1) and routes the /32 to it. The result lists both
//     interfaces, the address (on the pod interface) and the default
//     route. ADD again for the same container returns the same result.
//   - DEL asks the agent to remove the workload and release its address;
//     a container the agent does not know is no error (spec).
//   - CHECK verifies, against the agent's view and prevResult, that the
//     host side veth, its /32 route (in the namespace the plugin runs in:
//     the host's) and the pod side with its address and default route
//     are there.
//   - VERSION lists the spec versions the plugin speaks.
//
// The plugin's own config keys are "socket" (the agent's control socket)
// or "node" and "stateDir" (the socket is STATEDIR/nodes/NODE.sock;
// defaults: the host name and /run/vrouter). Errors are CNI error objects
// on stdout with the spec's codes, exit status 1.
//
// The agent serves the container as the workload named after the
// container ID (and the interface, unless eth0), so IPAM's handle is
// "k8s-pod-network.<container ID>" on a node whose lab name is
// k8s-pod-network, as Calico's.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
	"golang.org/x/sys/unix"
)

// ProgramName is the name the binary answers to as a CNI plugin: install
// the vrouter binary (or a link to it) as /opt/cni/bin/vrouter-cni and
// set "type": "vrouter-cni" in the network config.
const ProgramName = "vrouter-cni"

// Defaults of the plugin config.
const (
	DefaultStateDir = config.DefaultStateDir
	// Gateway is the workloads' next hop, answered by the host's proxy
	// ARP, as Calico's.
	Gateway = "169.254.1.1"
	// HostMAC is the MAC of every workload's host-side interface.
	HostMAC = "ee:ee:ee:ee:ee:ee"
)

// SupportedVersions are the CNI spec versions the plugin speaks.
var SupportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0"}

// Conf is the plugin's network config: the standard keys and vrouter's.
type Conf struct {
	types.PluginConf
	// Socket is the agent's control socket. Empty: STATEDIR/nodes/NODE.sock.
	Socket   string `json:"socket,omitempty"`
	Node     string `json:"node,omitempty"`
	StateDir string `json:"stateDir,omitempty"`
	// Timeout of a request to the agent (a Go duration); default 30s.
	Timeout string `json:"timeout,omitempty"`

	timeout time.Duration
}

// Error is a CNI error object, as the plugin prints it (spec 1.0: with
// the config's cniVersion).
type Error struct {
	CNIVersion string `json:"cniVersion"`
	Code       uint   `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

func (e *Error) Error() string {
	if e.Details != "" {
		return e.Msg + "; " + e.Details
	}
	return e.Msg
}

func newError(code uint, msg string, details error) *Error {
	e := &Error{Code: code, Msg: msg}
	if details != nil {
		e.Details = details.Error()
	}
	return e
}

// ParseConf decodes and checks a network config from stdin. Errors are
// CNI errors: 6 (decoding failure) for what is not a JSON object of the
// right shape, 1 (incompatible version) for a cniVersion the plugin does
// not speak, 7 (invalid network config) for wrong values.
func ParseConf(data []byte) (*Conf, *Error) {
	var c Conf
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&c); err != nil {
		return nil, newError(types.ErrDecodingFailure, "decoding the network config", err)
	}
	if dec.More() {
		return nil, newError(types.ErrDecodingFailure, "decoding the network config", errors.New("data after the JSON object"))
	}
	if c.CNIVersion == "" {
		c.CNIVersion = "0.1.0" // the spec's default; refused below
	}
	if !slices.Contains(SupportedVersions, c.CNIVersion) {
		return nil, &Error{Code: types.ErrIncompatibleCNIVersion, Msg: "incompatible CNI versions",
			Details: fmt.Sprintf("config is %q, plugin supports %s", c.CNIVersion, strings.Join(SupportedVersions, ", "))}
	}
	invalid := func(format string, a ...any) (*Conf, *Error) {
		return nil, &Error{Code: types.ErrInvalidNetworkConfig, Msg: "invalid network config", Details: fmt.Sprintf(format, a...)}
	}
	if c.Name == "" {
		return invalid("no network name")
	}
	if !validName.MatchString(c.Name) {
		return invalid("network name %q: want letters, digits, '.', '_' and '-'", c.Name)
	}
	if c.Socket != "" && !filepath.IsAbs(c.Socket) {
		return invalid("socket %q is not an absolute path", c.Socket)
	}
	if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
		return invalid("stateDir %q is not an absolute path", c.StateDir)
	}
	if c.Node != "" && (strings.ContainsAny(c.Node, "/\x00") || c.Node == "." || c.Node == "..") {
		return invalid("node %q is not a node name", c.Node)
	}
	if c.IPAM.Type != "" {
		return invalid("ipam %q: the vrouter agent is the IPAM; leave ipam out", c.IPAM.Type)
	}
	c.timeout = 30 * time.Second
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return invalid("timeout %q: want a positive duration such as 30s", c.Timeout)
		}
		c.timeout = d
	}
	return &c, nil
}

// validName is what the spec allows in a network name and a container ID.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// socket returns the agent's control socket the config names.
func (c *Conf) socket() (string, error) {
	if c.Socket != "" {
		return c.Socket, nil
	}
	node := c.Node
	if node == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("node name: %w", err)
		}
		node = h
	}
	dir := c.StateDir
	if dir == "" {
		dir = DefaultStateDir
	}
	return control.Socket(dir, node), nil
}

// Args are the runtime's arguments (the CNI_* environment).
type Args struct {
	Command     string
	ContainerID string
	Netns       string
	IfName      string
	Path        string
	// PodNamespace and PodName are CNI_ARGS' K8S_POD_NAMESPACE and
	// K8S_POD_NAME (a Kubernetes runtime's), if given: the workload's
	// namespace and pod for network policy.
	PodNamespace string
	PodName      string
}

// podNameRE is a Kubernetes pod name (a DNS subdomain).
var podNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// parseCNIArgs reads CNI_ARGS (KEY=VALUE pairs separated by ';') into a:
// K8S_POD_NAMESPACE and K8S_POD_NAME; other keys are ignored.
func parseCNIArgs(s string, a *Args) error {
	if len(s) > 4096 {
		return fmt.Errorf("CNI_ARGS is longer than 4096 bytes")
	}
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("CNI_ARGS: %q is not KEY=VALUE", kv)
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			if m := policy.CheckNamespace(v); m != "" {
				return fmt.Errorf("CNI_ARGS K8S_POD_NAMESPACE: %s", m)
			}
			a.PodNamespace = v
		case "K8S_POD_NAME":
			if !podNameRE.MatchString(v) {
				return fmt.Errorf("CNI_ARGS K8S_POD_NAME %q is not a pod name", v)
			}
			a.PodName = v
		}
	}
	return nil
}

// argsFrom reads the CNI_* variables the command needs.
func argsFrom(getenv func(string) string) (Args, *Error) {
	a := Args{
		Command:     getenv("CNI_COMMAND"),
		ContainerID: getenv("CNI_CONTAINERID"),
		Netns:       getenv("CNI_NETNS"),
		IfName:      getenv("CNI_IFNAME"),
		Path:        getenv("CNI_PATH"),
	}
	bad := func(format string, v ...any) (Args, *Error) {
		return a, &Error{Code: types.ErrInvalidEnvironmentVariables, Msg: "invalid environment variables", Details: fmt.Sprintf(format, v...)}
	}
	switch a.Command {
	case "VERSION":
		return a, nil
	case "ADD", "DEL", "CHECK":
	case "":
		return bad("CNI_COMMAND is not set (this is a CNI plugin; see 'vrouter cni --help')")
	default:
		return bad("CNI_COMMAND %q: want ADD, DEL, CHECK or VERSION", a.Command)
	}
	if a.ContainerID == "" {
		return bad("CNI_CONTAINERID is not set")
	}
	if !validName.MatchString(a.ContainerID) {
		return bad("CNI_CONTAINERID %q: want letters, digits, '.', '_' and '-'", a.ContainerID)
	}
	if a.IfName == "" {
		return bad("CNI_IFNAME is not set")
	}
	if len(a.IfName) > 15 || strings.ContainsAny(a.IfName, "/ \t\n:\x00") || a.IfName == "." || a.IfName == ".." {
		return bad("CNI_IFNAME %q is not an interface name", a.IfName)
	}
	if a.Netns == "" && a.Command != "DEL" {
		return bad("CNI_NETNS is not set")
	}
	if a.Netns != "" && !filepath.IsAbs(a.Netns) {
		return bad("CNI_NETNS %q is not an absolute path", a.Netns)
	}
	if err := parseCNIArgs(getenv("CNI_ARGS"), &a); err != nil {
		return bad("%v", err)
	}
	return a, nil
}

// WorkloadName is the agent's name of the workload for a container's
// interface: the container ID, and the interface after a dot unless it
// is eth0.
func WorkloadName(containerID, ifName string) string {
	if ifName == "eth0" {
		return containerID
	}
	return containerID + "." + ifName
}

// Run runs the plugin: the CNI_* variables from getenv, the network config
// on stdin, the result or error object to stdout. It returns the exit
// status: 0, or 1 after printing an error object.
func Run(ctx context.Context, getenv func(string) string, stdin io.Reader, stdout io.Writer) int {
	cniVersion := "1.0.0"
	fail := func(e *Error) int {
		if e.CNIVersion == "" {
			e.CNIVersion = cniVersion
		}
		data, _ := json.MarshalIndent(e, "", "    ")
		_, _ = stdout.Write(append(data, '\n'))
		return 1
	}
	args, cerr := argsFrom(getenv)
	if cerr != nil {
		return fail(cerr)
	}
	data, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil {
		return fail(newError(types.ErrIOFailure, "reading the network config", err))
	}
	if args.Command == "VERSION" {
		// VERSION's stdin has only cniVersion; the answer does not
		// depend on it.
		var v struct {
			CNIVersion string `json:"cniVersion"`
		}
		if json.Unmarshal(data, &v) == nil && slices.Contains(SupportedVersions, v.CNIVersion) {
			cniVersion = v.CNIVersion
		}
		out := struct {
			CNIVersion        string   `json:"cniVersion"`
			SupportedVersions []string `json:"supportedVersions"`
		}{cniVersion, version.PluginSupports(SupportedVersions...).SupportedVersions()}
		data, _ := json.MarshalIndent(out, "", "    ")
		_, _ = stdout.Write(append(data, '\n'))
		return 0
	}
	conf, cerr := ParseConf(data)
	if cerr != nil {
		return fail(cerr)
	}
	cniVersion = conf.CNIVersion
	sock, err := conf.socket()
	if err != nil {
		return fail(newError(types.ErrInvalidNetworkConfig, "invalid network config", err))
	}
	ctx, cancel := context.WithTimeout(ctx, conf.timeout)
	defer cancel()
	p := &plugin{conf: conf, args: args, agent: control.NewClient(sock)}
	var result types.Result
	switch args.Command {
	case "ADD":
		result, cerr = p.add(ctx)
	case "DEL":
		cerr = p.del(ctx)
	case "CHECK":
		cerr = p.check(ctx)
	}
	if cerr != nil {
		return fail(cerr)
	}
	if result == nil {
		return 0
	}
	out, err := result.GetAsVersion(conf.CNIVersion)
	if err == nil {
		data, err = json.MarshalIndent(out, "", "    ")
	}
	if err != nil {
		return fail(newError(types.ErrInternal, "writing the result", err))
	}
	_, _ = stdout.Write(append(data, '\n'))
	return 0
}

type plugin struct {
	conf  *Conf
	args  Args
	agent *control.Client
}

// agentError maps an error of the agent's client: nothing answering is
// "try again later" (11), the rest the agent's refusal (999).
func agentError(what string, err error) *Error {
	if errors.Is(err, control.ErrNotRunning) {
		return newError(types.ErrTryAgainLater, what+": the vrouter agent is not running", err)
	}
	return newError(types.ErrInternal, what, err)
}

func (p *plugin) name() string { return WorkloadName(p.args.ContainerID, p.args.IfName) }

// add serves the container through the agent and returns the result.
func (p *plugin) add(ctx context.Context) (types.Result, *Error) {
	if !netns.Exists(p.args.Netns) {
		return nil, newError(types.ErrInvalidNetNS, "CNI_NETNS "+p.args.Netns+" does not exist", nil)
	}
	info, err := p.agent.AddWorkload(ctx, config.Workload{Name: p.name(), Namespace: p.args.Netns, PodInterface: p.args.IfName,
		PolicyNamespace: p.args.PodNamespace, Pod: p.args.PodName})
	if err != nil {
		return nil, agentError("adding the workload", err)
	}
	podMAC, err := linkMAC(p.args.Netns, p.args.IfName)
	if err != nil {
		return nil, newError(types.ErrInternal, "reading the pod interface", err)
	}
	return p.result(info, podMAC), nil
}

// result is ADD's answer for the workload info.
func (p *plugin) result(info *control.WorkloadInfo, podMAC string) *types100.Result {
	pod := 1
	_, def, _ := net.ParseCIDR("0.0.0.0/0")
	return &types100.Result{
		CNIVersion: "1.0.0", // no 1.1.0 fields (an interface's mtu) are set
		Interfaces: []*types100.Interface{
			{Name: info.Interface, Mac: HostMAC},
			{Name: p.args.IfName, Mac: podMAC, Sandbox: p.args.Netns},
		},
		IPs: []*types100.IPConfig{{
			Interface: &pod,
			Address:   net.IPNet{IP: info.Address.AsSlice(), Mask: net.CIDRMask(32, 32)},
		}},
		Routes: []*types.Route{{Dst: *def, GW: net.ParseIP(Gateway).To4()}},
		DNS:    p.conf.DNS,
	}
}

// del removes the container's workload; one the agent does not serve is
// gone already.
func (p *plugin) del(ctx context.Context) *Error {
	err := p.agent.DeleteWorkload(ctx, p.name())
	if err == nil || errors.Is(err, control.ErrNotFound) {
		return nil
	}
	return agentError("deleting the workload", err)
}

// check verifies the container's workload against prevResult and the
// kernel.
func (p *plugin) check(ctx context.Context) *Error {
	if ok, _ := version.GreaterThanOrEqualTo(p.conf.CNIVersion, "0.4.0"); !ok {
		return &Error{Code: types.ErrIncompatibleCNIVersion, Msg: "CHECK needs cniVersion 0.4.0 or later", Details: "config is " + p.conf.CNIVersion}
	}
	if p.conf.RawPrevResult == nil {
		return newError(types.ErrInvalidNetworkConfig, "CHECK without prevResult", nil)
	}
	raw, err := json.Marshal(p.conf.RawPrevResult)
	if err != nil {
		return newError(types.ErrDecodingFailure, "decoding prevResult", err)
	}
	prev, err := version.NewResult(p.conf.CNIVersion, raw)
	var res *types100.Result
	if err == nil {
		res, err = types100.GetResult(prev)
	}
	if err != nil {
		return newError(types.ErrDecodingFailure, "decoding prevResult", err)
	}
	info, err := p.agent.Workload(ctx, p.name())
	if errors.Is(err, control.ErrNotFound) {
		return newError(types.ErrUnknownContainer, "the vrouter agent serves no workload for container "+p.args.ContainerID, err)
	}
	if err != nil {
		return agentError("asking the agent for the workload", err)
	}
	if err := checkResult(res, info, p.args); err != nil {
		return newError(types.ErrInternal, "prevResult does not match the workload", err)
	}
	if err := checkHost(info); err != nil {
		return newError(types.ErrInternal, "host side of the workload", err)
	}
	if err := checkPod(p.args.Netns, p.args.IfName, info.Address); err != nil {
		return newError(types.ErrInternal, "pod side of the workload", err)
	}
	return nil
}

// checkResult compares prevResult with the agent's view of the workload.
func checkResult(res *types100.Result, info *control.WorkloadInfo, args Args) error {
	var found bool
	for _, ip := range res.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok || a.Unmap() != info.Address {
			continue
		}
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(res.Interfaces) {
			return fmt.Errorf("address %s names no interface of the result", info.Address)
		}
		in := res.Interfaces[*ip.Interface]
		if in.Name != args.IfName || in.Sandbox != args.Netns {
			return fmt.Errorf("address %s is on %s in %q, want %s in %s", info.Address, in.Name, in.Sandbox, args.IfName, args.Netns)
		}
		found = true
	}
	if !found {
		return fmt.Errorf("the agent gave the workload %s, prevResult does not list it", info.Address)
	}
	return nil
}

// checkHost verifies, in the namespace the plugin runs in (the host's),
// the host side veth (up, MAC ee:ee:ee:ee:ee:ee) and the /32 route to the
// workload through it.
func checkHost(info *control.WorkloadInfo) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(info.Interface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", info.Interface, err)
	}
	if l.Type() != "veth" {
		return fmt.Errorf("%s is a %s device, not a veth", info.Interface, l.Type())
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s is down", info.Interface)
	}
	if l.Attrs().HardwareAddr.String() != HostMAC {
		return fmt.Errorf("%s has MAC %s, want %s", info.Interface, l.Attrs().HardwareAddr, HostMAC)
	}
	dst := &net.IPNet{IP: info.Address.AsSlice(), Mask: net.CIDRMask(32, 32)}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("routes to %s: %w", info.Address, err)
	}
	for _, r := range routes {
		if r.LinkIndex == l.Attrs().Index && r.Scope == netlink.SCOPE_LINK {
			return nil
		}
	}
	return fmt.Errorf("no route %s dev %s scope link", info.Address, info.Interface)
}

// checkPod verifies the pod side: the interface up with addr/32 and the
// default route via 169.254.1.1 through it.
func checkPod(ns, ifName string, addr netip.Addr) error {
	h, err := netns.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", ifName, ns, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s in %s is down", ifName, ns)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool {
		ones, _ := a.Mask.Size()
		return a.IP.Equal(addr.AsSlice()) && ones == 32
	}) {
		return fmt.Errorf("%s in %s lacks %s/32", ifName, ns, addr)
	}
	routes, err := h.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	gw := net.ParseIP(Gateway)
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
		return (r.Dst == nil || r.Dst.IP.IsUnspecified() && maskBits(r.Dst) == 0) && r.Gw.Equal(gw)
	}) {
		return fmt.Errorf("%s in %s has no default route via %s", ifName, ns, Gateway)
	}
	return nil
}

func maskBits(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

// linkMAC returns the MAC of interface name in namespace ns.
func linkMAC(ns, name string) (string, error) {
	h, err := netns.Handle(ns)
	if err != nil {
		return "", err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return "", fmt.Errorf("%s in %s: %w", name, ns, err)
	}
	return l.Attrs().HardwareAddr.String(), nil
}

package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vrouter-lab/vrouter/pcap"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// errNotDeployed is what a step that needs the lab says before deploy.
var errNotDeployed = errors.New("the lab is not deployed (add a deploy step before this one)")

// state returns the deployed lab's state.
func (run *scenarioRun) state() (*lab.State, error) {
	if run.st == nil {
		return nil, fatal(errNotDeployed)
	}
	return run.st, nil
}

// reload reads the lab's state again after a step changed it.
func (run *scenarioRun) reload() error {
	st, err := lab.Load(run.name)
	if err != nil {
		return err
	}
	run.st = st
	return nil
}

// renamed returns a copy of l under the scenario's lab name.
func (run *scenarioRun) renamed(l *topology.Lab) *topology.Lab {
	c := *l
	c.Name = run.name
	return &c
}

func (s deployStep) describe() string { return "deploy" }

func (s deployStep) run(ctx context.Context, run *scenarioRun) error {
	if run.st != nil {
		return errors.New("the lab is already deployed")
	}
	run.deployed = true
	// deploy's progress lines go to the artifacts, for a deploy that fails
	var progress bytes.Buffer
	st, err := lab.Deploy(ctx, run.renamed(run.s.Lab), lab.Options{File: run.s.File, Binary: run.r.opt.Binary, Timeout: s.timeout, NoWait: s.noWait, Progress: &progress})
	_ = os.WriteFile(filepath.Join(run.res.Dir, "deploy.log"), progress.Bytes(), 0o644)
	if err != nil {
		return err
	}
	run.st = st
	return nil
}

func (destroyStep) describe() string { return "destroy" }

func (destroyStep) run(_ context.Context, run *scenarioRun) error {
	for _, name := range sortedKeys(run.captures) {
		run.captures[name].stop()
	}
	if err := lab.Destroy(run.name); err != nil {
		return err
	}
	run.st, run.deployed = nil, false
	return nil
}

func (s workloadAddStep) describe() string { return "workloadAdd " + s.name + " on " + s.node }

func (s workloadAddStep) run(ctx context.Context, run *scenarioRun) error {
	st, err := run.state()
	if err != nil {
		return err
	}
	if _, err := lab.AddWorkload(ctx, st, s.name, s.node, s.addr); err != nil {
		return err
	}
	return run.reload()
}

func (s workloadDelStep) describe() string { return "workloadDel " + s.name }

func (s workloadDelStep) run(ctx context.Context, run *scenarioRun) error {
	st, err := run.state()
	if err != nil {
		return err
	}
	if err := lab.DeleteWorkload(ctx, st, s.name); err != nil {
		return err
	}
	return run.reload()
}

func (s applyStep) describe() string { return "apply" }

func (s applyStep) run(ctx context.Context, run *scenarioRun) error {
	st, err := run.state()
	if err != nil {
		return err
	}
	if _, err := lab.Apply(ctx, st, run.renamed(s.lab)); err != nil {
		return err
	}
	return run.reload()
}

func (s linkStep) describe() string {
	state := "down"
	if s.up {
		state = "up"
	}
	if s.iface != "" {
		return fmt.Sprintf("link %s %s %s", s.node, s.iface, state)
	}
	return fmt.Sprintf("link %s %s", s.node, state)
}

func (s linkStep) run(ctx context.Context, run *scenarioRun) error {
	st, err := run.state()
	if err != nil {
		return err
	}
	_, err = lab.SetLink(ctx, st, s.node, s.iface, s.up)
	return err
}

func (s restartStep) describe() string {
	if s.kill {
		return s.mode + " " + s.node + " (kill)"
	}
	return s.mode + " " + s.node
}

func (s restartStep) run(ctx context.Context, run *scenarioRun) error {
	st, err := run.state()
	if err != nil {
		return err
	}
	opt := lab.RestartOptions{Kill: s.kill, Binary: run.r.opt.Binary, Timeout: s.timeout, NoWait: s.noWait}
	switch s.mode {
	case "stop":
		return lab.StopNode(st, s.node, opt)
	case "start":
		return lab.StartNode(ctx, st, s.node, opt)
	}
	return lab.RestartNode(ctx, st, s.node, opt)
}

func (s pauseStep) describe() string {
	if s.pause {
		return "pause " + s.name
	}
	return "resume " + s.name
}

func (s pauseStep) run(_ context.Context, run *scenarioRun) error {
	st, err := run.state()
	if err != nil {
		return err
	}
	if err := lab.Pause(st, s.name, s.pause); err != nil {
		return err
	}
	if run.paused == nil {
		run.paused = map[string]bool{}
	}
	run.paused[s.name] = s.pause
	return nil
}

func (s waitStep) describe() string { return "wait " + s.d.String() }

func (s waitStep) run(ctx context.Context, _ *scenarioRun) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.d):
		return nil
	}
}

// captureRun is a running (or stopped) capture.
type captureRun struct {
	name, network, path string
	cancel              context.CancelFunc
	done                chan struct{}
	n                   int
	err                 error
	file                *os.File
}

// stop ends the capture, flushes and closes its file; idempotent.
func (c *captureRun) stop() {
	c.cancel()
	<-c.done
	if c.file != nil {
		if err := c.file.Close(); err != nil && c.err == nil {
			c.err = err
		}
		c.file = nil
	}
}

func (c *captureRun) running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (s captureStartStep) describe() string { return "captureStart " + s.name + " on " + s.network }

func (s captureStartStep) run(ctx context.Context, run *scenarioRun) error {
	st, err := run.state()
	if err != nil {
		return err
	}
	path := filepath.Join(run.res.Dir, s.name+".pcapng")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &captureRun{name: s.name, network: s.network, path: path, cancel: cancel, done: make(chan struct{}), file: f}
	ready := make(chan struct{})
	go func() {
		defer close(c.done)
		c.n, c.err = lab.Capture(cctx, st, s.network, f, lab.CaptureOptions{Ready: func() { close(ready) }})
	}()
	run.captures[s.name] = c
	run.res.Captures = append(run.res.Captures, path)
	select {
	case <-ready:
		return nil
	case <-c.done:
		return fmt.Errorf("capture %s: %v", s.name, c.err)
	case <-ctx.Done():
		c.stop()
		return ctx.Err()
	}
}

func (s captureStopStep) describe() string { return "captureStop " + s.name }

func (s captureStopStep) run(_ context.Context, run *scenarioRun) error {
	c := run.captures[s.name]
	if c == nil {
		return fmt.Errorf("no capture %s", s.name)
	}
	c.stop()
	return c.err
}

// readCapture reads the named capture's packets: all of them once it has
// stopped, those flushed so far (every second) while it runs.
// live is false once the capture has stopped: its packets are final, and
// an assertion about them need not be polled.
func (run *scenarioRun) readCapture(name string) (pkts []pcap.Packet, live bool, err error) {
	c := run.captures[name]
	if c == nil {
		return nil, false, fatal(fmt.Errorf("no capture %s", name))
	}
	live = c.running()
	pkts, err = pcap.ReadFile(c.path)
	if err != nil && !live {
		return nil, false, fatal(fmt.Errorf("read capture %s: %w", name, err))
	}
	return pkts, live, nil
}

// final makes err fatal when the capture has stopped.
func final(err error, live bool) error {
	if err != nil && !live {
		return fatal(err)
	}
	return err
}

// expand replaces ${lab}, ${iface:WORKLOAD} and ${addr:WORKLOAD}.
var varRE = regexp.MustCompile(`\$\{([a-z]+)(?::([a-z0-9-]+))?\}`)

func (run *scenarioRun) expand(ctx context.Context, s string) (string, error) {
	var err error
	out := varRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		switch sub[1] {
		case "lab":
			return run.name
		case "iface":
			if run.st != nil {
				for _, w := range run.st.Workloads {
					if w.Name == sub[2] {
						return w.Interface
					}
				}
			}
		case "addr":
			a, aerr := run.workloadAddr(ctx, sub[2])
			if aerr == nil {
				return a.String()
			}
			err = aerr
			return m
		}
		if err == nil {
			// waiting does not make a workload appear
			err = fatal(fmt.Errorf("cannot expand %s: the lab has no such workload", m))
		}
		return m
	})
	return out, err
}

// workloadAddr asks the node serving a workload for its address.
func (run *scenarioRun) workloadAddr(ctx context.Context, name string) (netip.Addr, error) {
	st, err := run.state()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, w := range st.Workloads {
		if w.Name != name {
			continue
		}
		n, ok := st.Node(w.Node)
		if !ok {
			break
		}
		s, err := control.NewClient(n.Control).Status(ctx)
		if err != nil {
			return netip.Addr{}, err
		}
		for _, wi := range s.Workloads {
			if wi.Name == name {
				return wi.Address, nil
			}
		}
		return netip.Addr{}, fmt.Errorf("node %s does not serve workload %s", w.Node, name)
	}
	return netip.Addr{}, fatal(fmt.Errorf("lab has no workload %s", name))
}

// target resolves an address or a workload name.
func (run *scenarioRun) target(ctx context.Context, s string) (netip.Addr, error) {
	s, err := run.expand(ctx, s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	return run.workloadAddr(ctx, s)
}

// routes returns a node's (or router's) table in 'ip route' format.
func (run *scenarioRun) routes(ctx context.Context, node string) (string, error) {
	st, err := run.state()
	if err != nil {
		return "", err
	}
	if n, ok := st.Node(node); ok {
		return control.NewClient(n.Control).Routes(ctx)
	}
	if r, ok := st.Router(node); ok {
		return control.NewRouterClient(r.Control).Routes(ctx)
	}
	return "", fatal(fmt.Errorf("lab has no node %s", node))
}

// statusText returns `vrouter node status NODE` as it prints it.
func (run *scenarioRun) statusText(ctx context.Context, node string) (string, error) {
	st, err := run.state()
	if err != nil {
		return "", err
	}
	n, ok := st.Node(node)
	if !ok {
		return "", fatal(fmt.Errorf("%s is not a vrouter node: node status shows vrouter nodes only", node))
	}
	s, serr := control.NewClient(n.Control).Status(ctx)
	var b bytes.Buffer
	err = control.WriteNodeStatus(&b, s, serr)
	return b.String(), err
}

func (a routesAssert) describe() string { return "routes " + a.node }

func (a routesAssert) run(ctx context.Context, run *scenarioRun) error {
	table, err := run.routes(ctx, a.node)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	has := func(l string) bool {
		for _, x := range lines {
			if strings.TrimSpace(x) == strings.TrimSpace(l) {
				return true
			}
		}
		return false
	}
	show := "\n    " + strings.Join(lines, "\n    ")
	for _, c := range a.contains {
		c, err := run.expand(ctx, c)
		if err != nil {
			return err
		}
		if !has(c) {
			return fmt.Errorf("%s's table lacks %q; observed:%s", a.node, c, show)
		}
	}
	for _, c := range a.lacks {
		c, err := run.expand(ctx, c)
		if err != nil {
			return err
		}
		if has(c) {
			return fmt.Errorf("%s's table contains %q, expected it absent; observed:%s", a.node, c, show)
		}
	}
	for i, list := range [][]string{a.matches, a.notMatches} {
		for _, pat := range list {
			pat, err := run.expand(ctx, pat)
			if err != nil {
				return err
			}
			re, err := regexp.Compile("(?m)" + pat)
			if err != nil {
				return fatal(err)
			}
			if found := re.MatchString(table); found != (i == 0) {
				if i == 0 {
					return fmt.Errorf("no line of %s's table matches /%s/; observed:%s", a.node, pat, show)
				}
				return fmt.Errorf("a line of %s's table matches /%s/ (%q), expected none; observed:%s", a.node, pat, re.FindString(table), show)
			}
		}
	}
	if a.equals != nil {
		want, err := run.expand(ctx, *a.equals)
		if err != nil {
			return err
		}
		if normalise(want) != normalise(table) {
			return fmt.Errorf("%s's table differs from the golden block:\nobserved:%s\nexpected:\n    %s", a.node, show, strings.Join(strings.Split(normalise(want), "\n"), "\n    "))
		}
	}
	return nil
}

func normalise(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, "\n")
}

func (a bgpAssert) describe() string { return "bgp " + a.node + " peer " + a.peer.String() }

// peerRow finds a peer's row in node status output, its wrapped cells
// joined: address, type, state, since, info.
func peerRow(text string, peer netip.Addr) ([]string, bool) {
	var row []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "|") {
			if row != nil && strings.HasPrefix(l, "+") {
				return row, true
			}
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 5 {
			continue
		}
		if row != nil {
			if cells[0] != "" {
				return row, true
			}
			for i := range cells {
				if cells[i] != "" {
					row[i] = strings.TrimSpace(row[i] + " " + cells[i])
				}
			}
			continue
		}
		if cells[0] == peer.String() {
			row = cells
		}
	}
	return row, row != nil
}

func (a bgpAssert) run(ctx context.Context, run *scenarioRun) error {
	st, err := run.state()
	if err != nil {
		return err
	}
	if _, ok := st.Router(a.node); ok {
		return a.runRouter(ctx, run, st)
	}
	text, err := run.statusText(ctx, a.node)
	if err != nil {
		return err
	}
	row, ok := peerRow(text, a.peer)
	if !ok {
		return fmt.Errorf("%s's node status lists no peer %s; observed:\n%s", a.node, a.peer, text)
	}
	if a.state != "" && row[2] != a.state {
		return fmt.Errorf("peer %s of %s: state %q, info %q; expected state %q", a.peer, a.node, row[2], row[4], a.state)
	}
	if a.info != nil && !a.info.MatchString(row[4]) {
		return fmt.Errorf("peer %s of %s: info %q; expected it to match /%s/", a.peer, a.node, row[4], a.info)
	}
	return nil
}

// runRouter checks an external router's session as its daemon reports it.
func (a bgpAssert) runRouter(ctx context.Context, run *scenarioRun, st *lab.State) error {
	ps, text, err := lab.RouterPeerStatus(ctx, st, a.node, a.peer)
	if err != nil {
		if text == "" {
			return fatal(err)
		}
		return err
	}
	if a.state != "" && ps.State != a.state {
		return fmt.Errorf("peer %s of %s (%s): state %q, info %q; expected state %q", a.peer, a.node, ps.Protocol, ps.State, ps.Info, a.state)
	}
	if a.info != nil && !a.info.MatchString(ps.Info) {
		return fmt.Errorf("peer %s of %s (%s): info %q; expected it to match /%s/", a.peer, a.node, ps.Protocol, ps.Info, a.info)
	}
	return nil
}

// namespace returns the namespace of a workload (or node).
func (run *scenarioRun) namespace(name string) (string, error) {
	st, err := run.state()
	if err != nil {
		return "", err
	}
	ns, ok := st.Namespace(name)
	if !ok {
		return "", fatal(fmt.Errorf("lab has no workload %s", name))
	}
	return ns, nil
}

func (a pingAssert) describe() string {
	s := "ping " + a.from + " -> " + a.to
	if a.ttl > 0 {
		s += " ttl " + strconv.Itoa(a.ttl)
	}
	if a.size > 0 {
		s += " size " + strconv.Itoa(a.size)
	}
	if !a.success {
		s += " (expect failure)"
	}
	return s
}

func (a pingAssert) run(ctx context.Context, run *scenarioRun) error {
	to, err := run.target(ctx, a.to)
	if err != nil {
		return err
	}
	if run.netstackFrom(a.from) {
		return a.netstackPing(ctx, run, to)
	}
	ns, err := run.namespace(a.from)
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", ns, "ping", "-n", "-c", strconv.Itoa(a.count), "-i", "0.2", "-W", "1"}
	if a.ttl > 0 {
		args = append(args, "-t", strconv.Itoa(a.ttl))
	}
	if a.size > 0 {
		args = append(args, "-s", strconv.Itoa(a.size), "-M", "do")
	}
	args = append(args, to.String())
	pctx, cancel := context.WithTimeout(ctx, time.Duration(a.count)*time.Second+5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(pctx, "ip", args...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return fatal(fmt.Errorf("ping: %w", err))
	}
	ok := err == nil
	text := strings.TrimSpace(string(out))
	if ok != a.success {
		want := "succeed"
		if !a.success {
			want = "fail"
		}
		return fmt.Errorf("ping %s -> %s (%s): expected it to %s; observed:\n%s", a.from, a.to, to, want, text)
	}
	if a.output != nil && !a.output.MatchString(text) {
		return fmt.Errorf("ping %s -> %s (%s): output does not match /%s/; observed:\n%s", a.from, a.to, to, a.output, text)
	}
	return nil
}

func (a tracerouteAssert) describe() string { return "traceroute " + a.from + " -> " + a.to }

// pause spaces traceroutes: the nodes rate-limit their time exceeded
// messages as Linux does (a token a second, a burst of 6), and a
// traceroute polled faster sees its hops go silent.
func (tracerouteAssert) pause() time.Duration { return 3 * time.Second }

// traceWait is traceroute's longest wait for a probe (-w, seconds): its
// probes go out together and a hop's wait is cut to 3 or 10 times the
// round trip of the answers already in, so it only counts when nothing
// further answers; 2 rather than 1 keeps a loaded machine's late answers.
const traceWait = "2"

// traceLine is one line of `traceroute -I -n -q 1` (ICMP echo probes,
// which no workload kernel rate-limits as it does port unreachables):
// hop number, address or *, and an annotation such as !N.
var traceLine = regexp.MustCompile(`^\s*(\d+)\s+(\*|\d+\.\d+\.\d+\.\d+)(?:\s+[\d.]+ ms)?(?:\s+(![A-Za-z0-9]+))?`)

// parseTraceroute returns the hops of traceroute's output, each "ADDR",
// "ADDR !X" or "*".
func parseTraceroute(out string) []string {
	var hops []string
	for _, l := range strings.Split(out, "\n") {
		m := traceLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		h := m[2]
		if m[3] != "" {
			h += " " + m[3]
		}
		hops = append(hops, h)
	}
	return hops
}

// hopsMatch compares observed hops with expected ones: an expected
// address without annotation matches the address with any.
func hopsMatch(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range want {
		if got[i] != want[i] && !(strings.HasPrefix(got[i], want[i]+" !") && !strings.Contains(want[i], "!")) {
			return false
		}
	}
	return true
}

func (a tracerouteAssert) run(ctx context.Context, run *scenarioRun) error {
	ns, err := run.namespace(a.from)
	if err != nil {
		return err
	}
	to, err := run.target(ctx, a.to)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, time.Duration(a.maxHops)*2*time.Second+5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(tctx, "ip", "netns", "exec", ns, "traceroute", "-I", "-n", "-q", "1", "-w", traceWait, "-m", strconv.Itoa(a.maxHops), to.String()).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return fatal(fmt.Errorf("traceroute: %w", err))
	}
	got := parseTraceroute(string(out))
	if !hopsMatch(got, a.hops) {
		return fmt.Errorf("traceroute %s -> %s (%s): hops [%s], expected [%s]; observed:\n%s", a.from, a.to, to, strings.Join(got, ", "), strings.Join(a.hops, ", "), strings.TrimSpace(string(out)))
	}
	return nil
}

func (a tcpAssert) describe() string {
	return fmt.Sprintf("tcp %s -> %s:%d %s", a.from, a.to, a.port, a.expect)
}

func (a tcpAssert) run(ctx context.Context, run *scenarioRun) error {
	ns, err := run.namespace(a.from)
	if err != nil {
		return err
	}
	to, err := run.target(ctx, a.to)
	if err != nil {
		return err
	}
	if a.listen {
		if err := run.listen(a.to, a.port); err != nil {
			return fatal(err)
		}
	}
	addr := netip.AddrPortFrom(to, a.port).String()
	var got string
	var derr error
	refused := false
	if run.netstackFrom(a.from) {
		refused, derr = netstackDial(ctx, run, a.from, netip.AddrPortFrom(to, a.port))
		if derr != nil && !refused && isFatal(derr) {
			return derr
		}
	} else if err = netns.Do(ns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp4", addr)
		derr = err
		if err == nil {
			c.Close()
		}
		return nil
	}); err != nil {
		return fatal(err)
	}
	switch {
	case derr == nil:
		got = expectConnected
	case refused || errors.Is(derr, syscall.ECONNREFUSED):
		got = expectRefused
	default:
		got = expectUnreachable
	}
	if got != a.expect {
		detail := ""
		if derr != nil {
			detail = " (" + derr.Error() + ")"
		}
		return fmt.Errorf("tcp %s -> %s: %s%s, expected %s", a.from, addr, got, detail, a.expect)
	}
	return nil
}

// listen opens a TCP listener in a workload's namespace, once, that
// accepts and closes connections until the scenario ends.
func (run *scenarioRun) listen(workload string, port uint16) error {
	ns, err := run.namespace(workload)
	if err != nil {
		return err
	}
	key := fmt.Sprintf("%s:%d", ns, port)
	for _, l := range run.listeners {
		if l.Addr().String() == key {
			return nil
		}
	}
	var l net.Listener
	err = netns.Do(ns, func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	if err != nil {
		return fmt.Errorf("listen in %s: %w", workload, err)
	}
	run.listeners = append(run.listeners, &namedListener{l, key})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return nil
}

type namedListener struct {
	net.Listener
	key string
}

func (l *namedListener) Addr() net.Addr { return keyAddr(l.key) }

type keyAddr string

func (k keyAddr) Network() string { return "tcp" }
func (k keyAddr) String() string  { return string(k) }

func (a packetsAssert) describe() string {
	return "packets " + a.capture + " " + a.match.text
}

func (a packetsAssert) run(_ context.Context, run *scenarioRun) error {
	pkts, live, err := run.readCapture(a.capture)
	if err != nil {
		return err
	}
	return final(evalPackets(a, decodeCapture(pkts)), live)
}

func (a bgpMessagesAssert) describe() string {
	return "bgpMessages " + a.capture + " " + a.match.text
}

func (a bgpMessagesAssert) run(_ context.Context, run *scenarioRun) error {
	pkts, live, err := run.readCapture(a.capture)
	if err != nil {
		return err
	}
	return final(evalBGP(a, decodeBGP(pkts)), live)
}

package lab_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// scaleCase is one lab shape of BenchmarkScale: n nodes in a full mesh, or
// with rr route reflectors that every node peers with; ns netstack
// workloads (with HTTP, echo and sink services) on every node.
type scaleCase struct {
	n, rr, ns int
	etcd      bool // datastore: etcd (the mesh from the nodes registered there)
}

func (c scaleCase) String() string {
	if c.ns > 0 {
		return fmt.Sprintf("%d x %d netstack", c.n, c.ns)
	}
	s := fmt.Sprintf("%d nodes, %d RRs", c.n, c.rr)
	if c.rr == 0 {
		s = fmt.Sprintf("mesh %d", c.n)
	}
	if c.etcd {
		s += " etcd"
	}
	return s
}

// scaleCases reads VROUTER_SCALE ("mesh10,mesh25,rr200,etcdmesh50,ns10x1000"
// ...: an etcd prefix deploys the lab with datastore: etcd), by default the
// issues' shapes.
func scaleCases(b *testing.B) []scaleCase {
	spec := os.Getenv("VROUTER_SCALE")
	if spec == "" {
		spec = "mesh10,mesh25,mesh50,etcdmesh50,rr100,rr200,rr500,ns10x1000"
	}
	var out []scaleCase
	for _, f := range strings.Split(spec, ",") {
		var c scaleCase
		var err error
		c.etcd = strings.HasPrefix(f, "etcd")
		f = strings.TrimPrefix(f, "etcd")
		switch {
		case strings.HasPrefix(f, "mesh"):
			c.n, err = strconv.Atoi(f[4:])
		case strings.HasPrefix(f, "rr"):
			c.rr = 2
			c.n, err = strconv.Atoi(f[2:])
		case strings.HasPrefix(f, "ns"):
			n, ns, _ := strings.Cut(f[2:], "x")
			if c.n, err = strconv.Atoi(n); err == nil {
				c.ns, err = strconv.Atoi(ns)
			}
			if err == nil && (c.ns < 1 || c.ns > topology.MaxWorkloadsPerNode) {
				err = fmt.Errorf("1-%d workloads per node", topology.MaxWorkloadsPerNode)
			}
		default:
			err = fmt.Errorf("want meshN, rrN or nsNxW")
		}
		if err != nil || c.n < 3 || c.n > 1000 {
			b.Fatalf("VROUTER_SCALE: bad case %q: %v", f, err)
		}
		out = append(out, c)
	}
	return out
}

// scaleLab writes a lab of c's shape without workloads.
func scaleLab(b *testing.B, name string, c scaleCase) string {
	var s strings.Builder
	fmt.Fprintf(&s, "name: %s\nipPools:\n  - {name: pool, cidr: 10.244.0.0/16}\n", name)
	if c.etcd {
		s.WriteString("datastore: etcd\n")
	}
	fmt.Fprintf(&s, "bgp: {nodeToNodeMesh: %v}\nnetworks:\n  - {name: lan, cidr: 192.168.0.0/22}\nnodes:\n", c.rr == 0)
	for i := range c.n {
		extra := ""
		if i < c.rr {
			extra = ", labels: {rr: 'y'}, routeReflectorClusterID: 244.0.0.1"
		}
		fmt.Fprintf(&s, "  n%d: {network: lan, address: 192.168.%d.%d%s}\n", i+1, (i+10)/250, (i+10)%250+1, extra)
	}
	if c.rr > 0 {
		s.WriteString("bgpPeers:\n  - {name: to-rr, nodeSelector: all(), peerSelector: rr == 'y'}\n")
	}
	if c.ns > 0 {
		s.WriteString("workloads:\n")
		for i := range c.n {
			for k := range c.ns {
				fmt.Fprintf(&s, "  - {name: a%d-%d, node: n%d, stack: netstack, serve: [tcp:80:http, tcp:7:echo, udp:53:echo, tcp:5201:sink]}\n", i+1, k, i+1)
			}
		}
	}
	file := filepath.Join(b.TempDir(), name+".yaml")
	if err := os.WriteFile(file, []byte(s.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return file
}

type scaleResult struct {
	c                     scaleCase
	deploy, destroy       time.Duration
	p50, p99              time.Duration
	rssAvg, rssMax, total float64 // MiB
	anonAvg, pssAvg       float64 // MiB: private (RssAnon) and proportional (Pss) memory per agent
	idleCPU               float64 // % of one CPU, all agents, idle lab
	rssDeploy             float64 // MiB: RSS avg 2 s after deploy (before start-up pages are dropped)
}

// BenchmarkScale deploys labs of growing size and reports deploy time,
// convergence after adding a workload (until every node's FIB routes its
// new block; p50/p99 over repeated adds), agent memory and idle CPU. It
// runs each case once, whatever b.N is; VROUTER_SCALE picks the cases.
//
//	sudo go test -run '^$' -bench Scale -benchtime 1x -timeout 60m ./topology/lab/
func BenchmarkScale(b *testing.B) {
	netnstest.RequireRoot(b)
	netnstest.GuardRoot(b)
	var results []scaleResult
	for _, c := range scaleCases(b) {
		// A node costs ~10 MB of private memory (PSS; its RSS counts the
		// binary's shared pages too) plus its namespace, devices and
		// sockets in the kernel: leave out a lab the machine has no
		// room for, with 25 MB a node, rather than run it out of memory.
		if avail, need := memAvailable(), float64(c.n)*25; avail < need {
			fmt.Printf("%s: left out: %.0f MB available, %.0f MB needed\n", c, avail, need)
			continue
		}
		r := runScale(b, c)
		// Printed at once (b.Log waits for the end): a later case may fail.
		fmt.Printf("%s: deploy %.1fs, conv p50 %.0fms p99 %.0fms, RSS %.1f MB at deploy, %.1f MB steady (anon %.1f, PSS %.1f, max %.1f), idle CPU %.1f%%, destroy %.1fs\n",
			c, r.deploy.Seconds(), ms(r.p50), ms(r.p99), r.rssDeploy, r.rssAvg, r.anonAvg, r.pssAvg, r.rssMax, r.idleCPU, r.destroy.Seconds())
		results = append(results, r)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\n%-18s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "lab", "deploy", "conv p50", "conv p99", "RSS@deploy", "RSS avg", "anon avg", "PSS avg", "RSS max", "RSS all", "idle CPU", "destroy")
	for _, r := range results {
		fmt.Fprintf(&t, "%-18s %8.1fs %7.0fms %7.0fms %7.1fMB %7.1fMB %7.1fMB %7.1fMB %7.1fMB %7.0fMB %8.1f%% %8.1fs\n", r.c,
			r.deploy.Seconds(), ms(r.p50), ms(r.p99), r.rssDeploy, r.rssAvg, r.anonAvg, r.pssAvg, r.rssMax, r.total, r.idleCPU, r.destroy.Seconds())
	}
	// A netstack lab's agents beside those of the mesh of as many nodes
	// without workloads, same run: what 1,000 workloads add to an agent.
	for _, r := range results {
		if r.c.ns == 0 {
			continue
		}
		for _, base := range results {
			if base.c == (scaleCase{n: r.c.n}) {
				per := (r.rssAvg - base.rssAvg) * 1024 / float64(r.c.ns)
				fmt.Fprintf(&t, "%s: agent RSS %.1f MB with %d netstack workloads, %.1f MB without (mesh %d): %.1f MB per 1,000 workloads, %.0f kB each; idle CPU %.1f%% vs %.1f%%\n",
					r.c, r.rssAvg, r.c.ns, base.rssAvg, r.c.n, per*1000/1024, per, r.idleCPU, base.idleCPU)
				b.ReportMetric(per, "kB/netstack-workload")
			}
		}
		b.ReportMetric(r.deploy.Seconds(), "netstack-deploy-s")
	}
	b.Log(t.String())
}

// scaleSettle is how long after deploy the agents' memory is read: past
// the agent's start-up (startupPagesDelay in cmd/vrouter is 20 s).
const scaleSettle = 25 * time.Second

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func runScale(b *testing.B, c scaleCase) (r scaleResult) {
	r.c = c
	name := fmt.Sprintf("scale-%d", os.Getpid()%100000)
	file := scaleLab(b, name, c)
	start := time.Now()
	if out, err := benchRunFor(15*time.Minute, vrouterBin, "deploy", "-t", file, "--timeout", "10m"); err != nil {
		benchRunFor(5*time.Minute, vrouterBin, "destroy", "-t", file)
		b.Fatalf("%s: deploy: %v\n%.2000s", c, err, out)
	}
	r.deploy = time.Since(start)
	ready := time.Now()
	// Destroying a lab takes about a second per node on a loaded machine.
	destroyBound := 5*time.Minute + time.Duration(c.n)*time.Second
	destroyed := false
	defer func() {
		if !destroyed {
			benchRunFor(destroyBound, vrouterBin, "destroy", "-t", file)
		}
	}()
	dir := filepath.Join(topology.StateRoot, name)
	nodes := make([]string, c.n)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("n%d", i+1)
	}

	// Idle CPU of the agents, once BGP has settled.
	time.Sleep(2 * time.Second)
	var pids []int
	for _, n := range nodes {
		data, err := os.ReadFile(filepath.Join(dir, "nodes", n+".pid"))
		if err != nil {
			b.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		pids = append(pids, pid)
		r.rssDeploy += procRSS(pid)
	}
	r.rssDeploy /= float64(len(pids))
	t0, c0 := time.Now(), procCPU(pids)
	time.Sleep(5 * time.Second)
	r.idleCPU = float64(procCPU(pids)-c0) / 100 / time.Since(t0).Seconds() * 100

	// Convergence: each add claims a new block on a different node; the
	// time runs from the add's start until the last other node routes it.
	// (Not in a netstack lab: its blocks are IPAM's choice, the fixed
	// addresses below may be taken.)
	adds := 20
	if c.ns > 0 {
		adds = 0
	}
	var took []time.Duration
	for k := range adds {
		node := nodes[(k*7+3)%c.n]
		block := fmt.Sprintf("10.244.%d.0/26", k)
		start := time.Now()
		if out, err := benchRunFor(time.Minute, vrouterBin, "workload", "add", fmt.Sprintf("w%d", k), "--node", node,
			"--address", fmt.Sprintf("10.244.%d.1", k), "--lab", name); err != nil {
			b.Fatalf("%s: workload add: %v\n%s", c, err, out)
		}
		waitRouted(b, dir, nodes, node, block+" via ")
		took = append(took, time.Since(start))
	}
	if len(took) > 0 {
		slices.Sort(took)
		r.p50, r.p99 = took[len(took)/2], took[(len(took)*99+99)/100-1]
	}

	// Memory of the agents in steady state: after the adds, and once the
	// last agent started is past its start-up (when it drops the pages
	// of the binary that only start-up used: cmd/vrouter/agentmem.go).
	time.Sleep(time.Until(ready.Add(scaleSettle)))
	for _, pid := range pids {
		rss := procRSS(pid)
		r.total += rss
		r.rssMax = max(r.rssMax, rss)
		r.anonAvg += procMem(pid, "status", "RssAnon:")
		r.pssAvg += procMem(pid, "smaps_rollup", "Pss:")
	}
	r.rssAvg = r.total / float64(len(pids))
	r.anonAvg /= float64(len(pids))
	r.pssAvg /= float64(len(pids))

	start = time.Now()
	if out, err := benchRunFor(destroyBound, vrouterBin, "destroy", "-t", file); err != nil {
		b.Errorf("%s: destroy: %v\n%s", c, err, out)
	}
	destroyed = true
	r.destroy = time.Since(start)
	checkGone(b, name)
	return r
}

// waitRouted polls every node but owner until its FIB has a line starting
// with want.
func waitRouted(b *testing.B, dir string, nodes []string, owner, want string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pending := map[string]bool{}
	for _, n := range nodes {
		if n != owner {
			pending[n] = true
		}
	}
	for len(pending) > 0 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		var check []string
		for n := range pending {
			check = append(check, n)
		}
		for _, n := range check {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				routes, err := control.NewClient(lab.ControlSocket(dir, n)).Routes(ctx)
				if err == nil && strings.Contains("\n"+routes, "\n"+want) {
					mu.Lock()
					delete(pending, n)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			b.Fatalf("%d nodes still lack %q", len(pending), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// memAvailable returns the machine's available memory in MiB.
func memAvailable() float64 {
	return procMem(0, "", "MemAvailable:")
}

// procRSS returns a process's resident memory in MiB.
func procRSS(pid int) float64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// procMem returns a memory figure of a process in MiB: the line starting
// with key in /proc/pid/file (in kB); pid 0 reads /proc/meminfo.
func procMem(pid int, file, key string) float64 {
	path := fmt.Sprintf("/proc/%d/%s", pid, file)
	if pid == 0 {
		path = "/proc/meminfo"
	}
	data, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// procCPU returns the CPU time (user + system, clock ticks) of pids.
func procCPU(pids []int) int {
	total := 0
	for _, pid := range pids {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := strings.LastIndexByte(string(data), ')'); i > 0 {
			f := strings.Fields(string(data[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.Atoi(f[11])
				s, _ := strconv.Atoi(f[12])
				total += u + s
			}
		}
	}
	return total
}

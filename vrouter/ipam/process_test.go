package ipam

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
)

// The multi-process tests re-execute the test binary as node processes
// (TestHelperProcess) that share one store, the way a lab's node agents do:
// a bbolt file (IPAM_DB) or an etcd (IPAM_ETCD, its endpoints).
const helperEnv = "VROUTER_IPAM_TEST_HELPER"

// helperResult is one AutoAssign of a helper process.
type helperResult struct {
	Node      string        `json:"node"`
	Handle    string        `json:"handle"`
	Addr      netip.Addr    `json:"addr,omitzero"`
	Err       string        `json:"err,omitempty"`
	Exhausted bool          `json:"exhausted,omitempty"`
	Took      time.Duration `json:"took"`
}

// TestHelperProcess is a node process of the multi-process tests; run
// directly it does nothing. It opens the store, says READY, waits for a
// line on stdin (so that all processes start together), then runs WORKERS
// goroutines doing EACH AutoAssigns each and prints one RESULT line per
// assignment.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	if err := runHelper(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func runHelper() error {
	node := os.Getenv("IPAM_NODE")
	workers, err1 := strconv.Atoi(os.Getenv("IPAM_WORKERS"))
	each, err2 := strconv.Atoi(os.Getenv("IPAM_EACH"))
	blockSize, err3 := strconv.Atoi(os.Getenv("IPAM_BLOCKSIZE"))
	cidr, err4 := netip.ParsePrefix(os.Getenv("IPAM_POOL"))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return err
	}
	var store Datastore
	if eps := os.Getenv("IPAM_ETCD"); eps != "" {
		es, err := OpenEtcd(context.Background(), EtcdConfig{Endpoints: strings.Split(eps, ","), Timeout: 60 * time.Second})
		if err != nil {
			return err
		}
		defer es.Close()
		store = es
	} else {
		bs, err := OpenBolt(os.Getenv("IPAM_DB"))
		if err != nil {
			return err
		}
		store = bs
	}
	m, err := New(store, []Pool{{Name: "test-pool", CIDR: cidr, BlockSize: blockSize}}, Options{StrictAffinity: os.Getenv("IPAM_STRICT") == "1"})
	if err != nil {
		return err
	}
	fmt.Println("READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("waiting for the start: %w", err)
	}
	var mu sync.Mutex
	var results []helperResult
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := helperResult{Node: node, Handle: fmt.Sprintf("%s/%d/%d", node, w, i)}
				start := time.Now()
				addr, err := m.AutoAssign(context.Background(), AssignArgs{Node: node, Handle: r.Handle})
				r.Took = time.Since(start)
				if err != nil {
					r.Err = err.Error()
					r.Exhausted = errors.Is(err, ErrPoolExhausted)
				}
				r.Addr = addr
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Printf("RESULT %s\n", line)
	}
	return nil
}

// procStore is a new, empty store for node processes: how a helper opens
// it and how the test does.
type procStore struct {
	name string
	env  []string
	open func(t *testing.T) Datastore
}

// procStores are the backends the multi-process tests run on: a bbolt
// file, and etcd (Debian's etcd-server, started by the test).
var procStores = []struct {
	name string
	make func(t *testing.T) procStore
}{
	{"bolt", func(t *testing.T) procStore {
		path := filepath.Join(t.TempDir(), "ipam.db")
		return procStore{name: "bolt", env: []string{"IPAM_DB=" + path}, open: func(t *testing.T) Datastore {
			s, err := OpenBolt(path)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}}
	}},
	{"etcd", func(t *testing.T) procStore {
		srv := etcdtest.Start(t, etcdtest.Options{})
		return procStore{name: "etcd", env: []string{"IPAM_ETCD=" + strings.Join(srv.Endpoints, ",")}, open: func(t *testing.T) Datastore {
			return openTestEtcd(t, srv)
		}}
	}},
}

// forEachProcStore runs test as a subtest on each backend.
func forEachProcStore(t *testing.T, test func(t *testing.T, st procStore)) {
	for _, ps := range procStores {
		t.Run(ps.name, func(t *testing.T) {
			if testing.Short() {
				t.Skip("starts processes")
			}
			test(t, ps.make(t))
		})
	}
}

// runNodeProcesses runs nodes helper processes named node-0, node-1, … on
// one new store and returns their results and the store.
func runNodeProcesses(t *testing.T, st procStore, pool Pool, opts Options, nodes, workers, each int) ([]helperResult, Datastore) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	type proc struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		stdout *bufio.Scanner
		stderr bytes.Buffer
	}
	procs := make([]*proc, nodes)
	for i := range procs {
		p := &proc{}
		p.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		p.cmd.Env = append(os.Environ(),
			helperEnv+"=1",
			fmt.Sprint("IPAM_NODE=node-", i),
			"IPAM_POOL="+pool.CIDR.String(),
			fmt.Sprint("IPAM_BLOCKSIZE=", pool.BlockSize),
			fmt.Sprint("IPAM_WORKERS=", workers),
			fmt.Sprint("IPAM_EACH=", each),
		)
		p.cmd.Env = append(p.cmd.Env, st.env...)
		if opts.StrictAffinity {
			p.cmd.Env = append(p.cmd.Env, "IPAM_STRICT=1")
		}
		p.cmd.Stderr = &p.stderr
		var err error
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p.stdout = bufio.NewScanner(out)
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = p
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if p.cmd.ProcessState == nil {
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
		}
	})
	// All open the store and are ready; then they start at once.
	for i, p := range procs {
		for {
			if !p.stdout.Scan() {
				p.cmd.Wait()
				t.Fatalf("node-%d ended before READY: %s", i, p.stderr.String())
			}
			if p.stdout.Text() == "READY" {
				break
			}
		}
	}
	for _, p := range procs {
		if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
		p.stdin.Close()
	}
	var results []helperResult
	for i, p := range procs {
		for p.stdout.Scan() {
			line, ok := strings.CutPrefix(p.stdout.Text(), "RESULT ")
			if !ok {
				continue
			}
			var r helperResult
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("node-%d: %v in %q", i, err, line)
			}
			results = append(results, r)
		}
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("node-%d: %v\n%s", i, err, p.stderr.String())
		}
	}
	if len(results) != nodes*workers*each {
		t.Fatalf("%d results, want %d", len(results), nodes*workers*each)
	}
	var took []time.Duration
	for _, r := range results {
		took = append(took, r.Took)
	}
	slices.Sort(took)
	t.Logf("%s: %d AutoAssigns from %d processes × %d goroutines: latency median %v, p90 %v, p99 %v, max %v",
		st.name, len(took), nodes, workers, took[len(took)/2], took[len(took)*9/10], took[len(took)*99/100], took[len(took)-1])
	return results, st.open(t)
}

// checkAgainstStore checks that the successful results are exactly the
// store's allocations, each for the node that asked and in a block affine
// to it, with no address twice, and returns the blocks by node.
func checkAgainstStore(t *testing.T, results []helperResult, store Datastore) map[string][]Block {
	t.Helper()
	byAddr := map[netip.Addr]helperResult{}
	for _, r := range results {
		if r.Err != "" {
			continue
		}
		if prev, dup := byAddr[r.Addr]; dup {
			t.Fatalf("%s handed out twice: to %s and %s", r.Addr, prev.Handle, r.Handle)
		}
		byAddr[r.Addr] = r
	}
	as := checkConsistent(t, store) // allocation node == block affinity, handles add up
	if len(as) != len(byAddr) {
		t.Errorf("store holds %d allocations, processes got %d addresses", len(as), len(byAddr))
	}
	for _, a := range as {
		r, ok := byAddr[a.Addr]
		if !ok {
			t.Errorf("store has %s for %s, which no process got", a.Addr, a.Handle)
			continue
		}
		if a.Handle != r.Handle || a.Node != r.Node {
			t.Errorf("%s: store has handle %s node %s, process got it for %s on %s", a.Addr, a.Handle, a.Node, r.Handle, r.Node)
		}
	}
	var blocks []Block
	mustView(t, store, func(tx Tx) error {
		var err error
		blocks, err = tx.Blocks()
		return err
	})
	byNode := map[string][]Block{}
	for _, b := range blocks {
		if b.Affinity == "" {
			t.Errorf("block %s has no affinity", b.CIDR)
		}
		byNode[b.Affinity] = append(byNode[b.Affinity], b)
	}
	return byNode
}

// Eight node processes, four goroutines each, claim blocks and addresses
// from one small pool at the same time.
func TestMultiProcessAssign(t *testing.T) { forEachProcStore(t, testMultiProcessAssign) }

func testMultiProcessAssign(t *testing.T, st procStore) {
	// 16 blocks of 16 addresses; each node needs 20 addresses, so exactly
	// two blocks: the pool ends up fully claimed, and every claim but the
	// last ones races with others.
	pool := Pool{Name: "test-pool", CIDR: pp("10.99.0.0/24"), BlockSize: 28}
	const nodes, workers, each = 8, 4, 5
	results, store := runNodeProcesses(t, st, pool, Options{}, nodes, workers, each)
	for _, r := range results {
		if r.Err != "" {
			t.Fatalf("%s: %s", r.Handle, r.Err)
		}
		if !pool.CIDR.Contains(r.Addr) {
			t.Fatalf("%s got %s, outside the pool", r.Handle, r.Addr)
		}
	}
	byNode := checkAgainstStore(t, results, store)
	if len(byNode) != nodes {
		t.Errorf("%d nodes hold blocks, want %d", len(byNode), nodes)
	}
	total := 0
	for node, bs := range byNode {
		total += len(bs)
		if len(bs) != 2 {
			t.Errorf("%s holds %d blocks, want 2", node, len(bs))
		}
		n := 0
		for _, b := range bs {
			n += len(b.Allocations)
		}
		if n != workers*each {
			t.Errorf("%s has %d addresses, want %d", node, n, workers*each)
		}
	}
	if total != 16 {
		t.Errorf("%d blocks claimed, want all 16", total)
	}
}

// More node processes than blocks, with strict affinity: the ones that get
// no block (or fill theirs) fail with the pool-exhausted error, and nothing
// is handed out twice.
func TestMultiProcessPoolExhaustionStrict(t *testing.T) {
	forEachProcStore(t, testMultiProcessPoolExhaustionStrict)
}

func testMultiProcessPoolExhaustionStrict(t *testing.T, st procStore) {
	// 4 blocks of 16 for 8 nodes wanting 20 addresses each.
	pool := Pool{Name: "test-pool", CIDR: pp("10.98.0.0/26"), BlockSize: 28}
	const nodes, workers, each = 8, 4, 5
	results, store := runNodeProcesses(t, st, pool, Options{StrictAffinity: true}, nodes, workers, each)
	// Refusals come before or after the other nodes fill their blocks.
	msgs := []string{
		"pool test-pool (10.98.0.0/26) has no free /28 block and strict affinity forbids borrowing",
		"pool test-pool (10.98.0.0/26) has no free /28 block and no free address to borrow",
	}
	failed := map[string]int{}
	ok := 0
	for _, r := range results {
		switch {
		case r.Err == "":
			ok++
		case slices.Contains(msgs, r.Err) && r.Exhausted:
			failed[r.Node]++
		default:
			t.Fatalf("%s: unexpected error %q", r.Handle, r.Err)
		}
	}
	byNode := checkAgainstStore(t, results, store)
	blocks := 0
	for node, bs := range byNode {
		blocks += len(bs)
		for _, b := range bs {
			// A node is told the pool is exhausted only when its own
			// blocks are full (and, without borrowing, they stay full).
			if failed[node] > 0 && b.NumFree() > 0 {
				t.Errorf("%s was refused an address but its block %s has %d free", node, b.CIDR, b.NumFree())
			}
			for o := range b.Allocations {
				if b.Borrowed(o) {
					t.Errorf("%s in %s borrowed under strict affinity", b.Addr(o), b.CIDR)
				}
			}
		}
	}
	if blocks != 4 {
		t.Errorf("%d blocks claimed, want all 4", blocks)
	}
	// Each node gets what its blocks hold, up to what it asked for, and is
	// refused the rest.
	for i := range nodes {
		node := fmt.Sprint("node-", i)
		want := min(workers*each, 16*len(byNode[node]))
		if got := workers*each - failed[node]; got != want {
			t.Errorf("%s with %d blocks got %d addresses, want %d", node, len(byNode[node]), got, want)
		}
	}
	t.Logf("%d assigned, %d refused; blocks per node: %v", ok, len(results)-ok, blockCounts(byNode))
}

// More node processes than blocks, borrowing allowed (Calico's default):
// nodes without a block borrow from the others, so every address of the
// pool is handed out exactly once before anyone is refused.
func TestMultiProcessPoolExhaustionBorrowing(t *testing.T) {
	forEachProcStore(t, testMultiProcessPoolExhaustionBorrowing)
}

func testMultiProcessPoolExhaustionBorrowing(t *testing.T, st procStore) {
	pool := Pool{Name: "test-pool", CIDR: pp("10.98.0.0/26"), BlockSize: 28}
	const nodes, workers, each = 8, 4, 5
	results, store := runNodeProcesses(t, st, pool, Options{}, nodes, workers, each)
	const msg = "pool test-pool (10.98.0.0/26) has no free /28 block and no free address to borrow"
	ok := 0
	for _, r := range results {
		switch {
		case r.Err == "":
			ok++
		case r.Err == msg && r.Exhausted:
		default:
			t.Fatalf("%s: unexpected error %q", r.Handle, r.Err)
		}
	}
	if ok != 64 {
		t.Errorf("%d addresses assigned, want all 64 of the pool", ok)
	}
	byNode := checkAgainstStore(t, results, store)
	blocks, borrowed := 0, 0
	for _, bs := range byNode {
		blocks += len(bs)
		for _, b := range bs {
			if b.NumFree() != 0 {
				t.Errorf("block %s has %d free after refusals", b.CIDR, b.NumFree())
			}
			for o := range b.Allocations {
				if b.Borrowed(o) {
					borrowed++
				}
			}
		}
	}
	if blocks != 4 {
		t.Errorf("%d blocks claimed, want all 4", blocks)
	}
	// 8 nodes, 4 blocks: at least the 4 blockless nodes borrowed.
	if borrowed == 0 {
		t.Error("no address was borrowed")
	}
	t.Logf("%d assigned (%d borrowed), %d refused; blocks per node: %v", ok, borrowed, len(results)-ok, blockCounts(byNode))
}

func blockCounts(byNode map[string][]Block) map[string]int {
	out := map[string]int{}
	for n, bs := range byNode {
		out[n] = len(bs)
	}
	return out
}

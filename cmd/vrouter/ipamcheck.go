package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/agent"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
)

// ipamTarget is what `ipam check` and `ipam release` act on: a datastore
// and what is known of the cluster's nodes and workloads.
type ipamTarget struct {
	store agent.Datastore
	// nodes are the nodes that exist (a lab's, or the Node resources in
	// etcd); nil: unknown.
	nodes map[string]bool
	// sockets are the control sockets of nodes whose agents can say
	// which workloads they serve (a lab's nodes).
	sockets map[string]string
	where   string
}

// ipamTargetFlags select an ipamTarget: --lab, --db or the etcd flags.
type ipamTargetFlags struct {
	ds  datastoreFlags
	db  string
	lab func() (*lab.State, error)
}

func (f *ipamTargetFlags) register(cmd *cobra.Command) {
	f.ds.register(cmd)
	cmd.Flags().StringVar(&f.db, "db", "", "the bbolt datastore file (for --datastore bbolt)")
	resolve := labNameFlag(cmd)
	f.lab = func() (*lab.State, error) {
		name, err := resolve()
		if err != nil {
			return nil, err
		}
		return lab.Load(name)
	}
}

// open opens the target: with --lab, the lab's nodes (and its bbolt file
// unless --datastore etcd); otherwise the --db file or etcd, whose Node
// resources, if any, are the nodes.
func (f *ipamTargetFlags) open(cmd *cobra.Command) (*ipamTarget, error) {
	t := &ipamTarget{}
	if !cmd.Flags().Changed("datastore") && f.db == "" {
		// A lab on etcd: its cluster, reached through the lab's etcd
		// network.
		if st, err := f.lab(); err == nil && st.Etcd != nil {
			t.where = "lab " + st.Name
			t.nodes, t.sockets = map[string]bool{}, map[string]string{}
			for _, n := range st.Nodes {
				t.nodes[n.Name] = true
				t.sockets[n.Name] = n.Control
			}
			store, err := st.OpenEtcd(cmd.Context())
			if err != nil {
				return nil, err
			}
			t.store = store
			return t, nil
		}
	}
	cfg := &config.Node{Datastore: f.db}
	if err := f.ds.apply(cmd, cfg); err != nil {
		return nil, err
	}
	etcd := cfg.DatastoreType == config.DatastoreEtcd
	if cmd.Flags().Changed("lab") || (!etcd && f.db == "") {
		st, err := f.lab()
		if err != nil {
			return nil, err
		}
		t.nodes, t.sockets = map[string]bool{}, map[string]string{}
		for _, n := range st.Nodes {
			t.nodes[n.Name] = true
			t.sockets[n.Name] = n.Control
		}
		t.where = "lab " + st.Name
		if !etcd {
			cfg.Datastore = filepath.Join(st.Dir, "ipam.db")
			// A lab on etcd: its nodes' configs say where.
			if len(st.Nodes) > 0 {
				if nc, err := config.LoadNodeFile(st.Nodes[0].Config); err == nil && nc.DatastoreType == config.DatastoreEtcd {
					cfg.DatastoreType, cfg.Etcd, etcd = nc.DatastoreType, nc.Etcd, true
				}
			}
		}
	}
	if !etcd {
		if _, err := os.Stat(cfg.Datastore); err != nil {
			return nil, fmt.Errorf("datastore file: %w", err)
		}
	}
	store, err := agent.OpenDatastore(cmd.Context(), cfg)
	if err != nil {
		return nil, err
	}
	t.store = store
	if es, ok := store.(*ipam.EtcdStore); ok && t.nodes == nil {
		rs, err := resources.FromIPAM(es).List(cmd.Context(), resources.KindNode)
		if err != nil {
			store.Close()
			return nil, err
		}
		if len(rs) > 0 {
			t.nodes = map[string]bool{}
			for _, r := range rs {
				t.nodes[r.Meta().Name] = true
			}
			t.where = "the Node resources in " + es.Where()
		}
	}
	return t, nil
}

func newIPAMCheckCommand() *cobra.Command {
	var tf ipamTargetFlags
	cmd := &cobra.Command{
		Use:   "check [--lab LAB | --db FILE | --datastore etcd --etcd-endpoints URL,...]",
		Short: "Look for leaked addresses and blocks, as 'calicoctl ipam check' does",
		Long: `check reads every IPAM block and handle and reports, as calicoctl ipam check
does: addresses allocated to workloads that no longer exist, addresses and
blocks of nodes that are gone, and allocations whose handle does not
record them. It exits with status 1 when it finds a problem.

What exists comes from a lab (--lab, or the only deployed lab: its nodes,
and the workloads each node's agent serves; its datastore, the bbolt file
or the etcd its nodes use, unless --datastore is given too) or, for etcd alone, from the Node resources
registered there (agents with meshFromDatastore). Without either, only the
datastore's own consistency is checked. Release what it reports with
'vrouter ipam release'.`,
		Example: "  vrouter ipam check --lab calico-bgp\n" +
			"  vrouter ipam check --datastore etcd --etcd-endpoints http://10.0.0.1:2379",
		Args: cobra.NoArgs,
	}
	tf.register(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, err := tf.open(cmd)
		if err != nil {
			return err
		}
		defer t.store.Close()
		problems, err := checkIPAM(cmd.Context(), cmd.OutOrStdout(), t)
		if err != nil {
			return err
		}
		if problems > 0 {
			cmd.SilenceUsage = true
			return fmt.Errorf("ipam check: %d problem(s)", problems)
		}
		return nil
	}
	return cmd
}

// liveWorkloads asks each node's agent what it serves: node → workload
// names and tunl0 address; nodes whose agent does not answer are absent.
func liveWorkloads(ctx context.Context, w io.Writer, sockets map[string]string) (map[string]map[string]bool, map[string]netip.Addr) {
	live := map[string]map[string]bool{}
	tunnels := map[string]netip.Addr{}
	for _, node := range slices.Sorted(func(yield func(string) bool) {
		for n := range sockets {
			if !yield(n) {
				return
			}
		}
	}) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := control.NewClient(sockets[node]).Status(cctx)
		cancel()
		if err != nil {
			fmt.Fprintf(w, "  node %s: agent not answering, its workloads not checked (%v)\n", node, err)
			continue
		}
		live[node] = map[string]bool{}
		for _, wl := range s.Workloads {
			live[node][wl.Name] = true
		}
		tunnels[node] = s.TunnelAddress
	}
	return live, tunnels
}

// checkIPAM prints calicoctl ipam check's report and returns the number
// of problems.
func checkIPAM(ctx context.Context, w io.Writer, t *ipamTarget) (int, error) {
	var blocks []ipam.Block
	var handles []ipam.Handle
	err := t.store.View(ctx, func(tx ipam.Tx) error {
		var err error
		if blocks, err = tx.Blocks(); err != nil {
			return err
		}
		handles, err = tx.Handles()
		return err
	})
	if err != nil {
		return 0, err
	}
	fmt.Fprintln(w, "Checking IPAM for inconsistencies...")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Loading all IPAM blocks...")
	fmt.Fprintf(w, "Found %d IPAM blocks.\n", len(blocks))
	allocs := 0
	perNode := map[string]int{}
	for _, b := range blocks {
		fmt.Fprintf(w, " IPAM block %s affinity=host:%s:\n", b.CIDR, b.Affinity)
		allocs += len(b.Allocations)
		for _, a := range b.Allocations {
			perNode[a.Node]++
		}
	}
	fmt.Fprintf(w, "IPAM blocks record %d allocations.\n\n", allocs)

	var live map[string]map[string]bool
	var tunnels map[string]netip.Addr
	if t.nodes == nil {
		fmt.Fprintln(w, "No node list (give --lab, or register nodes in etcd): node and workload checks skipped.")
	} else {
		fmt.Fprintf(w, "Loading all nodes (from %s).\nFound %d nodes.\n", t.where, len(t.nodes))
		if len(t.sockets) > 0 {
			fmt.Fprintln(w, "Loading all workloads from the nodes' agents.")
			live, tunnels = liveWorkloads(ctx, w, t.sockets)
			n := 0
			for _, ws := range live {
				n += len(ws)
			}
			fmt.Fprintf(w, "Found %d workload IPs.\n", n)
		}
	}
	fmt.Fprintln(w)
	type nodeCount struct {
		node string
		n    int
	}
	var top []nodeCount
	for n, c := range perNode {
		top = append(top, nodeCount{n, c})
	}
	sort.Slice(top, func(i, j int) bool { return top[i].n > top[j].n || top[i].n == top[j].n && top[i].node < top[j].node })
	fmt.Fprintln(w, "Looking for top (up to 20) nodes by allocations...")
	for i, nc := range top {
		if i == 20 {
			break
		}
		fmt.Fprintf(w, "  %s has %d allocations\n", nc.node, nc.n)
	}
	fmt.Fprintln(w)

	problems := 0
	report := func(format string, a ...any) {
		problems++
		fmt.Fprintf(w, "  "+format+"\n", a...)
	}
	fmt.Fprintln(w, "Scanning for IPs that are allocated but not actually in use...")
	notInUse := 0
	handleCount := map[string]map[netip.Prefix]int{}
	for _, b := range blocks {
		for _, o := range slices.Sorted(func(yield func(int) bool) {
			for o := range b.Allocations {
				if !yield(o) {
					return
				}
			}
		}) {
			a := b.Allocations[o]
			addr := b.Addr(o)
			if handleCount[a.Handle] == nil {
				handleCount[a.Handle] = map[netip.Prefix]int{}
			}
			handleCount[a.Handle][b.CIDR]++
			switch {
			case t.nodes != nil && a.Node != "" && !t.nodes[a.Node]:
				notInUse++
				report("%s leaked: allocated to node %s, which is gone (handle %s)", addr, a.Node, a.Handle)
			case a.Attrs["type"] == "ipipTunnelAddress":
				if tun, ok := tunnels[a.Node]; ok && tun != addr {
					notInUse++
					report("%s leaked: tunnel address of node %s, whose tunl0 has %v (handle %s)", addr, a.Node, tun, a.Handle)
				}
			case a.Attrs["workload"] != "":
				if ws, ok := live[a.Node]; ok && !ws[a.Attrs["workload"]] {
					notInUse++
					report("%s leaked: allocated to workload %s on node %s, which does not serve it (handle %s)", addr, a.Attrs["workload"], a.Node, a.Handle)
				}
			}
		}
	}
	fmt.Fprintf(w, "Found %d IPs that are allocated in IPAM but not actually in use.\n", notInUse)

	fmt.Fprintln(w, "Scanning for blocks affine to nodes that are gone...")
	gone := 0
	if t.nodes != nil {
		for _, b := range blocks {
			if b.Affinity != "" && !t.nodes[b.Affinity] {
				gone++
				report("block %s is affine to node %s, which is gone (%d addresses in use)", b.CIDR, b.Affinity, len(b.Allocations))
			}
		}
	}
	fmt.Fprintf(w, "Found %d blocks affine to nodes that are gone.\n", gone)

	fmt.Fprintln(w, "Scanning for allocations and handles that disagree...")
	bad := 0
	recorded := map[string]ipam.Handle{}
	for _, h := range handles {
		recorded[h.ID] = h
	}
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range handleCount {
			if !yield(id) {
				return
			}
		}
	}) {
		h, ok := recorded[id]
		if !ok {
			bad++
			report("handle %s holds addresses but has no handle record", id)
			continue
		}
		for cidr, n := range handleCount[id] {
			if h.Blocks[cidr] != n {
				bad++
				report("handle %s records %d addresses in %s, the block %d", id, h.Blocks[cidr], cidr, n)
			}
		}
	}
	for _, h := range handles {
		if _, ok := handleCount[h.ID]; !ok {
			bad++
			report("handle %s records addresses no block holds", h.ID)
		}
	}
	fmt.Fprintf(w, "Found %d allocations and handles that disagree.\n\n", bad)
	fmt.Fprintf(w, "Check complete; found %d problems.\n", problems)
	return problems, nil
}

func newIPAMReleaseCommand() *cobra.Command {
	var tf ipamTargetFlags
	var ips []string
	var node string
	var force bool
	cmd := &cobra.Command{
		Use:   "release (--ip ADDR... | --node NODE) [--lab LAB | --db FILE | --datastore etcd --etcd-endpoints URL,...]",
		Short: "Release leaked addresses, or a gone node's addresses and blocks, as 'calicoctl ipam release' does",
		Long: `release gives addresses back to IPAM: --ip releases each address given,
whichever handle holds it; --node releases every address allocated to a
node that is gone, then every block affine to it. A node that still exists
(a lab's, or registered in etcd) is refused unless --force: its agent
would keep serving addresses IPAM hands out again. Find leaks with
'vrouter ipam check'.`,
		Example: "  vrouter ipam release --ip 10.244.197.5 --lab calico-bgp\n" +
			"  vrouter ipam release --node node4 --datastore etcd --etcd-endpoints http://10.0.0.1:2379",
		Args: cobra.NoArgs,
	}
	tf.register(cmd)
	cmd.Flags().StringSliceVar(&ips, "ip", nil, "an address to release (repeatable, or comma-separated)")
	cmd.Flags().StringVar(&node, "node", "", "a gone node whose addresses and blocks to release")
	cmd.Flags().BoolVar(&force, "force", false, "release a node's addresses and blocks even though the node exists")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if (len(ips) == 0) == (node == "") {
			return errors.New("give --ip ADDR or --node NODE")
		}
		var addrs []netip.Addr
		for _, s := range ips {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("--ip %q is not an address", s)
			}
			addrs = append(addrs, a)
		}
		t, err := tf.open(cmd)
		if err != nil {
			return err
		}
		defer t.store.Close()
		if node != "" && t.nodes[node] && !force {
			return fmt.Errorf("node %s exists (%s): release its addresses only once it is gone, or give --force", node, t.where)
		}
		return releaseIPAM(cmd.Context(), cmd.OutOrStdout(), t.store, addrs, node)
	}
	return cmd
}

// releaseIPAM releases addrs, or node's addresses and then its blocks.
func releaseIPAM(ctx context.Context, w io.Writer, store ipam.Datastore, addrs []netip.Addr, node string) error {
	var blocks []ipam.Block
	if err := store.View(ctx, func(tx ipam.Tx) error {
		var err error
		blocks, err = tx.Blocks()
		return err
	}); err != nil {
		return err
	}
	// IPAM finds an address's block through its pool: one pool per
	// block, as big as the block, does.
	forBlock := func(b ipam.Block) (*ipam.IPAM, error) {
		return ipam.New(store, []ipam.Pool{{Name: "block", CIDR: b.CIDR, BlockSize: b.CIDR.Bits()}})
	}
	release := func(addr netip.Addr) error {
		for _, b := range blocks {
			if !b.CIDR.Contains(addr) {
				continue
			}
			m, err := forBlock(b)
			if err != nil {
				return err
			}
			if o, _ := b.Ordinal(addr); b.Allocations[o].Handle == "" {
				fmt.Fprintf(w, "%s is not allocated\n", addr)
				return nil
			}
			if err := m.ReleaseAddress(ctx, addr); err != nil {
				return err
			}
			fmt.Fprintf(w, "Successfully released %s\n", addr)
			return nil
		}
		fmt.Fprintf(w, "%s is in no block\n", addr)
		return nil
	}
	if node == "" {
		for _, a := range addrs {
			if err := release(a); err != nil {
				return err
			}
		}
		return nil
	}
	n := 0
	for _, b := range blocks {
		for o, a := range b.Allocations {
			if a.Node != node {
				continue
			}
			if err := release(b.Addr(o)); err != nil {
				return err
			}
			n++
		}
	}
	released := 0
	for _, b := range blocks {
		if b.Affinity != node {
			continue
		}
		m, err := forBlock(b)
		if err != nil {
			return err
		}
		got, err := m.ReleaseNodeBlocks(ctx, node)
		if err != nil {
			return err
		}
		for _, p := range got {
			fmt.Fprintf(w, "Successfully released block %s of node %s\n", p, node)
		}
		released += len(got)
	}
	fmt.Fprintf(w, "Released %d addresses and %d blocks of node %s\n", n, released, node)
	return nil
}

package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vrouter-lab/vrouter/vrouter/ipam"
)

// A node agent assigns a workload address, routes its node's blocks and
// releases the address when the workload goes.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "lab")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The lab's shared datastore: node processes each open the same file.
	store, err := ipam.OpenBolt(filepath.Join(dir, "ipam.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	m, err := ipam.New(store, []ipam.Pool{
		{Name: "default-ipv4-ippool", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26},
	})
	if err != nil {
		log.Fatal(err)
	}

	web1 := ipam.AssignArgs{Node: "node1", Handle: "calico-bgp.web-1", Attrs: map[string]string{"workload": "web-1"}}
	addr, err := m.AutoAssign(ctx, web1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s dev cali0123456789a scope link\n", addr)

	blocks, err := m.BlocksForNode(ctx, "node1")
	if err != nil {
		log.Fatal(err)
	}
	for _, b := range blocks {
		fmt.Printf("blackhole %s proto bird\n", b.CIDR)
	}

	// After a restart the agent finds the workload's address by its handle.
	again, err := m.AddressByHandle(ctx, "calico-bgp.web-1")
	fmt.Println(again == addr, err)

	if err := m.ReleaseByHandle(ctx, "calico-bgp.web-1"); err != nil {
		log.Fatal(err)
	}
	_, err = m.AddressByHandle(ctx, "calico-bgp.web-1")
	fmt.Println(errors.Is(err, ipam.ErrNotFound))
	// Output:
	// 10.244.197.0 dev cali0123456789a scope link
	// blackhole 10.244.197.0/26 proto bird
	// true <nil>
	// true
}

// A node whose pool has no block left borrows an address from another
// node's block; with strict affinity it gets a clear error instead.
func ExamplePoolExhaustedError() {
	ctx := context.Background()
	pools := []ipam.Pool{{Name: "tiny", CIDR: netip.MustParsePrefix("10.0.0.0/26"), BlockSize: 26}}
	store := ipam.NewMemStore()
	strict, err := ipam.New(store, pools, ipam.Options{StrictAffinity: true})
	if err != nil {
		log.Fatal(err)
	}
	a, _ := strict.AutoAssign(ctx, ipam.AssignArgs{Node: "node1", Handle: "w1"})
	_, err = strict.AutoAssign(ctx, ipam.AssignArgs{Node: "node2", Handle: "w2"})
	fmt.Println(a)
	fmt.Println(err)
	fmt.Println(errors.Is(err, ipam.ErrPoolExhausted))

	m, _ := ipam.New(store, pools) // borrowing allowed, the default
	b, err := m.AutoAssign(ctx, ipam.AssignArgs{Node: "node2", Handle: "w2"})
	fmt.Println(b, err)
	// Output:
	// 10.0.0.0
	// pool tiny (10.0.0.0/26) has no free /26 block and strict affinity forbids borrowing
	// true
	// 10.0.0.1 <nil>
}

// A node agent routes the addresses its node borrowed: each is a local /32
// to its workload, like any other, and announced over BGP as a /32 besides
// the node's blocks. The block's owner keeps blackholing and announcing the
// whole block; longest-prefix match sends the /32 to the borrower.
func ExampleIPAM_BorrowedByNode() {
	ctx := context.Background()
	// 4 blocks of 4 addresses for 5 nodes.
	m, _ := ipam.New(ipam.NewMemStore(), []ipam.Pool{
		{Name: "lab", CIDR: netip.MustParsePrefix("10.244.0.0/28"), BlockSize: 30},
	})
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		_, _ = m.AutoAssign(ctx, ipam.AssignArgs{Node: n, Handle: "lab.web-" + n})
	}
	addr, _ := m.AutoAssign(ctx, ipam.AssignArgs{Node: "n5", Handle: "lab.web-n5"})
	fmt.Printf("n5: %s dev cali0123456789a scope link\n", addr)

	blocks, _ := m.BlocksForNode(ctx, "n5")
	for _, b := range blocks {
		fmt.Printf("n5: blackhole %s proto bird; announce %s\n", b.CIDR, b.CIDR)
	}
	borrowed, _ := m.BorrowedByNode(ctx, "n5")
	for _, a := range borrowed {
		fmt.Printf("n5: announce %s\n", netip.PrefixFrom(a, a.BitLen()))
	}
	blocks, _ = m.BlocksForNode(ctx, "n1")
	for _, b := range blocks {
		fmt.Printf("n1: blackhole %s proto bird; announce %s\n", b.CIDR, b.CIDR)
	}

	as, _ := m.Allocations(ctx)
	for _, a := range as {
		if a.Borrowed {
			fmt.Printf("%s in %s (host:%s) is borrowed by %s\n", a.Addr, a.Block, a.Affinity, a.Node)
		}
	}
	// Output:
	// n5: 10.244.0.1 dev cali0123456789a scope link
	// n5: announce 10.244.0.1/32
	// n1: blackhole 10.244.0.0/30 proto bird; announce 10.244.0.0/30
	// 10.244.0.1 in 10.244.0.0/30 (host:n1) is borrowed by n5
}

// Listing addresses like `calicoctl ipam show --show-blocks` does.
func ExampleIPAM_Allocations() {
	ctx := context.Background()
	m, _ := ipam.New(ipam.NewMemStore(), []ipam.Pool{
		{Name: "default-ipv4-ippool", CIDR: netip.MustParsePrefix("10.244.0.0/16")},
	})
	_ = m.AssignIP(ctx, netip.MustParseAddr("10.244.166.128"), ipam.AssignArgs{Node: "node1", Handle: "lab.web-1"})
	_, _ = m.AutoAssign(ctx, ipam.AssignArgs{Node: "node2", Handle: "lab.web-2"})
	_ = m.AssignIP(ctx, netip.MustParseAddr("10.244.166.130"), ipam.AssignArgs{Node: "node2", Handle: "lab.web-3"})
	as, _ := m.Allocations(ctx)
	for _, a := range as {
		fmt.Println(a.Addr, a.Block, "host:"+a.Affinity, a.Node, a.Handle, a.Borrowed)
	}
	// Output:
	// 10.244.11.64 10.244.11.64/26 host:node2 node2 lab.web-2 false
	// 10.244.166.128 10.244.166.128/26 host:node1 node1 lab.web-1 false
	// 10.244.166.130 10.244.166.128/26 host:node1 node2 lab.web-3 true
}

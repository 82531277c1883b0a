package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
)

// Pools the conformance suite uses. Block starts are FNV-1a(node) modulo
// the number of blocks, computed independently of the package:
//
//	node   FNV-1a 64            %1024  %16  %4
//	node1  0xca4eba7207232f14     788    4   0
//	node2  0xca4ebd720723342d      45   13   1
//	node3  0xca4ebc720723327a     634   10   2
//	b      0xaf63df4c8601f1a5     421    5   1
//	n1     0x08b37b07b558d4c0     192    0   0
//	n2     0x08b37e07b558d9d9     473    9   1
//	n3     0x08b37d07b558d826      38    6   2
//	n4     0x08b38007b558dd3f     319   15   3
//	n5     0x08b37f07b558db8c     908   12   0
var (
	// 1024 blocks of 64.
	bigPool = Pool{Name: "default-ipv4-ippool", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}
	// 16 blocks of 16.
	smallPool = Pool{Name: "small", CIDR: netip.MustParsePrefix("10.0.0.0/24"), BlockSize: 28}
	// 4 blocks of 16.
	tinyPool = Pool{Name: "tiny", CIDR: netip.MustParsePrefix("10.0.0.0/26"), BlockSize: 28}
	// 4 blocks of 4, for borrowing.
	borrowPool = Pool{Name: "lab", CIDR: netip.MustParsePrefix("10.244.0.0/28"), BlockSize: 30}
)

// strictAffinity is the Options of an IPAM that never borrows.
var strictAffinity = Options{StrictAffinity: true}

// mustNew returns an IPAM over ds with opts.
func mustNew(t *testing.T, ds Datastore, opts Options, pools ...Pool) *IPAM {
	t.Helper()
	m, err := New(ds, pools, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	ap = netip.MustParseAddr
	pp = netip.MustParsePrefix
)

// testDatastoreConformance checks that a Datastore backend keeps the
// Datastore and Tx contract and that IPAM over it keeps its promises. open
// must return a new, empty store each time and arrange its cleanup with
// t.Cleanup. Every backend (MemStore, BoltStore, later etcd) runs it.
func testDatastoreConformance(t *testing.T, open func(t *testing.T) Datastore) {
	ctx := context.Background()
	newIPAM := func(t *testing.T, pools ...Pool) (*IPAM, Datastore) {
		t.Helper()
		ds := open(t)
		m, err := New(ds, pools)
		if err != nil {
			t.Fatal(err)
		}
		return m, ds
	}

	// --- the Datastore and Tx contract ---

	t.Run("Records", func(t *testing.T) {
		ds := open(t)
		b1 := Block{CIDR: pp("10.0.100.0/26"), Affinity: "node1", Allocations: map[int]Allocation{
			0:  {Handle: "h1", Node: "node1", Attrs: map[string]string{"workload": "web-1"}},
			63: {Handle: "h2", Node: "node1"},
		}}
		b2 := Block{CIDR: pp("10.0.11.0/26"), Allocations: map[int]Allocation{}}
		b3 := Block{CIDR: pp("10.0.2.0/26"), Affinity: "node2", Allocations: map[int]Allocation{}}
		h1 := Handle{ID: "h1", Blocks: map[netip.Prefix]int{b1.CIDR: 1}}
		h0 := Handle{ID: "a-handle", Blocks: map[netip.Prefix]int{b3.CIDR: 2, b1.CIDR: 1}}
		err := ds.View(ctx, func(tx Tx) error {
			if _, err := tx.Block(b1.CIDR); !errors.Is(err, ErrNotFound) {
				t.Errorf("Block on empty store: err = %v, want ErrNotFound", err)
			}
			if _, err := tx.Handle("h1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Handle on empty store: err = %v, want ErrNotFound", err)
			}
			bs, err := tx.Blocks()
			if err != nil || len(bs) != 0 {
				t.Errorf("Blocks on empty store = %v, %v", bs, err)
			}
			hs, err := tx.Handles()
			if err != nil || len(hs) != 0 {
				t.Errorf("Handles on empty store = %v, %v", hs, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		mustUpdate(t, ds, func(tx Tx) error {
			for _, b := range []Block{b1, b2, b3} {
				if err := tx.PutBlock(b); err != nil {
					return err
				}
			}
			if err := tx.PutHandle(h1); err != nil {
				return err
			}
			return tx.PutHandle(h0)
		})
		mustView(t, ds, func(tx Tx) error {
			got, err := tx.Block(b1.CIDR)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(got, b1) {
				t.Errorf("Block(%s) = %+v, want %+v", b1.CIDR, got, b1)
			}
			bs, err := tx.Blocks()
			if err != nil {
				return err
			}
			// CIDR order, not string order ("10.0.100.0/26" < "10.0.11.0/26").
			want := []netip.Prefix{b3.CIDR, b2.CIDR, b1.CIDR}
			if got := cidrs(bs); !slices.Equal(got, want) {
				t.Errorf("Blocks = %v, want %v", got, want)
			}
			hs, err := tx.Handles()
			if err != nil {
				return err
			}
			if len(hs) != 2 || !reflect.DeepEqual(hs[0], h0) || !reflect.DeepEqual(hs[1], h1) {
				t.Errorf("Handles = %+v, want [%+v %+v]", hs, h0, h1)
			}
			return nil
		})
		mustUpdate(t, ds, func(tx Tx) error {
			if err := tx.DeleteBlock(b2.CIDR); err != nil {
				return err
			}
			if err := tx.DeleteBlock(pp("10.9.9.0/26")); err != nil {
				return fmt.Errorf("deleting a missing block: %w", err)
			}
			if err := tx.DeleteHandle("h1"); err != nil {
				return err
			}
			return tx.DeleteHandle("missing")
		})
		mustView(t, ds, func(tx Tx) error {
			if _, err := tx.Block(b2.CIDR); !errors.Is(err, ErrNotFound) {
				t.Errorf("deleted block: err = %v, want ErrNotFound", err)
			}
			if _, err := tx.Handle("h1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("deleted handle: err = %v, want ErrNotFound", err)
			}
			bs, _ := tx.Blocks()
			if got := cidrs(bs); !slices.Equal(got, []netip.Prefix{b3.CIDR, b1.CIDR}) {
				t.Errorf("Blocks after delete = %v", got)
			}
			return nil
		})
	})

	t.Run("ReadYourWrites", func(t *testing.T) {
		ds := open(t)
		b := Block{CIDR: pp("10.0.0.0/26"), Affinity: "n", Allocations: map[int]Allocation{5: {Handle: "h"}}}
		mustUpdate(t, ds, func(tx Tx) error {
			if err := tx.PutBlock(b); err != nil {
				return err
			}
			got, err := tx.Block(b.CIDR)
			if err != nil || !reflect.DeepEqual(got, b) {
				t.Errorf("Block after Put in the same tx = %+v, %v", got, err)
			}
			if bs, _ := tx.Blocks(); len(bs) != 1 {
				t.Errorf("Blocks after Put in the same tx = %v", bs)
			}
			if err := tx.DeleteBlock(b.CIDR); err != nil {
				return err
			}
			if _, err := tx.Block(b.CIDR); !errors.Is(err, ErrNotFound) {
				t.Errorf("Block after Delete in the same tx: err = %v", err)
			}
			return nil
		})
	})

	t.Run("Rollback", func(t *testing.T) {
		ds := open(t)
		keep := Block{CIDR: pp("10.0.0.0/26"), Affinity: "n", Allocations: map[int]Allocation{}}
		mustUpdate(t, ds, func(tx Tx) error { return tx.PutBlock(keep) })
		boom := errors.New("boom")
		err := ds.Update(ctx, func(tx Tx) error {
			if err := tx.PutBlock(Block{CIDR: pp("10.0.0.64/26"), Allocations: map[int]Allocation{}}); err != nil {
				return err
			}
			if err := tx.DeleteBlock(keep.CIDR); err != nil {
				return err
			}
			if err := tx.PutHandle(Handle{ID: "h", Blocks: map[netip.Prefix]int{}}); err != nil {
				return err
			}
			return fmt.Errorf("wrapped: %w", boom)
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want the fn's error", err)
		}
		mustView(t, ds, func(tx Tx) error {
			bs, _ := tx.Blocks()
			hs, _ := tx.Handles()
			if got := cidrs(bs); !slices.Equal(got, []netip.Prefix{keep.CIDR}) || len(hs) != 0 {
				t.Errorf("after a failed Update: blocks %v, handles %v; want only %s", got, hs, keep.CIDR)
			}
			return nil
		})
	})

	t.Run("ViewIsReadOnly", func(t *testing.T) {
		ds := open(t)
		err := ds.View(ctx, func(tx Tx) error {
			if err := tx.PutBlock(Block{CIDR: pp("10.0.0.0/26")}); !errors.Is(err, ErrReadOnly) {
				t.Errorf("PutBlock in View: %v, want ErrReadOnly", err)
			}
			if err := tx.PutHandle(Handle{ID: "h"}); !errors.Is(err, ErrReadOnly) {
				t.Errorf("PutHandle in View: %v, want ErrReadOnly", err)
			}
			if err := tx.DeleteBlock(pp("10.0.0.0/26")); !errors.Is(err, ErrReadOnly) {
				t.Errorf("DeleteBlock in View: %v, want ErrReadOnly", err)
			}
			if err := tx.DeleteHandle("h"); !errors.Is(err, ErrReadOnly) {
				t.Errorf("DeleteHandle in View: %v, want ErrReadOnly", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		mustView(t, ds, func(tx Tx) error {
			if bs, _ := tx.Blocks(); len(bs) != 0 {
				t.Errorf("View wrote %v", bs)
			}
			return nil
		})
	})

	t.Run("RecordsAreCopies", func(t *testing.T) {
		ds := open(t)
		b := Block{CIDR: pp("10.0.0.0/26"), Affinity: "n", Allocations: map[int]Allocation{1: {Handle: "h", Attrs: map[string]string{"k": "v"}}}}
		mustUpdate(t, ds, func(tx Tx) error {
			if err := tx.PutBlock(b); err != nil {
				return err
			}
			// Changing b after Put must not change what was stored.
			b.Allocations[2] = Allocation{Handle: "late"}
			b.Allocations[1].Attrs["k"] = "changed"
			return nil
		})
		var got Block
		mustView(t, ds, func(tx Tx) error {
			var err error
			got, err = tx.Block(pp("10.0.0.0/26"))
			return err
		})
		want := map[int]Allocation{1: {Handle: "h", Attrs: map[string]string{"k": "v"}}}
		if !reflect.DeepEqual(got.Allocations, want) {
			t.Fatalf("stored %+v, want %+v", got.Allocations, want)
		}
		// Changing what was read must not change the store.
		got.Allocations[9] = Allocation{Handle: "x"}
		mustView(t, ds, func(tx Tx) error {
			again, err := tx.Block(pp("10.0.0.0/26"))
			if err == nil && !reflect.DeepEqual(again.Allocations, want) {
				t.Errorf("store changed through a read copy: %+v", again.Allocations)
			}
			return err
		})
	})

	t.Run("InvalidRecords", func(t *testing.T) {
		ds := open(t)
		bad := []Block{
			{CIDR: pp("10.0.0.1/26")}, // host bits
			{},                        // no CIDR
			{CIDR: pp("10.0.0.0/26"), Allocations: map[int]Allocation{64: {Handle: "h"}}}, // ordinal out of range
			{CIDR: pp("10.0.0.0/26"), Allocations: map[int]Allocation{3: {}}},             // no handle
		}
		for _, b := range bad {
			err := ds.Update(ctx, func(tx Tx) error { return tx.PutBlock(b) })
			if err == nil {
				t.Errorf("PutBlock(%+v) succeeded", b)
			}
		}
		if err := ds.Update(ctx, func(tx Tx) error { return tx.PutHandle(Handle{}) }); err == nil {
			t.Errorf("PutHandle with no id succeeded")
		}
		mustView(t, ds, func(tx Tx) error {
			if bs, _ := tx.Blocks(); len(bs) != 0 {
				t.Errorf("invalid blocks were stored: %v", bs)
			}
			return nil
		})
	})

	t.Run("CanceledContext", func(t *testing.T) {
		ds := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		ran := false
		err := ds.Update(cctx, func(tx Tx) error { ran = true; return nil })
		if !errors.Is(err, context.Canceled) || ran {
			t.Errorf("Update with a canceled context = %v (fn ran: %v), want context.Canceled", err, ran)
		}
		err = ds.View(cctx, func(tx Tx) error { ran = true; return nil })
		if !errors.Is(err, context.Canceled) || ran {
			t.Errorf("View with a canceled context = %v (fn ran: %v), want context.Canceled", err, ran)
		}
	})

	t.Run("Serializable", func(t *testing.T) {
		// Concurrent read-modify-write of one record loses no update.
		ds := open(t)
		const workers, each = 6, 15
		cidr := pp("10.0.0.0/26")
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				for range each {
					err := ds.Update(ctx, func(tx Tx) error {
						h, err := tx.Handle("counter")
						if errors.Is(err, ErrNotFound) {
							h, err = Handle{ID: "counter", Blocks: map[netip.Prefix]int{}}, nil
						}
						if err != nil {
							return err
						}
						h.Blocks[cidr]++
						return tx.PutHandle(h)
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		mustView(t, ds, func(tx Tx) error {
			h, err := tx.Handle("counter")
			if err == nil && h.Blocks[cidr] != workers*each {
				t.Errorf("counter = %d, want %d", h.Blocks[cidr], workers*each)
			}
			return err
		})
	})

	// --- IPAM over the Datastore ---

	t.Run("AssignRelease", func(t *testing.T) {
		m, ds := newIPAM(t, bigPool)
		// node1's first block is block 788 of 10.244.0.0/16: 10.244.197.0/26.
		a1 := mustAuto(t, m, "node1", "h1")
		a2 := mustAuto(t, m, "node1", "h2")
		if a1 != ap("10.244.197.0") || a2 != ap("10.244.197.1") {
			t.Fatalf("node1 got %s, %s; want 10.244.197.0, 10.244.197.1", a1, a2)
		}
		if got := nodeBlocks(t, m, "node1"); !slices.Equal(got, []netip.Prefix{pp("10.244.197.0/26")}) {
			t.Fatalf("BlocksForNode(node1) = %v", got)
		}
		if got := mustAuto(t, m, "node2", "h3"); got != ap("10.244.11.64") {
			t.Fatalf("node2 got %s, want 10.244.11.64 (block 45)", got)
		}
		if got, err := m.AddressByHandle(ctx, "h2"); err != nil || got != a2 {
			t.Fatalf("AddressByHandle(h2) = %s, %v; want %s", got, err, a2)
		}
		if err := m.ReleaseByHandle(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.AddressByHandle(ctx, "h1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("AddressByHandle after release: %v, want ErrNotFound", err)
		}
		// The lowest free address comes back; the block stays node1's.
		if got := mustAuto(t, m, "node1", "h4"); got != a1 {
			t.Fatalf("after releasing %s, node1 got %s", a1, got)
		}
		if err := m.ReleaseByHandle(ctx, "h2"); err != nil {
			t.Fatal(err)
		}
		if err := m.ReleaseByHandle(ctx, "h4"); err != nil {
			t.Fatal(err)
		}
		if got := nodeBlocks(t, m, "node1"); !slices.Equal(got, []netip.Prefix{pp("10.244.197.0/26")}) {
			t.Fatalf("empty block not kept: BlocksForNode(node1) = %v", got)
		}
		as := checkConsistent(t, ds)
		if len(as) != 1 || as[0].Addr != ap("10.244.11.64") || as[0].Handle != "h3" || as[0].Node != "node2" {
			t.Fatalf("Allocations = %+v", as)
		}
	})

	t.Run("LowestFreeOrdinal", func(t *testing.T) {
		m, ds := newIPAM(t, smallPool)
		for i := range 4 {
			mustAuto(t, m, "node1", fmt.Sprint("h", i)) // 10.0.0.64 .. .67
		}
		if err := m.ReleaseAddress(ctx, ap("10.0.0.65")); err != nil {
			t.Fatal(err)
		}
		if err := m.ReleaseAddress(ctx, ap("10.0.0.66")); err != nil {
			t.Fatal(err)
		}
		// Handles h1 and h2 held nothing else: their records are gone.
		mustView(t, ds, func(tx Tx) error {
			for _, h := range []string{"h1", "h2"} {
				if _, err := tx.Handle(h); !errors.Is(err, ErrNotFound) {
					t.Errorf("handle %s after releasing its address: %v", h, err)
				}
			}
			return nil
		})
		if got := mustAuto(t, m, "node1", "h4"); got != ap("10.0.0.65") {
			t.Fatalf("got %s, want the lowest free 10.0.0.65", got)
		}
		if got := mustAuto(t, m, "node1", "h5"); got != ap("10.0.0.66") {
			t.Fatalf("got %s, want 10.0.0.66", got)
		}
		if got := mustAuto(t, m, "node1", "h6"); got != ap("10.0.0.68") {
			t.Fatalf("got %s, want 10.0.0.68", got)
		}
		checkConsistent(t, ds)
	})

	t.Run("BlockFullClaimsNext", func(t *testing.T) {
		m, ds := newIPAM(t, smallPool)
		// node1 starts at block 4 (10.0.0.64/28) and fills it.
		for i := range 16 {
			if got, want := mustAuto(t, m, "node1", fmt.Sprint("n1-", i)), ap(fmt.Sprint("10.0.0.", 64+i)); got != want {
				t.Fatalf("assignment %d: got %s, want %s", i, got, want)
			}
		}
		// Full: the next block from the start on is block 5.
		if got := mustAuto(t, m, "node1", "n1-16"); got != ap("10.0.0.80") {
			t.Fatalf("17th address %s, want 10.0.0.80 in the next block", got)
		}
		// b starts at block 5, which node1 holds now: it takes block 6.
		if got := mustAuto(t, m, "b", "b-0"); got != ap("10.0.0.96") {
			t.Fatalf("b got %s, want 10.0.0.96 (block 6)", got)
		}
		// A release in the first block is reused before the second block.
		if err := m.ReleaseByHandle(ctx, "n1-3"); err != nil {
			t.Fatal(err)
		}
		if got := mustAuto(t, m, "node1", "n1-17"); got != ap("10.0.0.67") {
			t.Fatalf("got %s, want 10.0.0.67 from the lowest block", got)
		}
		want := []netip.Prefix{pp("10.0.0.64/28"), pp("10.0.0.80/28")}
		if got := nodeBlocks(t, m, "node1"); !slices.Equal(got, want) {
			t.Fatalf("BlocksForNode(node1) = %v, want %v", got, want)
		}
		checkConsistent(t, ds)
	})

	t.Run("ScanWrapsAround", func(t *testing.T) {
		m, _ := newIPAM(t, tinyPool)
		// n4 starts at the last block (3); when it is full, block 0.
		for i := range 16 {
			mustAuto(t, m, "n4", fmt.Sprint("h", i))
		}
		if got := mustAuto(t, m, "n4", "h16"); got != ap("10.0.0.0") {
			t.Fatalf("got %s, want 10.0.0.0 (wrapped to block 0)", got)
		}
		// n1 starts at block 0, now n4's: it takes block 1.
		if got := mustAuto(t, m, "n1", "x"); got != ap("10.0.0.16") {
			t.Fatalf("n1 got %s, want 10.0.0.16", got)
		}
	})

	t.Run("PoolExhausted", func(t *testing.T) {
		m, ds := newIPAM(t, tinyPool)
		strict := mustNew(t, ds, strictAffinity, tinyPool)
		for i, n := range []string{"n1", "n2", "n3", "n4"} {
			if got, want := mustAuto(t, strict, n, n+"-0"), ap(fmt.Sprint("10.0.0.", 16*i)); got != want {
				t.Fatalf("%s got %s, want %s", n, got, want)
			}
		}
		// No free block, and strict affinity forbids borrowing.
		_, err := strict.AutoAssign(ctx, AssignArgs{Node: "n5", Handle: "n5-0"})
		const strictMsg = "pool tiny (10.0.0.0/26) has no free /28 block and strict affinity forbids borrowing"
		var pe *PoolExhaustedError
		if err == nil || err.Error() != strictMsg || !errors.Is(err, ErrPoolExhausted) || !errors.As(err, &pe) || pe.Pool.Name != "tiny" || !pe.StrictAffinity {
			t.Fatalf("strict AutoAssign in a fully claimed pool: %v, want %q", err, strictMsg)
		}
		// n1 may fill its own block, and then the pool is exhausted for it too.
		for i := 1; i < 16; i++ {
			mustAuto(t, strict, "n1", fmt.Sprint("n1-", i))
		}
		if _, err := strict.AutoAssign(ctx, AssignArgs{Node: "n1", Handle: "n1-16"}); err == nil || err.Error() != strictMsg {
			t.Fatalf("strict AutoAssign with a full block and pool: %v", err)
		}
		// The other nodes fill theirs: nothing is left to borrow either.
		for _, n := range []string{"n2", "n3", "n4"} {
			for range 15 {
				mustAuto(t, m, n, n+"-fill")
			}
		}
		const fullMsg = "pool tiny (10.0.0.0/26) has no free /28 block and no free address to borrow"
		for _, mm := range []*IPAM{m, strict} {
			_, err := mm.AutoAssign(ctx, AssignArgs{Node: "n5", Handle: "n5-0"})
			pe = nil
			if err == nil || err.Error() != fullMsg || !errors.As(err, &pe) || pe.StrictAffinity {
				t.Fatalf("AutoAssign (strict %v) in a full pool: %v, want %q", mm.Options().StrictAffinity, err, fullMsg)
			}
		}
		// A failed assignment leaves nothing behind.
		as := checkConsistent(t, ds)
		if len(as) != 64 {
			t.Fatalf("%d allocations, want 64", len(as))
		}
		for _, a := range as {
			if a.Borrowed {
				t.Fatalf("%s borrowed: %+v", a.Addr, a)
			}
		}
		// n2 goes away: its block returns to the pool and n5 gets it.
		for _, h := range []string{"n2-0", "n2-fill"} {
			if err := m.ReleaseByHandle(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		rel, err := m.ReleaseNodeBlocks(ctx, "n2")
		if err != nil || !slices.Equal(rel, []netip.Prefix{pp("10.0.0.16/28")}) {
			t.Fatalf("ReleaseNodeBlocks(n2) = %v, %v", rel, err)
		}
		if got := mustAuto(t, m, "n5", "n5-0"); got != ap("10.0.0.16") {
			t.Fatalf("n5 got %s, want 10.0.0.16", got)
		}
	})

	t.Run("SeveralPools", func(t *testing.T) {
		second := Pool{Name: "second", CIDR: pp("10.1.0.0/28"), BlockSize: 28}
		m, ds := newIPAM(t, tinyPool, second)
		for _, n := range []string{"n1", "n2", "n3", "n4"} {
			mustAuto(t, m, n, n)
		}
		// tiny is full; the second pool's only block goes to n5.
		if got := mustAuto(t, m, "n5", "n5"); got != ap("10.1.0.0") {
			t.Fatalf("n5 got %s, want 10.1.0.0", got)
		}
		strict := mustNew(t, ds, strictAffinity, tinyPool, second)
		_, err := strict.AutoAssign(ctx, AssignArgs{Node: "n6", Handle: "n6"})
		want := "pool tiny (10.0.0.0/26) has no free /28 block and strict affinity forbids borrowing\n" +
			"pool second (10.1.0.0/28) has no free /28 block and strict affinity forbids borrowing"
		if err == nil || err.Error() != want || !errors.Is(err, ErrPoolExhausted) {
			t.Fatalf("both pools claimed, strict: %v, want %q", err, want)
		}
		// Without strict affinity n6 borrows in the first pool, from its
		// start block (1, n2's) on.
		if got := mustAuto(t, m, "n6", "n6"); got != ap("10.0.0.17") {
			t.Fatalf("n6 borrowed %s, want 10.0.0.17", got)
		}
	})

	t.Run("IdempotentRelease", func(t *testing.T) {
		m, ds := newIPAM(t, bigPool)
		a := mustAuto(t, m, "node1", "h")
		for range 2 {
			if err := m.ReleaseByHandle(ctx, "h"); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.ReleaseByHandle(ctx, "never-assigned"); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := m.ReleaseAddress(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.ReleaseAddress(ctx, ap("10.244.50.1")); err != nil { // no block there
			t.Fatal(err)
		}
		if err := m.ReleaseAddress(ctx, ap("192.168.1.1")); !errors.Is(err, ErrNotInPool) {
			t.Fatalf("ReleaseAddress outside the pools: %v, want ErrNotInPool", err)
		}
		if as := checkConsistent(t, ds); len(as) != 0 {
			t.Fatalf("left %v", as)
		}
	})

	t.Run("HandleWithSeveralAddresses", func(t *testing.T) {
		m, ds := newIPAM(t, tinyPool)
		for range 17 { // 16 in block 0, one in block 1
			mustAuto(t, m, "n1", "multi")
		}
		mustAuto(t, m, "n1", "other")
		addrs, err := m.AddressesByHandle(ctx, "multi")
		if err != nil || len(addrs) != 17 || addrs[0] != ap("10.0.0.0") || addrs[16] != ap("10.0.0.16") {
			t.Fatalf("AddressesByHandle = %v, %v", addrs, err)
		}
		mustView(t, ds, func(tx Tx) error {
			h, err := tx.Handle("multi")
			want := map[netip.Prefix]int{pp("10.0.0.0/28"): 16, pp("10.0.0.16/28"): 1}
			if err == nil && !maps.Equal(h.Blocks, want) {
				t.Errorf("handle record %v, want %v", h.Blocks, want)
			}
			return err
		})
		if err := m.ReleaseByHandle(ctx, "multi"); err != nil {
			t.Fatal(err)
		}
		as := checkConsistent(t, ds)
		if len(as) != 1 || as[0].Handle != "other" || as[0].Addr != ap("10.0.0.17") {
			t.Fatalf("after releasing multi: %+v", as)
		}
	})

	t.Run("FixedAddress", func(t *testing.T) {
		m, ds := newIPAM(t, bigPool)
		args1 := AssignArgs{Node: "node1", Handle: "fixed", Attrs: map[string]string{"workload": "db"}}
		if err := m.AssignIP(ctx, ap("10.244.3.7"), args1); err != nil {
			t.Fatal(err)
		}
		if got := nodeBlocks(t, m, "node1"); !slices.Equal(got, []netip.Prefix{pp("10.244.3.0/26")}) {
			t.Fatalf("AssignIP did not claim the block: %v", got)
		}
		// Again for the same handle: nothing changes.
		if err := m.AssignIP(ctx, ap("10.244.3.7"), args1); err != nil {
			t.Fatalf("repeated AssignIP: %v", err)
		}
		if err := m.AssignIP(ctx, ap("10.244.3.7"), AssignArgs{Node: "node1", Handle: "other"}); !errors.Is(err, ErrAddressInUse) {
			t.Fatalf("AssignIP of a taken address: %v, want ErrAddressInUse", err)
		}
		strict := mustNew(t, ds, strictAffinity, bigPool)
		if err := strict.AssignIP(ctx, ap("10.244.3.8"), AssignArgs{Node: "node2", Handle: "n2"}); !errors.Is(err, ErrAffinityConflict) {
			t.Fatalf("strict AssignIP in node1's block for node2: %v, want ErrAffinityConflict", err)
		}
		// Without strict affinity node2 borrows it; the block stays node1's.
		if err := m.AssignIP(ctx, ap("10.244.3.8"), AssignArgs{Node: "node2", Handle: "n2"}); err != nil {
			t.Fatalf("AssignIP in node1's block for node2: %v", err)
		}
		if got, err := m.BorrowedByNode(ctx, "node2"); err != nil || !slices.Equal(got, []netip.Addr{ap("10.244.3.8")}) {
			t.Fatalf("BorrowedByNode(node2) = %v, %v", got, err)
		}
		if got := nodeBlocks(t, m, "node2"); len(got) != 0 {
			t.Fatalf("borrowing gave node2 blocks %v", got)
		}
		if err := m.AssignIP(ctx, ap("10.245.0.1"), AssignArgs{Node: "node1", Handle: "x"}); !errors.Is(err, ErrNotInPool) {
			t.Fatalf("AssignIP outside the pool: %v, want ErrNotInPool", err)
		}
		if err := m.AssignIP(ctx, netip.Addr{}, AssignArgs{Node: "node1", Handle: "x"}); !errors.Is(err, ErrNotInPool) {
			t.Fatalf("AssignIP of the zero Addr: %v, want ErrNotInPool", err)
		}
		// node1 now assigns from the block it has, lowest ordinal first,
		// rather than claiming its hash block.
		if got := mustAuto(t, m, "node1", "auto"); got != ap("10.244.3.0") {
			t.Fatalf("node1 got %s, want 10.244.3.0", got)
		}
		// node3's start block (634, 10.244.158.128/26) taken by a fixed
		// address of node1: node3 claims block 635.
		if err := m.AssignIP(ctx, ap("10.244.158.130"), AssignArgs{Node: "node1", Handle: "fixed2"}); err != nil {
			t.Fatal(err)
		}
		if got := mustAuto(t, m, "node3", "n3"); got != ap("10.244.158.192") {
			t.Fatalf("node3 got %s, want 10.244.158.192", got)
		}
		// An address AutoAssign handed out cannot be taken as fixed.
		if err := m.AssignIP(ctx, ap("10.244.158.192"), AssignArgs{Node: "node3", Handle: "y"}); !errors.Is(err, ErrAddressInUse) {
			t.Fatalf("AssignIP of an auto-assigned address: %v", err)
		}
		as := checkConsistent(t, ds)
		if len(as) != 5 || as[1].Addr != ap("10.244.3.7") || as[1].Attrs["workload"] != "db" || as[1].Node != "node1" || as[1].Borrowed {
			t.Fatalf("Allocations = %+v", as)
		}
		if a := as[2]; a.Addr != ap("10.244.3.8") || a.Node != "node2" || a.Affinity != "node1" || !a.Borrowed {
			t.Fatalf("borrowed allocation = %+v", a)
		}
	})

	t.Run("ReleaseNodeBlocks", func(t *testing.T) {
		m, ds := newIPAM(t, tinyPool)
		for i := range 17 {
			mustAuto(t, m, "n1", fmt.Sprint("h", i))
		}
		mustAuto(t, m, "n2", "other")
		if err := m.ReleaseByHandle(ctx, "h16"); err != nil { // empties block 1
			t.Fatal(err)
		}
		rel, err := m.ReleaseNodeBlocks(ctx, "n1")
		if err != nil || !slices.Equal(rel, []netip.Prefix{pp("10.0.0.16/28")}) {
			t.Fatalf("ReleaseNodeBlocks = %v, %v; want [10.0.0.16/28]", rel, err)
		}
		if got := nodeBlocks(t, m, "n1"); !slices.Equal(got, []netip.Prefix{pp("10.0.0.0/28")}) {
			t.Fatalf("n1 keeps %v, want its non-empty block", got)
		}
		if rel, err := m.ReleaseNodeBlocks(ctx, "n1"); err != nil || len(rel) != 0 {
			t.Fatalf("second ReleaseNodeBlocks = %v, %v", rel, err)
		}
		checkConsistent(t, ds)
	})

	t.Run("UnaffineBlocks", func(t *testing.T) {
		// Blocks with no affinity (left by another tool, or a node whose
		// affinity was dropped) are claimed when they have room.
		m, ds := newIPAM(t, tinyPool)
		full := map[int]Allocation{}
		for o := range 16 {
			full[o] = Allocation{Handle: "old-full"}
		}
		mustUpdate(t, ds, func(tx Tx) error {
			for _, b := range []Block{
				{CIDR: pp("10.0.0.0/28"), Allocations: map[int]Allocation{0: {Handle: "old"}}},
				{CIDR: pp("10.0.0.16/28"), Allocations: full},
				{CIDR: pp("10.0.0.48/28"), Allocations: map[int]Allocation{}},
			} {
				if err := tx.PutBlock(b); err != nil {
					return err
				}
			}
			return nil
		})
		// n1 starts at block 0: unaffine with room, so n1 claims it.
		if got := mustAuto(t, m, "n1", "a"); got != ap("10.0.0.1") {
			t.Fatalf("n1 got %s, want 10.0.0.1 in the unaffine block", got)
		}
		// n2 starts at block 1: unaffine but full, so block 2.
		if got := mustAuto(t, m, "n2", "b"); got != ap("10.0.0.32") {
			t.Fatalf("n2 got %s, want 10.0.0.32", got)
		}
		// A fixed address in an unaffine block claims it.
		if err := m.AssignIP(ctx, ap("10.0.0.50"), AssignArgs{Node: "n4", Handle: "c"}); err != nil {
			t.Fatal(err)
		}
		bs, err := m.Blocks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var aff []string
		for _, b := range bs {
			aff = append(aff, b.CIDR.String()+"="+b.Affinity)
		}
		want := []string{"10.0.0.0/28=n1", "10.0.0.16/28=", "10.0.0.32/28=n2", "10.0.0.48/28=n4"}
		if !slices.Equal(aff, want) {
			t.Fatalf("blocks %v, want %v", aff, want)
		}
		strict := mustNew(t, ds, strictAffinity, tinyPool)
		if _, err := strict.AutoAssign(ctx, AssignArgs{Node: "n5", Handle: "d"}); !errors.Is(err, ErrPoolExhausted) {
			t.Fatalf("strict AutoAssign with only a full unaffine block left: %v", err)
		}
		// Without strict affinity n5 borrows from n1's block (its start
		// block, 0), not from the full unaffine one.
		if got := mustAuto(t, m, "n5", "d"); got != ap("10.0.0.2") {
			t.Fatalf("n5 borrowed %s, want 10.0.0.2", got)
		}
	})

	t.Run("Borrowing", func(t *testing.T) {
		// 10.244.0.0/28 in /30 blocks: 4 blocks of 4 for 5 nodes. n1..n4
		// start at blocks 0..3, n5 at block 0.
		m, ds := newIPAM(t, borrowPool)
		strict := mustNew(t, ds, strictAffinity, borrowPool)
		for i, n := range []string{"n1", "n2", "n3", "n4"} {
			if got, want := mustAuto(t, m, n, n+"-a"), ap(fmt.Sprint("10.244.0.", 4*i)); got != want {
				t.Fatalf("%s got %s, want %s", n, got, want)
			}
		}

		// Strict affinity: a clear error, and nothing changes.
		_, err := strict.AutoAssign(ctx, AssignArgs{Node: "n5", Handle: "n5-a"})
		const msg = "pool lab (10.244.0.0/28) has no free /30 block and strict affinity forbids borrowing"
		var pe *PoolExhaustedError
		if err == nil || err.Error() != msg || !errors.Is(err, ErrPoolExhausted) || !errors.As(err, &pe) || !pe.StrictAffinity {
			t.Fatalf("strict AutoAssign for n5: %v, want %q", err, msg)
		}
		if len(checkConsistent(t, ds)) != 4 {
			t.Fatalf("a refused assignment left something behind")
		}

		// n5 borrows from its start block (n1's) on: its free addresses
		// lowest first, then the next block's.
		var got []netip.Addr
		for _, h := range []string{"n5-a", "n5-b", "n5-c", "n5-d"} {
			got = append(got, mustAuto(t, m, "n5", h))
		}
		wantN5 := []netip.Addr{ap("10.244.0.1"), ap("10.244.0.2"), ap("10.244.0.3"), ap("10.244.0.5")}
		if !slices.Equal(got, wantN5) {
			t.Fatalf("n5 borrowed %v, want %v", got, wantN5)
		}
		if b, err := m.BorrowedByNode(ctx, "n5"); err != nil || !slices.Equal(b, wantN5) {
			t.Fatalf("BorrowedByNode(n5) = %v, %v; want %v", b, err, wantN5)
		}
		if bs := nodeBlocks(t, m, "n5"); len(bs) != 0 {
			t.Fatalf("n5 has blocks %v; borrowing claims none", bs)
		}
		for i, n := range []string{"n1", "n2", "n3", "n4"} {
			if bs := nodeBlocks(t, m, n); !slices.Equal(bs, []netip.Prefix{borrowPool.block(uint64(i))}) {
				t.Fatalf("%s's blocks after borrowing: %v", n, bs)
			}
			if b, err := m.BorrowedByNode(ctx, n); err != nil || len(b) != 0 {
				t.Fatalf("BorrowedByNode(%s) = %v, %v; want none", n, b, err)
			}
		}

		// n1's own block is full now (n5 borrowed the rest): n1 borrows
		// too, in n2's block, the first one after its own with room.
		if got := mustAuto(t, m, "n1", "n1-b"); got != ap("10.244.0.6") {
			t.Fatalf("n1 borrowed %s, want 10.244.0.6", got)
		}
		if b, _ := m.BorrowedByNode(ctx, "n1"); !slices.Equal(b, []netip.Addr{ap("10.244.0.6")}) {
			t.Fatalf("BorrowedByNode(n1) = %v", b)
		}

		// Allocations and the store say which addresses are borrowed.
		as, err := m.Allocations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cs := checkConsistent(t, ds); !reflect.DeepEqual(as, cs) {
			t.Fatalf("Allocations = %+v, store holds %+v", as, cs)
		}
		var borrowed []string
		for _, a := range as {
			if a.Borrowed {
				borrowed = append(borrowed, fmt.Sprintf("%s:%s@%s", a.Addr, a.Node, a.Affinity))
			}
		}
		wantBorrowed := []string{"10.244.0.1:n5@n1", "10.244.0.2:n5@n1", "10.244.0.3:n5@n1", "10.244.0.5:n5@n2", "10.244.0.6:n1@n2"}
		if !slices.Equal(borrowed, wantBorrowed) {
			t.Fatalf("borrowed %v, want %v", borrowed, wantBorrowed)
		}

		// Routing: every node blackholes and announces its blocks, routes
		// its workloads as /32s and announces the borrowed ones as /32s;
		// by longest-prefix match every address reaches its node.
		nodes := []string{"n1", "n2", "n3", "n4", "n5"}
		checkRouting(t, m, nodes)

		// A borrowed address is released in the owner's block, whose
		// affinity stays; the owner gets it back first.
		if err := m.ReleaseByHandle(ctx, "n5-a"); err != nil {
			t.Fatal(err)
		}
		if err := m.ReleaseAddress(ctx, ap("10.244.0.5")); err != nil {
			t.Fatal(err)
		}
		if b, _ := m.BorrowedByNode(ctx, "n5"); !slices.Equal(b, []netip.Addr{ap("10.244.0.2"), ap("10.244.0.3")}) {
			t.Fatalf("BorrowedByNode(n5) after releases = %v", b)
		}
		if bs := nodeBlocks(t, m, "n1"); !slices.Equal(bs, []netip.Prefix{pp("10.244.0.0/30")}) {
			t.Fatalf("n1's blocks after the release = %v", bs)
		}
		if got := mustAuto(t, m, "n1", "n1-c"); got != ap("10.244.0.1") {
			t.Fatalf("n1 got %s, want 10.244.0.1 back in its own block", got)
		}
		checkRouting(t, m, nodes)

		// A block that holds only borrowed addresses is not empty: its
		// owner keeps it (and its route) until they are released.
		for _, h := range []string{"n1-a", "n1-c"} {
			if err := m.ReleaseByHandle(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		if rel, err := m.ReleaseNodeBlocks(ctx, "n1"); err != nil || len(rel) != 0 {
			t.Fatalf("ReleaseNodeBlocks(n1) with n5's addresses in its block = %v, %v", rel, err)
		}
		for _, h := range []string{"n5-b", "n5-c"} {
			if err := m.ReleaseByHandle(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		if rel, err := m.ReleaseNodeBlocks(ctx, "n1"); err != nil || !slices.Equal(rel, []netip.Prefix{pp("10.244.0.0/30")}) {
			t.Fatalf("ReleaseNodeBlocks(n1) = %v, %v", rel, err)
		}
		// n5 now claims the free block.
		if got := mustAuto(t, m, "n5", "n5-e"); got != ap("10.244.0.0") {
			t.Fatalf("n5 got %s, want 10.244.0.0 in the released block", got)
		}
		if b, _ := m.BorrowedByNode(ctx, "n5"); len(b) != 0 {
			t.Fatalf("BorrowedByNode(n5) = %v, want none", b)
		}
		checkRouting(t, m, nodes)
		checkConsistent(t, ds)

		if _, err := m.BorrowedByNode(ctx, ""); err == nil {
			t.Errorf("BorrowedByNode with no node succeeded")
		}
	})

	t.Run("BadArgs", func(t *testing.T) {
		m, ds := newIPAM(t, bigPool)
		for _, a := range []AssignArgs{{Handle: "h"}, {Node: "n"}} {
			if _, err := m.AutoAssign(ctx, a); err == nil {
				t.Errorf("AutoAssign(%+v) succeeded", a)
			}
			if err := m.AssignIP(ctx, ap("10.244.0.1"), a); err == nil {
				t.Errorf("AssignIP(%+v) succeeded", a)
			}
		}
		if as := checkConsistent(t, ds); len(as) != 0 {
			t.Fatalf("left %v", as)
		}
	})

	t.Run("AssignMany", func(t *testing.T) { testAssignMany(t, open) })

	t.Run("ConcurrentGoroutines", func(t *testing.T) {
		m, ds := newIPAM(t, smallPool)
		const nodes, workers, each = 4, 3, 8 // 96 addresses, 2 blocks per node
		type result struct {
			node, handle string
			addr         netip.Addr
			err          error
		}
		results := make(chan result, nodes*workers*each)
		var wg sync.WaitGroup
		for n := range nodes {
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						node := fmt.Sprint("node", n)
						h := fmt.Sprintf("%s/%d/%d", node, w, i)
						a, err := m.AutoAssign(ctx, AssignArgs{Node: node, Handle: h})
						results <- result{node, h, a, err}
					}
				})
			}
		}
		wg.Wait()
		close(results)
		got := map[string]netip.Addr{}
		seen := map[netip.Addr]string{}
		for r := range results {
			if r.err != nil {
				t.Fatalf("%s: %v", r.handle, r.err)
			}
			if prev, dup := seen[r.addr]; dup {
				t.Fatalf("%s handed out twice: %s and %s", r.addr, prev, r.handle)
			}
			seen[r.addr] = r.handle
			got[r.handle] = r.addr
		}
		as := checkConsistent(t, ds)
		if len(as) != nodes*workers*each {
			t.Fatalf("%d allocations stored, want %d", len(as), nodes*workers*each)
		}
		for _, a := range as {
			if got[a.Handle] != a.Addr {
				t.Fatalf("store has %s for %s, AutoAssign returned %s", a.Addr, a.Handle, got[a.Handle])
			}
		}
		for n := range nodes {
			if bs := nodeBlocks(t, m, fmt.Sprint("node", n)); len(bs) != 2 {
				t.Errorf("node%d has blocks %v, want 2 (24 addresses in blocks of 16)", n, bs)
			}
		}
	})
}

// testAssignMany checks AssignMany over a backend: the addresses it gives
// are the ones AutoAssign and AssignIP called in order give (computed over a
// MemStore), no address twice, handles that count them, fixed addresses
// honoured, Keep returning what a handle holds, and a failed batch leaving
// nothing assigned, also across the transactions of a BatchLimiter.
func testAssignMany(t *testing.T, open func(t *testing.T) Datastore) {
	ctx := context.Background()
	// prepare puts the same state in any store: node2 holds two
	// addresses, "kept" holds one on node1.
	prepare := func(t *testing.T, m *IPAM) {
		t.Helper()
		mustAuto(t, m, "node2", "n2-a")
		mustAuto(t, m, "node2", "n2-b")
		if err := m.AssignIP(ctx, ap("10.0.0.200"), AssignArgs{Node: "node1", Handle: "kept"}); err != nil {
			t.Fatal(err)
		}
	}
	// sequential is what AssignMany must match: one call per request.
	sequential := func(t *testing.T, m *IPAM, reqs []AssignRequest) []netip.Addr {
		t.Helper()
		out := make([]netip.Addr, len(reqs))
		for i, r := range reqs {
			if r.Keep {
				if a, err := m.AddressByHandle(ctx, r.Handle); err == nil {
					out[i] = a
					continue
				}
			}
			var err error
			if r.Addr.IsValid() {
				out[i], err = r.Addr, m.AssignIP(ctx, r.Addr, r.AssignArgs)
			} else {
				out[i], err = m.AutoAssign(ctx, r.AssignArgs)
			}
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		return out
	}

	t.Run("SameAsOneByOne", func(t *testing.T) {
		ds := open(t)
		m := mustNew(t, ds, Options{}, smallPool)
		prepare(t, m)
		n2 := nodeBlocks(t, m, "node2")[0]
		var reqs []AssignRequest
		for i := range 100 { // more than a BatchLimiter's transaction
			args := AssignArgs{Node: "node1", Handle: fmt.Sprint("w", i), Attrs: map[string]string{"workload": fmt.Sprint("w", i)}}
			r := AssignRequest{AssignArgs: args, Keep: i%7 == 0}
			switch i {
			case 5:
				r.Addr = ap("10.0.0.77") // claims its block
			case 9:
				r.Addr = n2.Addr().Next().Next().Next() // borrowed from node2
			case 14:
				r.Handle, r.Keep = "kept", true // holds 10.0.0.200
			case 21:
				r.Handle = "w3" // Keep: w3 holds one from request 3
			case 30:
				r.Addr = ap("10.0.0.77") // the same again, same handle
				r.Handle = "w5"
			}
			reqs = append(reqs, r)
		}
		ref := mustNew(t, NewMemStore(), Options{}, smallPool)
		prepare(t, ref)
		want := sequential(t, ref, reqs)
		got, err := m.AssignMany(ctx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("AssignMany = %v\none by one = %v", got, want)
		}
		for _, c := range []struct {
			i    int
			want netip.Addr
		}{{5, ap("10.0.0.77")}, {14, ap("10.0.0.200")}, {21, got[3]}, {30, ap("10.0.0.77")}} {
			if got[c.i] != c.want {
				t.Errorf("request %d got %s, want %s", c.i, got[c.i], c.want)
			}
		}
		as := checkConsistent(t, ds)
		wantAs, err := ref.Allocations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(as, wantAs, func(a, b Assignment) bool {
			return a.Addr == b.Addr && a.Handle == b.Handle && a.Node == b.Node && a.Borrowed == b.Borrowed && maps.Equal(a.Attrs, b.Attrs)
		}) {
			t.Fatalf("store holds %v\nwant %v", as, wantAs)
		}
		seen := map[netip.Addr]bool{}
		for _, a := range as {
			if seen[a.Addr] {
				t.Fatalf("%s assigned twice", a.Addr)
			}
			seen[a.Addr] = true
		}
		if len(as) != 3+100-3 { // 14 is "kept", 21 and 30 reuse
			t.Errorf("%d addresses assigned, want 100", len(as))
		}
		if !slices.Contains(nodeBlocks(t, m, "node1"), pp("10.0.0.64/28")) {
			t.Errorf("node1 did not claim the block of its fixed address: %v", nodeBlocks(t, m, "node1"))
		}
		for i, r := range reqs {
			addrs, err := m.AddressesByHandle(ctx, r.Handle)
			if err != nil || !slices.Contains(addrs, got[i]) {
				t.Errorf("handle %s holds %v, %v; want %s among them", r.Handle, addrs, err, got[i])
			}
		}
	})

	t.Run("FailureAssignsNothing", func(t *testing.T) {
		ds := open(t)
		m := mustNew(t, ds, strictAffinity, smallPool)
		prepare(t, m)
		before := checkConsistent(t, ds)
		n2 := nodeBlocks(t, m, "node2")[0]
		auto := func(n int) []AssignRequest {
			var reqs []AssignRequest
			for i := range n {
				reqs = append(reqs, AssignRequest{AssignArgs: AssignArgs{Node: "node1", Handle: fmt.Sprint("f", i)}})
			}
			return reqs
		}
		for _, c := range []struct {
			name string
			reqs []AssignRequest
			want error
		}{
			{"in use", append(auto(90), AssignRequest{AssignArgs: AssignArgs{Node: "node1", Handle: "x"}, Addr: ap("10.0.0.200")}), ErrAddressInUse},
			{"strict affinity", append(auto(3), AssignRequest{AssignArgs: AssignArgs{Node: "node1", Handle: "x"}, Addr: n2.Addr().Next()}), ErrAffinityConflict},
			{"not in pool", append(auto(3), AssignRequest{AssignArgs: AssignArgs{Node: "node1", Handle: "x"}, Addr: ap("192.0.2.1")}), ErrNotInPool},
			{"exhausted", auto(250), ErrPoolExhausted},
		} {
			_, err := m.AssignMany(ctx, c.reqs)
			if !errors.Is(err, c.want) {
				t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
			}
			after := checkConsistent(t, ds)
			if !slices.EqualFunc(after, before, func(a, b Assignment) bool { return a.Addr == b.Addr && a.Handle == b.Handle }) {
				t.Errorf("%s: failed batch left %d allocations, want the %d before", c.name, len(after), len(before))
			}
			for _, r := range c.reqs {
				if addrs, _ := m.AddressesByHandle(ctx, r.Handle); len(addrs) != 0 && r.Handle != "kept" {
					t.Errorf("%s: handle %s holds %v", c.name, r.Handle, addrs)
				}
			}
		}
		if _, err := m.AssignMany(ctx, []AssignRequest{{AssignArgs: AssignArgs{Node: "node1"}}}); err == nil {
			t.Error("AssignMany without a handle succeeded")
		}
		if got, err := m.AssignMany(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("AssignMany(nil) = %v, %v", got, err)
		}
	})
}

// checkConsistent checks the whole store: blocks do not overlap; handle
// records count exactly the allocations that carry their id. It returns the
// allocations in address order, as Allocations does (an allocation for a
// node other than the block's affinity is borrowed; the callers check
// which).
func checkConsistent(t *testing.T, ds Datastore) []Assignment {
	t.Helper()
	var blocks []Block
	var handles []Handle
	mustView(t, ds, func(tx Tx) error {
		var err error
		if blocks, err = tx.Blocks(); err != nil {
			return err
		}
		handles, err = tx.Handles()
		return err
	})
	counts := map[string]map[netip.Prefix]int{}
	var out []Assignment
	for i, b := range blocks {
		if i > 0 && blocks[i-1].CIDR.Overlaps(b.CIDR) {
			t.Errorf("blocks %s and %s overlap", blocks[i-1].CIDR, b.CIDR)
		}
		for _, o := range b.Ordinals() {
			a := b.Allocations[o]
			if counts[a.Handle] == nil {
				counts[a.Handle] = map[netip.Prefix]int{}
			}
			counts[a.Handle][b.CIDR]++
			out = append(out, Assignment{Addr: b.Addr(o), Block: b.CIDR, Affinity: b.Affinity, Borrowed: b.Borrowed(o), Allocation: a})
		}
	}
	for _, h := range handles {
		if !maps.Equal(h.Blocks, counts[h.ID]) {
			t.Errorf("handle %s records %v, blocks hold %v", h.ID, h.Blocks, counts[h.ID])
		}
		delete(counts, h.ID)
	}
	for id, c := range counts {
		t.Errorf("addresses %v of handle %s have no handle record", c, id)
	}
	if !slices.IsSortedFunc(out, func(a, b Assignment) int { return a.Addr.Compare(b.Addr) }) {
		t.Errorf("allocations out of order")
	}
	return out
}

func mustUpdate(t *testing.T, ds Datastore, fn func(tx Tx) error) {
	t.Helper()
	if err := ds.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func mustView(t *testing.T, ds Datastore, fn func(tx Tx) error) {
	t.Helper()
	if err := ds.View(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func mustAuto(t *testing.T, m *IPAM, node, handle string) netip.Addr {
	t.Helper()
	a, err := m.AutoAssign(context.Background(), AssignArgs{Node: node, Handle: handle})
	if err != nil {
		t.Fatalf("AutoAssign(%s, %s): %v", node, handle, err)
	}
	return a
}

func nodeBlocks(t *testing.T, m *IPAM, node string) []netip.Prefix {
	t.Helper()
	bs, err := m.BlocksForNode(context.Background(), node)
	if err != nil {
		t.Fatal(err)
	}
	return cidrs(bs)
}

func cidrs(bs []Block) []netip.Prefix {
	var out []netip.Prefix
	for _, b := range bs {
		out = append(out, b.CIDR)
	}
	return out
}

// checkRouting builds each node's routing table the way the agents do:
// its own blocks blackholed, its workloads (own and borrowed) as local /32s,
// and what the others announce (their blocks, and their borrowed addresses
// as /32s) via them; and checks that, by longest-prefix match, every
// assigned address is local on its node and reaches its node from every
// other one.
func checkRouting(t *testing.T, m *IPAM, nodes []string) {
	t.Helper()
	ctx := context.Background()
	type route struct {
		dst netip.Prefix
		via string // "local", "blackhole" or the next node
	}
	as, err := m.Allocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	announced := map[string][]netip.Prefix{}
	for _, n := range nodes {
		announced[n] = append(announced[n], nodeBlocks(t, m, n)...)
		borrowed, err := m.BorrowedByNode(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range borrowed {
			announced[n] = append(announced[n], netip.PrefixFrom(a, a.BitLen()))
		}
	}
	for _, n := range nodes {
		var table []route
		for _, b := range nodeBlocks(t, m, n) {
			table = append(table, route{b, "blackhole"})
		}
		for _, a := range as {
			if a.Node == n {
				table = append(table, route{netip.PrefixFrom(a.Addr, a.Addr.BitLen()), "local"})
			}
		}
		for _, peer := range nodes {
			if peer == n {
				continue
			}
			for _, p := range announced[peer] {
				table = append(table, route{p, peer})
			}
		}
		for _, a := range as {
			best := route{via: "unreachable"}
			for _, r := range table {
				if !r.dst.Contains(a.Addr) {
					continue
				}
				if best.dst.IsValid() && r.dst.Bits() == best.dst.Bits() && r.via != best.via {
					t.Errorf("on %s, %s has two routes %s: via %s and via %s", n, a.Addr, r.dst, best.via, r.via)
				}
				if !best.dst.IsValid() || r.dst.Bits() > best.dst.Bits() {
					best = r
				}
			}
			want := a.Node
			if a.Node == n {
				want = "local"
			}
			if best.via != want {
				t.Errorf("on %s, %s (node %s, block %s of %q) goes to %s via %s, want %s",
					n, a.Addr, a.Node, a.Block, a.Affinity, best.via, best.dst, want)
			}
		}
	}
}

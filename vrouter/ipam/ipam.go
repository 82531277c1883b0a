package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// Errors of IPAM operations. They are returned wrapped, with the address,
// block or pool in the message; test for them with errors.Is.
var (
	// ErrPoolExhausted means that no pool has a free block to claim. The
	// error is a *PoolExhaustedError (or several, joined).
	ErrPoolExhausted = errors.New("ipam: pool exhausted")
	// ErrAddressInUse means that a fixed address is already assigned.
	ErrAddressInUse = errors.New("ipam: address already assigned")
	// ErrAffinityConflict means that a fixed address lies in a block affine
	// to another node and strict affinity forbids borrowing it.
	ErrAffinityConflict = errors.New("ipam: block is affine to another node")
	// ErrNotInPool means that an address lies in no configured pool.
	ErrNotInPool = errors.New("ipam: address is in no pool")
)

// PoolExhaustedError says that a pool has no block left to claim and that
// AutoAssign could not borrow an address in it either, and why. Its message
// reads
//
//	pool default-ipv4-ippool (10.244.0.0/16) has no free /26 block and no free address to borrow
//
// when every address of the pool is assigned, and
//
//	pool default-ipv4-ippool (10.244.0.0/16) has no free /26 block and strict affinity forbids borrowing
//
// when other nodes' blocks have free addresses but the IPAM has strict
// affinity (Options.StrictAffinity). errors.Is(err, ErrPoolExhausted) holds
// for both.
type PoolExhaustedError struct {
	Pool Pool
	// StrictAffinity is set when blocks affine to other nodes have free
	// addresses in the pool, which strict affinity forbids borrowing.
	StrictAffinity bool
}

// Error returns "pool NAME (CIDR) has no free /BLOCKSIZE block and ...".
func (e *PoolExhaustedError) Error() string {
	why := "no free address to borrow"
	if e.StrictAffinity {
		why = "strict affinity forbids borrowing"
	}
	return fmt.Sprintf("pool %s has no free /%d block and %s", e.Pool, e.Pool.BlockSize, why)
}

// Is reports whether target is ErrPoolExhausted.
func (e *PoolExhaustedError) Is(target error) bool { return target == ErrPoolExhausted }

// IPAM assigns workload addresses the way Calico IPAM does. Each pool is
// carved into blocks; a node claims a free block (it becomes the block's
// affinity: the node announces it and blackholes it), assigns addresses from
// its own blocks, and claims another block when they are full. When no pool
// has a block left, the node borrows a free address from another node's
// block, unless the IPAM has strict affinity (see Options and
// BorrowedByNode). Addresses belong to handles (a workload's identity) and
// are released by handle or by address; a block stays claimed when it
// empties, until ReleaseNodeBlocks.
//
// Every operation is one Datastore transaction, so concurrent IPAMs (in any
// number of processes or hosts) sharing a Datastore never assign one address
// or claim one block twice. An IPAM is safe for concurrent use.
type IPAM struct {
	ds    Datastore
	pools []Pool
	opts  Options
}

// Options are IPAM-wide settings, Calico's IPAMConfiguration. The zero
// value is Calico's default.
type Options struct {
	// StrictAffinity forbids borrowing: a node assigns addresses only from
	// blocks affine to it, AutoAssign fails with a *PoolExhaustedError
	// when no pool has a free block, and AssignIP of an address in another
	// node's block fails with ErrAffinityConflict. Off (the default), such
	// an address is borrowed: it is assigned to the node while its block
	// stays affine to the owner (see BorrowedByNode).
	StrictAffinity bool
}

// New returns an IPAM over ds for the given pools, tried in order when a
// node claims a block or borrows an address. Pools must be valid (see
// Pool.Validate), uniquely named and must not overlap; a zero BlockSize
// becomes the default. At most one Options may follow; without it, the
// zero Options (borrowing allowed, as in Calico) applies.
func New(ds Datastore, pools []Pool, opts ...Options) (*IPAM, error) {
	if ds == nil {
		return nil, errors.New("ipam: nil datastore")
	}
	if len(pools) == 0 {
		return nil, errors.New("ipam: no pools")
	}
	if len(opts) > 1 {
		return nil, fmt.Errorf("ipam: %d Options given, want at most one", len(opts))
	}
	m := &IPAM{ds: ds}
	if len(opts) == 1 {
		m.opts = opts[0]
	}
	for _, p := range pools {
		p, err := p.normalize()
		if err != nil {
			return nil, err
		}
		for _, q := range m.pools {
			if q.Name == p.Name {
				return nil, fmt.Errorf("ipam: two pools named %s", p.Name)
			}
			if q.CIDR.Overlaps(p.CIDR) {
				return nil, fmt.Errorf("ipam: pools %s and %s overlap", q, p)
			}
		}
		m.pools = append(m.pools, p)
	}
	return m, nil
}

// Pools returns the pools, with their block sizes filled in.
func (m *IPAM) Pools() []Pool {
	return slices.Clone(m.pools)
}

// Options returns the options the IPAM was created with.
func (m *IPAM) Options() Options {
	return m.opts
}

// AssignArgs says for whom an address is assigned: the node that will host
// it (whose blocks it comes from), the handle that will own it, and
// attributes stored with it (for example the workload's name).
type AssignArgs struct {
	Node   string
	Handle string
	Attrs  map[string]string
}

func (a AssignArgs) check() error {
	if a.Node == "" {
		return errors.New("ipam: assign: no node")
	}
	if a.Handle == "" {
		return errors.New("ipam: assign: no handle")
	}
	return nil
}

func (a AssignArgs) allocation() Allocation {
	return Allocation{Handle: a.Handle, Node: a.Node, Attrs: maps.Clone(a.Attrs)}
}

// AutoAssign assigns one address to args.Handle on args.Node and returns it.
//
// The address is the lowest free one in the node's blocks (lowest block
// first). When they are full, or the node has none yet, the node claims a
// block: in each pool in turn it scans the blocks starting at the one whose
// index is the FNV-1a hash of the node name modulo the pool's number of
// blocks, wrapping around, and takes the first one no node holds; the
// address is then that block's lowest free one. The start spreads nodes over
// the pool the way Calico's per-host seeded choice does, and is the same on
// every run, so a lab gets the same blocks each time it is deployed.
//
// When no pool has a free block, the node borrows (unless the IPAM has
// strict affinity): in each pool in turn it scans the blocks affine to
// other nodes (or to none) the same way, from the node's start block on,
// wrapping around, and takes the lowest free address of the first block that
// has one. The allocation records args.Node as its node while the block
// stays affine to its owner, which keeps announcing and blackholing the
// whole block; the borrowing node announces the address as a /32 (see
// BorrowedByNode), which every other node prefers by longest-prefix match.
//
// When no address can be had, the error is a *PoolExhaustedError (several
// joined when there are several pools) saying whether strict affinity
// forbade borrowing or the pool is full. AutoAssign does not look at the
// addresses the handle already has: it assigns one more.
func (m *IPAM) AutoAssign(ctx context.Context, args AssignArgs) (netip.Addr, error) {
	if err := args.check(); err != nil {
		return netip.Addr{}, err
	}
	var addr netip.Addr
	err := m.ds.Update(ctx, func(tx Tx) error {
		blocks, err := tx.Blocks()
		if err != nil {
			return err
		}
		// A free address in one of the node's own blocks.
		for _, b := range blocks {
			if b.Affinity != args.Node || m.poolOf(b.CIDR) == nil {
				continue
			}
			if o, ok := b.FirstFree(); ok {
				addr, err = assign(tx, b, o, args)
				return err
			}
		}
		// A new block.
		var exhausted []error
		for _, p := range m.pools {
			b, ok := claimable(p, blocks, args.Node)
			if !ok {
				exhausted = append(exhausted, &PoolExhaustedError{Pool: p})
				continue
			}
			o, _ := b.FirstFree()
			addr, err = assign(tx, b, o, args)
			return err
		}
		// Borrow a free address from a block affine to another node, as
		// Calico does unless its IPAMConfig has strict affinity.
		exhausted = exhausted[:0]
		for _, p := range m.pools {
			b, ok := borrowable(p, blocks, args.Node)
			if ok && !m.opts.StrictAffinity {
				o, _ := b.FirstFree()
				addr, err = assign(tx, b, o, args)
				return err
			}
			exhausted = append(exhausted, &PoolExhaustedError{Pool: p, StrictAffinity: ok})
		}
		if len(exhausted) == 1 {
			return exhausted[0]
		}
		return errors.Join(exhausted...)
	})
	if err != nil {
		return netip.Addr{}, err
	}
	return addr, nil
}

// claimable returns the block node should claim in pool p, given every
// block in the store: the first one from p.startBlock(node) on that no
// stored block overlaps, or that is stored with no affinity and has a free
// address. The returned block has node as its affinity.
func claimable(p Pool, blocks []Block, node string) (Block, bool) {
	// Candidates taken by a stored block, as indexes into the pool.
	taken := map[uint64]bool{}
	unaffine := map[uint64]Block{}
	hostBits := p.CIDR.Addr().BitLen() - p.BlockSize
	for _, b := range blocks {
		if !b.CIDR.Overlaps(p.CIDR) {
			continue
		}
		if b.CIDR.Bits() < p.CIDR.Bits() {
			return Block{}, false // a stored block covers the whole pool
		}
		// Candidates that b overlaps: the one containing it, or all the
		// ones it contains when it is larger than the pool's block size.
		first := addrOffset(b.CIDR.Addr(), p.CIDR.Addr()) >> uint(hostBits)
		n := uint64(1)
		if b.CIDR.Bits() < p.BlockSize {
			n = 1 << uint(p.BlockSize-b.CIDR.Bits())
		}
		for i := first; i < first+n; i++ {
			if b.Affinity == "" && b.CIDR.Bits() == p.BlockSize && b.NumFree() > 0 {
				unaffine[i] = b
				continue
			}
			taken[i] = true
		}
	}
	total := p.numBlocks()
	if uint64(len(taken)) >= total {
		return Block{}, false
	}
	// At most len(taken)+1 steps.
	for i, idx := uint64(0), p.startBlock(node); i < total; i, idx = i+1, (idx+1)%total {
		if taken[idx] {
			continue
		}
		if b, ok := unaffine[idx]; ok {
			b.Affinity = node
			return b, true
		}
		return Block{CIDR: p.block(idx), Affinity: node, Allocations: map[int]Allocation{}}, true
	}
	return Block{}, false
}

// borrowable returns the block in pool p that node borrows an address from:
// of the stored blocks inside p that are affine to another node (or to
// none) and have a free address, the first from p.startBlock(node) on,
// wrapping around.
func borrowable(p Pool, blocks []Block, node string) (Block, bool) {
	hostBits := p.CIDR.Addr().BitLen() - p.BlockSize
	start := p.startBlock(node)
	var wrapped *Block      // the first candidate before the start block
	for i := range blocks { // sorted by CIDR
		b := &blocks[i]
		if b.Affinity == node || !p.containsBlock(b.CIDR) || b.NumFree() == 0 {
			continue
		}
		if addrOffset(b.CIDR.Addr(), p.CIDR.Addr())>>uint(hostBits) >= start {
			return *b, true
		}
		if wrapped == nil {
			wrapped = b
		}
	}
	if wrapped != nil {
		return *wrapped, true
	}
	return Block{}, false
}

// assign records ordinal o of b as args' and updates args' handle.
func assign(tx Tx, b Block, o int, args AssignArgs) (netip.Addr, error) {
	if b.Allocations == nil {
		b.Allocations = map[int]Allocation{}
	}
	b.Allocations[o] = args.allocation()
	if err := tx.PutBlock(b); err != nil {
		return netip.Addr{}, err
	}
	h, err := tx.Handle(args.Handle)
	switch {
	case errors.Is(err, ErrNotFound):
		h = Handle{ID: args.Handle, Blocks: map[netip.Prefix]int{}}
	case err != nil:
		return netip.Addr{}, err
	}
	h.Blocks[b.CIDR]++
	if err := tx.PutHandle(h); err != nil {
		return netip.Addr{}, err
	}
	return b.Addr(o), nil
}

// AssignIP assigns the fixed address addr to args.Handle on args.Node.
//
// When addr's block (the pool's block containing it) is not claimed yet,
// args.Node claims it. When the block is affine to another node, args.Node
// borrows addr (the block stays the owner's; see AutoAssign and
// BorrowedByNode), unless the IPAM has strict affinity. It is an error,
// wrapping ErrNotInPool, when addr is in no pool; wrapping
// ErrAffinityConflict, when the block is affine to another node and the
// IPAM has strict affinity; and wrapping ErrAddressInUse, when addr is
// assigned to another handle. Assigning an address again to the handle that
// holds it succeeds and changes nothing.
func (m *IPAM) AssignIP(ctx context.Context, addr netip.Addr, args AssignArgs) error {
	if err := args.check(); err != nil {
		return err
	}
	p := m.poolOf(netip.PrefixFrom(addr, addr.BitLen()))
	if p == nil {
		return fmt.Errorf("%w: %s", ErrNotInPool, addr)
	}
	return m.ds.Update(ctx, func(tx Tx) error {
		b, found, err := findBlock(tx, *p, addr)
		if err != nil {
			return err
		}
		if !found {
			b = Block{CIDR: netip.PrefixFrom(addr, p.BlockSize).Masked(), Affinity: args.Node, Allocations: map[int]Allocation{}}
			if err := checkNoOverlap(tx, b.CIDR); err != nil {
				return err
			}
		}
		switch b.Affinity {
		case args.Node:
		case "":
			b.Affinity = args.Node
		default:
			if m.opts.StrictAffinity {
				return fmt.Errorf("%w: %s is in block %s, affine to node %s, not %s, and strict affinity forbids borrowing",
					ErrAffinityConflict, addr, b.CIDR, b.Affinity, args.Node)
			}
			// Borrowed: the block stays the owner's.
		}
		o, _ := b.Ordinal(addr)
		if a, used := b.Allocations[o]; used {
			if a.Handle == args.Handle {
				return nil
			}
			return fmt.Errorf("%w: %s is held by handle %q", ErrAddressInUse, addr, a.Handle)
		}
		_, err = assign(tx, b, o, args)
		return err
	})
}

// ReleaseByHandle releases every address of the handle. Releasing a handle
// that holds no address is not an error. A borrowed address is freed in its
// block, whose affinity does not change.
func (m *IPAM) ReleaseByHandle(ctx context.Context, handle string) error {
	return m.ds.Update(ctx, func(tx Tx) error {
		h, err := tx.Handle(handle)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		for cidr := range h.Blocks {
			b, err := tx.Block(cidr)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			n := 0
			for o, a := range b.Allocations {
				if a.Handle == handle {
					delete(b.Allocations, o)
					n++
				}
			}
			if n > 0 {
				if err := tx.PutBlock(b); err != nil {
					return err
				}
			}
		}
		return tx.DeleteHandle(handle)
	})
}

// ReleaseAddress releases one address, whichever handle holds it. Releasing
// an address that is not assigned is not an error; an address in no pool
// is (ErrNotInPool).
func (m *IPAM) ReleaseAddress(ctx context.Context, addr netip.Addr) error {
	p := m.poolOf(netip.PrefixFrom(addr, addr.BitLen()))
	if p == nil {
		return fmt.Errorf("%w: %s", ErrNotInPool, addr)
	}
	return m.ds.Update(ctx, func(tx Tx) error {
		b, found, err := findBlock(tx, *p, addr)
		if err != nil || !found {
			return err
		}
		o, _ := b.Ordinal(addr)
		a, used := b.Allocations[o]
		if !used {
			return nil
		}
		delete(b.Allocations, o)
		if err := tx.PutBlock(b); err != nil {
			return err
		}
		h, err := tx.Handle(a.Handle)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Blocks[b.CIDR]--; h.Blocks[b.CIDR] <= 0 {
			delete(h.Blocks, b.CIDR)
		}
		if len(h.Blocks) == 0 {
			return tx.DeleteHandle(h.ID)
		}
		return tx.PutHandle(h)
	})
}

// ReleaseNodeBlocks gives up node's empty blocks, for when the node is
// removed, and returns them. Blocks that still hold addresses stay affine
// to the node: release those addresses (by handle) first.
func (m *IPAM) ReleaseNodeBlocks(ctx context.Context, node string) ([]netip.Prefix, error) {
	var released []netip.Prefix
	err := m.ds.Update(ctx, func(tx Tx) error {
		released = nil
		blocks, err := tx.Blocks()
		if err != nil {
			return err
		}
		for _, b := range blocks {
			if b.Affinity != node || !b.Empty() {
				continue
			}
			if err := tx.DeleteBlock(b.CIDR); err != nil {
				return err
			}
			released = append(released, b.CIDR)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return released, nil
}

// AddressesByHandle returns the addresses the handle holds, in increasing
// order; none is not an error.
func (m *IPAM) AddressesByHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	err := m.ds.View(ctx, func(tx Tx) error {
		addrs = nil
		h, err := tx.Handle(handle)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		for cidr := range h.Blocks {
			b, err := tx.Block(cidr)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			for o, a := range b.Allocations {
				if a.Handle == handle {
					addrs = append(addrs, b.Addr(o))
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs, nil
}

// AddressByHandle returns the lowest address the handle holds, or an error
// wrapping ErrNotFound when it holds none. A node agent uses it to find a
// workload's address again after a restart.
func (m *IPAM) AddressByHandle(ctx context.Context, handle string) (netip.Addr, error) {
	addrs, err := m.AddressesByHandle(ctx, handle)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("handle %q holds no address: %w", handle, ErrNotFound)
	}
	return addrs[0], nil
}

// Blocks returns every block in the datastore, sorted by CIDR, as
// `calicoctl ipam show --show-blocks` lists them.
func (m *IPAM) Blocks(ctx context.Context) ([]Block, error) {
	var blocks []Block
	err := m.ds.View(ctx, func(tx Tx) error {
		var err error
		blocks, err = tx.Blocks()
		return err
	})
	return blocks, err
}

// BlocksForNode returns the blocks affine to node, sorted by CIDR: the ones
// the node blackholes and announces.
func (m *IPAM) BlocksForNode(ctx context.Context, node string) ([]Block, error) {
	blocks, err := m.Blocks(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(blocks, func(b Block) bool { return b.Affinity != node }), nil
}

// Assignment is one assigned address, as Allocations lists them.
type Assignment struct {
	Addr     netip.Addr
	Block    netip.Prefix // the block it lies in
	Affinity string       // the block's affinity, "" for none
	// Borrowed is set when the address was assigned for a node (Node) other
	// than the block's affinity: that node announces it as a /32.
	Borrowed bool
	Allocation
}

// Allocations returns every assigned address, in increasing order.
func (m *IPAM) Allocations(ctx context.Context) ([]Assignment, error) {
	blocks, err := m.Blocks(ctx)
	if err != nil {
		return nil, err
	}
	var out []Assignment
	for _, b := range blocks {
		for _, o := range b.Ordinals() {
			a := b.Allocations[o]
			out = append(out, Assignment{Addr: b.Addr(o), Block: b.CIDR, Affinity: b.Affinity, Borrowed: b.Borrowed(o), Allocation: a})
		}
	}
	return out, nil
}

// BorrowedByNode returns the addresses assigned to node in blocks that are
// not affine to it, in increasing order: the ones it borrowed. The node
// routes each to its workload as a /32, like any local workload, and
// announces each as a /32 besides its blocks; the blocks' owners keep
// announcing and blackholing their whole blocks, and every other node
// sends the address to the borrower by longest-prefix match.
func (m *IPAM) BorrowedByNode(ctx context.Context, node string) ([]netip.Addr, error) {
	if node == "" {
		return nil, errors.New("ipam: borrowed by node: no node")
	}
	blocks, err := m.Blocks(ctx)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, b := range blocks {
		if b.Affinity == node {
			continue
		}
		for _, o := range b.Ordinals() {
			if b.Allocations[o].Node == node {
				out = append(out, b.Addr(o))
			}
		}
	}
	return out, nil
}

// poolOf returns the pool that contains prefix p, or nil.
func (m *IPAM) poolOf(p netip.Prefix) *Pool {
	for i := range m.pools {
		if m.pools[i].containsBlock(p) {
			return &m.pools[i]
		}
	}
	return nil
}

// findBlock returns the stored block containing addr, which lies in pool p.
func findBlock(tx Tx, p Pool, addr netip.Addr) (Block, bool, error) {
	b, err := tx.Block(netip.PrefixFrom(addr, p.BlockSize).Masked())
	if err == nil {
		return b, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Block{}, false, err
	}
	// A block of another size (the pool's block size changed).
	blocks, err := tx.Blocks()
	if err != nil {
		return Block{}, false, err
	}
	for _, b := range blocks {
		if b.CIDR.Contains(addr) {
			return b, true, nil
		}
	}
	return Block{}, false, nil
}

// checkNoOverlap fails when a stored block overlaps cidr.
func checkNoOverlap(tx Tx, cidr netip.Prefix) error {
	blocks, err := tx.Blocks()
	if err != nil {
		return err
	}
	for _, b := range blocks {
		if b.CIDR.Overlaps(cidr) {
			return fmt.Errorf("ipam: block %s overlaps stored block %s", cidr, b.CIDR)
		}
	}
	return nil
}

package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// AssignRequest is one address that AssignMany assigns: the address Addr
// when it is valid (as AssignIP assigns it), otherwise the next free one
// (as AutoAssign picks it), to Handle on Node.
type AssignRequest struct {
	AssignArgs
	// Addr is the fixed address to assign; the zero Addr asks for one
	// picked automatically.
	Addr netip.Addr
	// Keep makes a request whose handle already holds an address (in the
	// store, or from an earlier request of the same call) assign nothing
	// and return the handle's lowest address: what a restarted node agent
	// wants for the workloads it serves again.
	Keep bool
}

// BatchLimiter is implemented by a Datastore whose transactions are
// bounded in size (etcd's --max-txn-ops): AssignMany then assigns at most
// MaxBatch addresses per transaction.
type BatchLimiter interface {
	MaxBatch() int
}

// AssignMany assigns the addresses of reqs and returns them in the order of
// reqs. Each request gets the address that AutoAssign or AssignIP would
// give it if they were called in order, with the same rules (the node's
// own blocks first, then a new block from each pool's start for the node,
// then borrowing unless strict affinity; a fixed address claims or borrows
// its block) and the same errors, wrapped with the request's index and
// handle. Unlike those, the whole batch is one Datastore transaction (per
// MaxBatch requests, when the store is a BatchLimiter): every block and
// handle is read and written once, however many addresses the batch
// assigns. When a request fails, nothing of the batch stays assigned.
func (m *IPAM) AssignMany(ctx context.Context, reqs []AssignRequest) ([]netip.Addr, error) {
	for i, r := range reqs {
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		if r.Addr.IsValid() && m.poolOf(netip.PrefixFrom(r.Addr, r.Addr.BitLen())) == nil {
			return nil, fmt.Errorf("request %d (handle %s): %w: %s", i, r.Handle, ErrNotInPool, r.Addr)
		}
	}
	size := len(reqs)
	if l, ok := m.ds.(BatchLimiter); ok && l.MaxBatch() > 0 {
		size = l.MaxBatch()
	}
	out := make([]netip.Addr, 0, len(reqs))
	var fresh []netip.Addr // addresses assigned by the chunks committed
	for start := 0; start < len(reqs); start += size {
		chunk := reqs[start:min(start+size, len(reqs))]
		var addrs, assigned []netip.Addr
		err := m.ds.Update(ctx, func(tx Tx) error {
			var err error
			addrs, assigned, err = m.assignBatch(tx, chunk, start)
			return err
		})
		if err != nil {
			// Undo the chunks committed before (only with a
			// BatchLimiter); blocks they claimed stay claimed, empty.
			for _, a := range fresh {
				_ = m.ReleaseAddress(context.WithoutCancel(ctx), a)
			}
			return nil, err
		}
		out = append(out, addrs...)
		fresh = append(fresh, assigned...)
	}
	return out, nil
}

// batchState is the working copy of the store that one AssignMany
// transaction assigns in: every block, read once, and the handles it
// touches.
type batchState struct {
	tx      Tx
	blocks  map[netip.Prefix]*Block
	order   []netip.Prefix // the blocks' CIDRs, sorted
	handles map[string]*Handle
	dirtyB  map[netip.Prefix]bool
	dirtyH  map[string]bool
	fresh   []netip.Addr // the addresses assigned
}

func (s *batchState) sorted() []Block {
	out := make([]Block, len(s.order))
	for i, c := range s.order {
		out[i] = *s.blocks[c]
	}
	return out
}

func (s *batchState) put(b Block) *Block {
	if _, ok := s.blocks[b.CIDR]; !ok {
		i, _ := slices.BinarySearchFunc(s.order, b.CIDR, netip.Prefix.Compare)
		s.order = slices.Insert(s.order, i, b.CIDR)
	}
	if b.Allocations == nil {
		b.Allocations = map[int]Allocation{}
	}
	p := &b
	s.blocks[b.CIDR] = p
	s.dirtyB[b.CIDR] = true
	return p
}

func (s *batchState) handle(id string) (*Handle, error) {
	if h, ok := s.handles[id]; ok {
		return h, nil
	}
	h, err := s.tx.Handle(id)
	switch {
	case errors.Is(err, ErrNotFound):
		h = Handle{ID: id, Blocks: map[netip.Prefix]int{}}
	case err != nil:
		return nil, err
	}
	s.handles[id] = &h
	return &h, nil
}

// assign records ordinal o of b as args'.
func (s *batchState) assign(b *Block, o int, args AssignArgs) (netip.Addr, error) {
	h, err := s.handle(args.Handle)
	if err != nil {
		return netip.Addr{}, err
	}
	b.Allocations[o] = args.allocation()
	s.dirtyB[b.CIDR] = true
	h.Blocks[b.CIDR]++
	s.dirtyH[h.ID] = true
	s.fresh = append(s.fresh, b.Addr(o))
	return b.Addr(o), nil
}

// held returns the lowest address that handle id holds, if any.
func (s *batchState) held(id string) (netip.Addr, bool, error) {
	h, err := s.handle(id)
	if err != nil {
		return netip.Addr{}, false, err
	}
	var low netip.Addr
	for cidr := range h.Blocks {
		b, ok := s.blocks[cidr]
		if !ok {
			continue
		}
		for o, a := range b.Allocations {
			if a.Handle == id && (!low.IsValid() || b.Addr(o).Less(low)) {
				low = b.Addr(o)
			}
		}
	}
	return low, low.IsValid(), nil
}

// assignBatch assigns reqs (whose first has index base in the caller's
// list) in tx, and returns their addresses and those it assigned (not
// those that handles held already).
func (m *IPAM) assignBatch(tx Tx, reqs []AssignRequest, base int) ([]netip.Addr, []netip.Addr, error) {
	blocks, err := tx.Blocks()
	if err != nil {
		return nil, nil, err
	}
	s := &batchState{tx: tx, blocks: make(map[netip.Prefix]*Block, len(blocks)), order: make([]netip.Prefix, 0, len(blocks)+1),
		handles: map[string]*Handle{}, dirtyB: map[netip.Prefix]bool{}, dirtyH: map[string]bool{}}
	for i := range blocks {
		if blocks[i].Allocations == nil {
			blocks[i].Allocations = map[int]Allocation{}
		}
		s.blocks[blocks[i].CIDR] = &blocks[i]
		s.order = append(s.order, blocks[i].CIDR)
	}
	addrs := make([]netip.Addr, len(reqs))
	for i, r := range reqs {
		if r.Keep {
			a, ok, err := s.held(r.Handle)
			if err != nil {
				return nil, nil, err
			}
			if ok {
				addrs[i] = a
				continue
			}
		}
		if r.Addr.IsValid() {
			addrs[i], err = m.batchFixed(s, r)
		} else {
			addrs[i], err = m.batchAuto(s, r.AssignArgs)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("request %d (handle %s): %w", base+i, r.Handle, err)
		}
	}
	for _, c := range s.order {
		if s.dirtyB[c] {
			if err := tx.PutBlock(*s.blocks[c]); err != nil {
				return nil, nil, err
			}
		}
	}
	ids := slices.Sorted(maps.Keys(s.dirtyH))
	for _, id := range ids {
		if err := tx.PutHandle(*s.handles[id]); err != nil {
			return nil, nil, err
		}
	}
	return addrs, s.fresh, nil
}

// batchAuto is AutoAssign's choice inside a batch.
func (m *IPAM) batchAuto(s *batchState, args AssignArgs) (netip.Addr, error) {
	for _, c := range s.order {
		b := s.blocks[c]
		if b.Affinity != args.Node || m.poolOf(b.CIDR) == nil {
			continue
		}
		if o, ok := b.FirstFree(); ok {
			return s.assign(b, o, args)
		}
	}
	var exhausted []error
	blocks := s.sorted()
	for _, p := range m.pools {
		b, ok := claimable(p, blocks, args.Node)
		if !ok {
			exhausted = append(exhausted, &PoolExhaustedError{Pool: p})
			continue
		}
		o, _ := b.FirstFree()
		return s.assign(s.put(b), o, args)
	}
	exhausted = exhausted[:0]
	for _, p := range m.pools {
		b, ok := borrowable(p, blocks, args.Node)
		if ok && !m.opts.StrictAffinity {
			o, _ := b.FirstFree()
			return s.assign(s.blocks[b.CIDR], o, args)
		}
		exhausted = append(exhausted, &PoolExhaustedError{Pool: p, StrictAffinity: ok})
	}
	if len(exhausted) == 1 {
		return netip.Addr{}, exhausted[0]
	}
	return netip.Addr{}, errors.Join(exhausted...)
}

// batchFixed is AssignIP inside a batch.
func (m *IPAM) batchFixed(s *batchState, r AssignRequest) (netip.Addr, error) {
	addr, args := r.Addr, r.AssignArgs
	p := m.poolOf(netip.PrefixFrom(addr, addr.BitLen()))
	var b *Block
	if x, ok := s.blocks[netip.PrefixFrom(addr, p.BlockSize).Masked()]; ok {
		b = x
	} else {
		for _, c := range s.order {
			if c.Contains(addr) {
				b = s.blocks[c]
				break
			}
		}
	}
	if b == nil {
		cidr := netip.PrefixFrom(addr, p.BlockSize).Masked()
		for _, c := range s.order {
			if c.Overlaps(cidr) {
				return netip.Addr{}, fmt.Errorf("ipam: block %s overlaps stored block %s", cidr, c)
			}
		}
		b = s.put(Block{CIDR: cidr, Affinity: args.Node})
	}
	claim := false
	switch b.Affinity {
	case args.Node:
	case "":
		claim = true
	default:
		if m.opts.StrictAffinity {
			return netip.Addr{}, fmt.Errorf("%w: %s is in block %s, affine to node %s, not %s, and strict affinity forbids borrowing",
				ErrAffinityConflict, addr, b.CIDR, b.Affinity, args.Node)
		}
	}
	o, _ := b.Ordinal(addr)
	if a, used := b.Allocations[o]; used {
		if a.Handle == args.Handle {
			return addr, nil
		}
		return netip.Addr{}, fmt.Errorf("%w: %s is held by handle %q", ErrAddressInUse, addr, a.Handle)
	}
	if claim {
		b.Affinity = args.Node
	}
	return s.assign(b, o, args)
}

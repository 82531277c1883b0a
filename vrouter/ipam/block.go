package ipam

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// maxBlockHostBits bounds a block's size (2^12 addresses, Calico's /20 and
// /116), which keeps ordinals small ints.
const maxBlockHostBits = 12

// Block is an allocation block: a CIDR of its pool's block size, the node it
// is affine to, and which of its addresses are assigned.
//
// Addresses are numbered by ordinal, their offset from the block's first
// address; every ordinal from 0 to NumAddresses()-1 is assignable. An
// ordinal absent from Allocations is free.
//
// A Block is a value: methods never modify it, and the Datastore hands out
// copies that the caller owns.
type Block struct {
	CIDR        netip.Prefix
	Affinity    string             // node name; "" when affine to no node
	Allocations map[int]Allocation // ordinal → allocation
}

// Allocation records one assigned address: the handle that owns it (the
// workload's identity), the node it was assigned for and free-form
// attributes such as the workload name.
type Allocation struct {
	Handle string
	Node   string
	Attrs  map[string]string
}

// NumAddresses returns the number of addresses in b.
func (b Block) NumAddresses() int {
	return 1 << uint(b.CIDR.Addr().BitLen()-b.CIDR.Bits())
}

// Addr returns the address with the given ordinal, or the zero Addr when the
// ordinal is outside the block.
func (b Block) Addr(ordinal int) netip.Addr {
	if ordinal < 0 || ordinal >= b.NumAddresses() {
		return netip.Addr{}
	}
	return addrAdd(b.CIDR.Addr(), uint64(ordinal), 0)
}

// Ordinal returns the ordinal of a within b, and false when b does not
// contain a.
func (b Block) Ordinal(a netip.Addr) (int, bool) {
	if !b.CIDR.Contains(a) {
		return 0, false
	}
	return int(addrOffset(a, b.CIDR.Addr())), true
}

// FirstFree returns the lowest free ordinal, and false when b is full.
func (b Block) FirstFree() (int, bool) {
	n := b.NumAddresses()
	for o := 0; o < n; o++ {
		if _, used := b.Allocations[o]; !used {
			return o, true
		}
	}
	return 0, false
}

// FreeOrdinals returns the free ordinals in increasing order.
func (b Block) FreeOrdinals() []int {
	n := b.NumAddresses()
	free := make([]int, 0, n-len(b.Allocations))
	for o := 0; o < n; o++ {
		if _, used := b.Allocations[o]; !used {
			free = append(free, o)
		}
	}
	return free
}

// NumFree returns the number of free addresses in b.
func (b Block) NumFree() int {
	return b.NumAddresses() - len(b.Allocations)
}

// Empty reports whether no address of b is assigned.
func (b Block) Empty() bool {
	return len(b.Allocations) == 0
}

// Borrowed reports whether the address with ordinal o is assigned to a node
// other than b's affinity: borrowed, in Calico's terms. An allocation with
// no node is not borrowed.
func (b Block) Borrowed(o int) bool {
	a, used := b.Allocations[o]
	return used && a.Node != "" && a.Node != b.Affinity
}

// Ordinals returns the assigned ordinals in increasing order.
func (b Block) Ordinals() []int {
	return slices.Sorted(maps.Keys(b.Allocations))
}

// Clone returns a deep copy of b.
func (b Block) Clone() Block {
	c := b
	c.Allocations = make(map[int]Allocation, len(b.Allocations))
	for o, a := range b.Allocations {
		c.Allocations[o] = a.clone()
	}
	return c
}

func (a Allocation) clone() Allocation {
	a.Attrs = maps.Clone(a.Attrs)
	return a
}

// check reports whether b is well formed: a canonical CIDR of an allowed
// size and ordinals inside it, each with a handle.
func (b Block) check() error {
	if !b.CIDR.IsValid() || b.CIDR.Masked() != b.CIDR || b.CIDR.Addr().Is4In6() || b.CIDR.Addr().Zone() != "" {
		return fmt.Errorf("ipam: block cidr %s is not a canonical prefix", b.CIDR)
	}
	if hb := b.CIDR.Addr().BitLen() - b.CIDR.Bits(); hb > maxBlockHostBits {
		return fmt.Errorf("ipam: block %s is larger than /%d", b.CIDR, b.CIDR.Addr().BitLen()-maxBlockHostBits)
	}
	n := b.NumAddresses()
	for o, a := range b.Allocations {
		if o < 0 || o >= n {
			return fmt.Errorf("ipam: block %s: ordinal %d out of range", b.CIDR, o)
		}
		if a.Handle == "" {
			return fmt.Errorf("ipam: block %s: ordinal %d has no handle", b.CIDR, o)
		}
	}
	return nil
}

// Affinity prefix of the stored form, as in Calico ("host:<node>").
const hostAffinityPrefix = "host:"

type blockJSON struct {
	CIDR        netip.Prefix     `json:"cidr"`
	Affinity    string           `json:"affinity,omitempty"`
	Allocations []allocationJSON `json:"allocations"`
}

type allocationJSON struct {
	Ordinal int               `json:"ordinal"`
	Address netip.Addr        `json:"address"`
	Handle  string            `json:"handle"`
	Node    string            `json:"node,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// MarshalJSON encodes b in the form the datastores store: the CIDR, the
// affinity as Calico writes it ("host:<node>") and the allocations as a list
// in ordinal order, each with its address for readability.
func (b Block) MarshalJSON() ([]byte, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	j := blockJSON{CIDR: b.CIDR, Allocations: []allocationJSON{}}
	if b.Affinity != "" {
		j.Affinity = hostAffinityPrefix + b.Affinity
	}
	for _, o := range b.Ordinals() {
		a := b.Allocations[o]
		j.Allocations = append(j.Allocations, allocationJSON{
			Ordinal: o, Address: b.Addr(o), Handle: a.Handle, Node: a.Node, Attrs: a.Attrs,
		})
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the form MarshalJSON writes and checks it.
func (b *Block) UnmarshalJSON(data []byte) error {
	var j blockJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	nb := Block{CIDR: j.CIDR, Allocations: make(map[int]Allocation, len(j.Allocations))}
	if j.Affinity != "" {
		node, ok := strings.CutPrefix(j.Affinity, hostAffinityPrefix)
		if !ok || node == "" {
			return fmt.Errorf("ipam: block %s: unsupported affinity %q", j.CIDR, j.Affinity)
		}
		nb.Affinity = node
	}
	if err := nb.check(); err != nil {
		return err
	}
	for _, a := range j.Allocations {
		if _, dup := nb.Allocations[a.Ordinal]; dup {
			return fmt.Errorf("ipam: block %s: ordinal %d listed twice", nb.CIDR, a.Ordinal)
		}
		if want := nb.Addr(a.Ordinal); a.Address != want {
			return fmt.Errorf("ipam: block %s: ordinal %d has address %s, want %s", nb.CIDR, a.Ordinal, a.Address, want)
		}
		nb.Allocations[a.Ordinal] = Allocation{Handle: a.Handle, Node: a.Node, Attrs: a.Attrs}
	}
	if err := nb.check(); err != nil {
		return err
	}
	*b = nb
	return nil
}

// Handle records which blocks hold the addresses of one handle, so that
// releasing a handle touches only those blocks (Calico's IPAMHandle).
type Handle struct {
	ID     string
	Blocks map[netip.Prefix]int // block → number of the handle's addresses in it
}

type handleJSON struct {
	ID     string               `json:"id"`
	Blocks map[netip.Prefix]int `json:"blocks"`
}

// MarshalJSON encodes h in the form the datastores store.
func (h Handle) MarshalJSON() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	j := handleJSON(h)
	if j.Blocks == nil {
		j.Blocks = map[netip.Prefix]int{}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the form MarshalJSON writes and checks it.
func (h *Handle) UnmarshalJSON(data []byte) error {
	var j handleJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	nh := Handle(j)
	if nh.Blocks == nil {
		nh.Blocks = map[netip.Prefix]int{}
	}
	if err := nh.check(); err != nil {
		return err
	}
	*h = nh
	return nil
}

// Clone returns a deep copy of h.
func (h Handle) Clone() Handle {
	h.Blocks = maps.Clone(h.Blocks)
	if h.Blocks == nil {
		h.Blocks = map[netip.Prefix]int{}
	}
	return h
}

func (h Handle) check() error {
	if h.ID == "" {
		return fmt.Errorf("ipam: handle has no id")
	}
	for p, n := range h.Blocks {
		if !p.IsValid() || p.Masked() != p {
			return fmt.Errorf("ipam: handle %q: block %s is not a canonical prefix", h.ID, p)
		}
		if n <= 0 {
			return fmt.Errorf("ipam: handle %q: block %s has count %d", h.ID, p, n)
		}
	}
	return nil
}

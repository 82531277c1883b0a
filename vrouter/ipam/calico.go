package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// This file is the etcd store's data format: Calico's etcd v3 key layout
// (libcalico-go's model package) and values that use Calico's JSON field
// names, so that `etcdctl get --prefix /calico/ipam/v2/` reads like a
// Calico cluster's IPAM data.

// Keys of Calico's IPAM data in etcd.
const (
	calicoIPAMPrefix   = "/calico/ipam/v2/"
	calicoBlockPrefix  = calicoIPAMPrefix + "assignment/"
	calicoHandlePrefix = calicoIPAMPrefix + "handle/"
	calicoHostPrefix   = calicoIPAMPrefix + "host/"
	calicoConfigKey    = calicoIPAMPrefix + "config"
)

// ipVersion is 4 or 6, as Calico writes it in keys ("ipv4").
func ipVersion(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 4
	}
	return 6
}

// cidrKeyPart is a CIDR as Calico writes it in keys: "10.244.166.128-26".
func cidrKeyPart(p netip.Prefix) string {
	return strings.Replace(p.String(), "/", "-", 1)
}

// blockKey is the key of a block, e.g.
// /calico/ipam/v2/assignment/ipv4/block/10.244.166.128-26.
func blockKey(p netip.Prefix) string {
	return fmt.Sprintf("%sipv%d/block/%s", calicoBlockPrefix, ipVersion(p), cidrKeyPart(p))
}

// parseBlockKey returns the CIDR of a block key.
func parseBlockKey(key string) (netip.Prefix, error) {
	rest, ok := strings.CutPrefix(key, calicoBlockPrefix)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("ipam: %q is not a block key", key)
	}
	fam, c, ok := strings.Cut(rest, "/block/")
	if !ok || (fam != "ipv4" && fam != "ipv6") {
		return netip.Prefix{}, fmt.Errorf("ipam: %q is not a block key", key)
	}
	i := strings.LastIndexByte(c, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("ipam: %q is not a block key", key)
	}
	p, err := netip.ParsePrefix(c[:i] + "/" + c[i+1:])
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ipam: block key %q: %w", key, err)
	}
	if p.Masked() != p || fam != fmt.Sprint("ipv", ipVersion(p)) || blockKey(p) != key {
		return netip.Prefix{}, fmt.Errorf("ipam: %q is not a canonical block key", key)
	}
	return p, nil
}

// affinityKey is the key of a node's affinity to a block, e.g.
// /calico/ipam/v2/host/node1/ipv4/block/10.244.166.128-26.
func affinityKey(node string, p netip.Prefix) string {
	return fmt.Sprintf("%s%s/ipv%d/block/%s", calicoHostPrefix, node, ipVersion(p), cidrKeyPart(p))
}

// handleKey is the key of a handle: /calico/ipam/v2/handle/<id>.
func handleKey(id string) string { return calicoHandlePrefix + id }

// calicoBlock is Calico's AllocationBlock: allocations[ordinal] is an index
// into attributes or null when the address is free; unallocated lists the
// free ordinals in the order they will be handed out.
type calicoBlock struct {
	CIDR           string            `json:"cidr"`
	Affinity       *string           `json:"affinity"`
	StrictAffinity bool              `json:"strictAffinity"`
	Allocations    []*int            `json:"allocations"`
	Unallocated    []int             `json:"unallocated"`
	Attributes     []calicoAttribute `json:"attributes"`
	Deleted        bool              `json:"deleted"`
}

// calicoAttribute is Calico's AllocationAttribute, plus the node the
// address was assigned for (vrouter's Allocation.Node; Calico keeps it only
// in the free-form secondary attributes, which are vrouter's Attrs).
type calicoAttribute struct {
	HandleID  *string           `json:"handle_id"`
	Secondary map[string]string `json:"secondary"`
	Node      string            `json:"node,omitempty"`
}

// encodeCalicoBlock encodes b as Calico's AllocationBlock, with one
// attribute per allocation in ordinal order.
func encodeCalicoBlock(b Block) ([]byte, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	n := b.NumAddresses()
	j := calicoBlock{
		CIDR:        b.CIDR.String(),
		Allocations: make([]*int, n),
		Unallocated: b.FreeOrdinals(),
		Attributes:  []calicoAttribute{},
	}
	if b.Affinity != "" {
		aff := hostAffinityPrefix + b.Affinity
		j.Affinity = &aff
	}
	for _, o := range b.Ordinals() {
		a := b.Allocations[o]
		idx := len(j.Attributes)
		h := a.Handle
		j.Attributes = append(j.Attributes, calicoAttribute{HandleID: &h, Secondary: a.Attrs, Node: a.Node})
		j.Allocations[o] = &idx
	}
	return json.Marshal(j)
}

// decodeCalicoBlock decodes a Calico AllocationBlock and checks it. The
// free list (unallocated) is not used: free is what has no allocation.
func decodeCalicoBlock(data []byte) (Block, error) {
	var j calicoBlock
	if err := json.Unmarshal(data, &j); err != nil {
		return Block{}, fmt.Errorf("ipam: block: %w", err)
	}
	cidr, err := netip.ParsePrefix(j.CIDR)
	if err != nil {
		return Block{}, fmt.Errorf("ipam: block: %w", err)
	}
	b := Block{CIDR: cidr, Allocations: map[int]Allocation{}}
	if j.Affinity != nil {
		node, ok := strings.CutPrefix(*j.Affinity, hostAffinityPrefix)
		if !ok || node == "" {
			return Block{}, fmt.Errorf("ipam: block %s: unsupported affinity %q", j.CIDR, *j.Affinity)
		}
		b.Affinity = node
	}
	// Checks the CIDR's size before sizing anything by it.
	if err := b.check(); err != nil {
		return Block{}, err
	}
	if len(j.Allocations) != b.NumAddresses() {
		return Block{}, fmt.Errorf("ipam: block %s has %d allocation slots, want %d", cidr, len(j.Allocations), b.NumAddresses())
	}
	for o, idx := range j.Allocations {
		if idx == nil {
			continue
		}
		if *idx < 0 || *idx >= len(j.Attributes) {
			return Block{}, fmt.Errorf("ipam: block %s: ordinal %d has attribute %d of %d", cidr, o, *idx, len(j.Attributes))
		}
		at := j.Attributes[*idx]
		if at.HandleID == nil || *at.HandleID == "" {
			return Block{}, fmt.Errorf("ipam: block %s: ordinal %d has no handle", cidr, o)
		}
		a := Allocation{Handle: *at.HandleID, Node: at.Node}
		if at.Secondary != nil {
			a.Attrs = make(map[string]string, len(at.Secondary))
			for k, v := range at.Secondary {
				a.Attrs[k] = v
			}
		}
		b.Allocations[o] = a
	}
	return b, nil
}

// calicoHandle is Calico's IPAMHandle; its id is the key's last part.
type calicoHandle struct {
	Block   map[string]int `json:"block"`
	Deleted bool           `json:"deleted"`
}

func encodeCalicoHandle(h Handle) ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	j := calicoHandle{Block: make(map[string]int, len(h.Blocks))}
	for p, n := range h.Blocks {
		j.Block[p.String()] = n
	}
	return json.Marshal(j)
}

func decodeCalicoHandle(id string, data []byte) (Handle, error) {
	var j calicoHandle
	if err := json.Unmarshal(data, &j); err != nil {
		return Handle{}, fmt.Errorf("ipam: handle %q: %w", id, err)
	}
	h := Handle{ID: id, Blocks: make(map[netip.Prefix]int, len(j.Block))}
	for s, n := range j.Block {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Handle{}, fmt.Errorf("ipam: handle %q: %w", id, err)
		}
		if _, dup := h.Blocks[p]; dup {
			return Handle{}, fmt.Errorf("ipam: handle %q: block %s listed twice", id, p)
		}
		h.Blocks[p] = n
	}
	if err := h.check(); err != nil {
		return Handle{}, err
	}
	return h, nil
}

// calicoAffinity is Calico's BlockAffinity. vrouter writes it confirmed in
// the same transaction that creates the block, so the pending state Calico
// needs between its separate writes never shows; a pending affinity
// written by someone else is left alone.
type calicoAffinity struct {
	State   string `json:"state"`
	Deleted bool   `json:"deleted"`
}

// confirmedAffinity is the value of an affinity key vrouter writes.
var confirmedAffinity = func() string {
	v, _ := json.Marshal(calicoAffinity{State: "confirmed"})
	return string(v)
}()

// calicoIPAMConfig is Calico's IPAMConfig at /calico/ipam/v2/config.
type calicoIPAMConfig struct {
	StrictAffinity     bool `json:"strict_affinity"`
	AutoAllocateBlocks bool `json:"auto_allocate_blocks"`
	MaxBlocksPerHost   int  `json:"maxBlocksPerHost,omitempty"`
}

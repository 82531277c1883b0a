package ipam

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// fnv1a64 is FNV-1a written out from its definition (offset basis and prime
// from the FNV specification), independently of hash/fnv.
func fnv1a64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func TestStartBlock(t *testing.T) {
	p, err := bigPool.normalize()
	if err != nil {
		t.Fatal(err)
	}
	// Values computed outside Go (Python) from the FNV-1a definition.
	for _, c := range []struct {
		node  string
		hash  uint64
		index uint64
		block string
	}{
		{"node1", 0xca4eba7207232f14, 788, "10.244.197.0/26"},
		{"node2", 0xca4ebd720723342d, 45, "10.244.11.64/26"},
		{"node3", 0xca4ebc720723327a, 634, "10.244.158.128/26"},
		{"node-0", 0xe696ebc220787810, 16, "10.244.4.0/26"},
	} {
		if h := fnv1a64(c.node); h != c.hash {
			t.Errorf("fnv1a64(%q) = %#x, want %#x", c.node, h, c.hash)
		}
		if got := p.startBlock(c.node); got != c.index {
			t.Errorf("startBlock(%q) = %d, want %d", c.node, got, c.index)
		}
		if got := p.block(p.startBlock(c.node)); got != pp(c.block) {
			t.Errorf("start block of %q = %s, want %s", c.node, got, c.block)
		}
	}
	// Structurally, for many names and pool sizes: hash mod block count.
	for _, cidr := range []string{"10.0.0.0/26", "10.0.0.0/24", "10.244.0.0/16", "fd00:10:244::/112"} {
		q, err := Pool{Name: "p", CIDR: pp(cidr), BlockSize: 0}.normalize()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(cidr, ":") {
			q.BlockSize = 122
		} else {
			q.BlockSize = 28
		}
		for i := range 200 {
			node := fmt.Sprintf("host-%d.example", i)
			if got, want := q.startBlock(node), fnv1a64(node)%q.numBlocks(); got != want {
				t.Fatalf("%s: startBlock(%q) = %d, want %d", cidr, node, got, want)
			}
		}
	}
}

func TestPoolBlocks(t *testing.T) {
	for _, c := range []struct {
		cidr      string
		blockSize int
		n         uint64
		i         uint64
		want      string
	}{
		{"10.244.0.0/16", 26, 1024, 0, "10.244.0.0/26"},
		{"10.244.0.0/16", 26, 1024, 1, "10.244.0.64/26"},
		{"10.244.0.0/16", 26, 1024, 1023, "10.244.255.192/26"},
		{"10.0.0.0/8", 32, 1 << 24, 1<<24 - 1, "10.255.255.255/32"},
		{"0.0.0.0/0", 32, 1 << 32, 1<<32 - 1, "255.255.255.255/32"},
		{"fd00::/96", 122, 1 << 26, 1<<26 - 1, "fd00::ffff:ffc0/122"},
		{"fd00:0:0:ffff:ffff:ffff:ff00:0/104", 116, 1 << 12, 4095, "fd00:0:0:ffff:ffff:ffff:ffff:f000/116"},
		// Across the low 64 bits.
		{"fd00:0:0:1:ffff:ffff:fff0:0/108", 116, 256, 255, "fd00:0:0:1:ffff:ffff:ffff:f000/116"},
	} {
		p, err := Pool{Name: "p", CIDR: pp(c.cidr), BlockSize: c.blockSize}.normalize()
		if err != nil {
			t.Fatalf("%s/%d: %v", c.cidr, c.blockSize, err)
		}
		if p.numBlocks() != c.n {
			t.Errorf("%s in /%d: %d blocks, want %d", c.cidr, c.blockSize, p.numBlocks(), c.n)
		}
		if got := p.block(c.i); got != pp(c.want) {
			t.Errorf("%s in /%d: block %d = %s, want %s", c.cidr, c.blockSize, c.i, got, c.want)
		}
	}
	if got := addrAdd(ap("::ffff:ffff:ffff:ffff"), 1, 0); got != ap("0:0:0:1::") {
		t.Errorf("carry: got %s", got)
	}
	if got := addrAdd(ap("fd00::1:0:0:0"), 1, 64); got != ap("fd00:0:0:1:1::") {
		t.Errorf("shift 64: got %s", got)
	}
}

func TestPoolValidate(t *testing.T) {
	good := []Pool{
		{Name: "a", CIDR: pp("10.244.0.0/16"), BlockSize: 26},
		{Name: "a", CIDR: pp("10.244.0.0/16")}, // default 26
		{Name: "a", CIDR: pp("10.0.0.0/26"), BlockSize: 28},
		{Name: "a", CIDR: pp("10.0.0.0/26"), BlockSize: 26}, // a single block
		{Name: "a", CIDR: pp("0.0.0.0/0"), BlockSize: 32},
		{Name: "a", CIDR: pp("fd00::/96")}, // default 122
	}
	for _, p := range good {
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
	if p, _ := good[1].normalize(); p.BlockSize != 26 {
		t.Errorf("default IPv4 block size %d", p.BlockSize)
	}
	if p, _ := good[5].normalize(); p.BlockSize != 122 {
		t.Errorf("default IPv6 block size %d", p.BlockSize)
	}
	bad := map[string]Pool{
		"no name":         {Name: "", CIDR: pp("10.0.0.0/16")},
		"no valid cidr":   {Name: "a"},
		"host bits":       {Name: "a", CIDR: pp("10.244.1.0/16")},
		"out of range":    {Name: "a", CIDR: pp("10.0.0.0/8"), BlockSize: 19},
		"out of range 33": {Name: "a", CIDR: pp("10.0.0.0/8"), BlockSize: 33},
		"shorter":         {Name: "a", CIDR: pp("10.0.0.0/28"), BlockSize: 26},
		"v6 range":        {Name: "a", CIDR: pp("fd00::/64"), BlockSize: 64},
		"2^74":            {Name: "a", CIDR: pp("fd00::/48"), BlockSize: 122},
		"4in6":            {Name: "a", CIDR: netip.PrefixFrom(ap("::ffff:10.0.0.0"), 120), BlockSize: 122},
	}
	for what, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: Validate(%+v) succeeded", what, p)
		}
	}
	if err := (Pool{Name: "a", CIDR: pp("fd00::/48"), BlockSize: 122}).Validate(); err == nil || !strings.Contains(err.Error(), "2^74 blocks") {
		t.Errorf("huge pool: %v", err)
	}
}

func TestNew(t *testing.T) {
	ds := NewMemStore()
	if _, err := New(ds, nil); err == nil {
		t.Error("New with no pools succeeded")
	}
	if _, err := New(nil, []Pool{bigPool}); err == nil {
		t.Error("New with no datastore succeeded")
	}
	if _, err := New(ds, []Pool{bigPool, {Name: bigPool.Name, CIDR: pp("10.1.0.0/16")}}); err == nil {
		t.Error("two pools with one name accepted")
	}
	if _, err := New(ds, []Pool{bigPool, {Name: "inner", CIDR: pp("10.244.8.0/24")}}); err == nil {
		t.Error("overlapping pools accepted")
	}
	m, err := New(ds, []Pool{{Name: "p", CIDR: pp("10.1.0.0/16")}})
	if err != nil {
		t.Fatal(err)
	}
	if ps := m.Pools(); len(ps) != 1 || ps[0].BlockSize != 26 {
		t.Errorf("Pools() = %+v", ps)
	}
}

package ipam

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
)

func TestCalicoKeys(t *testing.T) {
	for _, c := range []struct {
		cidr, block, affinity string
	}{
		{"10.244.166.128/26", "/calico/ipam/v2/assignment/ipv4/block/10.244.166.128-26", "/calico/ipam/v2/host/n1/ipv4/block/10.244.166.128-26"},
		{"fd00:10:244::/122", "/calico/ipam/v2/assignment/ipv6/block/fd00:10:244::-122", "/calico/ipam/v2/host/n1/ipv6/block/fd00:10:244::-122"},
	} {
		p := pp(c.cidr)
		if got := blockKey(p); got != c.block {
			t.Errorf("blockKey(%s) = %s, want %s", p, got, c.block)
		}
		if got := affinityKey("n1", p); got != c.affinity {
			t.Errorf("affinityKey(%s) = %s, want %s", p, got, c.affinity)
		}
		if got, err := parseBlockKey(c.block); err != nil || got != p {
			t.Errorf("parseBlockKey(%s) = %s, %v", c.block, got, err)
		}
	}
	for _, k := range []string{
		"/calico/ipam/v2/assignment/ipv4/block/10.0.0.0/26",
		"/calico/ipam/v2/assignment/ipv6/block/10.0.0.0-26",
		"/calico/ipam/v2/assignment/ipv4/block/10.0.0.1-26",
		"/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-026",
		"/calico/ipam/v2/assignment/ipv4/10.0.0.0-26",
		"/calico/ipam/v2/handle/x",
	} {
		if p, err := parseBlockKey(k); err == nil {
			t.Errorf("parseBlockKey(%s) = %s, want an error", k, p)
		}
	}
}

func TestCalicoBlockRoundTrip(t *testing.T) {
	b := Block{CIDR: pp("10.0.0.0/28"), Affinity: "n1", Allocations: map[int]Allocation{
		0:  {Handle: "h1", Node: "n1", Attrs: map[string]string{"node": "n1", "workload": "w"}},
		15: {Handle: "h2", Node: "n2"},
	}}
	v, err := encodeCalicoBlock(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeCalicoBlock(v)
	if err != nil || !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip = %+v, %v, want %+v", got, err, b)
	}
	for _, bad := range []string{
		`{"cidr":"10.0.0.0/28","allocations":[]}`,
		`{"cidr":"10.0.0.0/28","affinity":"virtual:x","allocations":[null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null]}`,
		`{"cidr":"10.0.0.0/28","allocations":[1,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null],"attributes":[{"handle_id":"h"}]}`,
		`{"cidr":"10.0.0.0/28","allocations":[0,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null],"attributes":[{"handle_id":null}]}`,
		`{"cidr":"10.0.0.0/8","allocations":[]}`,
		`{"cidr":"10.0.0.1/28"}`,
	} {
		if b, err := decodeCalicoBlock([]byte(bad)); err == nil {
			t.Errorf("decodeCalicoBlock(%s) = %+v, want an error", bad, b)
		}
	}
}

// FuzzCalicoBlock: whatever decodes is a valid block that encodes and
// decodes to itself.
func FuzzCalicoBlock(f *testing.F) {
	b := Block{CIDR: pp("10.0.0.0/30"), Affinity: "n", Allocations: map[int]Allocation{1: {Handle: "h", Node: "n", Attrs: map[string]string{"a": "b"}}}}
	v, _ := encodeCalicoBlock(b)
	f.Add(v)
	f.Add([]byte(`{"cidr":"fd00::/126","affinity":"host:x","allocations":[0,0,null,null],"attributes":[{"handle_id":"h","secondary":{}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeCalicoBlock(data)
		if err != nil {
			return
		}
		if err := b.check(); err != nil {
			t.Fatalf("decoded an invalid block %+v: %v", b, err)
		}
		v, err := encodeCalicoBlock(b)
		if err != nil {
			t.Fatalf("decoded block does not encode: %v", err)
		}
		again, err := decodeCalicoBlock(v)
		if err != nil || !reflect.DeepEqual(again, b) {
			t.Fatalf("re-decoded %+v, %v, want %+v", again, err, b)
		}
		if _, err := parseBlockKey(blockKey(b.CIDR)); err != nil {
			t.Fatalf("key of %s does not parse: %v", b.CIDR, err)
		}
	})
}

// FuzzCalicoHandle: whatever decodes is a valid handle that encodes to an
// equal one.
func FuzzCalicoHandle(f *testing.F) {
	v, _ := encodeCalicoHandle(Handle{ID: "h", Blocks: map[netip.Prefix]int{pp("10.0.0.0/26"): 2}})
	f.Add("h", v)
	f.Fuzz(func(t *testing.T, id string, data []byte) {
		h, err := decodeCalicoHandle(id, data)
		if err != nil {
			return
		}
		v, err := encodeCalicoHandle(h)
		if err != nil {
			t.Fatalf("decoded handle does not encode: %v", err)
		}
		again, err := decodeCalicoHandle(id, v)
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("re-decoded %+v, %v, want %+v", again, err, h)
		}
		if bytes.Contains(v, []byte(`"deleted":true`)) {
			t.Fatal("wrote a deleted handle")
		}
	})
}

// FuzzParseBlockKey: a key that parses is the canonical key of its CIDR.
func FuzzParseBlockKey(f *testing.F) {
	f.Add("/calico/ipam/v2/assignment/ipv4/block/10.244.166.128-26")
	f.Add("/calico/ipam/v2/assignment/ipv6/block/fd00::-122")
	f.Fuzz(func(t *testing.T, key string) {
		p, err := parseBlockKey(key)
		if err != nil {
			return
		}
		if blockKey(p) != key {
			t.Fatalf("%q parsed as %s, whose key is %q", key, p, blockKey(p))
		}
	})
}

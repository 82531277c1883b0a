package ipam

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestBlockOrdinals(t *testing.T) {
	b := Block{CIDR: pp("10.244.166.128/26"), Affinity: "node1", Allocations: map[int]Allocation{}}
	if n := b.NumAddresses(); n != 64 {
		t.Fatalf("NumAddresses = %d", n)
	}
	// Nothing is reserved: ordinal 0 is the block's first address.
	for o, a := range map[int]string{0: "10.244.166.128", 1: "10.244.166.129", 63: "10.244.166.191"} {
		if got := b.Addr(o); got != ap(a) {
			t.Errorf("Addr(%d) = %s, want %s", o, got, a)
		}
		if got, ok := b.Ordinal(ap(a)); !ok || got != o {
			t.Errorf("Ordinal(%s) = %d, %v; want %d", a, got, ok, o)
		}
	}
	for _, o := range []int{-1, 64} {
		if got := b.Addr(o); got.IsValid() {
			t.Errorf("Addr(%d) = %s, want invalid", o, got)
		}
	}
	for _, a := range []string{"10.244.166.127", "10.244.166.192", "::1"} {
		if _, ok := b.Ordinal(ap(a)); ok {
			t.Errorf("Ordinal(%s) ok outside the block", a)
		}
	}
	if o, ok := b.FirstFree(); !ok || o != 0 || b.NumFree() != 64 || !b.Empty() {
		t.Fatalf("empty block: FirstFree %d %v, NumFree %d", o, ok, b.NumFree())
	}
	for _, o := range []int{0, 1, 3, 63} {
		b.Allocations[o] = Allocation{Handle: "h"}
	}
	if o, ok := b.FirstFree(); !ok || o != 2 {
		t.Errorf("FirstFree = %d, %v; want 2", o, ok)
	}
	if free := b.FreeOrdinals(); len(free) != 60 || free[0] != 2 || free[1] != 4 || free[59] != 62 {
		t.Errorf("FreeOrdinals = %v", free)
	}
	if b.NumFree() != 60 || b.Empty() {
		t.Errorf("NumFree = %d, Empty = %v", b.NumFree(), b.Empty())
	}
	if got := b.Ordinals(); !slices.Equal(got, []int{0, 1, 3, 63}) {
		t.Errorf("Ordinals = %v", got)
	}
	for o := range 64 {
		b.Allocations[o] = Allocation{Handle: "h"}
	}
	if _, ok := b.FirstFree(); ok || b.NumFree() != 0 {
		t.Errorf("full block has a free ordinal")
	}

	v6 := Block{CIDR: pp("fd00::ffc0/122")}
	if v6.NumAddresses() != 64 || v6.Addr(63) != ap("fd00::ffff") {
		t.Errorf("IPv6 block: %d addresses, last %s", v6.NumAddresses(), v6.Addr(63))
	}
	if o, ok := v6.Ordinal(ap("fd00::ffc5")); !ok || o != 5 {
		t.Errorf("IPv6 Ordinal = %d, %v", o, ok)
	}
	if _, ok := v6.Ordinal(ap("fd01::ffc5")); ok {
		t.Errorf("IPv6 Ordinal outside the block ok")
	}
}

func TestBlockClone(t *testing.T) {
	b := Block{CIDR: pp("10.0.0.0/28"), Allocations: map[int]Allocation{1: {Handle: "h", Attrs: map[string]string{"k": "v"}}}}
	c := b.Clone()
	c.Allocations[2] = Allocation{Handle: "x"}
	c.Allocations[1].Attrs["k"] = "changed"
	if len(b.Allocations) != 1 || b.Allocations[1].Attrs["k"] != "v" {
		t.Fatalf("Clone shares state: %+v", b.Allocations)
	}
}

// The stored form, readable with bbolt tools; changing it breaks existing
// datastore files.
const goldenBlockJSON = `{"cidr":"10.244.166.128/26","affinity":"host:node1","allocations":[` +
	`{"ordinal":0,"address":"10.244.166.128","handle":"calico-bgp.web-1","node":"node1","attrs":{"node":"node1","workload":"web-1"}},` +
	`{"ordinal":10,"address":"10.244.166.138","handle":"h2","node":"node1"},` +
	`{"ordinal":2,"address":"10.244.166.130","handle":"h3"}]}`

func TestBlockJSON(t *testing.T) {
	b := Block{CIDR: pp("10.244.166.128/26"), Affinity: "node1", Allocations: map[int]Allocation{
		0:  {Handle: "calico-bgp.web-1", Node: "node1", Attrs: map[string]string{"workload": "web-1", "node": "node1"}},
		2:  {Handle: "h3"},
		10: {Handle: "h2", Node: "node1"},
	}}
	got, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	// Ordinal order is numeric: 0, 2, 10.
	want := strings.Replace(goldenBlockJSON, `{"ordinal":10,"address":"10.244.166.138","handle":"h2","node":"node1"},`+
		`{"ordinal":2,"address":"10.244.166.130","handle":"h3"}`,
		`{"ordinal":2,"address":"10.244.166.130","handle":"h3"},`+
			`{"ordinal":10,"address":"10.244.166.138","handle":"h2","node":"node1"}`, 1)
	if string(got) != want {
		t.Fatalf("Marshal =\n%s\nwant\n%s", got, want)
	}
	var back Block
	if err := json.Unmarshal([]byte(goldenBlockJSON), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, b) {
		t.Fatalf("Unmarshal = %+v, want %+v", back, b)
	}
	unaffine, _ := json.Marshal(Block{CIDR: pp("10.0.0.0/28")})
	if string(unaffine) != `{"cidr":"10.0.0.0/28","allocations":[]}` {
		t.Errorf("unaffine block: %s", unaffine)
	}

	bad := []string{
		`{"cidr":"10.0.0.0/28","affinity":"virtual:x","allocations":[]}`,
		`{"cidr":"10.0.0.0/28","affinity":"host:","allocations":[]}`,
		`{"cidr":"10.0.0.1/28","allocations":[]}`,
		`{"cidr":"10.0.0.0/8","allocations":[]}`,
		`{"cidr":"10.0.0.0/28","allocations":[{"ordinal":16,"address":"10.0.0.16","handle":"h"}]}`,
		`{"cidr":"10.0.0.0/28","allocations":[{"ordinal":1,"address":"10.0.0.2","handle":"h"}]}`,
		`{"cidr":"10.0.0.0/28","allocations":[{"ordinal":1,"address":"10.0.0.1","handle":""}]}`,
		`{"cidr":"10.0.0.0/28","allocations":[{"ordinal":1,"address":"10.0.0.1","handle":"a"},{"ordinal":1,"address":"10.0.0.1","handle":"b"}]}`,
		`{"cidr":"10.0.0.0/28","allocations":[`,
	}
	for _, s := range bad {
		var b Block
		if err := json.Unmarshal([]byte(s), &b); err == nil {
			t.Errorf("Unmarshal(%s) succeeded: %+v", s, b)
		}
	}
}

func TestHandleJSON(t *testing.T) {
	h := Handle{ID: "calico-bgp.web-1", Blocks: map[netip.Prefix]int{pp("10.244.166.128/26"): 1, pp("10.244.104.0/26"): 2}}
	got, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"calico-bgp.web-1","blocks":{"10.244.104.0/26":2,"10.244.166.128/26":1}}`
	if string(got) != want {
		t.Fatalf("Marshal = %s, want %s", got, want)
	}
	var back Handle
	if err := json.Unmarshal(got, &back); err != nil || !reflect.DeepEqual(back, h) {
		t.Fatalf("Unmarshal = %+v, %v", back, err)
	}
	for _, s := range []string{`{"id":"","blocks":{}}`, `{"id":"h","blocks":{"10.0.0.1/28":1}}`, `{"id":"h","blocks":{"10.0.0.0/28":0}}`} {
		var h Handle
		if err := json.Unmarshal([]byte(s), &h); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", s)
		}
	}
}

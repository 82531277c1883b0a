package topology

import (
	"errors"
	"slices"
	"testing"
)

func TestParseCPUSet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		text string
	}{
		{"0", []int{0}, "0"},
		{"0-3", []int{0, 1, 2, 3}, "0-3"},
		{"3,0-1, 5", []int{0, 1, 3, 5}, "0-1,3,5"},
		{"1,1,0-1", []int{0, 1}, "0-1"},
	} {
		got, err := ParseCPUSet(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCPUSet(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if s := FormatCPUSet(got); s != tc.text {
			t.Errorf("FormatCPUSet(%v) = %q, want %q", got, s, tc.text)
		}
	}
	for in, msg := range map[string]string{
		"":     `empty CPU list; write CPUs like "0" or "0-1,3", or leave the field out`,
		"a":    `"a" is not a CPU number or range (e.g. 0 or 0-3)`,
		"0,":   `"" is not a CPU number or range (e.g. 0 or 0-3)`,
		"3-1":  `CPU range "3-1" runs backwards; write 1-3`,
		"-1":   `"-1" is not a CPU number or range (e.g. 0 or 0-3)`,
		"2048": "CPU 2048 is out of range 0-1023",
	} {
		if _, err := ParseCPUSet(in); err == nil || err.Error() != msg {
			t.Errorf("ParseCPUSet(%q) error %v, want %q", in, err, msg)
		}
	}
}

func TestNodeCPUSet(t *testing.T) {
	const head = `name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks: [{name: lan, cidr: 192.168.50.0/24}]
nodes:
  node1: {network: lan, address: 192.168.50.10, cpuSet: "0-1"}
`
	l, err := Parse("lab.yaml", []byte(head))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Nodes[0].CPUSet; !slices.Equal(got, []int{0, 1}) {
		t.Errorf("cpuSet = %v, want [0 1]", got)
	}
	_, err = Parse("lab.yaml", []byte(head+"  node2: {network: lan, address: 192.168.50.11, cpuSet: '1-x'}\n"))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error %v, want *ValidationError", err)
	}
	checkProblems(t, ve, []want{{6, "nodes.node2.cpuSet", `"1-x" is not a CPU number or range`}})
}

func TestIPAMSettings(t *testing.T) {
	const base = `name: t
ipPools: [{name: p, cidr: 10.244.0.0/16}]
networks: [{name: lan, cidr: 192.168.50.0/24}]
nodes:
  node1: {network: lan, address: 192.168.50.10}
`
	l, err := Parse("lab.yaml", []byte(base))
	if err != nil || l.IPAM.StrictAffinity {
		t.Fatalf("default: %v, strictAffinity %v; want borrowing allowed", err, l.IPAM.StrictAffinity)
	}
	if l, err = Parse("lab.yaml", []byte(base+"ipam: {strictAffinity: true}\n")); err != nil || !l.IPAM.StrictAffinity {
		t.Fatalf("strictAffinity: true: %v, %v", err, l.IPAM.StrictAffinity)
	}
	for _, tc := range []struct {
		ipam string
		want want
	}{
		{"ipam: {strictAfinity: true}", want{6, "ipam.strictAfinity", "unknown field (known: strictAffinity)"}},
		{"ipam: {strictAffinity: maybe}", want{6, "ipam.strictAffinity", "maybe"}},
		{"ipam: [strictAffinity]", want{6, "ipam", "must be a mapping (fields: strictAffinity), not a list"}},
	} {
		_, err := Parse("lab.yaml", []byte(base+tc.ipam+"\n"))
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("%s: Parse error %v, want *ValidationError", tc.ipam, err)
		}
		checkProblems(t, ve, []want{tc.want})
	}
}

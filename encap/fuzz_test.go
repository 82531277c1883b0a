package encap_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/encap"
)

// FuzzDecapsulate feeds arbitrary bytes to Decapsulate. It must never
// panic; an accepted packet's inner packet must be the subslice
// pkt[outer IHL:outer total length] holding a valid IPv4 header, and the
// outer source must be an allowed node. Independently, whenever the input
// is itself a valid IPv4 packet, encapsulating it from an allowed node and
// decapsulating must give it back unchanged.
//
// The seed corpus is in testdata/fuzz/FuzzDecapsulate.
func FuzzDecapsulate(f *testing.F) {
	allowed := []netip.Addr{node1, node2}
	d, err := encap.NewDecapsulator(allowed...)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pkt := slices.Clone(data) // Decapsulate may rewrite the inner ECN field
		inner, from, r := d.Decapsulate(pkt)
		if r == encap.Accepted {
			ihl := int(pkt[0]&0x0f) * 4
			tot := int(binary.BigEndian.Uint16(pkt[2:]))
			if len(inner) == 0 || len(inner) != tot-ihl || &inner[0] != &pkt[ihl] {
				t.Fatalf("inner (%d bytes) is not pkt[%d:%d]", len(inner), ihl, tot)
			}
			if !headerValid(inner) {
				t.Fatalf("accepted inner header is invalid: % x", inner[:min(len(inner), 60)])
			}
			if !headerValid(pkt[:tot]) || pkt[9] != 4 {
				t.Fatalf("accepted outer header is invalid: % x", pkt[:ihl])
			}
			src := netip.AddrFrom4([4]byte(pkt[12:16]))
			if !slices.Contains(allowed, src) || from != src {
				t.Fatalf("accepted from %v (reported %v), not an allowed node", src, from)
			}
		} else if inner != nil {
			t.Fatalf("dropped (%v) but returned an inner packet", r)
		}

		// Round trip of the input as an inner packet.
		if !headerValid(data) {
			return
		}
		out := make([]byte, encap.HeaderLen+len(data))
		n, err := encap.Encapsulate(out, data, node2, node1)
		if len(data) > encap.MaxInnerLen {
			if err == nil {
				t.Fatal("encapsulated a packet too big for IPv4")
			}
			return
		}
		if err != nil {
			t.Fatalf("Encapsulate a valid packet: %v", err)
		}
		got, from, r := d.Decapsulate(out[:n])
		if r == encap.ReasonECNNotECT {
			t.Fatal("Encapsulate produced an outer CE")
		}
		if r != encap.Accepted || from != node2 || !bytes.Equal(got, data) {
			t.Fatalf("round trip: reason %v from %v\n got % x\nwant % x", r, from, got, data)
		}
	})
}

// TestFuzzSeedCorpus checks that each seed in testdata/fuzz/FuzzDecapsulate
// is what its name says, so the corpus keeps covering valid packets and
// every drop reason.
func TestFuzzSeedCorpus(t *testing.T) {
	want := map[string]encap.Reason{
		"valid_icmp":               encap.Accepted,
		"valid_from_node2":         encap.Accepted,
		"valid_outer_options":      encap.Accepted,
		"valid_padding":            encap.Accepted,
		"valid_ecn_ce_over_ect0":   encap.Accepted,
		"valid_ecn_ect1_over_ect0": encap.Accepted,
		"valid_inner_fragment":     encap.Accepted,
		"ecn_ce_over_not_ect":      encap.ReasonECNNotECT,
		"unknown_source":           encap.ReasonUnknownSource,
		"bad_outer_checksum":       encap.ReasonOuterChecksum,
		"bad_inner_checksum":       encap.ReasonInnerChecksum,
		"outer_fragment_mf":        encap.ReasonOuterFragment,
		"outer_fragment_offset":    encap.ReasonOuterFragment,
		"not_ipip_udp":             encap.ReasonNotIPIP,
		"outer_version6":           encap.ReasonOuterVersion,
		"outer_ihl4":               encap.ReasonOuterHeaderLength,
		"outer_total_short":        encap.ReasonOuterTotalLength,
		"outer_truncated":          encap.ReasonOuterTruncated,
		"inner_truncated":          encap.ReasonInnerTruncated,
		"inner_total_mismatch":     encap.ReasonInnerTotalLength,
		"inner_version6":           encap.ReasonInnerVersion,
		"empty":                    encap.ReasonOuterTruncated,
		"short19":                  encap.ReasonOuterTruncated,
	}
	d := mustDecapsulator(t, node1, node2)
	dir := filepath.Join("testdata", "fuzz", "FuzzDecapsulate")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, e := range entries {
		r, ok := want[e.Name()]
		if !ok {
			continue // e.g. a crasher the fuzzer added
		}
		seen++
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a go fuzz corpus file", e.Name())
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if _, _, got := d.Decapsulate([]byte(s)); got != r {
			t.Errorf("%s: reason %v, want %v", e.Name(), got, r)
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of %d seed files", seen, len(want))
	}
}

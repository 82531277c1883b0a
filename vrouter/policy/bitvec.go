package policy

import (
	"math/bits"
	"slices"
	"sort"
)

// bitIndex finds the rules whose compact test (hotRule) a flow passes, in
// rule order, by the bit-vector scheme of packet classification: each
// field's value line is cut into the intervals where the set of rules
// matching it does not change, each interval holding that set as a
// bitset; a flow's candidates are the AND of its five fields' bitsets.
// A lookup costs a binary search per field and a few dozen word ANDs for
// a thousand rules, however the rules overlap.
type bitIndex struct {
	words int
	// proto maps a protocol number to its row in protoSets.
	proto     [256]uint16
	protoSets []uint64
	// The range fields: boundaries (each interval starts at one) and
	// one bitset row per interval.
	fields [4]rangeField // dport, sport, src, dst
}

type rangeField struct {
	starts []uint32
	sets   []uint64
}

// row returns the bitset of the interval v falls in.
func (r *rangeField) row(v uint32, words int) []uint64 {
	i := sort.Search(len(r.starts), func(i int) bool { return r.starts[i] > v }) - 1
	return r.sets[i*words : (i+1)*words]
}

// maxIndexWords bounds one field's bitsets (16 MB).
const maxIndexWords = 2 << 20

func newBitIndex(hot []hotRule) *bitIndex {
	n := len(hot)
	words := (n + 63) / 64
	b := &bitIndex{words: words}
	// Protocols: one row per protocol a rule names, one for the rest.
	var named []uint8
	for _, h := range hot {
		for _, p := range []uint8{h.proto, h.notProto} {
			if p != 0 && !slices.Contains(named, p) {
				named = append(named, p)
			}
		}
	}
	rowOf := func(p uint8) []uint64 {
		row := make([]uint64, words)
		for i, h := range hot {
			if (h.proto == 0 || h.proto == p) && (h.notProto == 0 || h.notProto != p) {
				row[i/64] |= 1 << (i % 64)
			}
		}
		return row
	}
	b.protoSets = rowOf(0) // protocol 0 is named by no rule: "the rest"
	for k, p := range named {
		b.proto[p] = uint16(k + 1)
		b.protoSets = append(b.protoSets, rowOf(p)...)
	}
	ranges := [4]func(h *hotRule) (uint32, uint32){
		func(h *hotRule) (uint32, uint32) { return uint32(h.dportLo), uint32(h.dportHi) },
		func(h *hotRule) (uint32, uint32) { return uint32(h.sportLo), uint32(h.sportHi) },
		func(h *hotRule) (uint32, uint32) { return h.src.addr, h.src.addr | ^h.src.mask },
		func(h *hotRule) (uint32, uint32) { return h.dst.addr, h.dst.addr | ^h.dst.mask },
	}
	for f, rng := range ranges {
		starts := []uint32{0}
		for i := range hot {
			lo, hi := rng(&hot[i])
			starts = append(starts, lo)
			if hi != ^uint32(0) {
				starts = append(starts, hi+1)
			}
		}
		slices.Sort(starts)
		starts = slices.Compact(starts)
		if len(starts)*words > maxIndexWords {
			// Too many distinct values to index this field within
			// bounds: it filters nothing (every rule in one interval).
			starts = []uint32{0}
			rng = func(*hotRule) (uint32, uint32) { return 0, ^uint32(0) }
		}
		sets := make([]uint64, len(starts)*words)
		for i := range hot {
			lo, hi := rng(&hot[i])
			first, _ := slices.BinarySearch(starts, lo)
			last := len(starts)
			if hi != ^uint32(0) {
				last, _ = slices.BinarySearch(starts, hi+1)
			}
			for k := first; k < last; k++ {
				sets[k*words+i/64] |= 1 << (i % 64)
			}
		}
		b.fields[f] = rangeField{starts: starts, sets: sets}
	}
	return b
}

// evaluateIndexed is Evaluate through the index: the candidates in order,
// each finished by decide.
func (m *Matcher) evaluateIndexed(f *Flow, sport, dport uint16) (Verdict, int) {
	x := m.idx
	w := x.words
	p := int(x.proto[f.Proto]) * w
	pr := x.protoSets[p : p+w]
	dp := x.fields[0].row(uint32(dport), w)
	sp := x.fields[1].row(uint32(sport), w)
	sa := x.fields[2].row(f.Src, w)
	da := x.fields[3].row(f.Dst, w)
	for k := 0; k < w; k++ {
		word := pr[k] & dp[k] & sp[k] & sa[k] & da[k]
		for word != 0 {
			i := k*64 + bits.TrailingZeros64(word)
			word &= word - 1
			// The compact test again: a field over maxIndexWords
			// filters nothing.
			if !m.hot[i].hit(f, sport, dport) {
				continue
			}
			if v, ok := m.decide(i, f); ok {
				return v, i
			}
		}
	}
	return DefaultDenied, -1
}

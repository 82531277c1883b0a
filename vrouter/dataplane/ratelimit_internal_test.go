package dataplane

import (
	"testing"
	"time"
)

// TestLimiterEviction fills one set of the peer table and checks that the
// least recently updated peer is the one replaced.
func TestLimiterEviction(t *testing.T) {
	l := &limiter{icmpCost: int64(time.Second)}
	set := func(a uint32) uint32 { return (a * 0x9e3779b1) >> 24 }
	// Find limiterWays+1 addresses that share a set.
	var same []uint32
	for a := uint32(1); len(same) < limiterWays+1; a++ {
		if set(a) == set(1) {
			same = append(same, a)
		}
	}
	now := int64(0)
	spend := func(a uint32) int { // errors allowed in a burst
		n := 0
		for range 10 {
			if l.icmpAllow(a, icmpTimeExceeded, 0, now) {
				n++
			}
		}
		return n
	}
	for i, a := range same[:limiterWays] {
		now = int64(i)
		if n := spend(a); n != xrlimBurstFactor {
			t.Fatalf("peer %d: burst %d", i, n)
		}
	}
	// Touch the oldest so that same[1] becomes the least recently used.
	now++
	if spend(same[0]) != 0 {
		t.Fatal("exhausted peer allowed an error")
	}
	now++
	if n := spend(same[limiterWays]); n != xrlimBurstFactor { // evicts same[1]
		t.Fatalf("new peer: burst %d", n)
	}
	now++
	if spend(same[0]) != 0 || spend(same[2]) != 0 {
		t.Fatal("a recently used peer was evicted")
	}
	if spend(same[1]) != xrlimBurstFactor {
		t.Fatal("the least recently used peer was not the one evicted")
	}
}

// TestRateMask checks which errors icmp_ratelimit applies to.
func TestRateMask(t *testing.T) {
	l := &limiter{icmpCost: int64(time.Second)}
	for _, c := range []struct {
		typ, code uint8
		limited   bool
	}{
		{icmpDestUnreach, codeHostUnreach, true},
		{icmpDestUnreach, codeFragNeeded, false},
		{icmpTimeExceeded, 0, true},
		{icmpParamProblem, 0, true},
		{icmpSourceQuench, 0, true},
		{5, 0, false}, // redirect: icmp_ratemask 0x1818 leaves it out
		{0, 0, false},
		{200, 0, false},
	} {
		n := 0
		for range 20 {
			if l.icmpAllow(uint32(c.typ)<<8|uint32(c.code), c.typ, c.code, 0) {
				n++
			}
		}
		if limited := n < 20; limited != c.limited {
			t.Errorf("type %d code %d: %d of 20 allowed", c.typ, c.code, n)
		}
	}
}

package dataplane

import (
	"sync"
	"sync/atomic"
	"time"
)

// Connection tracking for policy: one table per engine, a fixed number of
// entries in buckets of ctWays, locked by stripes. An entry is a flow in
// canonical form (the lower address first), so that a flow and its
// replies find the same entry with one lookup. Nothing is allocated after
// the table is made; when a bucket is full, the entry that expires first
// is evicted (and counted).

// Conntrack timeouts, by protocol and state (Linux's nf_conntrack
// defaults, shortened where a lab needs no more).
const (
	ctTimeoutSynSent     = 30 * time.Second
	ctTimeoutEstablished = time.Hour
	ctTimeoutClosing     = 30 * time.Second
	ctTimeoutClosed      = 10 * time.Second
	ctTimeoutUDP         = 30 * time.Second
	ctTimeoutUDPReplied  = 120 * time.Second
	ctTimeoutICMP        = 30 * time.Second
	ctTimeoutOther       = 60 * time.Second
)

// DefaultConntrackSize is the number of flows an engine tracks.
const DefaultConntrackSize = 1 << 16

const (
	ctWays    = 4
	ctStripes = 256
)

// TCP states of an entry.
const (
	ctNew         uint8 = iota // only the original direction seen
	ctReplied                  // a reply seen (TCP: SYN-ACK; UDP, ICMP: any)
	ctEstablished              // TCP: the handshake completed or picked up mid-stream
	ctClosing                  // TCP: a FIN seen
	ctClosed                   // TCP: a RST seen
)

// ctKey is a flow in canonical form: (a, pa) <= (b, pb).
type ctKey struct {
	a, b   uint32
	pa, pb uint16
	proto  uint8
}

type ctEntry struct {
	key     ctKey
	used    bool
	origA   bool  // the flow's first packet came from a
	state   uint8 // ctNew...
	icmp    uint8 // the original ICMP type (echo)
	gen     uint32
	expires int64 // on the engine's coarse clock, ns
}

type ctBucket struct {
	e [ctWays]ctEntry
}

type conntrack struct {
	buckets []ctBucket
	mask    uint32
	locks   [ctStripes]sync.Mutex

	entries  atomic.Int64  // live entries (approximate: expired ones count until reused)
	created  atomic.Uint64 // entries made
	evicted  atomic.Uint64 // live entries dropped to make room
	expired  atomic.Uint64 // expired entries reused
	revoked  atomic.Uint64 // entries removed because a new policy denies their flow
	capacity int
}

// newConntrack makes a table for about size flows (rounded up to a power
// of two buckets).
func newConntrack(size int) *conntrack {
	n := 1
	for n*ctWays < size {
		n <<= 1
	}
	return &conntrack{buckets: make([]ctBucket, n), mask: uint32(n - 1), capacity: n * ctWays}
}

// canonical returns the canonical key of a flow from (src, sport) to
// (dst, dport), and whether src is its side a.
func canonical(src, dst uint32, sport, dport uint16, proto uint8) (ctKey, bool) {
	if src < dst || src == dst && sport <= dport {
		return ctKey{src, dst, sport, dport, proto}, true
	}
	return ctKey{dst, src, dport, sport, proto}, false
}

// hash mixes every bit of the key into every bit of the result
// (splitmix64's finalizer), so that the low bits that pick a bucket
// depend on the ports too.
func (k *ctKey) hash() uint32 {
	z := (uint64(k.a)<<32 | uint64(k.b)) ^ (uint64(k.pa)<<48|uint64(k.pb)<<32|uint64(k.proto))*0x9E3779B97F4A7C15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return uint32(z ^ z>>31)
}

// lookup calls fn with the live entry of k, under its lock, and reports
// whether there was one. fn may change the entry or return false to
// delete it.
func (c *conntrack) lookup(k ctKey, now int64, fn func(e *ctEntry) bool) bool {
	i := k.hash() & c.mask
	l := &c.locks[i%ctStripes]
	l.Lock()
	b := &c.buckets[i]
	for j := range b.e {
		e := &b.e[j]
		if e.used && e.key == k {
			if e.expires <= now {
				e.used = false
				c.entries.Add(-1)
				c.expired.Add(1)
				break
			}
			if !fn(e) {
				e.used = false
				c.entries.Add(-1)
			}
			l.Unlock()
			return true
		}
	}
	l.Unlock()
	return false
}

// insert adds an entry for k (or renews the one there), evicting the
// entry of the bucket that expires first when the bucket is full.
func (c *conntrack) insert(k ctKey, origA bool, state, icmp uint8, gen uint32, expires, now int64) {
	i := k.hash() & c.mask
	l := &c.locks[i%ctStripes]
	l.Lock()
	b := &c.buckets[i]
	slot := -1
	for j := range b.e {
		e := &b.e[j]
		if e.used && e.key == k {
			slot = j
			break
		}
		if slot < 0 && !e.used {
			slot = j
		}
	}
	if slot < 0 {
		// Reuse an expired entry, else evict the one expiring first.
		victim := 0
		for j := range b.e {
			if b.e[j].expires < b.e[victim].expires {
				victim = j
			}
		}
		slot = victim
		if b.e[victim].expires <= now {
			c.expired.Add(1)
		} else {
			c.evicted.Add(1)
		}
		c.entries.Add(-1)
	}
	e := &b.e[slot]
	if !e.used || e.key != k {
		c.entries.Add(1)
		c.created.Add(1)
	}
	*e = ctEntry{key: k, used: true, origA: origA, state: state, icmp: icmp, gen: gen, expires: expires}
	l.Unlock()
}

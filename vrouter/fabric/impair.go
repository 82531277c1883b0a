package fabric

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vrouter-lab/vrouter/header"
)

// Impairment is what an endpoint does to the frames it sends, like netem
// on an interface's egress: each frame is lost with probability Loss, and
// otherwise delivered Delay later, plus or minus up to Jitter (uniformly;
// with jitter frames may be reordered, as with netem). The zero value is
// a perfect link and costs nothing per frame.
type Impairment struct {
	Delay  time.Duration
	Jitter time.Duration
	Loss   float64 // probability, 0 to 1
	// Rate bounds the link's throughput in bits per second, as tc's tbf or
	// netem's rate: each frame waits until the ones before it are out
	// (serialization at Rate), then Delay. Zero: no bound.
	Rate uint64
	// Duplicate is the probability that a frame is sent twice, Corrupt
	// that one bit of the frame's packet is flipped, as netem's
	// duplicate and corrupt.
	Duplicate float64
	Corrupt   float64

	// Limit bounds the frames waiting in the delay queue; beyond it frames
	// are dropped as QueueFull. Zero means DefaultDelayLimit.
	Limit int

	// Seed seeds the random draws behind Loss and Jitter, so a run can be
	// repeated: the same seed and the same sequence of frames from one
	// goroutine lose the same frames.
	Seed uint64
}

// DefaultDelayLimit is the delay queue's length when Impairment.Limit is
// zero, as netem's default limit.
const DefaultDelayLimit = 1000

// IsZero reports whether the impairment leaves frames alone.
func (imp Impairment) IsZero() bool {
	return imp.Delay == 0 && imp.Jitter == 0 && imp.Loss == 0 && imp.Rate == 0 && imp.Duplicate == 0 && imp.Corrupt == 0
}

// impairState is an Impairment in force, with its random source.
type impairState struct {
	cfg     Impairment
	loss    uint64 // a draw below it loses the frame
	lossAll bool
	delays  bool
	limit   int
	busy    time.Duration // (guarded by the delay queue's mu) when the link is free again at Rate
	dup     uint64        // a draw below it duplicates the frame
	corrupt uint64        // a draw below it corrupts the frame
	rng     atomic.Uint64 // splitmix64 state: lock-free and deterministic
}

// rand returns the next number of a splitmix64 sequence. Concurrent
// callers each get a different number of the same sequence.
func (s *impairState) rand() uint64 {
	z := s.rng.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// threshold is probability p as a bound on a uniform 64-bit draw.
func threshold(p float64) uint64 {
	if p >= 1 {
		return math.MaxUint64
	}
	return uint64(p * (1 << 64))
}

// draw reports whether an event of threshold t happens.
func (s *impairState) draw(t uint64) bool {
	return t != 0 && (t == math.MaxUint64 || s.rand() < t)
}

func (s *impairState) lose() bool {
	switch {
	case s.lossAll:
		return true
	case s.loss == 0:
		return false
	}
	return s.rand() < s.loss
}

// delayFor returns how long one frame waits.
func (s *impairState) delayFor() time.Duration {
	d := s.cfg.Delay
	if j := s.cfg.Jitter; j > 0 {
		d += time.Duration(s.rand()%uint64(2*j+1)) - j
		if d < 0 {
			d = 0
		}
	}
	return d
}

// SetImpairment sets the impairments applied to frames sent from now on
// (frames already delayed keep their time). The zero Impairment removes
// them.
func (e *Endpoint) SetImpairment(imp Impairment) error {
	switch {
	case imp.Delay < 0 || imp.Jitter < 0:
		return errors.New("fabric: negative delay or jitter")
	case math.IsNaN(imp.Loss) || imp.Loss < 0 || imp.Loss > 1:
		return errors.New("fabric: loss must be a probability from 0 to 1")
	case math.IsNaN(imp.Duplicate) || imp.Duplicate < 0 || imp.Duplicate > 1 || math.IsNaN(imp.Corrupt) || imp.Corrupt < 0 || imp.Corrupt > 1:
		return errors.New("fabric: duplicate and corrupt must be probabilities from 0 to 1")
	case imp.Limit < 0:
		return errors.New("fabric: negative delay queue limit")
	}
	e.ctl.Lock()
	defer e.ctl.Unlock()
	if imp.IsZero() {
		e.imp.Store(nil)
		return nil
	}
	s := &impairState{cfg: imp, delays: imp.Delay > 0 || imp.Jitter > 0 || imp.Rate > 0 || imp.Duplicate > 0 || imp.Corrupt > 0, limit: imp.Limit}
	if s.limit == 0 {
		s.limit = DefaultDelayLimit
	}
	s.rng.Store(imp.Seed)
	// duplicated and corrupted frames go through the delay queue, which
	// copies them
	s.dup, s.corrupt = threshold(imp.Duplicate), threshold(imp.Corrupt)
	switch {
	case imp.Loss >= 1:
		s.lossAll = true
	case imp.Loss > 0:
		s.loss = uint64(imp.Loss * (1 << 64))
	}
	if s.delays && e.delay == nil {
		e.mu.RLock()
		if e.closed {
			e.mu.RUnlock()
			return ErrClosed
		}
		e.delay = &delayQueue{wake: make(chan struct{}, 1)}
		e.wg.Add(1)
		e.mu.RUnlock()
		go e.delay.run(e)
	}
	e.imp.Store(s)
	return nil
}

// Impairment returns the impairment in force.
func (e *Endpoint) Impairment() Impairment {
	if s := e.imp.Load(); s != nil {
		return s.cfg
	}
	return Impairment{}
}

// serialization returns how long n bytes take to send at rate bits per
// second.
func serialization(n int, rate uint64) time.Duration {
	ns := uint64(n) * 8 * uint64(time.Second) / rate
	if ns > math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// delayQueue holds delayed frames (copied: the caller reuses its buffer)
// in a heap ordered by due time, and one goroutine sends each when due.
type delayQueue struct {
	mu    sync.Mutex
	items []delayItem // min-heap on (due, seq)
	free  [][]byte    // recycled packet buffers
	seq   uint64
	wake  chan struct{}
}

type delayItem struct {
	due time.Duration // since Endpoint.epoch (monotonic)
	seq uint64
	sa  sockaddr
	gso header.GSO
	pkt []byte
}

func (a *delayItem) before(b *delayItem) bool {
	return a.due < b.due || a.due == b.due && a.seq < b.seq
}

// push queues a copy of f for p (two if the frame is duplicated).
func (q *delayQueue) push(e *Endpoint, s *impairState, p *peer, f *Frame) error {
	select {
	case <-e.done:
		return ErrClosed
	default:
	}
	copies := 1
	if s.draw(s.dup) {
		copies = 2
	}
	for c := range copies {
		if err := q.pushCopy(e, s, p, f); err != nil {
			if c > 0 {
				return nil // the original went
			}
			return err
		}
	}
	return nil
}

// pushCopy queues one copy of f for p.
func (q *delayQueue) pushCopy(e *Endpoint, s *impairState, p *peer, f *Frame) error {
	now := time.Since(e.epoch)
	due := now + s.delayFor()
	corrupt := len(f.Packet) > 0 && s.draw(s.corrupt)
	var bit uint64
	if corrupt {
		bit = s.rand() % (uint64(len(f.Packet)) * 8)
	}
	q.mu.Lock()
	if len(q.items) >= s.limit {
		q.mu.Unlock()
		e.stats.txQueueFull.Add(1)
		return ErrQueueFull
	}
	if s.cfg.Rate > 0 {
		// serialization: out once the frames before it are
		start := max(now, s.busy)
		s.busy = start + serialization(len(f.Packet), s.cfg.Rate)
		due += s.busy - now
	}
	var buf []byte
	if k := len(q.free) - 1; k >= 0 && cap(q.free[k]) >= len(f.Packet) {
		buf = q.free[k][:len(f.Packet)]
		q.free = q.free[:k]
	} else {
		buf = make([]byte, len(f.Packet), max(len(f.Packet), 2048))
	}
	copy(buf, f.Packet)
	if corrupt {
		buf[bit/8] ^= 1 << (bit % 8)
	}
	q.seq++
	q.items = append(q.items, delayItem{due: due, seq: q.seq, sa: p.sa, gso: f.GSO, pkt: buf})
	q.up(len(q.items) - 1)
	head := q.items[0].seq == q.seq
	q.mu.Unlock()
	e.stats.delayed.Add(1)
	if head {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (q *delayQueue) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !q.items[i].before(&q.items[parent]) {
			return
		}
		q.items[i], q.items[parent] = q.items[parent], q.items[i]
		i = parent
	}
}

// pop removes the earliest item.
func (q *delayQueue) pop() delayItem {
	it := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items[last] = delayItem{}
	q.items = q.items[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && q.items[l].before(&q.items[m]) {
			m = l
		}
		if r < last && q.items[r].before(&q.items[m]) {
			m = r
		}
		if m == i {
			return it
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
}

// run sends frames when due until the endpoint closes.
func (q *delayQueue) run(e *Endpoint) {
	defer e.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		q.mu.Lock()
		for len(q.items) > 0 && q.items[0].due <= time.Since(e.epoch) {
			it := q.pop()
			q.mu.Unlock()
			e.stats.delayed.Add(-1)
			if e.down.Load() {
				e.stats.txLinkDown.Add(1)
			} else {
				_ = e.transmit(&it.sa, &it.gso, it.pkt)
			}
			q.mu.Lock()
			if len(q.free) < DefaultDelayLimit {
				q.free = append(q.free, it.pkt)
			}
		}
		wait := time.Duration(-1)
		if len(q.items) > 0 {
			wait = q.items[0].due - time.Since(e.epoch)
		}
		q.mu.Unlock()
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-e.done:
			timer.Stop()
			q.mu.Lock()
			e.stats.delayed.Add(-int64(len(q.items)))
			q.items, q.free = nil, nil
			q.mu.Unlock()
			return
		case <-q.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

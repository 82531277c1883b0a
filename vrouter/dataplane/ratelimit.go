package dataplane

import (
	"sync"
	"time"
)

// Linux rate-limits ICMP errors with token buckets kept per peer address
// (struct inet_peer), in jiffies; here in nanoseconds:
//
//   - icmp_send's inet_peer_xrlim_allow, for the error's destination, for
//     the types in net.ipv4.icmp_ratemask (default 0x1818: destination
//     unreachable, source quench, time exceeded, parameter problem) except
//     fragmentation needed: a token per icmp_ratelimit (1000 ms), at most
//     XRLIM_BURST_FACTOR (6) tokens;
//   - ip_error (route.c) before it, for the offending packet's source, for
//     errors caused by a route (no route, unreachable, prohibit): a token
//     per ip_rt_error_cost (1 s), at most ip_rt_error_burst (5 s).
//
// Both use the same peer and the same token count (rate_tokens,
// rate_last), so a route error costs two tokens: from a fresh peer two
// such errors go out back to back, and a steady stream of one packet a
// second gets no more answers, as on Linux. A new peer starts with no
// tokens and its last update 60 s in the past, so that its first
// calculation reaches the maximum.

const (
	xrlimBurstFactor = 6
	peerPast         = 60 * time.Second

	defaultICMPRateLimit   = time.Second
	defaultRouteErrorCost  = time.Second
	defaultRouteErrorBurst = 5 * time.Second

	icmpRateMask = 1<<icmpDestUnreach | 1<<icmpSourceQuench | 1<<icmpTimeExceeded | 1<<icmpParamProblem

	limiterWays = 4
	limiterSets = 256 // 1024 peers
)

// peer is the rate-limit state of one address.
type peer struct {
	addr   uint32
	used   bool
	tokens int64 // ns
	last   int64 // ns since the forwarder's epoch
}

// limiter holds peers in a fixed set-associative table, evicting the least
// recently updated peer of a set, so it never allocates.
type limiter struct {
	icmpCost, routeCost, routeBurst int64 // ns; a cost <= 0 disables that limit

	mu   sync.Mutex
	sets [limiterSets][limiterWays]peer
}

func (l *limiter) peer(addr uint32, now int64) *peer {
	set := &l.sets[(addr*0x9e3779b1)>>24]
	victim := &set[0]
	for i := range set {
		p := &set[i]
		if p.used && p.addr == addr {
			return p
		}
		if !p.used {
			victim = p
			break
		}
		if p.last < victim.last {
			victim = p
		}
	}
	*victim = peer{addr: addr, used: true, last: now - int64(peerPast)}
	return victim
}

// routeErrorAllow is ip_error's limit for packets from src.
func (l *limiter) routeErrorAllow(src uint32, now int64) bool {
	if l.routeCost <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peer(src, now)
	p.tokens += now - p.last
	if p.tokens > l.routeBurst {
		p.tokens = l.routeBurst
	}
	p.last = now
	if p.tokens >= l.routeCost {
		p.tokens -= l.routeCost
		return true
	}
	return false
}

// icmpAllow is icmp_send's limit for an error of the given type and code
// to dst (icmpv4_xrlim_allow, inet_peer_xrlim_allow).
func (l *limiter) icmpAllow(dst uint32, typ, code uint8, now int64) bool {
	if l.icmpCost <= 0 || typ >= 32 || uint32(icmpRateMask)&(uint32(1)<<typ) == 0 || (typ == icmpDestUnreach && code == codeFragNeeded) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peer(dst, now)
	token := p.tokens + now - p.last
	p.last = now
	if limit := xrlimBurstFactor * l.icmpCost; token > limit {
		token = limit
	}
	ok := false
	if token >= l.icmpCost {
		token -= l.icmpCost
		ok = true
	}
	p.tokens = token
	return ok
}

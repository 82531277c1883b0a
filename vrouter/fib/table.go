package fib

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gaissmai/bart"
)

// Table is a forwarding table with longest-prefix match. Lookups are
// lock-free and see a consistent snapshot while writers change routes:
// writers serialise on a mutex and publish a new persistent version of the
// trie with an atomic pointer swap.
type Table struct {
	mu sync.Mutex // serialises writers

	// cur is the published version of the trie. It maps each prefix to
	// every route to it, lowest metric first, in a slice that is never
	// empty. Published slices are immutable: writers build a new one and
	// store it with a persistent update, so versions share them safely and
	// bart need not clone them. Storing the slice itself, not a pointer to
	// a struct holding it, saves Lookup a dependent load.
	cur atomic.Pointer[bart.Table[[]Route]]

	n atomic.Int64 // number of routes (not prefixes)
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{}
	t.cur.Store(new(bart.Table[[]Route]))
	return t
}

func (r Route) key() (netip.Prefix, error) {
	if !r.Dst.IsValid() {
		return netip.Prefix{}, fmt.Errorf("route has no destination")
	}
	if r.Dst != r.Dst.Masked() {
		return netip.Prefix{}, fmt.Errorf("destination %s has host bits set", r.Dst)
	}
	return r.Dst, nil
}

// Insert adds r. It fails if a route to the same prefix with the same metric
// exists, as `ip route add` does.
func (t *Table) Insert(r Route) error {
	return t.modify(r, false)
}

// Replace adds r, replacing a route to the same prefix with the same metric.
func (t *Table) Replace(r Route) error {
	return t.modify(r, true)
}

func (t *Table) modify(r Route, replace bool) error {
	pfx, err := r.key()
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.cur.Load()
	var routes []Route
	if old, ok := cur.Get(pfx); ok {
		routes = slices.Clone(old)
	}
	i, found := slices.BinarySearchFunc(routes, r.Metric, func(x Route, m uint32) int {
		switch {
		case x.Metric < m:
			return -1
		case x.Metric > m:
			return 1
		}
		return 0
	})
	switch {
	case found && !replace:
		return fmt.Errorf("route %s metric %d: already exists", pfx, r.Metric)
	case found:
		routes[i] = r
		t.cur.Store(cur.InsertPersist(pfx, routes))
	default:
		routes = slices.Insert(routes, i, r)
		t.cur.Store(cur.InsertPersist(pfx, routes))
		t.n.Add(1)
	}
	return nil
}

// Delete removes the route to dst with the given metric and reports whether
// it existed. A dst with host bits set names no route.
func (t *Table) Delete(dst netip.Prefix, metric uint32) bool {
	if !dst.IsValid() || dst != dst.Masked() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.cur.Load()
	old, ok := cur.Get(dst)
	if !ok {
		return false
	}
	i := slices.IndexFunc(old, func(r Route) bool { return r.Metric == metric })
	if i < 0 {
		return false
	}
	if len(old) == 1 {
		next, _, _ := cur.DeletePersist(dst)
		t.cur.Store(next)
	} else {
		routes := slices.Delete(slices.Clone(old), i, i+1)
		t.cur.Store(cur.InsertPersist(dst, routes))
	}
	t.n.Add(-1)
	return true
}

// Lookup returns the best route to addr: the longest matching prefix and,
// among routes to that prefix, the lowest metric.
func (t *Table) Lookup(addr netip.Addr) (Route, bool) {
	if r := t.LookupRef(addr); r != nil {
		return *r, true
	}
	return Route{}, false
}

// LookupRef is Lookup without the copy: it returns a pointer to the best
// route to addr in the table's current snapshot, or nil. The route must
// not be modified; it stays valid (and unchanged) after the table
// changes, as a published snapshot is never written to. The forwarding
// path uses it: copying the 120-byte Route out of every lookup cost a
// quarter of the lookup time at 1M prefixes.
func (t *Table) LookupRef(addr netip.Addr) *Route {
	routes, ok := t.cur.Load().Lookup(addr)
	if !ok {
		return nil
	}
	return &routes[0]
}

// Get returns the routes to exactly dst, lowest metric first. A dst with host
// bits set names no route.
func (t *Table) Get(dst netip.Prefix) []Route {
	if dst != dst.Masked() {
		return nil
	}
	routes, ok := t.cur.Load().Get(dst)
	if !ok {
		return nil
	}
	return slices.Clone(routes)
}

// Len returns the number of routes in the table.
func (t *Table) Len() int { return int(t.n.Load()) }

// Walk calls fn for every route in the order `ip route` lists them: by
// destination address, longer prefixes first at the same address, then by
// metric. It walks one consistent snapshot and stops when fn returns false.
func (t *Table) Walk(fn func(Route) bool) {
	snap := t.cur.Load()
	var all []Route
	for _, routes := range snap.All() {
		all = append(all, routes...)
	}
	slices.SortStableFunc(all, compareRoutes)
	for _, r := range all {
		if !fn(r) {
			return
		}
	}
}

// Routes returns every route in Walk order.
func (t *Table) Routes() []Route {
	var out []Route
	t.Walk(func(r Route) bool { out = append(out, r); return true })
	return out
}

// compareRoutes orders routes as the kernel's fib_trie dumps them: IPv4
// before IPv6, by address, longer prefix first, then lower metric first.
func compareRoutes(a, b Route) int {
	if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
		return c
	}
	if a.Dst.Bits() != b.Dst.Bits() {
		return b.Dst.Bits() - a.Dst.Bits()
	}
	switch {
	case a.Metric < b.Metric:
		return -1
	case a.Metric > b.Metric:
		return 1
	}
	return 0
}

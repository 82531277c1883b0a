package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// PortID identifies a port of a Forwarder. IDs are small integers chosen by
// the caller (they index a slice), below MaxPortID.
type PortID uint32

// MaxPortID bounds port IDs: every ID is less than it.
const MaxPortID = 1 << 16

// PortKind says what is behind a port, which decides how a packet routed to
// it is sent and how a packet received from it is treated.
type PortKind uint8

// Port kinds.
const (
	// PortUnderlay is a link to other nodes (a node's ens33).
	PortUnderlay PortKind = iota
	// PortWorkload is a workload's interface (Calico's caliXXXXXXXXXXX).
	PortWorkload
	// PortTunnel is an IPIP tunnel (tunl0): a packet routed to it is
	// encapsulated toward the decision's NextHop (Action Encap).
	PortTunnel
	// PortHost is the router's own IP stack (the node's kernel). Packets
	// to the router's local addresses are handed to it (Action Local);
	// packets received from it were originated by the router itself, so
	// they are routed without a TTL check or decrement, as Linux's output
	// path does.
	PortHost
)

var kindNames = [...]string{"underlay", "workload", "tunnel", "host"}

// String returns the kind's name: "underlay", "workload", "tunnel" or "host".
func (k PortKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MinMTU is the smallest MTU a port may have: RFC 791's 68 bytes, which
// every IPv4 module must forward without further fragmentation.
const MinMTU = 68

// MaxMTU is the largest MTU a port may have: the largest IPv4 packet.
const MaxMTU = 65535

// Port is one interface of the router.
type Port struct {
	ID   PortID
	Name string // the name routes use as Dev, e.g. "ens33", "cali717821d73f3", "tunl0"
	Kind PortKind
	MTU  int // largest IPv4 packet the port carries, MinMTU to MaxMTU

	// Addr is the router's address on the port; it is one of the router's
	// local addresses and the source of the ICMP errors the port carries.
	// Invalid when the port has none, like Calico's cali ports.
	Addr netip.Addr
}

// String describes the port for logs, e.g. "tunl0(3,tunnel,mtu 1480)".
func (p *Port) String() string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s(%d,%s,mtu %d)", p.Name, p.ID, p.Kind, p.MTU)
}

func (p Port) validate() error {
	switch {
	case p.ID >= MaxPortID:
		return fmt.Errorf("port %q: id %d out of range", p.Name, p.ID)
	case p.Name == "":
		return fmt.Errorf("port %d: no name", p.ID)
	case p.Kind > PortHost:
		return fmt.Errorf("port %q: unknown kind %d", p.Name, p.Kind)
	case p.MTU < MinMTU || p.MTU > MaxMTU:
		return fmt.Errorf("port %q: mtu %d out of range %d-%d", p.Name, p.MTU, MinMTU, MaxMTU)
	case p.Addr.IsValid() && !p.Addr.Is4():
		return fmt.Errorf("port %q: address %s is not IPv4", p.Name, p.Addr)
	}
	return nil
}

// portSet is an immutable snapshot of the ports and local addresses;
// Forward reads it without locks and changes publish a new one.
type portSet struct {
	byID   []*Port // indexed by ID; nil where no port
	byName map[string]*Port
	host   *Port    // the lowest-ID PortHost port, if any
	local  []uint32 // the router's addresses, sorted
	all    []Port   // in ID order, as given
}

func newPortSet(ports []Port, extraLocal []netip.Addr) (*portSet, error) {
	s := &portSet{byName: make(map[string]*Port, len(ports))}
	all := slices.Clone(ports)
	slices.SortFunc(all, func(a, b Port) int { return int(a.ID) - int(b.ID) })
	maxID := -1
	for i := range all {
		p := &all[i]
		if err := p.validate(); err != nil {
			return nil, err
		}
		if i > 0 && all[i-1].ID == p.ID {
			return nil, fmt.Errorf("ports %q and %q: duplicate id %d", all[i-1].Name, p.Name, p.ID)
		}
		if q, ok := s.byName[p.Name]; ok {
			return nil, fmt.Errorf("ports %d and %d: duplicate name %q", q.ID, p.ID, p.Name)
		}
		s.byName[p.Name] = p
		maxID = int(p.ID)
		if p.Kind == PortHost && s.host == nil {
			s.host = p
		}
		if p.Addr.IsValid() {
			s.local = append(s.local, addr4(p.Addr))
		}
	}
	s.byID = make([]*Port, maxID+1)
	for i := range all {
		s.byID[all[i].ID] = &all[i]
	}
	for _, a := range extraLocal {
		s.local = append(s.local, addr4(a))
	}
	slices.Sort(s.local)
	s.local = slices.Compact(s.local)
	s.all = all
	return s, nil
}

func (s *portSet) port(id PortID) *Port {
	if int(id) < len(s.byID) {
		return s.byID[id]
	}
	return nil
}

// isLocal reports whether a is one of the router's addresses.
func (s *portSet) isLocal(a uint32) bool {
	l := s.local
	if len(l) <= 8 {
		for _, x := range l {
			if x == a {
				return true
			}
		}
		return false
	}
	_, ok := slices.BinarySearch(l, a)
	return ok
}

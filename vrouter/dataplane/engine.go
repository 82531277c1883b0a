package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/fib"
)

// Port IDs the engine reserves; workload ports take the IDs above them.
// A router's extra interfaces (EngineConfig.Interfaces) k = 1, 2, ... have
// their host side at firstExtraHost+k and their underlay side at
// firstExtraUnderlay+k.
const (
	hostPortID         PortID = 0
	underlayPortID     PortID = 1
	tunnelPortID       PortID = 2
	firstExtraHost     PortID = 8
	firstExtraUnderlay PortID = 16
	firstWorkload      PortID = 24
)

// MaxInterfaces is the most underlay interfaces an engine has: the
// primary one and up to MaxInterfaces-1 in EngineConfig.Interfaces.
const MaxInterfaces = int(firstExtraUnderlay - firstExtraHost)

// headroom is the space kept before every packet in the engine's buffers:
// TUN reads and writes put the virtio-net header there.
const headroom = 64

// vnetLen is the length of the virtio_net_hdr before every packet read from
// or written to a TUN device opened with IFF_VNET_HDR.
const vnetLen = header.VirtioNetHdrLen

// bufSize is the size of one packet buffer: headroom and the largest IPv4
// packet (a GSO super-packet is at most 64 KB).
const bufSize = headroom + 65536

// batch is how many packets one read moves at most.
const batch = 64

// EngineConfig describes the ports of one node's engine.
type EngineConfig struct {
	FIB       *fib.Table
	Host      Device     // the node's underlay interface as its kernel sees it
	HostName  string     // port name of Host, e.g. "host"
	Underlay  Underlay   // the node's link to the underlay network (a *fabric.Endpoint)
	Interface string     // the underlay's name in routes, e.g. "ens33"
	MTU       int        // the underlay MTU
	Address   netip.Addr // the node address
	Logger    *slog.Logger
	// Tunnel adds the IPIP port tunl0 (MTU: the underlay's minus the outer
	// header): routes with dev tunl0 are encapsulated toward their
	// gateway, and IPIP packets to Address from one of Nodes are
	// decapsulated and routed as if received on tunl0. Others are dropped
	// and counted.
	Tunnel        bool
	TunnelAddress netip.Addr // tunl0's own address, if any: handed to Host
	// ErrorsToIngress sends ICMP errors the engine has no route for back
	// to the neighbour the offending packet came from (a lab router
	// between networks; see Config.ErrorsToIngress).
	ErrorsToIngress bool
	Nodes           []netip.Addr // the outer sources tunl0 accepts
	// Interfaces are more underlay interfaces, for a router joining
	// several networks: each is a host side (a TUN device in the
	// router's namespace carrying its address) and a fabric endpoint,
	// like the primary Host and Underlay.
	Interfaces []Interface
	// ConntrackSize is the number of flows policy's connection tracking
	// holds; 0 means DefaultConntrackSize.
	ConntrackSize int
	// TUNIO is how TUN devices are read and written: TUNIORead or
	// TUNIOUring; empty means the VROUTER_TUN_IO environment variable's,
	// else DefaultTUNIO.
	TUNIO string
}

// Interface is one more underlay interface of an engine.
type Interface struct {
	Name     string   // the name in routes, e.g. "eth1"
	Host     Device   // the interface as the namespace's kernel sees it
	Underlay Underlay // the link to the interface's network
	MTU      int
	Address  netip.Addr // the router's address on the network
}

// Engine moves packets between a node's ports: it reads from every TUN
// device and the fabric, decides with a Forwarder and writes the result out.
//
// TUN devices must be opened with IFF_VNET_HDR and TCP offloads (as
// netns.OpenTUN does): the engine reads and writes their file descriptors
// itself, one virtio_net_hdr and one packet per read or write, so a 64 KB
// GSO super-packet the kernel hands over is routed once, by its first
// header, crosses the fabric whole with its GSO metadata and is written
// whole to the receiving TUN device, whose kernel segments it. Only where
// a packet must be fragmented is a super-packet cut into segments here.
type Engine struct {
	fwd  *Forwarder
	host *tunPort
	log  *slog.Logger
	// hosts are the host ports (the primary's first), underlays the
	// fabric endpoints (the primary's first, then in the order of
	// EngineConfig.Interfaces; see underlayIndex) with their port IDs.
	// They do not change after NewEngine.
	hosts     []*tunPort
	underlays []underlay
	// localPort is the host port whose interface has the address: a
	// packet for one of the router's addresses is handed to the
	// kernel by that interface.
	localPort map[netip.Addr]PortID
	addr      netip.Addr
	mtu       int
	tunnel    atomic.Bool // tunl0 is up: encapsulation and decapsulation
	decap     *encap.Decapsulator

	mu      sync.Mutex
	ports   map[string]workloadPort  // workload ports by name
	nextID  PortID                   // the lowest ID never used
	freeIDs []PortID                 // IDs of removed ports, used again first
	outputs atomic.Pointer[[]output] // a port's output by PortID; nil where none
	ctx     context.Context
	wg      sync.WaitGroup
	closed  atomic.Bool

	batches batchPool // the TUN readers' buffers

	tunIO   string     // TUNIORead or TUNIOUring
	ringsMu sync.Mutex // guards rings
	rings   []*tunRing // every sender's ring, closed by Close

	pol *enforcer // network policy and its connection tracking (policy.go)

	segDrops   atomic.Uint64 // super-packets that could not be segmented
	encapDrops atomic.Uint64 // packets for tunl0 that could not be encapsulated
}

// TunnelName is the IPIP port's name in routes, as Calico's tunl0.
const TunnelName = "tunl0"

// NewEngine builds an engine with the host and underlay ports; workloads are
// added with AddWorkload.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if len(cfg.Interfaces) >= MaxInterfaces {
		return nil, fmt.Errorf("engine: %d interfaces; at most %d", len(cfg.Interfaces)+1, MaxInterfaces)
	}
	ports := []Port{
		{ID: hostPortID, Name: cfg.HostName, Kind: PortHost, MTU: cfg.MTU, Addr: cfg.Address},
		{ID: underlayPortID, Name: cfg.Interface, Kind: PortUnderlay, MTU: cfg.MTU, Addr: cfg.Address},
	}
	decap, err := encap.NewDecapsulator(cfg.Nodes...)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	fwd, err := New(cfg.FIB, Config{Ports: ports, DefaultSource: cfg.Address, ErrorsToIngress: cfg.ErrorsToIngress})
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	host, err := newTUNPort(hostPortID, cfg.Host)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tunIO, err := resolveTUNIO(cfg.TUNIO, cfg.Logger)
	if err != nil {
		return nil, err
	}
	e := &Engine{fwd: fwd, host: host, log: cfg.Logger, tunIO: tunIO, addr: cfg.Address, mtu: cfg.MTU, decap: decap,
		ports: map[string]workloadPort{}, nextID: firstWorkload,
		hosts:     []*tunPort{host},
		underlays: []underlay{{id: underlayPortID, name: cfg.Interface, ep: cfg.Underlay}},
		localPort: map[netip.Addr]PortID{},
		pol:       newEnforcer(cfg.ConntrackSize),
	}
	e.batches.init(runtime.GOMAXPROCS(0))
	out := make([]output, firstWorkload)
	out[hostPortID] = host
	for k, x := range cfg.Interfaces {
		hid, uid := firstExtraHost+PortID(k+1), firstExtraUnderlay+PortID(k+1)
		hp, err := newTUNPort(hid, x.Host)
		if err != nil {
			return nil, err
		}
		if err := fwd.AddPort(Port{ID: hid, Name: "@" + x.Name, Kind: PortHost, MTU: x.MTU}); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		if err := fwd.AddPort(Port{ID: uid, Name: x.Name, Kind: PortUnderlay, MTU: x.MTU, Addr: x.Address}); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		out[hid] = hp
		e.hosts = append(e.hosts, hp)
		e.underlays = append(e.underlays, underlay{id: uid, name: x.Name, ep: x.Underlay})
		e.localPort[x.Address] = hid
	}
	if cfg.Tunnel {
		if err := e.EnableTunnel(cfg.TunnelAddress); err != nil {
			return nil, err
		}
	}
	e.outputs.Store(&out)
	return e, nil
}

// underlay is one fabric endpoint of the engine and its port's ID.
type underlay struct {
	id   PortID
	name string // the interface's name in routes, e.g. "ens33"
	ep   Underlay
}

// EnableTunnel brings up tunl0 (MTU: the underlay's minus the outer
// header) with the local address addr (none if invalid), on a running
// engine too; it does nothing when tunl0 is up.
func (e *Engine) EnableTunnel(addr netip.Addr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tunnel.Load() {
		return nil
	}
	p := Port{ID: tunnelPortID, Name: TunnelName, Kind: PortTunnel, MTU: e.mtu - encap.HeaderLen, Addr: addr}
	if err := e.fwd.AddPort(p); err != nil {
		return fmt.Errorf("engine: add %s: %w", TunnelName, err)
	}
	e.tunnel.Store(true)
	return nil
}

// AddTunnelSources adds outer sources whose IPIP packets tunl0 accepts
// (nodes that joined the cluster after the engine started).
func (e *Engine) AddTunnelSources(addrs ...netip.Addr) error {
	return e.decap.AddNodes(addrs...)
}

// Stats returns the forwarder's and the fabric's counters by name.
func (e *Engine) Stats() map[string]uint64 {
	m := e.fwd.Stats().Map()
	for _, u := range e.underlays {
		f := u.ep.Stats()
		m["fabric_tx_frames"] += f.TxFrames
		m["fabric_rx_frames"] += f.RxFrames
		m["fabric_tx_drops"] += f.TxDrops.Total()
		m["fabric_rx_drops"] += f.RxDrops.Total()
		m["fabric_ring_tx_frames"] += f.Ring.TxFrames
		m["fabric_ring_rx_frames"] += f.Ring.RxFrames
	}
	if n := e.segDrops.Load(); n != 0 {
		m["gso_segment_drops"] = n
	}
	if e.tunnel.Load() {
		for _, c := range e.decap.Counters() {
			if c.Value != 0 || c.Name == "accepted" {
				m["ipip_decap_"+c.Name] = c.Value
			}
		}
		if n := e.encapDrops.Load(); n != 0 {
			m["ipip_encap_drops"] = n
		}
	}
	return m
}

// Run moves packets until ctx ends or Close is called.
func (e *Engine) Run(ctx context.Context) {
	e.mu.Lock()
	e.ctx = ctx
	for _, h := range e.hosts {
		e.wg.Add(1)
		go e.readTUN(h)
	}
	for _, u := range e.underlays {
		e.wg.Add(1)
		go e.readFabric(u)
	}
	for _, p := range e.ports {
		e.start(p)
	}
	e.mu.Unlock()
	e.wg.Add(1)
	go e.policyClock(ctx)
	<-ctx.Done()
	e.Close()
}

// AddWorkload adds a workload port named name (caliXXXXXXXXXXX) served by dev.
func (e *Engine) AddWorkload(name string, dev Device, mtu int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.ports[name]; ok {
		return fmt.Errorf("port %s exists", name)
	}
	id, err := e.allocID()
	if err != nil {
		return err
	}
	p, err := newTUNPort(id, dev)
	if err != nil {
		e.freeIDs = append(e.freeIDs, id)
		return err
	}
	return e.addPort(name, workloadPort{tun: p}, mtu)
}

// AddLinkWorkload adds a workload port named name whose packets are
// handed over in memory by link (a userspace TCP/IP stack; see Link)
// instead of a TUN device.
func (e *Engine) AddLinkWorkload(name string, link Link, mtu int) error {
	if link == nil {
		return fmt.Errorf("port %s: no link", name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.ports[name]; ok {
		return fmt.Errorf("port %s exists", name)
	}
	id, err := e.allocID()
	if err != nil {
		return err
	}
	return e.addPort(name, workloadPort{link: &linkPort{id: id, link: link}}, mtu)
}

// allocID returns an ID for a new workload port: one a removed port had,
// or the next never used, so that ports added and removed forever do not
// run out of IDs (MaxPortID) or grow the engine's tables. e.mu is held.
//
// A packet routed to a removed port just before its removal may still be
// written to the port that takes its ID next (a sender flushes what it
// routed a moment before); the workload behind it drops a packet not
// addressed to it, as a reused interface index does.
func (e *Engine) allocID() (PortID, error) {
	if n := len(e.freeIDs); n > 0 {
		id := e.freeIDs[n-1]
		e.freeIDs = e.freeIDs[:n-1]
		return id, nil
	}
	if e.nextID >= MaxPortID {
		return 0, fmt.Errorf("engine: no port IDs left (%d ports)", len(e.ports))
	}
	e.nextID++
	return e.nextID - 1, nil
}

// addPort adds workload port p, whose ID allocID gave, and starts its
// reader if the engine runs. e.mu is held.
func (e *Engine) addPort(name string, p workloadPort, mtu int) error {
	id := p.id()
	if err := e.fwd.AddPort(Port{ID: id, Name: name, Kind: PortWorkload, MTU: mtu}); err != nil {
		e.freeIDs = append(e.freeIDs, id)
		return err
	}
	old := *e.outputs.Load()
	out := make([]output, max(len(old), int(id)+1))
	copy(out, old)
	out[id] = p.output()
	e.outputs.Store(&out)
	e.ports[name] = p
	if _, ok := e.pol.chains[name]; ok {
		e.rebuildPolicy()
	}
	if e.ctx != nil {
		e.start(p)
	}
	return nil
}

// start starts workload port p's reader. e.mu is held.
func (e *Engine) start(p workloadPort) {
	e.wg.Add(1)
	if p.tun != nil {
		go e.readTUN(p.tun)
	} else {
		go e.readLink(p.link)
	}
}

// RemoveWorkload removes a workload port; the caller closes its device or
// link, which ends the port's reader.
func (e *Engine) RemoveWorkload(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.ports[name]
	if !ok {
		return
	}
	delete(e.ports, name)
	id := p.id()
	e.fwd.RemovePort(id)
	old := *e.outputs.Load()
	out := make([]output, len(old))
	copy(out, old)
	out[id] = nil
	e.outputs.Store(&out)
	e.freeIDs = append(e.freeIDs, id)
	if _, ok := e.pol.chains[name]; ok {
		e.rebuildPolicy()
	}
}

// Close stops the readers of the fabric and closes the engine's io_uring
// rings (TUN readers still running go on with plain system calls); TUN
// readers end when their devices are closed by their owners.
func (e *Engine) Close() {
	e.ringsMu.Lock()
	closed := e.closed.Swap(true)
	e.ringsMu.Unlock()
	if closed {
		return
	}
	for _, u := range e.underlays {
		u.ep.Close()
	}
	e.closeRings()
}

// TUNIO returns how the engine reads and writes its TUN devices:
// TUNIORead or TUNIOUring.
func (e *Engine) TUNIO() string { return e.tunIO }

// Package joint joins a Linux bridge to the userspace fabric, so that a
// lab network can have kernel-mode nodes (veths on the bridge) and
// userspace members (engines and router forwarders on fabric endpoints)
// at once.
//
// The fabric carries IPv4 packets addressed to nodes by name; the bridge
// carries Ethernet frames. The joint stands between them as a TAP port of
// the bridge (fab0, in the bridge's namespace) and one fabric endpoint
// per kernel-mode node, bound under that node's name: to a userspace
// member a kernel node is an ordinary fabric neighbour, and to a kernel
// node each userspace member is an ordinary host on its LAN.
//
//   - ARP: the joint answers requests for a fabric member's address with
//     that member's MAC, MemberMAC(address) (02:76 and the address), so
//     the bridge learns those MACs on fab0.
//   - bridge → fabric: an IPv4 frame to a member's MAC goes out of the
//     endpoint of the kernel node that sent it (known by its source MAC)
//     to that member: the member sees it come from the kernel node, and a
//     fabric capture records it on the kernel node's interface.
//   - fabric → bridge: a packet arriving at a kernel node's endpoint is
//     written to fab0 as a frame from the joint's MAC to that node's MAC.
//
// fab0 is opened with IFF_VNET_HDR and TCP offloads, so TCP super-packets
// cross whole in both directions with their GSO metadata (its offsets
// moved by the Ethernet header's 14 bytes), as between two engines.
package joint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"golang.org/x/sys/unix"
)

// Config is a joint's configuration (JSON, written by deploy).
type Config struct {
	// Network is the lab network, e.g. lan.
	Network string `json:"network"`
	// FabricDir is the lab's fabric directory (fabric.Attach's dir).
	FabricDir string `json:"fabricDir"`
	// Namespace is the bridge's namespace.
	Namespace string `json:"namespace"`
	// Bridge is the bridge device, Port the TAP device the joint makes
	// and enslaves to it.
	Bridge string `json:"bridge"`
	Port   string `json:"port"`
	// MTU is the network's.
	MTU int `json:"mtu"`
	// Kernel are the kernel-mode nodes on the bridge: Namespace and
	// Interface name their bridge-facing device, whose MAC the joint
	// reads at start.
	Kernel []Member `json:"kernel"`
	// Fabric are the members on the fabric (userspace nodes, routers).
	Fabric []Member `json:"fabric"`
}

// Member is a node or router of the network.
type Member struct {
	Node      string     `json:"node"`
	Address   netip.Addr `json:"address"`
	Namespace string     `json:"namespace,omitempty"`
	Interface string     `json:"interface,omitempty"`
}

// Load reads a joint's config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Network == "" || c.FabricDir == "" || c.Namespace == "" || c.Bridge == "" || c.Port == "" || c.MTU <= 0 {
		return nil, fmt.Errorf("%s: network, fabricDir, namespace, bridge, port and mtu are required", path)
	}
	return &c, nil
}

// WriteFile writes c to path (mode 0600).
func (c *Config) WriteFile(path string) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

// MAC is the joint's own MAC, the source of the frames it writes toward
// kernel nodes.
var MAC = net.HardwareAddr{0x02, 0x76, 0, 0, 0, 0}

// MemberMAC is the MAC the joint gives fabric member addr on the bridge:
// 02:76 followed by the address's four bytes (locally administered,
// unicast, distinct for every address).
func MemberMAC(addr netip.Addr) net.HardwareAddr {
	a := addr.As4()
	return net.HardwareAddr{0x02, 0x76, a[0], a[1], a[2], a[3]}
}

// Counters are what a joint has carried and dropped.
type Counters struct {
	ToFabric, ToBridge, ARPReplies      atomic.Uint64
	UnknownSender, SendErrors, BadFrame atomic.Uint64
}

// Joint is a running joint.
type Joint struct {
	cfg      *Config
	log      *slog.Logger
	tap      *os.File
	eps      map[string]*fabric.Endpoint // by kernel node
	kernel   map[[6]byte]string          // kernel node by its MAC
	kmac     map[string]net.HardwareAddr // kernel node's MAC
	members  map[netip.Addr]string       // fabric member by address
	byMAC    map[[6]byte]string          // fabric member by MemberMAC
	Counters Counters
}

// Open makes the joint: fab0 on the bridge and an endpoint per kernel
// node. Close undoes it.
func Open(cfg *Config, log *slog.Logger) (_ *Joint, err error) {
	j := &Joint{cfg: cfg, log: log, eps: map[string]*fabric.Endpoint{}, kernel: map[[6]byte]string{},
		kmac: map[string]net.HardwareAddr{}, members: map[netip.Addr]string{}, byMAC: map[[6]byte]string{}}
	defer func() {
		if err != nil {
			j.Close()
		}
	}()
	neighbors := map[netip.Addr]string{}
	for _, m := range cfg.Fabric {
		j.members[m.Address] = m.Node
		j.byMAC[[6]byte(MemberMAC(m.Address))] = m.Node
		neighbors[m.Address] = m.Node
	}
	for _, k := range cfg.Kernel {
		mac, err := linkMAC(k.Namespace, k.Interface)
		if err != nil {
			return nil, fmt.Errorf("joint %s: kernel node %s: %w", cfg.Network, k.Node, err)
		}
		j.kernel[[6]byte(mac)] = k.Node
		j.kmac[k.Node] = mac
	}
	if j.tap, err = openTap(cfg); err != nil {
		return nil, fmt.Errorf("joint %s: %w", cfg.Network, err)
	}
	for _, k := range cfg.Kernel {
		ep, err := fabric.Attach(cfg.FabricDir, cfg.Network, k.Node, fabric.Options{
			Interface: k.Node + "/" + k.Interface, Neighbors: neighbors, Namespace: cfg.Namespace})
		if err != nil {
			return nil, fmt.Errorf("joint %s: %w", cfg.Network, err)
		}
		j.eps[k.Node] = ep
	}
	return j, nil
}

// Close removes fab0 and the endpoints.
func (j *Joint) Close() {
	for _, ep := range j.eps {
		ep.Close()
	}
	if j.tap != nil {
		j.tap.Close()
	}
}

// Run carries frames until ctx ends or the joint is closed.
func (j *Joint) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for node, ep := range j.eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.fromFabric(node, ep)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		j.fromBridge()
	}()
	<-ctx.Done()
	j.Close()
	wg.Wait()
}

// ethLen is an Ethernet header's length; bufLen holds a virtio_net_hdr,
// an Ethernet header and the largest (super-)packet.
const (
	ethLen = 14
	bufLen = header.VirtioNetHdrLen + ethLen + 65535
)

// fromFabric writes what arrives at kernel node's endpoint to fab0, to the
// node's MAC.
func (j *Joint) fromFabric(node string, ep *fabric.Endpoint) {
	const batch = 64
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	frames := make([]fabric.Frame, batch)
	out := make([]byte, bufLen)
	dst := j.kmac[node]
	for {
		n, err := ep.ReadBatch(bufs, frames)
		if err != nil {
			return
		}
		for _, f := range frames[:n] {
			m := toBridge(out, f, dst)
			if m == 0 {
				j.Counters.BadFrame.Add(1)
				continue
			}
			if _, err := j.tap.Write(out[:m]); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				j.Counters.SendErrors.Add(1)
				j.log.Debug("write to the bridge", "node", node, "err", err)
				continue
			}
			j.Counters.ToBridge.Add(1)
		}
	}
}

// toBridge writes fabric frame f into out as fab0 takes it (virtio_net_hdr,
// Ethernet header from the joint to dst, the packet) and returns its
// length; 0 if it does not fit.
func toBridge(out []byte, f fabric.Frame, dst net.HardwareAddr) int {
	m := header.VirtioNetHdrLen + ethLen + len(f.Packet)
	if m > len(out) {
		return 0
	}
	g := f.GSO
	if g.Flags&header.FlagNeedsCsum != 0 {
		g.CsumStart += ethLen
	}
	if g.HdrLen != 0 {
		g.HdrLen += ethLen
	}
	_ = g.PutVirtioNetHdr(out)
	e := out[header.VirtioNetHdrLen:]
	copy(e[0:6], dst)
	copy(e[6:12], MAC)
	e[12], e[13] = 0x08, 0x00
	copy(e[ethLen:], f.Packet)
	return m
}

// fromBridge reads fab0: ARP requests for fabric members are answered,
// IPv4 frames to a member's MAC go to the member through the sending
// kernel node's endpoint.
func (j *Joint) fromBridge() {
	buf := make([]byte, bufLen)
	reply := make([]byte, header.VirtioNetHdrLen+ethLen+28)
	for {
		n, err := j.tap.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			j.log.Error("read the bridge port", "err", err)
			return
		}
		a := Classify(buf[:n], j.members, j.byMAC, j.kernel)
		switch a.Kind {
		case ARPReply:
			m := PutARPReply(reply, buf[:n], a.MemberAddr)
			if _, err := j.tap.Write(reply[:m]); err != nil {
				j.Counters.SendErrors.Add(1)
				continue
			}
			j.Counters.ARPReplies.Add(1)
		case ToMember:
			ep := j.eps[a.Sender]
			if err := ep.SendToNode(a.Member, fabric.Frame{GSO: a.GSO, Packet: a.Packet}); err != nil {
				j.Counters.SendErrors.Add(1)
				j.log.Debug("send to the fabric", "from", a.Sender, "to", a.Member, "err", err)
				continue
			}
			j.Counters.ToFabric.Add(1)
		case UnknownSender:
			j.Counters.UnknownSender.Add(1)
		case Bad:
			j.Counters.BadFrame.Add(1)
		}
	}
}

// Kind is what Classify makes of a frame read from fab0.
type Kind int

const (
	// Ignore: not for the fabric (between kernel nodes, broadcast other
	// than an ARP request for a member, another protocol).
	Ignore Kind = iota
	// ARPReply: an ARP request for a fabric member's address, to answer.
	ARPReply
	// ToMember: an IPv4 packet for a fabric member from a kernel node.
	ToMember
	// UnknownSender: an IPv4 packet for a member from a MAC that is no
	// kernel node's.
	UnknownSender
	// Bad: too short or with a virtio_net_hdr that does not fit it.
	Bad
)

// Action is Classify's verdict on a frame.
type Action struct {
	Kind       Kind
	MemberAddr netip.Addr // ARPReply: the address asked for
	Sender     string     // ToMember: the kernel node that sent it
	Member     string     // ToMember: the member it goes to
	GSO        header.GSO // ToMember: the packet's GSO metadata, IP-relative
	Packet     []byte     // ToMember: the IPv4 packet (a slice of the frame)
}

// Classify decides what to do with b, a virtio_net_hdr and an Ethernet
// frame as read from fab0: members maps fabric members' addresses to
// their names, byMAC their MemberMACs, kernel the kernel nodes' MACs.
func Classify(b []byte, members map[netip.Addr]string, byMAC, kernel map[[6]byte]string) Action {
	if len(b) < header.VirtioNetHdrLen+ethLen {
		return Action{Kind: Bad}
	}
	g, _ := header.DecodeVirtioNetHdr(b)
	e := b[header.VirtioNetHdrLen:]
	switch {
	case e[12] == 0x08 && e[13] == 0x06:
		a := e[ethLen:]
		// Ethernet/IPv4 request: htype 1, ptype 0x0800, hlen 6, plen 4, op 1.
		if len(a) < 28 || a[0] != 0 || a[1] != 1 || a[2] != 0x08 || a[3] != 0 || a[4] != 6 || a[5] != 4 || a[6] != 0 || a[7] != 1 {
			return Action{Kind: Ignore}
		}
		target := netip.AddrFrom4([4]byte(a[24:28]))
		if _, ok := members[target]; !ok {
			return Action{Kind: Ignore}
		}
		return Action{Kind: ARPReply, MemberAddr: target}
	case e[12] == 0x08 && e[13] == 0x00:
		member, ok := byMAC[[6]byte(e[0:6])]
		if !ok {
			return Action{Kind: Ignore}
		}
		sender, ok := kernel[[6]byte(e[6:12])]
		if !ok {
			return Action{Kind: UnknownSender}
		}
		pkt := e[ethLen:]
		if g.Flags&header.FlagNeedsCsum != 0 {
			if g.CsumStart < ethLen {
				return Action{Kind: Bad}
			}
			g.CsumStart -= ethLen
		}
		if g.IsGSO() {
			if g.HdrLen < ethLen {
				return Action{Kind: Bad}
			}
			g.HdrLen -= ethLen
		} else {
			g.HdrLen = 0
		}
		if len(pkt) < 20 || int(g.CsumStart)+int(g.CsumOffset)+2 > len(pkt) && g.Flags&header.FlagNeedsCsum != 0 {
			return Action{Kind: Bad}
		}
		return Action{Kind: ToMember, Sender: sender, Member: member, GSO: g, Packet: pkt}
	}
	return Action{Kind: Ignore}
}

// PutARPReply writes into out (at least 52 bytes) the answer to req, an
// ARP request for member address addr read from fab0 (as Classify saw
// it), and returns its length.
func PutARPReply(out, req []byte, addr netip.Addr) int {
	clear(out[:header.VirtioNetHdrLen])
	e := req[header.VirtioNetHdrLen:]
	a := e[ethLen:]
	mac := MemberMAC(addr)
	r := out[header.VirtioNetHdrLen:]
	copy(r[0:6], a[8:14]) // to the requester's hardware address
	copy(r[6:12], mac)
	r[12], r[13] = 0x08, 0x06
	p := r[ethLen:]
	copy(p[0:6], []byte{0, 1, 0x08, 0, 6, 4})
	p[6], p[7] = 0, 2 // reply
	copy(p[8:14], mac)
	addr4 := addr.As4()
	copy(p[14:18], addr4[:])
	copy(p[18:24], a[8:14])
	copy(p[24:28], a[14:18])
	return header.VirtioNetHdrLen + ethLen + 28
}

// linkMAC returns the MAC of iface in namespace ns.
func linkMAC(ns, iface string) (net.HardwareAddr, error) {
	h, err := netns.Handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	mac := l.Attrs().HardwareAddr
	if len(mac) != 6 {
		return nil, fmt.Errorf("namespace %s: %s has no Ethernet address", ns, iface)
	}
	return mac, nil
}

// tapOffloads are the offloads fab0 takes: TCP segmentation with checksum
// offload, so super-packets cross whole.
const tapOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6

// openTap makes cfg.Port, a TAP device with IFF_VNET_HDR and TCP offloads,
// in the bridge's namespace, enslaved to the bridge and up.
func openTap(cfg *Config) (*os.File, error) {
	fd := -1
	err := netns.Do(cfg.Namespace, func() error {
		f, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(cfg.Port)
		if err != nil {
			unix.Close(f)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(f, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(f)
			return fmt.Errorf("TUNSETIFF %s: %w", cfg.Port, err)
		}
		if err := unix.IoctlSetInt(f, unix.TUNSETOFFLOAD, tapOffloads); err != nil {
			unix.Close(f)
			return fmt.Errorf("TUNSETOFFLOAD %s: %w", cfg.Port, err)
		}
		fd = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(fd), "/dev/net/tun")
	h, err := netns.Handle(cfg.Namespace)
	if err == nil {
		defer h.Close()
		err = enslave(h, cfg)
	}
	if err != nil {
		file.Close()
		return nil, err
	}
	return file, nil
}

func enslave(h *netlink.Handle, cfg *Config) error {
	br, err := h.LinkByName(cfg.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", cfg.Bridge, err)
	}
	l, err := h.LinkByName(cfg.Port)
	if err != nil {
		return fmt.Errorf("port %s: %w", cfg.Port, err)
	}
	if err := h.LinkSetMTU(l, cfg.MTU); err != nil {
		return fmt.Errorf("port %s: mtu %d: %w", cfg.Port, cfg.MTU, err)
	}
	if err := h.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("port %s: enslave to %s: %w", cfg.Port, cfg.Bridge, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("port %s: up: %w", cfg.Port, err)
	}
	return nil
}

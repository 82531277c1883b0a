package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/fabric"
	"github.com/vrouter-lab/vrouter/vrouter/joint"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"golang.org/x/sys/unix"
)

// A network with kernel-mode nodes is a Linux bridge: captureKernel reads
// it with a packet socket on br0, in promiscuous mode (so the bridge hands
// the socket every frame it forwards, as tcpdump -i br0 sees them), in the
// bridge's namespace. On a mixed network the packets between the fabric's
// members are on the fabric only: the capture then merges the fabric's tap
// (everything a userspace member or the joint, for a kernel node, sends)
// with the bridge's frames between two kernel nodes, so each packet is
// recorded once, on its sender's interface, as on a userspace network.

// capRecord is one packet for the capture file.
type capRecord struct {
	t     time.Time
	iface string
	pkt   []byte
}

// captureKernel is Capture for a network with a bridge.
func captureKernel(ctx context.Context, st *State, network string, w io.Writer, opt CaptureOptions) (int, error) {
	l := st.Spec
	mixed := l.MixedNetwork(network) && !opt.Bridge
	// The bridge's senders: kernel nodes by MAC, and the joint.
	senders := map[[6]byte]string{[6]byte(joint.MAC): JointPort}
	kernelMACs := map[[6]byte]bool{}
	var ifaces []string
	for _, n := range l.Nodes {
		if n.Network != network {
			continue
		}
		name := n.Name + "/" + n.Interface
		ifaces = append(ifaces, name)
		if !l.KernelNode(n) {
			continue
		}
		mac, err := nodeMAC(l.NamespaceName(n.Name), n.Interface)
		if err != nil {
			return 0, fmt.Errorf("capture %s: %w", network, err)
		}
		senders[[6]byte(mac)] = name
		kernelMACs[[6]byte(mac)] = true
	}
	if mixed {
		for _, r := range st.Routers {
			if name, _, ok := r.InterfaceOn(network); ok {
				ifaces = append(ifaces, r.Name+"/"+name)
			}
		}
	}
	if opt.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opt.Duration)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	recs := make(chan capRecord, 1024)
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	sock, err := openBridgeSocket(BridgeNamespace(st.Name, network))
	if err != nil {
		return 0, fmt.Errorf("capture %s: %w", network, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		readBridge(ctx, sock, senders, kernelMACs, mixed, recs, errc)
	}()
	if mixed {
		tap, err := fabric.OpenTapWithOptions(fabricDir(st.Dir), network, fabric.TapOptions{Namespace: BridgeNamespace(st.Name, network)})
		if err != nil {
			return 0, fmt.Errorf("capture %s: %w", network, err)
		}
		defer tap.Close()
		rctx, rcancel := context.WithTimeout(ctx, captureReadyTimeout)
		err = tap.WaitReady(rctx)
		rcancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0, nil
			}
			return 0, fmt.Errorf("capture %s: %w", network, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var rec fabric.TapRecord
				if err := tap.ReadInto(ctx, &rec); err != nil {
					if ctx.Err() == nil && !errors.Is(err, fabric.ErrClosed) {
						errc <- err
					}
					return
				}
				name := rec.Interface
				if name == "" {
					name = rec.From
				}
				select {
				case recs <- capRecord{t: rec.Time, iface: name, pkt: rec.Packet}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}

	pw, stream, index, err := startPcapng(w, network, ifaces, opt)
	if err != nil {
		return 0, err
	}
	n := 0
	lastFlush := time.Now()
	fail := func(err error) (int, error) {
		pw.Close()
		return n, fmt.Errorf("capture %s: %w", network, err)
	}
	for opt.Count == 0 || n < opt.Count {
		var rec capRecord
		select {
		case <-ctx.Done():
		case err := <-errc:
			return fail(err)
		case rec = <-recs:
		}
		if ctx.Err() != nil {
			break
		}
		id, ok := index[rec.iface]
		if !ok {
			if id, err = pw.AddInterface(rec.iface); err != nil {
				return fail(err)
			}
			index[rec.iface] = id
		}
		if err := pw.WritePacket(id, rec.t, rec.pkt); err != nil {
			return fail(fmt.Errorf("write: %w", err))
		}
		n++
		if stream || time.Since(lastFlush) >= captureFlushInterval {
			if err := pw.Flush(); err != nil {
				return fail(fmt.Errorf("write: %w", err))
			}
			lastFlush = time.Now()
		}
	}
	if err := pw.Close(); err != nil {
		return n, fmt.Errorf("capture %s: write: %w", network, err)
	}
	return n, nil
}

// readBridge reads the bridge's frames from sock until ctx ends, and
// sends their IPv4 packets to recs, named after their sender (by source
// MAC; the bridge's name for an unknown one). With kernelOnly, only frames
// from one kernel node to another are recorded (the fabric's tap has the
// rest). It closes sock.
func readBridge(ctx context.Context, sock *os.File, senders map[[6]byte]string, kernel map[[6]byte]bool, kernelOnly bool, recs chan<- capRecord, errc chan<- error) {
	go func() {
		<-ctx.Done()
		sock.Close()
	}()
	buf := make([]byte, 14+65535)
	for {
		n, err := sock.Read(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, os.ErrClosed) {
				errc <- err
			}
			return
		}
		if n < 14+20 || buf[12] != 0x08 || buf[13] != 0x00 {
			continue // not IPv4 (ARP)
		}
		dst, src := [6]byte(buf[0:6]), [6]byte(buf[6:12])
		if kernelOnly && !(kernel[src] && kernel[dst]) {
			continue
		}
		name, ok := senders[src]
		if !ok {
			name = BridgeName
		}
		select {
		case recs <- capRecord{t: time.Now(), iface: name, pkt: append([]byte(nil), buf[14:n]...)}:
		case <-ctx.Done():
			return
		}
	}
}

// openBridgeSocket opens a packet socket on BridgeName in namespace ns,
// with the bridge in promiscuous mode (for as long as the socket is open).
func openBridgeSocket(ns string) (*os.File, error) {
	var fd int
	err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(BridgeName)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind to %s: %w", BridgeName, err)
		}
		mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			unix.Close(fd)
			return fmt.Errorf("promiscuous mode on %s: %w", BridgeName, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	return os.NewFile(uintptr(fd), "packet:"+BridgeName), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// nodeMAC returns the MAC of iface in namespace ns.
func nodeMAC(ns, iface string) (net.HardwareAddr, error) {
	h, err := netns.Handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	return l.Attrs().HardwareAddr, nil
}

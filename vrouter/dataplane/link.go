package dataplane

import (
	"github.com/vrouter-lab/vrouter/header"
)

// Link is a workload port whose packets the engine exchanges in memory
// with a userspace TCP/IP stack (package netstack's gVisor stacks) rather
// than through a TUN device: no namespace, no device, no system call per
// packet. Packets are plain IPv4 packets with complete checksums and no
// offload metadata, at most the port's MTU long; a GSO super-packet routed
// to a Link is cut into segments first (the stack sends plain packets:
// it has no GSO).
//
// The engine runs one reader per Link, which calls Wait and Read; Deliver
// is called by any of the engine's goroutines, concurrently.
type Link interface {
	// Wait blocks until the workload has a packet to send (true) or the
	// link is closed (false), which ends the port's reader. The reader
	// holds no buffers while it waits.
	Wait() bool
	// Read copies the workload's next queued outbound packet into buf
	// and returns its length; 0 when none is queued. It does not block.
	// A packet longer than buf is dropped (and the next one read).
	Read(buf []byte) int
	// Deliver hands one packet to the workload. pkt is the caller's
	// again once Deliver returns. It must not block on the engine: a
	// stack sending from inside Deliver (an echo reply) queues what it
	// sends for the port's reader.
	Deliver(pkt []byte)
}

// output is where the engine writes what it sends out of a host or
// workload port: b is one virtio_net_hdr and one packet; s is the sender
// writing, whose seg buffer is free during the call.
type output interface {
	output(s *sender, b []byte) error
}

// output writes b to the TUN device.
func (p *tunPort) output(s *sender, b []byte) error { return p.writeWith(&s.tw, b) }

// workloadPort is a workload's port in the engine: a TUN device or a
// Link.
type workloadPort struct {
	tun  *tunPort
	link *linkPort
}

func (p workloadPort) id() PortID {
	if p.tun != nil {
		return p.tun.id
	}
	return p.link.id
}

func (p workloadPort) output() output {
	if p.tun != nil {
		return p.tun
	}
	return p.link
}

// linkPort is a workload port served by a Link.
type linkPort struct {
	id   PortID
	link Link
}

// output hands the packet in b to the link: a GSO super-packet as its
// segments, a packet whose checksum its sender left to be done
// (NEEDS_CSUM, from a TUN workload) with the checksum completed.
func (p *linkPort) output(s *sender, b []byte) error {
	if len(b) <= vnetLen {
		return nil
	}
	g, err := header.DecodeVirtioNetHdr(b)
	if err != nil {
		return err
	}
	pkt := b[vnetLen:]
	if g.IsGSO() {
		return segment(pkt, g, s.seg[vnetLen:], p.link.Deliver)
	}
	if g.Flags&header.FlagNeedsCsum != 0 {
		completeChecksum(pkt, g)
	}
	p.link.Deliver(pkt)
	return nil
}

// readLink moves p's outbound packets until its link is closed: the
// packets queued at once (up to batch) are routed together and sent with
// one flush, from a batch of the engine's pool taken only while there are
// packets to move.
func (e *Engine) readLink(p *linkPort) {
	defer e.wg.Done()
	for p.link.Wait() {
		b := e.batches.get(e)
		n := 0
		for n < batch {
			m := p.link.Read(b.bufs[n][headroom:])
			if m == 0 {
				break
			}
			b.sizes[n] = m
			n++
		}
		for i := range n {
			b.s.handle(b.bufs[i], b.sizes[i], header.GSO{}, p.id, i)
		}
		b.s.flush()
		e.batches.put(b)
	}
}

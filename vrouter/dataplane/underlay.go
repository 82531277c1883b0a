package dataplane

import (
	"net/netip"

	"github.com/vrouter-lab/vrouter/vrouter/fabric"
)

// Underlay is an engine's link to one underlay network: what the engine
// needs to send and receive frames (an IPv4 packet and its GSO metadata,
// fabric.Frame), in the spirit of wireguard-go's conn.Bind. A
// *fabric.Endpoint is one; tests use an in-memory one, and another
// transport (a kernel socket, say) can be plugged in by implementing it.
//
// The engine calls ReadBatch and Sender from one goroutine per underlay,
// and the send methods from any of its goroutines concurrently.
type Underlay interface {
	// ReadBatch waits for frames and returns n ≥ 1 of them, frames[i]
	// with its Packet in bufs[i] (bufs' elements may be swapped to keep
	// that so), or an error once the underlay is closed, which ends the
	// engine's reader.
	ReadBatch(bufs [][]byte, frames []fabric.Frame) (n int, err error)
	// Sender names the neighbour that sent frames[k] of the last
	// ReadBatch, for SendToNode: the engine sends an ICMP error with no
	// route of its own back where the offending packet came from. It is
	// called by the goroutine that called ReadBatch, before it calls it
	// again.
	Sender(k int) (node string, ok bool)
	// SendTo sends one frame to the neighbour owning the underlay
	// address nextHop.
	SendTo(nextHop netip.Addr, f fabric.Frame) error
	// SendToNode sends one frame to the neighbour Sender named.
	SendToNode(node string, f fabric.Frame) error
	// WriteBatch sends frames[i] to nextHops[i] for each i, setting
	// errs[i] to what SendTo would have returned; an error matching
	// fabric.ErrQueueFull makes the engine retry that frame a few times
	// (the queue-full policy). It returns how many frames were sent.
	WriteBatch(nextHops []netip.Addr, frames []fabric.Frame, errs []error) int
	// Stats returns the underlay's counters; the engine reports frames
	// and drops from it.
	Stats() fabric.Stats
	// Close stops the underlay: a blocked ReadBatch returns an error.
	Close() error
}

var _ Underlay = (*fabric.Endpoint)(nil)

package fabric

import "sync/atomic"

// Stats is a snapshot of an endpoint's counters. Bytes count packet bytes
// (the IP packets, without the fabric header).
type Stats struct {
	// TxFrames and TxBytes count frames put in a receiver's queue.
	TxFrames, TxBytes uint64
	// RxFrames and RxBytes count frames ReadBatch delivered.
	RxFrames, RxBytes uint64
	// TxDrops counts frames given to SendTo or SendToNode that did not
	// reach the receiver's queue, by reason.
	TxDrops TxDrops
	// RxDrops counts datagrams received and not delivered, by reason.
	RxDrops RxDrops
	// TapFrames counts copies sent to taps; TapDrops copies a tap did not
	// take (its queue full, or the capture gone).
	TapFrames, TapDrops uint64
	// Delayed is the number of frames waiting in the delay queue now.
	Delayed uint64
	// Ring is the part of the traffic above that went through the
	// shared-memory rings, and the rings the endpoint has now.
	Ring RingStats
}

// RingStats counts an endpoint's shared-memory ring traffic: a subset of
// Stats' frames, bytes and drops (frames over the socket are not in it).
type RingStats struct {
	// TxFrames and TxBytes count frames put in rings to neighbours (in
	// Stats.TxFrames and TxBytes too).
	TxFrames, TxBytes uint64
	// RxFrames and RxBytes count frames ReadBatch delivered from rings (in
	// Stats.RxFrames and RxBytes too).
	RxFrames, RxBytes uint64
	// TxFull counts frames dropped because the ring to the neighbour was
	// full (in Stats.TxDrops.QueueFull too).
	TxFull uint64
	// Out is the number of rings the endpoint has now to its neighbours,
	// In the number it reads from them.
	Out, In uint64
}

// TxDrops counts frames dropped on the way out, by reason.
type TxDrops struct {
	NoNeighbor   uint64 // no neighbour-table entry for the next hop (ErrNoNeighbor)
	NeighborDown uint64 // the neighbour's socket is missing or dead (ErrNeighborDown)
	LinkDown     uint64 // this endpoint is down (ErrLinkDown)
	Loss         uint64 // lost to the configured Impairment.Loss
	QueueFull    uint64 // the receiver's queue, our send buffer or the delay queue was full (ErrQueueFull)
	BadFrame     uint64 // empty packet or inconsistent GSO metadata (ErrBadFrame)
	Error        uint64 // any other error from the kernel
}

// RxDrops counts received datagrams not delivered, by reason.
type RxDrops struct {
	LinkDown uint64 // arrived while this endpoint was down
	BadFrame uint64 // malformed header (ErrBadFrame)
	TooBig   uint64 // larger than the buffer ReadBatch was given (truncated)
}

// Total is the sum of the drop counters.
func (d TxDrops) Total() uint64 {
	return d.NoNeighbor + d.NeighborDown + d.LinkDown + d.Loss + d.QueueFull + d.BadFrame + d.Error
}

// Total is the sum of the drop counters.
func (d RxDrops) Total() uint64 { return d.LinkDown + d.BadFrame + d.TooBig }

// counters are the live, atomically updated counters behind Stats.
// The send-side and receive-side counters are on separate cache lines:
// senders and the reader run on different cores.
type counters struct {
	txFrames, txBytes                                                                  atomic.Uint64
	txNoNeighbor, txNeighborDown, txLinkDown, txLoss, txQueueFull, txBadFrame, txError atomic.Uint64
	tapFrames, tapDrops                                                                atomic.Uint64
	delayed                                                                            atomic.Int64
	ringTxFrames, ringTxBytes, ringTxFull                                              atomic.Uint64
	ringsOut                                                                           atomic.Int64
	_                                                                                  [64]byte

	rxFrames, rxBytes                atomic.Uint64
	rxLinkDown, rxBadFrame, rxTooBig atomic.Uint64
	ringRxFrames, ringRxBytes        atomic.Uint64
	ringsIn                          atomic.Int64
	_                                [64]byte
}

// nonNegative is a gauge's value, 0 if a race made it negative.
func nonNegative(v int64) uint64 { return uint64(max(v, 0)) }

func (c *counters) snapshot() Stats {
	return Stats{
		TxFrames: c.txFrames.Load(),
		TxBytes:  c.txBytes.Load(),
		RxFrames: c.rxFrames.Load(),
		RxBytes:  c.rxBytes.Load(),
		TxDrops: TxDrops{
			NoNeighbor:   c.txNoNeighbor.Load(),
			NeighborDown: c.txNeighborDown.Load(),
			LinkDown:     c.txLinkDown.Load(),
			Loss:         c.txLoss.Load(),
			QueueFull:    c.txQueueFull.Load(),
			BadFrame:     c.txBadFrame.Load(),
			Error:        c.txError.Load(),
		},
		RxDrops: RxDrops{
			LinkDown: c.rxLinkDown.Load(),
			BadFrame: c.rxBadFrame.Load(),
			TooBig:   c.rxTooBig.Load(),
		},
		TapFrames: c.tapFrames.Load(),
		TapDrops:  c.tapDrops.Load(),
		Delayed:   nonNegative(c.delayed.Load()),
		Ring: RingStats{
			TxFrames: c.ringTxFrames.Load(),
			TxBytes:  c.ringTxBytes.Load(),
			RxFrames: c.ringRxFrames.Load(),
			RxBytes:  c.ringRxBytes.Load(),
			TxFull:   c.ringTxFull.Load(),
			Out:      nonNegative(c.ringsOut.Load()),
			In:       nonNegative(c.ringsIn.Load()),
		},
	}
}

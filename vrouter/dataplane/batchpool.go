package dataplane

import "sync/atomic"

// tunBatch is what a TUN port's reader holds while it moves packets: batch
// read buffers of bufSize bytes (a GSO super-packet is read whole), their
// sizes, and a sender with its own buffers.
type tunBatch struct {
	bufs  [][]byte
	sizes []int
	s     *sender
}

func newTUNBatch(e *Engine) *tunBatch {
	b := &tunBatch{bufs: make([][]byte, batch), sizes: make([]int, batch), s: newSender(e)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, bufSize)
	}
	return b
}

// batchPool hands out tunBatches to an engine's TUN readers (its host ports
// and every workload port). A reader takes one when its device has packets
// and gives it back once they are routed and sent, so an idle port holds no
// buffers: memory grows with the readers moving packets at once, which the
// pool bounds, not with the number of ports. A batch is about 4.4 MB of
// address space (64 reads of up to 64 KB each and a sender's buffers); a
// node with 1,000 workloads would otherwise reserve 4.4 GB and keep every
// page traffic ever touched.
//
// At most max batches are ever made, lazily and never freed (steady-state
// forwarding allocates nothing); a reader finding none free waits for one,
// in order (a channel is FIFO), so a busy port cannot starve the others: a
// reader gives its batch back after every round.
type batchPool struct {
	free chan *tunBatch
	made atomic.Int32
	max  int32
}

// batchesPerCPU is how many batches the pool makes per CPU the engine may
// use: readers on every CPU, and as many again routing or preempted
// between a read and its flush.
const batchesPerCPU = 2

// init sizes the pool for an engine running on cpus CPUs
// (runtime.GOMAXPROCS).
func (p *batchPool) init(cpus int) {
	p.max = int32(batchesPerCPU*max(cpus, 1) + 2)
	p.free = make(chan *tunBatch, p.max)
}

// get returns a free batch, makes one if fewer than max exist, or waits
// for one to be given back.
func (p *batchPool) get(e *Engine) *tunBatch {
	select {
	case b := <-p.free:
		return b
	default:
	}
	for {
		n := p.made.Load()
		if n >= p.max {
			break
		}
		if p.made.CompareAndSwap(n, n+1) {
			return newTUNBatch(e)
		}
	}
	return <-p.free
}

// put gives a batch back; it never blocks (the channel holds every batch
// made).
func (p *batchPool) put(b *tunBatch) { p.free <- b }

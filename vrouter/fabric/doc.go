// Package fabric is the userspace underlay between node engines: the
// "cable and switch" of a lab network such as lan, 192.168.50.0/24.
//
// # Endpoints
//
// A network is a directory, <dir>/<network>, and each node attached to it
// is an Endpoint: a unix datagram socket <dir>/<network>/<node>.sock
// (and, for busy links, shared-memory rings: see below).
// Unix sockets are filesystem objects, so engines in different network
// namespaces (and processes) reach each other through them. A frame is
// addressed to a node by name; SendTo resolves an underlay next-hop
// address to the node name through the endpoint's neighbour table, the
// way ARP would (the table is fixed from the lab file, and SetNeighbors
// replaces it atomically at run time). An unknown next hop is
// ErrNoNeighbor, a known one whose engine is not attached ErrNeighborDown
// (which errors.Is treats as ErrNoNeighbor): the engine answers ICMP host
// unreachable for both, as Linux does once ARP fails.
//
// # Frames
//
// A Frame is one IPv4 packet plus its GSO metadata (the kernel's
// virtio_net_hdr, header.GSO), so the engine can carry the 64 KB TCP
// super-packets a TUN device with IFF_VNET_HDR hands over whole across the
// fabric and let the receiving TUN device segment them. On the wire each
// datagram is a HeaderLen-byte header followed by the packet. SendTo
// gathers header and packet with one sendmsg (no copy in user space),
// WriteBatch up to 64 frames, to any neighbours, with one sendmmsg, and
// ReadBatch scatters each packet straight into a caller's buffer, up to
// 256 datagrams per recvmmsg. None of them allocates. The cost is in the
// kernel, mostly in waking the receiver, so batching is what pays: with
// WriteBatch the receiver finds tens of frames per wakeup instead of one
// or two. Malformed datagrams
// (short, wrong version, lengths that disagree, GSO fields pointing
// outside the packet) are dropped and counted, never delivered.
//
// # Shared-memory rings
//
// A busy link does not use the socket for its frames. Once an endpoint has
// sent a neighbour Options.RingAfter frames within a second
// (DefaultRingAfter, 64: BGP keepalives never get there), it makes a
// single-producer single-consumer ring, a file
// <dir>/<network>/rings/<receiver>/<sender> (the lab's state directory is a
// tmpfs, so the file is memory) that both endpoints map MAP_SHARED, and
// announces it with a control datagram on the socket; the receiver maps
// it when it reads the announce (ring.go has the layout). From then on
// sending a frame to that neighbour is a copy into the ring and an atomic
// store of the tail, serialized by a mutex in the sending process, and
// ReadBatch copies frames out of its inbound rings into the caller's
// buffers: no system call on either side while frames flow. ReadBatch
// reads the socket too, without waiting, when the rings are empty and
// first every few batches, and drains the rings in turn, so a flooded ring
// starves neither another ring nor the socket (BGP keepalives). Only when the rings and the socket are all empty does
// the receiver set the rings' "sleeping" flags, look at the rings once
// more, and wait on its socket; a sender that publishes a frame and finds
// the flag set clears it and sends a 16-byte doorbell datagram, which
// wakes it. So under load there is no wakeup per batch, and an idle link
// costs nothing. A full ring drops the frame (TxDrops.QueueFull).
// Stats.Ring tells the ring traffic from the socket's: frames, bytes and
// full-ring drops (subsets of the totals) and the rings open each way.
//
// Lifecycle: closing an endpoint marks its outbound rings closed (their
// receivers drop each once it is read) and its inbound rings gone (their
// senders stop using them), and removes the files. An endpoint attaching
// under a node name does the same to the rings a killed predecessor left,
// so a restarted receiver is never written into through a stale ring (its
// senders see "gone" at their next frame, fall back to the socket and make
// a new ring) and a restarted sender's old ring is dropped. A receiver
// killed and not restarted is found by its senders when its ring is full
// or has not been read for a while: a doorbell to a dead socket is
// refused, and sending becomes ErrNeighborDown as on the socket path. The
// ring's contents are untrusted: every length and offset is checked, a
// malformed record is dropped and counted (RxDrops.BadFrame), and one
// whose length makes no sense drops what is queued behind it. What a ring
// does not cover goes over the socket: frames too large for a quarter of
// the ring, frames the delay queue sends (impairments with delay), frames
// to a node outside the neighbour table (SendToNode for ICMP errors), and
// everything while no ring is made. Taps, impairments, link state and
// counters apply to ring frames as to the others. The directory should
// be on a tmpfs (labs keep it under /run): on a disk the kernel would
// write the rings' pages back. A ring file truncated behind the mapping's
// back would fault the process that maps it (SIGBUS): the files are the
// lab's own, root's, and nothing truncates them. Options.NoRing, or
// VROUTER_FABRIC_RING=0 in the environment, keeps an endpoint's frames on
// the socket (the end-to-end benchmark measures both).
//
// # Queue depth and what a full queue does
//
// The kernel queues at most net.unix.max_dgram_qlen+1 datagrams on a unix
// datagram socket (the sysctl is per network namespace, read when the
// socket is created, 10 by default); bytes in flight are bounded by the
// sender's SO_SNDBUF, since unread datagrams are charged to their sender.
// When the receiver's queue is full a blocking sender sleeps until the
// receiver reads (with SO_SNDTIMEO, EAGAIN after the timeout) and a
// nonblocking one gets EAGAIN at once; poll(2) cannot be used to wait for
// room, because an unconnected socket always reports POLLOUT. A router
// must not stall its forwarding loop on one slow neighbour, so endpoints
// send with MSG_DONTWAIT: a full queue drops the frame and counts it
// (TxDrops.QueueFull, ErrQueueFull), as a NIC drops when its transmit ring
// is full. Labs raise the queue length in each node namespace with
// SetMaxDgramQlen before the node's engine attaches (DefaultMaxDgramQlen),
// and Endpoints get DefaultSocketBuffer (4 MiB, forced past wmem_max when
// root) of send buffer.
//
// # Link state and impairments
//
// SetUp(false) pulls the cable: frames sent by, queued in or arriving at
// the endpoint are dropped and counted. SetImpairment applies netem-like
// delay, jitter and loss to the frames the endpoint sends; a perfect link
// costs one atomic load per frame.
//
// # Taps
//
// Any process can capture a network with OpenTap, which binds
// <dir>/<network>/taps/<id>.sock. Every endpoint watches the network's
// taps directory with inotify and rescans it when it changes, and also
// every Options.TapScanInterval (DefaultTapScanInterval, 2 s) in case it
// missed a change (nothing at all happens per frame while there is no
// tap); it sends each tap a copy of every frame it sends, with the time,
// sender and receiver nodes, the sender's interface name (such as
// node1/ens33) and the packet's length. Copies are made on send only, so
// each frame crossing the network is captured exactly once. What is
// captured is what the sender put on the wire: frames lost or delayed by
// the sender's impairments and frames the receiver drops (its queue full,
// its link down) are captured, stamped with the time they were sent;
// frames that never left (sender down, no neighbour, malformed) are not.
// Copies go out from a separate socket without waiting, so a slow tap
// misses copies (TapDrops) instead of slowing the network, and a tap whose
// capture was killed is forgotten at its first refusal.
//
// # Use by an engine
//
//	ep, err := fabric.Attach(stateDir+"/fabric", "lan", "node1", fabric.Options{
//		Interface: "node1/ens33",
//		Neighbors: map[netip.Addr]string{addr2: "node2", addr3: "node3"},
//	})
//	...
//	defer ep.Close()
//
//	// forwarding: a route says "via 192.168.50.11 dev ens33"
//	switch err := ep.SendTo(nextHop, fabric.Frame{GSO: gso, Packet: pkt}); {
//	case errors.Is(err, fabric.ErrQueueFull):
//		// the peer is busy: retry or drop
//	case err != nil:
//		// no neighbour, link down: dropped and counted
//	}
//
//	// or, after routing a batch read from a TUN device:
//	ep.WriteBatch(nextHops[:n], frames[:n], errs[:n])
//	for i, err := range errs[:n] {
//		if err != nil {
//			// frames[i] was dropped (and counted)
//		}
//	}
//
//	// receiving: one goroutine
//	bufs := make([][]byte, 64) // each 64 KB, with headroom if needed
//	frames := make([]fabric.Frame, 64)
//	for {
//		n, err := ep.ReadBatch(bufs, frames)
//		if err != nil {
//			return // fabric.ErrClosed
//		}
//		for _, f := range frames[:n] {
//			// route f.Packet; write it to a TUN with f.GSO as its
//			// virtio_net_hdr (header.GSO.PutVirtioNetHdr)
//		}
//	}
package fabric

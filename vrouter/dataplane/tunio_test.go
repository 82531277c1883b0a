package dataplane_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/vrouter-lab/vrouter/header"
	"github.com/vrouter-lab/vrouter/vrouter/dataplane"
	"github.com/vrouter-lab/vrouter/vrouter/uring"
)

// ringFDs counts the process's io_uring descriptors.
func ringFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == "anon_inode:[io_uring]" {
			n++
		}
	}
	return n
}

// An engine with io_uring TUN I/O moves bursts both ways in order, GSO
// super-packets whole, and closes its rings when it stops.
func TestEngineTUNIOUring(t *testing.T) {
	if err := uring.Supported(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("io_uring not usable: %v", err)
		}
		t.Skipf("io_uring not usable: %v", err)
	}
	before := ringFDs(t)
	t.Run("traffic", func(t *testing.T) {
		rig := newEngineRigWith(t, false, func(c *dataplane.EngineConfig) { c.TUNIO = dataplane.TUNIOUring })
		if got := rig.e.TUNIO(); got != dataplane.TUNIOUring {
			t.Fatalf("TUNIO %q", got)
		}
		numbered := func(src, dst string, i int) []byte {
			p := make([]byte, 64)
			binary.BigEndian.PutUint32(p, uint32(i))
			return ipSpec{src: src, dst: dst, payload: p}.pkt()
		}
		index := func(pkt []byte) int { return int(binary.BigEndian.Uint32(pkt[20:])) }

		// workload → underlay: a burst read through the ring
		const burst = 200
		for i := range burst {
			rig.wl.send(t, header.GSO{}, numbered("10.244.1.5", "10.244.2.7", i))
		}
		for i := range burst {
			s := rig.u.next(t)
			if got := index(s.frame.Packet); got != i {
				t.Fatalf("frame %d carries packet %d", i, got)
			}
			checkForwarded(t, s.frame.Packet, numbered("10.244.1.5", "10.244.2.7", i))
		}
		// underlay → workload: batches of packets to one port written
		// through the ring
		const in = 60
		for i := range in {
			rig.u.deliver(header.GSO{}, numbered("10.244.2.7", "10.244.1.5", i))
		}
		for i := range in {
			g, got := rig.wl.recv(t)
			if g != (header.GSO{}) || index(got) != i {
				t.Fatalf("packet %d: %d, virtio_net_hdr %+v", i, index(got), g)
			}
			checkForwarded(t, got, numbered("10.244.2.7", "10.244.1.5", i))
		}
		// a GSO super-packet crosses whole both ways
		tcp := make([]byte, 20+3000)
		tcp[12] = 5 << 4
		sg := header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
		super := ipSpec{src: "10.244.2.7", dst: "10.244.1.5", proto: header.TCPProtocolNumber, df: true, payload: tcp}.pkt()
		rig.u.deliver(sg, super)
		if g, got := rig.wl.recv(t); g != sg {
			t.Errorf("to the workload: virtio_net_hdr %+v, want %+v", g, sg)
		} else {
			checkForwarded(t, got, super)
		}
		out := ipSpec{src: "10.244.1.5", dst: "10.244.2.7", proto: header.TCPProtocolNumber, df: true, payload: tcp}.pkt()
		rig.wl.send(t, sg, out)
		if s := rig.u.next(t); s.frame.GSO != sg {
			t.Errorf("to the underlay: GSO %+v, want %+v", s.frame.GSO, sg)
		} else {
			checkForwarded(t, s.frame.Packet, out)
		}
		if n := ringFDs(t); n <= before {
			t.Errorf("%d io_uring descriptors while running, %d before: no ring used", n, before)
		}
	})
	if n := ringFDs(t); n != before {
		t.Errorf("%d io_uring descriptors after the engine stopped, %d before", n, before)
	}
}

package fabric_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/vrouter-lab/vrouter/vrouter/fabric"
)

// Two engines on network lan: node1 sends a packet to next hop
// 192.168.50.11, which the neighbour table resolves to node2.
func Example() {
	dir, _ := os.MkdirTemp("", "fabric")
	defer os.RemoveAll(dir)
	neighbors := map[netip.Addr]string{
		netip.MustParseAddr("192.168.50.10"): "node1",
		netip.MustParseAddr("192.168.50.11"): "node2",
	}
	node1, err := fabric.Attach(dir, "lan", "node1", fabric.Options{Interface: "node1/ens33", Neighbors: neighbors})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node1.Close()
	node2, err := fabric.Attach(dir, "lan", "node2", fabric.Options{Interface: "node2/ens33", Neighbors: neighbors})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node2.Close()

	pkt := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 244, 166, 128, 10, 244, 104, 1}
	if err := node1.SendTo(netip.MustParseAddr("192.168.50.11"), fabric.Frame{Packet: pkt}); err != nil {
		fmt.Println(err)
		return
	}
	err = node1.SendTo(netip.MustParseAddr("192.168.50.99"), fabric.Frame{Packet: pkt})
	fmt.Println("to 192.168.50.99:", err, errors.Is(err, fabric.ErrNoNeighbor))

	bufs := [][]byte{make([]byte, 65536), make([]byte, 65536)}
	frames := make([]fabric.Frame, len(bufs))
	n, err := node2.ReadBatch(bufs, frames)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("node2 received", n, "frame of", len(frames[0].Packet), "bytes")
	s := node1.Stats()
	fmt.Println("node1 sent", s.TxFrames, "dropped", s.TxDrops.NoNeighbor, "for lack of a neighbour")
	// Output:
	// to 192.168.50.99: fabric: no neighbour for the next hop true
	// node2 received 1 frame of 20 bytes
	// node1 sent 1 dropped 1 for lack of a neighbour
}

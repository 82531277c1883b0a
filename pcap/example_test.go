package pcap_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vrouter-lab/vrouter/pcap"
)

// Two taps write to one pcapng file; reading it back gives each packet's
// capture point.
func Example() {
	dir, _ := os.MkdirTemp("", "pcap-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "lan.pcapng")

	w, err := pcap.Create(path, "node1/ens33")
	if err != nil {
		panic(err)
	}
	n2, _ := w.AddInterface("node2/ens33")
	pkt := []byte{0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 4, 0, 0, 192, 168, 50, 10, 192, 168, 50, 11}
	ts := time.Date(2023, 11, 14, 22, 13, 20, 123456789, time.UTC)
	w.WritePacket(0, ts, pkt)
	w.WritePacket(n2, ts.Add(time.Microsecond), pkt)
	if err := w.Close(); err != nil {
		panic(err)
	}

	pkts, err := pcap.ReadFile(path)
	if err != nil {
		panic(err)
	}
	for _, p := range pkts {
		fmt.Println(p.Time.Format(time.RFC3339Nano), p.Interface, len(p.Data))
	}
	// Output:
	// 2023-11-14T22:13:20.123456789Z node1/ens33 20
	// 2023-11-14T22:13:20.123457789Z node2/ens33 20
}

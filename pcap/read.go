package pcap

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one packet read from a capture file.
type Packet struct {
	// Time is the capture timestamp, in UTC.
	Time time.Time
	// Interface is the pcapng interface name (e.g. "node1/ens33"); empty
	// in classic pcap files and for unnamed interfaces.
	Interface string
	// InterfaceIndex is the pcapng interface index within its section; 0
	// in classic pcap.
	InterfaceIndex int
	// LinkType is the link type of the packet's interface or file.
	LinkType layers.LinkType
	// Length is the packet's original length; len(Data) is less when
	// the packet was truncated to the snapshot length.
	Length int
	// Data is the captured bytes.
	Data []byte
}

// Magic numbers at the start of capture files (as read little-endian).
const (
	magicPcapngSHB   = 0x0a0d0d0a
	magicPcapMicro   = 0xa1b2c3d4
	magicPcapNano    = 0xa1b23c4d
	magicPcapMicroBE = 0xd4c3b2a1
	magicPcapNanoBE  = 0x4d3cb2a1
)

// ErrUnknownFormat is returned for a file that is neither pcap nor pcapng.
var ErrUnknownFormat = errors.New("pcap: not a pcap or pcapng file")

// ReadFile reads every packet of the pcap or pcapng file at path (gzip
// compressed or not), detecting the format by its magic number.
func ReadFile(path string) ([]Packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pkts, err := Read(f)
	if err != nil {
		return pkts, fmt.Errorf("%s: %w", path, err)
	}
	return pkts, nil
}

// Read reads every packet of a pcap or pcapng stream; see [ReadFile].
func Read(r io.Reader) ([]Packet, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%w: %d bytes", ErrUnknownFormat, len(head))
	}
	if head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return Read(zr)
	}
	switch binary.LittleEndian.Uint32(head) {
	case magicPcapngSHB:
		return readPcapng(br)
	case magicPcapMicro, magicPcapNano, magicPcapMicroBE, magicPcapNanoBE:
		return readPcap(br)
	}
	return nil, fmt.Errorf("%w: magic % x", ErrUnknownFormat, head)
}

func readPcap(r io.Reader) ([]Packet, error) {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, err
	}
	var pkts []Packet
	for {
		data, ci, err := pr.ReadPacketData()
		if err == io.EOF {
			return pkts, nil
		}
		if err != nil {
			return pkts, err
		}
		pkts = append(pkts, Packet{
			Time:     ci.Timestamp.UTC(),
			LinkType: pr.LinkType(),
			Length:   ci.Length,
			Data:     data,
		})
	}
}

func readPcapng(r io.Reader) ([]Packet, error) {
	nr, err := pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
	if err != nil {
		return nil, err
	}
	var pkts []Packet
	for {
		data, ci, err := nr.ReadPacketData()
		if err == io.EOF {
			return pkts, nil
		}
		if err != nil {
			return pkts, err
		}
		p := Packet{
			Time:           ci.Timestamp.UTC(),
			InterfaceIndex: ci.InterfaceIndex,
			Length:         ci.Length,
			Data:           data,
		}
		if intf, err := nr.Interface(ci.InterfaceIndex); err == nil {
			p.Interface = intf.Name
			p.LinkType = intf.LinkType
		}
		if len(ci.AncillaryData) > 0 {
			if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
				p.LinkType = lt
			}
		}
		pkts = append(pkts, p)
	}
}

// Package pcap writes the packets that cross vrouter's links to capture
// files that tshark, Wireshark and tcpdump read, and reads capture files
// back for test assertions.
//
// Files are written with github.com/gopacket/gopacket/pcapgo, in either
// format:
//
//   - pcap (libpcap's classic format) with the nanosecond magic 0xa1b23c4d;
//     it has no notion of interfaces, so interface indexes are accepted and
//     ignored;
//   - pcapng with one Interface Description Block per capture point, named
//     like "node1/ens33", with if_tsresol = 9 (nanoseconds).
//
// Packets are raw IPv4 datagrams without a link-layer header, written with
// link type LINKTYPE_RAW (101): tshark 4.0 dissects such a frame as
// "raw:ip:..." (an IPIP packet as raw:ip:ip:icmp), tcpdump writes the same
// link type for TUN devices, and gopacket decodes it. LINKTYPE_IPV4 (228)
// also dissects in tshark (as ip:ip:icmp) but gopacket has no decoder for
// it, so captures could not be decoded by the Go tests that read them.
//
// A [Writer] is safe for concurrent use: taps on several links may write
// to one file.
package pcap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// LinkType is the link type of every file this package writes: raw IP
// packets without a link-layer header (LINKTYPE_RAW, 101).
const LinkType = layers.LinkTypeRaw

// Snaplen is the snapshot length written to file headers, tcpdump's
// default. Longer packets (beyond even a 64 KB GSO super-packet plus its
// outer header) are truncated to it, keeping their original length.
const Snaplen = 262144

// Format is a capture file format.
type Format int

// Capture file formats.
const (
	// FormatPcap is libpcap's classic format with nanosecond timestamps.
	FormatPcap Format = iota
	// FormatPcapng is pcapng, with named interfaces.
	FormatPcapng
)

// String returns "pcap" or "pcapng".
func (f Format) String() string {
	switch f {
	case FormatPcap:
		return "pcap"
	case FormatPcapng:
		return "pcapng"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Errors returned by a Writer.
var (
	// ErrNoInterface: a pcapng packet names an interface index that
	// AddInterface did not return.
	ErrNoInterface = errors.New("pcap: no such interface")
	// ErrInterfaceName: an interface name is empty.
	ErrInterfaceName = errors.New("pcap: empty interface name")
	// ErrTimestamp: a timestamp is before 1970 or beyond what the format
	// can store (2106 for pcap, 2262 for pcapng).
	ErrTimestamp = errors.New("pcap: timestamp out of range for the capture format")
	// ErrClosed: the Writer was closed.
	ErrClosed = errors.New("pcap: writer closed")
)

// A Writer writes packets to one capture file. Its methods are safe for
// concurrent use.
type Writer struct {
	mu     sync.Mutex
	format Format
	out    io.Writer
	names  []string
	index  map[string]int
	closer io.Closer // the file Create opened; nil otherwise
	closed bool

	// pcap: pw writes through buf to out.
	buf *bufio.Writer
	pw  *pcapgo.Writer
	// pcapng: nw buffers internally; it is created with the first
	// interface, because pcapgo writes the section header together with
	// the first Interface Description Block.
	nw *pcapgo.NgWriter
}

// NewPcapWriter returns a Writer of the classic pcap format (nanosecond
// timestamps, link type [LinkType]) and writes the file header to w. Call
// Flush (or Close) to push buffered packets to w.
func NewPcapWriter(w io.Writer) (*Writer, error) {
	buf := bufio.NewWriterSize(w, 64<<10)
	pw := pcapgo.NewWriterNanos(buf)
	if err := pw.WriteFileHeader(Snaplen, LinkType); err != nil {
		return nil, err
	}
	return &Writer{format: FormatPcap, out: w, buf: buf, pw: pw, index: map[string]int{}}, nil
}

// NewPcapngWriter returns a Writer of the pcapng format with one interface
// per name in ifaces, numbered from 0 in order. The section header is
// written with the first interface: a file given no interface stays empty
// until AddInterface is called. Call Flush (or Close) to push buffered
// blocks to w.
func NewPcapngWriter(w io.Writer, ifaces ...string) (*Writer, error) {
	wr := &Writer{format: FormatPcapng, out: w, index: map[string]int{}}
	for _, name := range ifaces {
		if _, err := wr.AddInterface(name); err != nil {
			return nil, err
		}
	}
	return wr, nil
}

// Create creates (or truncates) the file at path and returns a Writer to
// it: pcapng when the name ends in ".pcapng" (with interfaces ifaces),
// classic pcap otherwise. Close flushes and closes the file.
func Create(path string, ifaces ...string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	var w *Writer
	if strings.EqualFold(filepath.Ext(path), ".pcapng") {
		w, err = NewPcapngWriter(f, ifaces...)
	} else {
		w, err = NewPcapWriter(f)
		for _, name := range ifaces {
			if err == nil {
				_, err = w.AddInterface(name)
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	w.closer = f
	return w, nil
}

// Format returns the Writer's file format.
func (w *Writer) Format() Format { return w.format }

// AddInterface registers a capture point named like "node1/ens33" and
// returns its index for WritePacket. In pcapng it writes an Interface
// Description Block (link type [LinkType], if_tsresol 9); classic pcap
// has no interfaces and only remembers the name. Adding a name twice
// returns the index it already has.
func (w *Writer) AddInterface(name string) (int, error) {
	if name == "" {
		return 0, ErrInterfaceName
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	if id, ok := w.index[name]; ok {
		return id, nil
	}
	if w.format == FormatPcapng {
		intf := pcapgo.NgInterface{
			Name:                name,
			OS:                  runtime.GOOS,
			LinkType:            LinkType,
			SnapLength:          Snaplen,
			TimestampResolution: 9,
		}
		if w.nw == nil {
			opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
				Hardware:    runtime.GOARCH,
				OS:          runtime.GOOS,
				Application: "vrouter",
			}}
			nw, err := pcapgo.NewNgWriterInterface(w.out, intf, opts)
			if err != nil {
				return 0, err
			}
			w.nw = nw
		} else if _, err := w.nw.AddInterface(intf); err != nil {
			return 0, err
		}
	}
	id := len(w.names)
	w.names = append(w.names, name)
	w.index[name] = id
	return id, nil
}

// Interfaces returns the registered interface names, by index.
func (w *Writer) Interfaces() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.names...)
}

// WritePacket writes one raw IPv4 packet captured at ts on interface iface
// (an index from AddInterface; ignored in classic pcap). Packets longer
// than [Snaplen] are truncated, keeping their original length. data is not
// retained.
func (w *Writer) WritePacket(iface int, ts time.Time, data []byte) error {
	if err := checkTime(w.format, ts); err != nil {
		return err
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, Length: len(data), CaptureLength: len(data), InterfaceIndex: iface}
	if len(data) > Snaplen {
		data = data[:Snaplen]
		ci.CaptureLength = Snaplen
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if w.format == FormatPcap {
		ci.InterfaceIndex = 0
		return w.pw.WritePacket(ci, data)
	}
	if iface < 0 || iface >= len(w.names) {
		return fmt.Errorf("%w: index %d (have %d)", ErrNoInterface, iface, len(w.names))
	}
	return w.nw.WritePacket(ci, data)
}

// Flush writes buffered data to the underlying writer.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flush()
}

func (w *Writer) flush() error {
	switch {
	case w.buf != nil:
		return w.buf.Flush()
	case w.nw != nil:
		return w.nw.Flush()
	}
	return nil
}

// Close flushes the Writer and, if Create opened the file, closes it.
// Later writes return ErrClosed; closing again is a no-op.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.flush()
	if w.closer != nil {
		if cerr := w.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// checkTime rejects timestamps the format cannot store: pcap keeps
// unsigned 32-bit seconds, pcapgo's pcapng writer unsigned 64-bit
// nanoseconds since 1970.
func checkTime(f Format, ts time.Time) error {
	if ts.Before(time.Unix(0, 0)) {
		return ErrTimestamp
	}
	if f == FormatPcap && ts.Unix() > math.MaxUint32 {
		return ErrTimestamp
	}
	if f == FormatPcapng && ts.After(time.Unix(0, math.MaxInt64)) {
		return ErrTimestamp
	}
	return nil
}

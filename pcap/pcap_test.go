package pcap_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vrouter-lab/vrouter/encap"
	"github.com/vrouter-lab/vrouter/pcap"
)

var (
	node1 = netip.MustParseAddr("192.168.50.10")
	node2 = netip.MustParseAddr("192.168.50.11")
	pod1  = netip.MustParseAddr("10.244.166.129")
	pod2  = netip.MustParseAddr("10.244.104.1")
	// t0 has a nanosecond part that microsecond files would lose.
	t0 = time.Date(2023, 11, 14, 22, 13, 20, 123456789, time.UTC)
)

// echo returns an ICMP echo request src → dst built with gopacket.
func echo(t testing.TB, src, dst netip.Addr, seq uint16) []byte {
	t.Helper()
	ip := &layers.IPv4{
		Version: 4, IHL: 5, TTL: 63, Id: seq, Flags: layers.IPv4DontFragment,
		Protocol: layers.IPProtocolICMPv4,
		SrcIP:    net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice()),
	}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: seq}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, icmp, gopacket.Payload(bytes.Repeat([]byte{0xa5}, 56))); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// ipip returns the IPIP packet node1 → node2 carrying an echo request
// pod1 → pod2, encapsulated by package encap.
func ipip(t testing.TB, seq uint16) []byte {
	t.Helper()
	inner := echo(t, pod1, pod2, seq)
	out := make([]byte, encap.HeaderLen+len(inner))
	n, err := encap.Encapsulate(out, inner, node1, node2)
	if err != nil {
		t.Fatal(err)
	}
	return out[:n]
}

func TestPcapngRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap.pcapng")
	w, err := pcap.Create(path, "node1/ens33")
	if err != nil {
		t.Fatal(err)
	}
	if w.Format() != pcap.FormatPcapng {
		t.Fatalf("format %v", w.Format())
	}
	id2, err := w.AddInterface("node2/ens33")
	if err != nil || id2 != 1 {
		t.Fatalf("AddInterface: %d %v", id2, err)
	}
	if again, err := w.AddInterface("node1/ens33"); err != nil || again != 0 {
		t.Fatalf("AddInterface twice: %d %v", again, err)
	}
	type rec struct {
		iface int
		ts    time.Time
		data  []byte
	}
	var recs []rec
	for i := range 6 {
		recs = append(recs, rec{i % 2, t0.Add(time.Duration(i) * 1001 * time.Nanosecond), ipip(t, uint16(i))})
	}
	recs = append(recs, rec{1, time.Unix(0, 1), echo(t, node2, node1, 99)}) // 1 ns after the epoch
	for _, r := range recs {
		if err := w.WritePacket(r.iface, r.ts, r.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pkts, err := pcap.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != len(recs) {
		t.Fatalf("read %d packets, wrote %d", len(pkts), len(recs))
	}
	names := []string{"node1/ens33", "node2/ens33"}
	for i, p := range pkts {
		r := recs[i]
		if !p.Time.Equal(r.ts) {
			t.Errorf("packet %d: time %v, want %v", i, p.Time, r.ts)
		}
		if p.Interface != names[r.iface] || p.InterfaceIndex != r.iface {
			t.Errorf("packet %d: interface %q (%d), want %q", i, p.Interface, p.InterfaceIndex, names[r.iface])
		}
		if !bytes.Equal(p.Data, r.data) || p.Length != len(r.data) {
			t.Errorf("packet %d: data differs", i)
		}
		if p.LinkType != layers.LinkTypeRaw {
			t.Errorf("packet %d: link type %v", i, p.LinkType)
		}
	}
	// gopacket decodes the link type back to two IPv4 layers.
	pk := gopacket.NewPacket(pkts[0].Data, pkts[0].LinkType, gopacket.Default)
	if n := len(pk.Layers()); n != 4 || pk.Layer(layers.LayerTypeICMPv4) == nil {
		t.Errorf("gopacket decodes %v", pk.Layers())
	}
}

func TestPcapRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := pcap.NewPcapWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := w.AddInterface("node1/ens33"); err != nil || id != 0 {
		t.Fatalf("AddInterface: %d %v", id, err)
	}
	data := [][]byte{ipip(t, 1), ipip(t, 2), echo(t, node1, node2, 3)}
	for i, d := range data {
		if err := w.WritePacket(i, t0.Add(time.Duration(i)), d); err != nil { // any index: pcap has no interfaces
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	// File header: nanosecond magic, version 2.4, snaplen, LINKTYPE_RAW.
	le := binary.LittleEndian
	if m := le.Uint32(raw); m != 0xa1b23c4d {
		t.Fatalf("magic %#x, want 0xa1b23c4d", m)
	}
	if le.Uint16(raw[4:]) != 2 || le.Uint16(raw[6:]) != 4 || le.Uint32(raw[16:]) != pcap.Snaplen || le.Uint32(raw[20:]) != 101 {
		t.Fatalf("file header % x", raw[:24])
	}
	// First record header: seconds, nanoseconds, lengths.
	if le.Uint32(raw[24:]) != uint32(t0.Unix()) || le.Uint32(raw[28:]) != 123456789 || le.Uint32(raw[32:]) != uint32(len(data[0])) {
		t.Fatalf("record header % x", raw[24:40])
	}
	pkts, err := pcap.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != len(data) {
		t.Fatalf("read %d packets", len(pkts))
	}
	for i, p := range pkts {
		if !p.Time.Equal(t0.Add(time.Duration(i))) || p.Interface != "" || !bytes.Equal(p.Data, data[i]) || p.LinkType != layers.LinkTypeRaw {
			t.Errorf("packet %d: %+v", i, p)
		}
	}
}

// TestPcapngBlocks parses the written pcapng by hand: a section header
// block, then one interface description block per interface with link
// type 101, the name in if_name (2) and if_tsresol (9) = 9, then enhanced
// packet blocks carrying the interface id and a nanosecond timestamp.
func TestPcapngBlocks(t *testing.T) {
	var buf bytes.Buffer
	w, err := pcap.NewPcapngWriter(&buf, "node1/ens33", "node2/ens33")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(1, t0, ipip(t, 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	b := buf.Bytes()
	var types []uint32
	var names []string
	for len(b) >= 12 {
		typ, n := le.Uint32(b), int(le.Uint32(b[4:]))
		if n < 12 || n > len(b) || le.Uint32(b[n-4:]) != uint32(n) {
			t.Fatalf("bad block length %d", n)
		}
		body := b[8 : n-4]
		types = append(types, typ)
		switch typ {
		case 0x0a0d0d0a:
			if le.Uint32(body) != 0x1a2b3c4d {
				t.Fatal("section header is not little endian")
			}
		case 1:
			if le.Uint16(body) != 101 {
				t.Errorf("IDB link type %d", le.Uint16(body))
			}
			opts, tsresol := body[8:], -1
			for len(opts) >= 4 {
				code, l := le.Uint16(opts), int(le.Uint16(opts[2:]))
				if code == 0 {
					break
				}
				v := opts[4 : 4+l]
				switch code {
				case 2:
					names = append(names, string(v))
				case 9:
					tsresol = int(v[0])
				}
				opts = opts[4+(l+3)&^3:]
			}
			if tsresol != 9 {
				t.Errorf("if_tsresol = %d, want 9", tsresol)
			}
		case 6:
			ts := uint64(le.Uint32(body[4:]))<<32 | uint64(le.Uint32(body[8:]))
			if le.Uint32(body) != 1 || ts != uint64(t0.UnixNano()) {
				t.Errorf("EPB interface %d timestamp %d", le.Uint32(body), ts)
			}
		}
		b = b[n:]
	}
	if fmt.Sprint(types) != "[168627466 1 1 6]" {
		t.Errorf("block types %v, want SHB IDB IDB EPB", types)
	}
	if fmt.Sprint(names) != "[node1/ens33 node2/ens33]" {
		t.Errorf("interface names %q", names)
	}
}

// TestConcurrentWriters has taps on several interfaces write to one file
// at once (run with -race); every packet must come back intact.
func TestConcurrentWriters(t *testing.T) {
	for _, format := range []string{"pcap", "pcapng"} {
		t.Run(format, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cap."+format)
			w, err := pcap.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			const taps, each = 6, 200
			var wg sync.WaitGroup
			errs := make(chan error, taps)
			for g := range taps {
				// The packets are built here: echo may call t.Fatal, which
				// only the test's goroutine may.
				pkts := make([][]byte, each)
				for i := range pkts {
					pkts[i] = echo(t, node1, node2, uint16(g<<8|i))
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					id, err := w.AddInterface(fmt.Sprintf("node%d/ens33", g))
					if err != nil {
						errs <- err
						return
					}
					for i, pkt := range pkts {
						if err := w.WritePacket(id, t0.Add(time.Duration(i)), pkt); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			pkts, err := pcap.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(pkts) != taps*each {
				t.Fatalf("read %d packets, want %d", len(pkts), taps*each)
			}
			perIface := map[string]int{}
			for _, p := range pkts {
				ipl := gopacket.NewPacket(p.Data, layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if format == "pcapng" {
					if want := fmt.Sprintf("node%d/ens33", ipl.Id>>8); p.Interface != want {
						t.Fatalf("packet %#x on %q, want %q", ipl.Id, p.Interface, want)
					}
				}
				perIface[p.Interface]++
			}
			if format == "pcapng" && len(perIface) != taps {
				t.Fatalf("per interface %v", perIface)
			}
		})
	}
}

func TestWriterErrors(t *testing.T) {
	var buf bytes.Buffer
	w, err := pcap.NewPcapngWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(0, t0, ipip(t, 1)); !errors.Is(err, pcap.ErrNoInterface) {
		t.Fatalf("packet before any interface: %v", err)
	}
	if _, err := w.AddInterface(""); !errors.Is(err, pcap.ErrInterfaceName) {
		t.Fatalf("empty name: %v", err)
	}
	if _, err := pcap.NewPcapngWriter(&buf, "a", ""); !errors.Is(err, pcap.ErrInterfaceName) {
		t.Fatalf("empty name at construction: %v", err)
	}
	id, _ := w.AddInterface("node1/ens33")
	if err := w.WritePacket(id+1, t0, ipip(t, 1)); !errors.Is(err, pcap.ErrNoInterface) {
		t.Fatalf("unknown interface: %v", err)
	}
	if err := w.WritePacket(-1, t0, ipip(t, 1)); !errors.Is(err, pcap.ErrNoInterface) {
		t.Fatalf("negative interface: %v", err)
	}
	for _, ts := range []time.Time{{}, time.Unix(-1, 0), time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if err := w.WritePacket(id, ts, ipip(t, 1)); !errors.Is(err, pcap.ErrTimestamp) {
			t.Fatalf("timestamp %v: %v", ts, err)
		}
	}
	pw, _ := pcap.NewPcapWriter(&buf)
	if err := pw.WritePacket(0, time.Date(2107, 1, 1, 0, 0, 0, 0, time.UTC), ipip(t, 1)); !errors.Is(err, pcap.ErrTimestamp) {
		t.Fatalf("pcap beyond 2106: %v", err)
	}
	if got := w.Interfaces(); len(got) != 1 || got[0] != "node1/ens33" {
		t.Fatalf("interfaces %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := w.WritePacket(id, t0, ipip(t, 1)); !errors.Is(err, pcap.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := w.AddInterface("x"); !errors.Is(err, pcap.ErrClosed) {
		t.Fatalf("add after close: %v", err)
	}
	if _, err := pcap.Create(filepath.Join(t.TempDir(), "no", "such", "dir.pcap")); err == nil {
		t.Fatal("Create in a missing directory succeeded")
	}
}

func TestSnaplenTruncation(t *testing.T) {
	var buf bytes.Buffer
	w, _ := pcap.NewPcapngWriter(&buf, "n")
	big := make([]byte, pcap.Snaplen+1000)
	big[0] = 0x45
	if err := w.WritePacket(0, t0, big); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	pkts, err := pcap.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 1 || len(pkts[0].Data) != pcap.Snaplen || pkts[0].Length != len(big) {
		t.Fatalf("got %d packets, %d bytes of %d", len(pkts), len(pkts[0].Data), pkts[0].Length)
	}
}

func TestReadErrors(t *testing.T) {
	if _, err := pcap.ReadFile(filepath.Join(t.TempDir(), "missing.pcap")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	for _, b := range [][]byte{nil, {1, 2}, []byte("not a capture file")} {
		if _, err := pcap.Read(bytes.NewReader(b)); !errors.Is(err, pcap.ErrUnknownFormat) {
			t.Fatalf("%q: %v", b, err)
		}
	}
	// A truncated file returns the packets before the damage and an error.
	var buf bytes.Buffer
	w, _ := pcap.NewPcapWriter(&buf)
	w.WritePacket(0, t0, ipip(t, 1))
	w.WritePacket(0, t0, ipip(t, 2))
	w.Flush()
	pkts, err := pcap.Read(bytes.NewReader(buf.Bytes()[:buf.Len()-10]))
	if err == nil || len(pkts) != 1 {
		t.Fatalf("truncated file: %d packets, err %v", len(pkts), err)
	}
}

func TestReadGzip(t *testing.T) {
	var raw, gz bytes.Buffer
	w, _ := pcap.NewPcapngWriter(&raw, "node1/ens33")
	w.WritePacket(0, t0, ipip(t, 1))
	w.Flush()
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	pkts, err := pcap.Read(&gz)
	if err != nil || len(pkts) != 1 || pkts[0].Interface != "node1/ens33" {
		t.Fatalf("gzip: %v %+v", err, pkts)
	}
}

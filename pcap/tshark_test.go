package pcap_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/pcap"
)

// tshark returns the path of tshark, the independent dissector these tests
// check written files with. Without it the tests skip, except under CI
// (CI=true), where they fail.
func tshark(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tshark is required when CI=true (apt-get install tshark): %v", err)
		}
		t.Skip("tshark not installed (apt-get install tshark); these tests fail instead of skipping when CI=true")
	}
	return path
}

// tsharkFields dissects file with tshark and returns, per frame, the
// values of fields (several occurrences of a field joined by ",").
// Checksum validation is on, so ip.checksum.status is 1 for a good header
// checksum and 0 for a bad one; name resolution is off.
func tsharkFields(t *testing.T, file string, fields ...string) [][]string {
	t.Helper()
	bin := tshark(t)
	args := []string{"-n", "-r", file, "-o", "ip.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

var ipipFields = []string{
	"frame.interface_name", "frame.protocols", "ip.src", "ip.dst", "ip.proto",
	"ip.ttl", "ip.flags.df", "ip.checksum.status", "icmp.type", "frame.time_epoch",
}

// checkIPIP asserts what tshark shows for the IPIP echo request from
// ipip(): two IPv4 layers (outer protocol 4), both addresses pairs, TTL
// and DF inherited, both header checksums good, nanosecond time.
func checkIPIP(t *testing.T, row []string, iface, epoch string) {
	t.Helper()
	want := map[string]string{
		"frame.interface_name": iface,
		"ip.src":               "192.168.50.10,10.244.166.129",
		"ip.dst":               "192.168.50.11,10.244.104.1",
		"ip.proto":             "4,1",
		"ip.ttl":               "63,63",
		"ip.flags.df":          "1,1",
		"ip.checksum.status":   "1,1",
		"icmp.type":            "8",
		"frame.time_epoch":     epoch,
	}
	if len(row) != len(ipipFields) {
		t.Fatalf("tshark row %q", row)
	}
	for i, f := range ipipFields {
		if w, ok := want[f]; ok && row[i] != w {
			t.Errorf("%s = %q, want %q", f, row[i], w)
		}
	}
	if p := row[1]; !strings.Contains(p, "ip:ip:icmp") {
		t.Errorf("frame.protocols = %q, want it to contain ip:ip:icmp", p)
	}
}

func TestTsharkPcapngIPIP(t *testing.T) {
	t.Parallel()
	tshark(t)
	path := filepath.Join(t.TempDir(), "ipip.pcapng")
	w, err := pcap.Create(path, "node1/ens33")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(0, t0, ipip(t, 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rows := tsharkFields(t, path, ipipFields...)
	if len(rows) != 1 {
		t.Fatalf("tshark shows %d frames", len(rows))
	}
	checkIPIP(t, rows[0], "node1/ens33", "1700000000.123456789")
}

func TestTsharkPcapIPIP(t *testing.T) {
	t.Parallel()
	tshark(t)
	path := filepath.Join(t.TempDir(), "ipip.pcap")
	w, err := pcap.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if w.Format() != pcap.FormatPcap {
		t.Fatalf("format %v", w.Format())
	}
	if err := w.WritePacket(0, t0, ipip(t, 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rows := tsharkFields(t, path, ipipFields...)
	if len(rows) != 1 {
		t.Fatalf("tshark shows %d frames", len(rows))
	}
	checkIPIP(t, rows[0], "", "1700000000.123456789")
}

// TestTsharkInterfaces writes packets on three capture points of one
// pcapng file and checks tshark attributes each frame to its interface.
func TestTsharkInterfaces(t *testing.T) {
	t.Parallel()
	tshark(t)
	path := filepath.Join(t.TempDir(), "multi.pcapng")
	names := []string{"node1/ens33", "node2/ens33", "node3/ens33"}
	w, err := pcap.Create(path, names[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names[1:] {
		if _, err := w.AddInterface(n); err != nil {
			t.Fatal(err)
		}
	}
	order := []int{2, 0, 1, 1, 0}
	for i, id := range order {
		if err := w.WritePacket(id, t0.Add(time.Duration(i)*time.Microsecond), echo(t, node1, node2, uint16(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rows := tsharkFields(t, path, "frame.interface_id", "frame.interface_name", "frame.protocols", "ip.id", "ip.checksum.status")
	if len(rows) != len(order) {
		t.Fatalf("tshark shows %d frames, want %d", len(rows), len(order))
	}
	for i, row := range rows {
		if row[0] != string(rune('0'+order[i])) || row[1] != names[order[i]] {
			t.Errorf("frame %d on interface %s %q, want %d %q", i+1, row[0], row[1], order[i], names[order[i]])
		}
		if !strings.Contains(row[2], "raw:ip:icmp") || row[4] != "1" {
			t.Errorf("frame %d: protocols %q checksum status %q", i+1, row[2], row[4])
		}
	}
}

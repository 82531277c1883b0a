package fabric

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/header"
)

func openTap(t testing.TB, dir string) *Tap {
	t.Helper()
	tap, err := OpenTap(dir, "lan")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tap.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tap.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return tap
}

// readRecords reads records until none arrives for quiet.
func readRecords(t testing.TB, tap *Tap, quiet time.Duration) []TapRecord {
	var out []TapRecord
	for {
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		r, err := tap.Read(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Error(err)
			return out
		}
		out = append(out, r)
	}
}

// collect reads records in the background (a tap socket in this
// namespace may queue only a few) until the returned function is called,
// which returns them once none has arrived for quiet.
func collect(t testing.TB, tap *Tap, quiet time.Duration) func() []TapRecord {
	t.Helper()
	done := make(chan []TapRecord)
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		var out []TapRecord
		for {
			r, err := tap.Read(ctx)
			if err != nil {
				break
			}
			out = append(out, r)
		}
		done <- append(out, readRecords(t, tap, quiet)...)
	}()
	return func() []TapRecord {
		stop()
		return <-done
	}
}

func TestTapCapturesEachFrameOnce(t *testing.T) {
	dir := t.TempDir()
	nodes := []string{"node1", "node2", "node3"}
	eps := map[string]*Endpoint{}
	rxs := map[string]<-chan Frame{}
	for _, n := range nodes {
		eps[n] = attach(t, dir, n, Options{TapScanInterval: 20 * time.Millisecond})
		rxs[n] = reader(t, eps[n], 1<<16)
	}
	taps := []*Tap{openTap(t, dir), openTap(t, dir)} // two captures each see everything

	// check reads one record from each tap (reading as we go: a tap
	// socket in this namespace queues few) and compares it with what was
	// sent.
	check := func(from, to string, f Frame, before, after time.Time) {
		t.Helper()
		for k, tap := range taps {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r, err := tap.Read(ctx)
			cancel()
			if err != nil {
				t.Fatalf("tap %d: %v", k, err)
			}
			if r.From != from || r.To != to || r.Interface != from+"/ens33" {
				t.Errorf("tap %d: %s -> %s on %s, want %s -> %s on %s/ens33", k, r.From, r.To, r.Interface, from, to, from)
			}
			if r.Length != len(f.Packet) || !bytes.Equal(r.Packet, f.Packet) || r.GSO != f.GSO {
				t.Errorf("tap %d: %d bytes (length %d) %+v, want %d bytes %+v", k, len(r.Packet), r.Length, r.GSO, len(f.Packet), f.GSO)
			}
			if r.Time.Before(before) || r.Time.After(after) {
				t.Errorf("tap %d: time %v outside [%v, %v]", k, r.Time, before, after)
			}
		}
	}
	for i := range 30 {
		from, to := nodes[i%3], nodes[(i+1)%3]
		f := Frame{Packet: packet(100+i, i)}
		if i%5 == 0 {
			f = Frame{GSO: header.GSO{Flags: header.FlagNeedsCsum, GSOType: header.GSOTCPv4, HdrLen: 40, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}, Packet: packet(30000, i)}
		}
		before := time.Now()
		if err := eps[from].SendToNode(to, f); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		recvFrame(t, rxs[to])
		check(from, to, f, before, after)
	}
	// Not on the wire, not captured: a down sender, an unknown neighbour.
	eps["node1"].SetUp(false)
	_ = eps["node1"].SendToNode("node2", Frame{Packet: packet(64, 0)})
	eps["node1"].SetUp(true)
	_ = eps["node1"].SendTo(addr1.Next().Next().Next(), Frame{Packet: packet(64, 0)})
	// Put on the wire and lost: captured.
	if err := eps["node3"].SetImpairment(Impairment{Loss: 1}); err != nil {
		t.Fatal(err)
	}
	lost := Frame{Packet: packet(77, 1)}
	before := time.Now()
	if err := eps["node3"].SendToNode("node1", lost); err != nil {
		t.Fatal(err)
	}
	check("node3", "node1", lost, before, time.Now())
	// And nothing else.
	for k, tap := range taps {
		if recs := readRecords(t, tap, 200*time.Millisecond); len(recs) != 0 {
			t.Errorf("tap %d: %d frames captured twice or not sent: %+v", k, len(recs), recs[0])
		}
	}
	var copies uint64
	for _, e := range eps {
		copies += e.Stats().TapFrames
	}
	if copies != 2*31 {
		t.Errorf("endpoints count %d tap copies, want %d", copies, 2*31)
	}
}

func TestTapReadyWaitsForEndpoints(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{TapScanInterval: -1}) // never looks for taps
	tap, err := OpenTap(dir, "lan")
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := tap.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady with an endpoint that never looks: %v", err)
	}
	a.Close()
	// Gone endpoints are not waited for.
	if err := tap.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := tap.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read on an idle tap with an expired context: %v", err)
	}
	errc := make(chan error)
	go func() {
		_, err := tap.Read(context.Background())
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	tap.Close()
	if err := <-errc; err != ErrClosed {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
}

// TestTapHelperProcess is not a test: it is the capture process
// TestKilledTap starts and kills.
func TestTapHelperProcess(t *testing.T) {
	dir := os.Getenv("FABRIC_TAP_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	tap, err := OpenTap(dir, "lan")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if err := tap.WaitReady(context.Background()); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready", tap.Path())
	time.Sleep(time.Minute) // until killed; reads nothing
	os.Exit(0)
}

func TestKilledTap(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{TapScanInterval: 20 * time.Millisecond})
	b := attach(t, dir, "node2", Options{TapScanInterval: 20 * time.Millisecond})
	rx := reader(t, b, 2048)

	cmd := exec.Command(os.Args[0], "-test.run=^TestTapHelperProcess$")
	cmd.Env = append(os.Environ(), "FABRIC_TAP_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !bytes.HasPrefix([]byte(line), []byte("ready ")) {
		t.Fatalf("helper: %q, %v", line, err)
	}
	tapPath := line[len("ready ") : len(line)-1]

	// The capture does not read: its queue fills, copies are dropped, and
	// the frames themselves still all get through.
	const n = 50
	for i := range n {
		if err := a.SendTo(addr2, Frame{Packet: packet(200, i)}); err != nil {
			t.Fatalf("send %d with a stuck tap: %v", i, err)
		}
		recvFrame(t, rx)
	}
	s := a.Stats()
	if s.TapFrames == 0 || s.TapDrops == 0 || s.TapFrames+s.TapDrops != n {
		t.Errorf("stuck tap: TapFrames %d, TapDrops %d, want both > 0 summing to %d", s.TapFrames, s.TapDrops, n)
	}

	// kill -9: the socket file stays, refusing.
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(tapPath); err != nil {
		t.Fatalf("killed capture's socket: %v", err)
	}
	drops := a.Stats().TapDrops
	for i := range n {
		if err := a.SendTo(addr2, Frame{Packet: packet(200, i)}); err != nil {
			t.Fatalf("send %d with a dead tap: %v", i, err)
		}
		recvFrame(t, rx)
	}
	// One refusal, then the dead tap is forgotten.
	if got := a.Stats().TapDrops - drops; got != 1 {
		t.Errorf("%d copies tried to the dead tap, want 1", got)
	}
	waitFor(t, "the dead tap dropped from the list", func() bool { return a.taps.Load() == nil })

	// The next capture clears the dead one's socket file, and works.
	tap := openTap(t, dir)
	if _, err := os.Stat(tapPath); !os.IsNotExist(err) {
		t.Errorf("stale tap socket still there: %v", err)
	}
	if err := b.SendTo(addr1, Frame{Packet: packet(90, 1)}); err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, tap, 100*time.Millisecond)
	if len(recs) != 1 || recs[0].From != "node2" || recs[0].To != "node1" {
		t.Errorf("new tap captured %+v", recs)
	}
	tap.Close()
	ents, _ := os.ReadDir(filepath.Join(dir, "lan"))
	for _, e := range ents {
		if e.Name() == tapsDir {
			t.Error("taps directory left after the last tap closed")
		}
	}
}

func TestTapReadInto(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{TapScanInterval: 10 * time.Millisecond})
	drain(t, attach(t, dir, "node2", Options{TapScanInterval: 10 * time.Millisecond}))
	tap := openTap(t, dir)
	var r TapRecord
	for i := range 3 {
		p := packet(300-i*100, i)
		if err := a.SendTo(addr2, Frame{Packet: p}); err != nil {
			t.Fatal(err)
		}
		if err := tap.ReadInto(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Packet, p) || r.From != "node1" || r.To != "node2" {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(50, func() {
		// The receiver may lag and drop: the tap gets its copy anyway.
		if err := a.SendTo(addr2, Frame{Packet: packet(100, 0)[:100:100]}); err != nil && err != ErrQueueFull {
			t.Fatal(err)
		}
		if err := tap.ReadInto(ctx, &r); err != nil {
			t.Fatal(err)
		}
	})
	// packet() itself allocates once.
	if allocs > 1 {
		t.Errorf("SendTo + ReadInto: %.1f allocations, want 1 (the test's packet)", allocs)
	}
}

func TestTapTruncatesToMaxRecord(t *testing.T) {
	dir := t.TempDir()
	a := attach(t, dir, "node1", Options{TapScanInterval: 10 * time.Millisecond})
	attach(t, dir, "node2", Options{TapScanInterval: 10 * time.Millisecond})
	tap, err := OpenTapWithOptions(dir, "lan", TapOptions{MaxRecord: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	if err := tap.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := packet(5000, 1)
	if err := a.SendTo(addr2, Frame{Packet: p}); err != nil {
		t.Fatal(err)
	}
	r, err := tap.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Length != 5000 || len(r.Packet) < 1000 || len(r.Packet) >= 5000 || !bytes.Equal(r.Packet, p[:len(r.Packet)]) {
		t.Errorf("truncated record: length %d, %d bytes", r.Length, len(r.Packet))
	}
}

func TestDecodeTapRecord(t *testing.T) {
	var h [tapHeaderLen]byte
	g := header.GSO{GSOType: header.GSOTCPv4, GSOSize: 1000, HdrLen: 40}
	putTapHeader(&h, tapFrame, "a", "a/eth0", "bb", 12345, &g, 3)
	good := append(append(h[:], "aa/eth0bb"...), 1, 2, 3)
	var r TapRecord
	name := func(b []byte) string { return string(b) }
	kind, err := decodeTapRecord(good, &r, name)
	if err != nil || kind != tapFrame || r.From != "a" || r.Interface != "a/eth0" || r.To != "bb" || r.GSO != g || r.Time.UnixNano() != 12345 || !bytes.Equal(r.Packet, []byte{1, 2, 3}) {
		t.Fatalf("decode: %+v, %v", r, err)
	}
	for i, b := range [][]byte{
		good[:tapHeaderLen-1],
		good[:tapHeaderLen+3],
		append(bytes.Clone(good), 4), // more packet than its length
		func() []byte { b := bytes.Clone(good); b[0] = 9; return b }(),
		func() []byte { b := bytes.Clone(good); b[1] = 9; return b }(),
	} {
		if _, err := decodeTapRecord(b, &r, name); err == nil {
			t.Errorf("case %d: malformed record accepted", i)
		}
	}
}

// An endpoint learns of a new tap from inotify, not its (here hour-long)
// rescan interval: twice, the first time when the taps directory does not
// exist yet, the second time when it does.
func TestTapFoundByInotify(t *testing.T) {
	dir := t.TempDir()
	attach(t, dir, "node1", Options{TapScanInterval: time.Hour})
	for i := range 2 {
		tap, err := OpenTap(dir, "lan")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = tap.WaitReady(ctx)
		cancel()
		tap.Close()
		if err != nil {
			t.Fatalf("tap %d: %v", i+1, err)
		}
	}
}

package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// startCapture starts `vrouter capture` with args, its standard output
// going to stdout, and waits until it says it is capturing. wait waits for
// it to exit and returns everything it wrote on stderr and its exit error.
func startCapture(t *testing.T, stdout io.Writer, args ...string) (wait func() (string, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c := exec.CommandContext(ctx, vrouterBin, append([]string{"capture"}, args...)...)
	c.Stdout = stdout
	errPipe, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var mu sync.Mutex
	var stderr strings.Builder
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := bufio.NewScanner(errPipe)
		once := sync.Once{}
		for s.Scan() {
			mu.Lock()
			stderr.WriteString(s.Text() + "\n")
			mu.Unlock()
			if strings.HasPrefix(s.Text(), "capturing on ") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	wait = func() (string, error) {
		<-done
		err := c.Wait()
		cancel()
		mu.Lock()
		defer mu.Unlock()
		return stderr.String(), err
	}
	select {
	case <-ready:
	case <-done:
		out, err := wait()
		t.Fatalf("capture %v ended before it was ready: %v\n%s", args, err, out)
	case <-time.After(15 * time.Second):
		_ = c.Process.Kill()
		out, err := wait()
		t.Fatalf("capture %v not ready after 15s: %v\n%s", args, err, out)
	}
	return wait
}

// TestCaptureUnknownNetwork needs no root: the network is checked first.
func TestCaptureUnknownNetwork(t *testing.T) {
	t.Parallel()
	st := &lab.State{
		Name:  "demo",
		Dir:   t.TempDir(),
		Spec:  &topology.Lab{Networks: []topology.Network{{Name: "lan"}, {Name: "wan"}}},
		Nodes: []lab.NodeState{{Name: "node1", Network: "lan"}, {Name: "node4", Network: "dmz"}},
	}
	var out strings.Builder
	n, err := lab.Capture(context.Background(), st, "nosuchnet", &out, lab.CaptureOptions{Count: 1})
	want := `lab demo has no network "nosuchnet" (its networks: lan, wan, dmz)`
	if err == nil || err.Error() != want || n != 0 || out.Len() != 0 {
		t.Errorf("Capture(nosuchnet) = %d, %v, wrote %d bytes; want 0, %q, nothing", n, err, out.Len(), want)
	}
}

// ifaceName is how a capture names the interface a packet was sent on.
var ifaceName = regexp.MustCompile(`^node[123]/ens33$`)

func TestCapture(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	tshark := netnstest.RequireCommand(t, "tshark", "tshark")
	netnstest.GuardRoot(t)
	file, name := labFile(t, "cap")
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	const web1, web2 = "10.244.166.128", "10.244.104.1"
	ping := func(t *testing.T) {
		t.Helper()
		mustVR(t, "exec", "--lab", name, "web-1", "--", "ping", "-c", "3", "-i", "0.2", "-W", "2", web2)
	}

	t.Run("unknown network", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "x.pcapng")
		msg, code := vr(t, "capture", "nosuchnet", "-w", out, "--lab", name)
		if code == 0 || !strings.Contains(msg, `has no network "nosuchnet"`) || !strings.Contains(msg, "its networks: lan") {
			t.Errorf("capture nosuchnet: exit %d\n%s", code, msg)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("capture nosuchnet created %s (stat: %v)", out, err)
		}
	})

	t.Run("file", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "lan.pcapng")
		start := time.Now()
		wait := startCapture(t, io.Discard, "lan", "-w", out, "--duration", "6s", "--lab", name)
		ping(t) // the capture is ready: it misses nothing sent from now on
		stderr, err := wait()
		if err != nil {
			t.Fatalf("capture: %v\n%s", err, stderr)
		}
		if d := time.Since(start); d > 12*time.Second {
			t.Errorf("capture --duration 6s took %s", d)
		}
		if !regexp.MustCompile(`(?m)^[1-9]\d* packets? captured$`).MatchString(stderr) {
			t.Errorf("capture's stderr lacks \"N packets captured\":\n%s", stderr)
		}
		res, err := exec.Command(tshark, "-r", out, "-T", "fields", "-e", "frame.interface_name",
			"-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto", "-e", "tcp.port", "-e", "icmp.type").Output()
		if err != nil {
			t.Fatalf("tshark -r %s: %v", out, err)
		}
		var requests, replies, bgp int
		lines := strings.Split(strings.TrimRight(string(res), "\n"), "\n")
		for _, l := range lines {
			f := strings.Split(l, "\t")
			if len(f) != 6 {
				t.Errorf("tshark row %q: want 6 fields", l)
				continue
			}
			iface, src, dst, proto, ports, icmpType := f[0], f[1], f[2], f[3], f[4], f[5]
			if !ifaceName.MatchString(iface) {
				t.Errorf("interface %q in row %q, want like node1/ens33", iface, l)
			}
			switch {
			case proto == "1" && icmpType == "8" && src == web1 && dst == web2 && iface == "node1/ens33":
				requests++
			case proto == "1" && icmpType == "0" && src == web2 && dst == web1 && iface == "node2/ens33":
				replies++
			case proto == "6" && regexp.MustCompile(`(^|,)179(,|$)`).MatchString(ports) &&
				strings.HasPrefix(src, "192.168.50.") && strings.HasPrefix(dst, "192.168.50."):
				bgp++
			}
		}
		if requests != 3 || replies != 3 || bgp == 0 {
			t.Errorf("captured %d echo requests web-1 -> web-2 (want 3), %d replies (want 3), %d BGP segments (want some) in %d packets:\n%s",
				requests, replies, bgp, len(lines), res)
		}
		if n := fmt.Sprintf("%d packets captured", len(lines)); !strings.Contains(stderr, n) {
			t.Errorf("tshark reads %d packets, capture said:\n%s", len(lines), stderr)
		}
	})

	t.Run("stream to tshark", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		var res strings.Builder
		ts := exec.Command(tshark, "-r", "-", "-T", "fields", "-e", "frame.interface_name", "-e", "ip.src", "-e", "ip.dst")
		ts.Stdin, ts.Stdout = r, &res
		if err := ts.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		wait := startCapture(t, w, "lan", "-w", "-", "--count", "5", "--lab", name)
		w.Close()
		ping(t)
		stderr, err := wait()
		if err != nil {
			t.Fatalf("capture: %v\n%s", err, stderr)
		}
		if !strings.Contains(stderr, "5 packets captured") {
			t.Errorf("capture's stderr lacks \"5 packets captured\":\n%s", stderr)
		}
		tsDone := make(chan error, 1)
		go func() { tsDone <- ts.Wait() }()
		select {
		case err := <-tsDone:
			if err != nil {
				t.Fatalf("tshark -r -: %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = ts.Process.Kill()
			t.Fatal("tshark -r - did not end after the capture did")
		}
		lines := strings.Split(strings.TrimRight(res.String(), "\n"), "\n")
		if len(lines) != 5 {
			t.Fatalf("tshark read %d packets from the stream, want 5:\n%s", len(lines), res.String())
		}
		for _, l := range lines {
			f := strings.Split(l, "\t")
			if len(f) != 3 || !ifaceName.MatchString(f[0]) || f[1] == "" || f[2] == "" {
				t.Errorf("tshark row %q, want node/interface, source and destination", l)
			}
		}
	})
}

package lab_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrouter-lab/vrouter/vrouter/netns"
)

// passThroughEnv, set to "nsA,nsB", makes the test binary run as the raw
// TUN pass-through of BenchmarkEndToEnd instead of running tests.
const passThroughEnv = "VROUTER_BENCH_PASSTHROUGH"

// passThroughMain is the reference the engines are measured against: the
// naive one-hop TUN pass-through. It opens tun0 in each of two namespaces
// (IFF_VNET_HDR with the offloads the engine asks for, so GSO
// super-packets pass whole, header and all), prints "ready", and moves
// packets both ways with one blocking read and one write per packet, a
// thread per direction: the same shape as one engine hop (TUN in one
// namespace, TUN in another), with no routing. SIGUSR1 prints "packets N"
// (packets moved so far); SIGTERM ends it.
func passThroughMain() int {
	ns := strings.Split(os.Getenv(passThroughEnv), ",")
	if len(ns) != 2 {
		fmt.Fprintf(os.Stderr, "%s: want nsA,nsB\n", passThroughEnv)
		return 2
	}
	var fds [2]int
	var tuns [2]*netns.TUN // kept: their files close the descriptors when collected
	for i, n := range ns {
		t, err := netns.OpenTUN(n, "tun0", 1500)
		if err == nil {
			// blocking: reads wait in the kernel
			fds[i] = int(t.File().Fd())
			err = unix.SetNonblock(fds[i], false)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		tuns[i] = t
	}
	defer func() {
		for _, t := range tuns {
			t.Close()
		}
	}()
	var moved atomic.Uint64
	pump := func(from, to int) {
		buf := make([]byte, 65536+64)
		for {
			n, err := unix.Read(from, buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "read:", err)
				os.Exit(1)
			}
			for {
				if _, err = unix.Write(to, buf[:n]); err != unix.EINTR {
					break
				}
			}
			moved.Add(1)
		}
	}
	go pump(fds[0], fds[1])
	go pump(fds[1], fds[0])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGTERM)
	fmt.Println("ready")
	for s := range sig {
		if s == syscall.SIGTERM {
			return 0
		}
		fmt.Printf("packets %d\n", moved.Load())
	}
	return 0
}

// passThrough is a running pass-through process.
type passThrough struct {
	cmd   *exec.Cmd
	lines *bufio.Scanner
}

// startPassThrough runs the pass-through between namespaces a and b,
// configures their tun0 (a 10.99.1.2, b 10.99.2.2, each routing the
// other's /24 through it) and returns once packets can flow.
func startPassThrough(b *testing.B, a, z string) *passThrough {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), passThroughEnv+"="+a+","+z)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &passThrough{cmd: cmd, lines: bufio.NewScanner(out)}
	b.Cleanup(p.stop)
	if !p.lines.Scan() || p.lines.Text() != "ready" {
		b.Fatalf("pass-through did not start: %q", p.lines.Text())
	}
	for _, c := range [][]string{
		{"-n", a, "addr", "add", "10.99.1.2/32", "dev", "tun0"},
		{"-n", a, "link", "set", "tun0", "up"},
		{"-n", a, "route", "add", "10.99.2.0/24", "dev", "tun0"},
		{"-n", z, "addr", "add", "10.99.2.2/32", "dev", "tun0"},
		{"-n", z, "link", "set", "tun0", "up"},
		{"-n", z, "route", "add", "10.99.1.0/24", "dev", "tun0"},
	} {
		if out, err := benchRun("ip", c...); err != nil {
			b.Fatalf("ip %s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	return p
}

// packets returns how many packets the pass-through has moved.
func (p *passThrough) packets(b *testing.B) uint64 {
	b.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		b.Fatal(err)
	}
	done := make(chan bool, 1)
	go func() { done <- p.lines.Scan() }()
	select {
	case ok := <-done:
		var n uint64
		if _, err := fmt.Sscanf(p.lines.Text(), "packets %d", &n); !ok || err != nil {
			b.Fatalf("pass-through answered %q", p.lines.Text())
		}
		return n
	case <-time.After(10 * time.Second):
		b.Fatal("pass-through did not answer")
	}
	return 0
}

func (p *passThrough) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// procTicks returns the CPU time (utime + stime, clock ticks of 10 ms) of
// the processes.
func procTicks(pids ...int) int { return procCPU(pids) }

// ticksToSeconds converts clock ticks (USER_HZ, 100 on Linux) to seconds.
func ticksToSeconds(t int) float64 { return float64(t) / 100 }

// pidOf reads a pid file.
func pidOf(b *testing.B, file string) int {
	b.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		b.Fatalf("%s: %v", file, err)
	}
	return pid
}

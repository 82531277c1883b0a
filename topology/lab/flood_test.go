package lab_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// Under overload the engines shed packets, not BGP: while web-1 floods
// web-3 with 64-byte UDP datagrams as fast as iperf3 sends them for 30 s
// (more than two engines on this machine forward: most are dropped), every
// BGP session of node1 and node3 stays Established without a flap (the
// time it came up does not change), and the flood did go through.
func TestFloodKeepsBGP(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "iperf3", "iperf3")
	netnstest.GuardRoot(t)
	name := deployExample(t, "calico-bgp.yaml", "flood", nil)
	dir := filepath.Join(topology.StateRoot, name)
	nodes := []string{"node1", "node3"}
	sessions := func() (map[string]time.Time, string) {
		up := map[string]time.Time{}
		var down []string
		for _, n := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s, err := control.NewClient(lab.ControlSocket(dir, n)).Status(ctx)
			cancel()
			if err != nil {
				down = append(down, n+": "+err.Error())
				continue
			}
			for _, p := range s.Peers {
				key := n + "->" + p.Address.String()
				if p.State != "Established" {
					down = append(down, key+" "+p.State+" ("+p.Info+")")
					continue
				}
				up[key] = p.Since
			}
		}
		return up, strings.Join(down, "; ")
	}
	before, down := sessions()
	if down != "" || len(before) != 4 {
		t.Fatalf("before the flood: %d sessions up, down: %s", len(before), down)
	}

	pidFile := filepath.Join(t.TempDir(), "iperf3.pid")
	in := func(ws string, args ...string) *exec.Cmd {
		return exec.Command(vrouterBin, append([]string{"exec", "--lab", name, ws, "--"}, args...)...)
	}
	if out, err := in("web-3", "iperf3", "-s", "-D", "-1", "-I", pidFile).CombinedOutput(); err != nil {
		t.Fatalf("iperf3 server: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		start := time.Now()
		for { // the daemon may not be listening yet: retry a quick failure
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			cmd := exec.CommandContext(ctx, vrouterBin, "exec", "--lab", name, "web-1", "--",
				"iperf3", "-c", "10.244.135.1", "-u", "-l", "64", "-b", "0", "-t", "30", "-J")
			r.out, r.err = cmd.Output()
			cancel()
			if r.err == nil || time.Since(start) > 5*time.Second {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		done <- r
	}()
	var r result
	flaps := map[string]bool{}
poll:
	for {
		select {
		case r = <-done:
			break poll
		case <-time.After(500 * time.Millisecond):
		}
		now, down := sessions()
		if down != "" {
			t.Errorf("during the flood: %s", down)
		}
		for k, since := range now {
			if !since.Equal(before[k]) && !flaps[k] {
				flaps[k] = true
				t.Errorf("during the flood: session %s came up again at %s (was up since %s)", k, since, before[k])
			}
		}
	}
	if r.err != nil {
		t.Fatalf("iperf3 client: %v\n%.500s", r.err, r.out)
	}
	var rep struct {
		End struct {
			SumSent struct {
				Packets float64 `json:"packets"`
			} `json:"sum_sent"`
			SumReceived struct {
				Seconds float64 `json:"seconds"`
				Bytes   float64 `json:"bytes"`
			} `json:"sum_received"`
		}
	}
	if err := json.Unmarshal(r.out, &rep); err != nil {
		t.Fatalf("iperf3 output: %v\n%.500s", err, r.out)
	}
	delivered := rep.End.SumReceived.Bytes / 64
	t.Logf("flood: %.0f datagrams sent, %.0f delivered (%.0f/s)", rep.End.SumSent.Packets, delivered, delivered/max(rep.End.SumReceived.Seconds, 1))
	if rep.End.SumReceived.Seconds < 25 || delivered < 1000 {
		t.Errorf("the flood did not go through: %.0f datagrams delivered in %.1f s", delivered, rep.End.SumReceived.Seconds)
	}
	after, down := sessions()
	if down != "" || len(after) != 4 {
		t.Errorf("after the flood: %d sessions up, down: %s", len(after), down)
	}
}

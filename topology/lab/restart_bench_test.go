package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// BenchmarkRestartLoss measures what restarting node2's agent costs the
// traffic of the example lab (keepalive 3 s, hold 9 s): a ping flood
// (every 10 ms, 2500 packets) from web-1 on node1 to web-2 on node2 and
// another to web-3 on node3, while `vrouter node restart node2` (SIGTERM)
// or `--kill` (SIGKILL) runs, with and without graceful restart. A lost
// packet is 10 ms without forwarding. It runs only under -bench, once
// whatever b.N is (eight deploys, about four minutes):
//
//	sudo go test -run '^$' -bench RestartLoss -benchtime 1x ./topology/lab/
func BenchmarkRestartLoss(b *testing.B) {
	netnstest.RequireRoot(b)
	netnstest.RequireCommand(b, "ping", "iputils-ping")
	netnstest.GuardRoot(b)
	data, err := os.ReadFile("../../examples/calico-bgp.yaml")
	if err != nil {
		b.Fatal(err)
	}
	name := fmt.Sprintf("rloss-%d", os.Getpid()%100000)
	data = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(data, []byte("name: "+name))
	const count = 2500
	var table []string
	for _, gr := range []bool{false, true} {
		for _, kill := range []bool{false, true} {
			lab := regexp.MustCompile(`(?m)^  gracefulRestart: .*$`).ReplaceAll(data, fmt.Appendf(nil, "  gracefulRestart: %v", gr))
			file := filepath.Join(b.TempDir(), "lab.yaml")
			if err := os.WriteFile(file, lab, 0o644); err != nil {
				b.Fatal(err)
			}
			if out, err := benchRun(vrouterBin, "deploy", "-t", file); err != nil {
				benchRun(vrouterBin, "destroy", "-t", file)
				b.Fatalf("deploy: %v\n%s", err, out)
			}
			type result struct {
				sent, received int
				err            error
			}
			flood := func(to string, ch chan<- result) {
				out, err := benchRun(vrouterBin, "exec", "--lab", name, "web-1", "--", "ping", "-q", "-i", "0.01", "-W", "1", "-c", strconv.Itoa(count), to)
				m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out)
				if m == nil {
					ch <- result{err: fmt.Errorf("ping %s: %v\n%s", to, err, out)}
					return
				}
				s, _ := strconv.Atoi(m[1])
				r, _ := strconv.Atoi(m[2])
				ch <- result{sent: s, received: r}
			}
			to2, to3 := make(chan result, 1), make(chan result, 1)
			go flood("10.244.104.1", to2)
			go flood("10.244.135.1", to3)
			time.Sleep(2 * time.Second)
			args := []string{"node", "restart", "node2", "--lab", name}
			mode := "SIGTERM"
			if kill {
				args, mode = append(args, "--kill"), "SIGKILL"
			}
			start := time.Now()
			out, err := benchRun(vrouterBin, args...)
			restart := time.Since(start)
			r2, r3 := <-to2, <-to3
			if dout, derr := benchRun(vrouterBin, "destroy", "-t", file); derr != nil {
				b.Errorf("destroy: %v\n%s", derr, dout)
			}
			if err != nil {
				b.Fatalf("node restart: %v\n%s", err, out)
			}
			if r2.err != nil || r3.err != nil {
				b.Fatalf("%v %v", r2.err, r3.err)
			}
			lost2, lost3 := r2.sent-r2.received, r3.sent-r3.received
			key := fmt.Sprintf("gr=%v,%s", gr, mode)
			b.ReportMetric(float64(lost2), key+"-lost-node2")
			b.ReportMetric(float64(lost3), key+"-lost-node3")
			table = append(table, fmt.Sprintf("| %-5v | %-7s | %5.1f s | %d/%d (%.2f s) | %d/%d |",
				gr, mode, restart.Seconds(), lost2, r2.sent, float64(lost2)*0.01, lost3, r3.sent))
		}
	}
	b.Logf("\n| graceful restart | stop | restart returns | web-1 → web-2 lost (≈ time) | web-1 → web-3 lost |\n|---|---|---|---|---|\n%s", strings.Join(table, "\n"))
}

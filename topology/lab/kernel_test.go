package lab_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// kernelLabFile writes the example lab with dataplane: kernel under a name
// of this test's and returns its path and the name.
func kernelLabFile(t *testing.T, prefix string) (string, string) {
	t.Helper()
	file, name := labFile(t, prefix)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, append(data, "\ndataplane: kernel\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, name
}

// ipLines returns iproute2's output as lines, without the trailing space
// iproute2 ends each route with.
func ipLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		lines = append(lines, strings.TrimRight(l, " "))
	}
	return lines
}

// The seed lab with dataplane: kernel: each node is a namespace whose
// kernel forwards, joined to the others by a bridge in a namespace of the
// lab's. `ip route` in node1 is the seed's Never table, line for line;
// `vrouter route node1` prints the same table; pods ping across nodes;
// destroy leaves no namespace (bridges, veths), process or file.
func TestKernelLab(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.GuardRoot(t)
	file, name := kernelLabFile(t, "kern")
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	lab := []string{"--lab", name}
	mustVR(t, "deploy", "-t", file)

	// The bridge of network lan lives in the lab's namespace vr-<lab>.lan.br,
	// with one port per node.
	brNS := topology.LabNamespacePrefix(name) + "lan.br"
	if !netns.Exists(brNS) {
		t.Fatalf("no bridge namespace %s", brNS)
	}
	out, err := exec.Command("ip", "-n", brNS, "-o", "link", "show", "master", "br0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s link show master br0: %v\n%s", brNS, err, out)
	}
	ports := string(out)
	if n := strings.Count(strings.TrimSpace(ports), "\n") + 1; n != 3 {
		t.Errorf("bridge br0 has %d ports, want 3:\n%s", n, ports)
	}

	web1, db1 := podAddr(t, name, "web-1"), podAddr(t, name, "db-1")
	table := mustVR(t, append(append([]string{"exec"}, lab...), "node1", "--", "ip", "route")...)
	want := []*regexp.Regexp{
		regexp.MustCompile(`^10\.244\.104\.0/26 via 192\.168\.50\.11 dev ens33 proto bird$`),
		regexp.MustCompile(`^10\.244\.135\.0/26 via 192\.168\.50\.12 dev ens33 proto bird$`),
		regexp.MustCompile(`^` + regexp.QuoteMeta(web1) + ` dev cali[0-9a-f]{11} scope link$`),
		regexp.MustCompile(`^` + regexp.QuoteMeta(db1) + ` dev cali[0-9a-f]{11} scope link$`),
		regexp.MustCompile(`^blackhole 10\.244\.166\.128/26 proto bird$`),
		regexp.MustCompile(`^192\.168\.50\.0/24 dev ens33 proto kernel scope link src 192\.168\.50\.10$`),
	}
	lines := ipLines(table)
	if len(lines) != len(want) {
		t.Errorf("node1's ip route has %d lines, want %d:\n%s", len(lines), len(want), table)
	}
	for _, re := range want {
		found := false
		for _, l := range lines {
			found = found || re.MatchString(l)
		}
		if !found {
			t.Errorf("node1's ip route lacks a line matching %s:\n%s", re, table)
		}
	}
	if web1 != "10.244.166.128" {
		t.Errorf("web-1 has %s, want the seed's 10.244.166.128", web1)
	}
	routes := mustVR(t, append([]string{"route", "node1"}, lab...)...)
	if strings.Join(ipLines(routes), "\n") != strings.Join(lines, "\n") {
		t.Errorf("vrouter route node1:\n%s\nwant the kernel's table:\n%s", routes, table)
	}
	if out := mustVR(t, append([]string{"node", "status", "node1"}, lab...)...); strings.Count(out, "Established") != 2 {
		t.Errorf("node status node1, want 2 Established peers:\n%s", out)
	}

	for _, pair := range [][2]string{{"web-1", "web-2"}, {"web-2", "web-3"}, {"db-2", "web-1"}, {"web-1", "db-1"}} {
		dst := podAddr(t, name, pair[1])
		out, code := vr(t, append(append([]string{"exec"}, lab...), pair[0], "--", "ping", "-c", "3", "-i", "0.2", "-W", "2", dst)...)
		if code != 0 || !strings.Contains(out, "3 received") {
			t.Errorf("ping %s -> %s (%s): exit %d\n%s", pair[0], pair[1], dst, code, out)
		}
	}

	// Destroy removes the bridges' namespaces with the rest.
	mustVR(t, "destroy", "-t", file)
	checkGone(t, name)
	if _, err := os.Stat(filepath.Join(netns.Dir, brNS)); !os.IsNotExist(err) {
		t.Errorf("bridge namespace %s left (stat: %v)", brNS, err)
	}
}

// podAddr returns the address of workload w's eth0.
func podAddr(t *testing.T, lab, w string) string {
	t.Helper()
	out := mustVR(t, "exec", "--lab", lab, w, "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
	m := regexp.MustCompile(`inet (\d+\.\d+\.\d+\.\d+)/32`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s's eth0 has no /32:\n%s", w, out)
	}
	return m[1]
}

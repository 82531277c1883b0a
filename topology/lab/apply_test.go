package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/control"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// vrouter apply switches a running lab's pool between Never and Always:
// the routes move to tunl0 and back, traffic is encapsulated, and no node
// restarts. A change apply cannot make is refused and changes nothing.
func TestApplyIPIPMode(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardRoot(t)
	data, err := os.ReadFile("../../examples/calico-bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	name := labName(t, "apply")
	never := regexp.MustCompile(`(?m)^name: .*$`).ReplaceAllString(string(data), "name: "+name)
	file := filepath.Join(t.TempDir(), name+".yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(never)
	t.Cleanup(func() {
		mustVR(t, "destroy", "-t", file)
		checkGone(t, name)
	})
	mustVR(t, "deploy", "-t", file)
	lab := []string{"--lab", name}
	pids := func() string {
		var out []string
		for _, n := range []string{"node1", "node2", "node3"} {
			b, _ := os.ReadFile(filepath.Join(topology.StateRoot, name, "nodes", n+".pid"))
			out = append(out, strings.TrimSpace(string(b)))
		}
		return strings.Join(out, ",")
	}
	before := pids()
	encapsulated := func() uint64 {
		s, err := control.NewClient(filepath.Join(topology.StateRoot, name, "nodes", "node1.sock")).Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return s["encapsulated"]
	}

	always := strings.Replace(never, "ipipMode: Never", "ipipMode: Always", 1)
	write(always)
	if out := mustVR(t, "apply", "-t", file); !strings.Contains(out, "ipipMode Never -> Always") {
		t.Errorf("apply output:\n%s", out)
	}
	r := mustVR(t, append([]string{"route", "node1"}, lab...)...)
	if !strings.Contains(r, "10.244.135.0/26 via 192.168.50.12 dev tunl0 proto bird onlink\n") || strings.Contains(r, "dev ens33 proto bird") {
		t.Errorf("routes after apply Always:\n%s", r)
	}
	if insp := mustVR(t, append([]string{"inspect"}, lab...)...); strings.Count(insp, " tunl0 ") != 3 {
		t.Errorf("inspect should list three tunl0:\n%s", insp)
	}
	e0 := encapsulated()
	if code := pingIn(t, name, "web-1", "10.244.135.1"); code != 0 {
		t.Error("ping through the tunnel failed")
	}
	if e := encapsulated(); e == e0 {
		t.Error("node1 encapsulated nothing after apply Always")
	}

	write(never)
	mustVR(t, "apply", "-t", file)
	r = mustVR(t, append([]string{"route", "node1"}, lab...)...)
	if strings.Contains(r, "tunl0") || !strings.Contains(r, "10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird\n") {
		t.Errorf("routes after apply Never:\n%s", r)
	}
	e0 = encapsulated()
	if code := pingIn(t, name, "web-1", "10.244.135.1"); code != 0 {
		t.Error("ping after apply Never failed")
	}
	if e := encapsulated(); e != e0 {
		t.Error("node1 still encapsulates after apply Never")
	}

	// A link impairment changes on the running lab: node2's link takes
	// it at once, and loses it again.
	node2 := "node2: {network: lan, address: 192.168.50.11, interface: ens33}"
	write(strings.Replace(never, node2, "node2: {network: lan, address: 192.168.50.11, interface: ens33, impairments: {delay: 50ms}}", 1))
	if out := mustVR(t, "apply", "-t", file); !strings.Contains(out, "link node2: impairments none -> delay 50ms") {
		t.Errorf("apply of an impairment:\n%s", out)
	}
	if out := mustVR(t, append([]string{"link", "show", "node2"}, lab...)...); !strings.Contains(out, "delay 50ms") {
		t.Errorf("link show after apply:\n%s", out)
	}
	write(never)
	if out := mustVR(t, "apply", "-t", file); !strings.Contains(out, "link node2: impairments delay 50ms -> none") {
		t.Errorf("apply without the impairment:\n%s", out)
	}
	if out := mustVR(t, append([]string{"link", "show", "node2"}, lab...)...); strings.Contains(out, "delay") {
		t.Errorf("link show after apply without the impairment:\n%s", out)
	}

	// Refused: a BGP timer. Nothing changes.
	write(strings.Replace(always, "holdTime: 9s", "holdTime: 12s", 1))
	out, code := vr(t, "apply", "-t", file)
	if code == 0 || !strings.Contains(out, "bgp: the file differs from the running lab") {
		t.Errorf("apply of a hold time change: exit %d\n%s", code, out)
	}
	if r2 := mustVR(t, append([]string{"route", "node1"}, lab...)...); r2 != r {
		t.Errorf("a refused apply changed routes:\n%s\nthen\n%s", r, r2)
	}
	if after := pids(); after != before {
		t.Errorf("agents restarted: pids %s, then %s", before, after)
	}
	write(never)
	if out := mustVR(t, "apply", "-t", file); !strings.Contains(out, "nothing to change") {
		t.Errorf("apply of the running file:\n%s", out)
	}
}

package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology/lab"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

func TestParseLinkSetArgs(t *testing.T) {
	for _, c := range []struct {
		args              []string
		node, iface, want string
		err               bool
	}{
		{[]string{"node2", "down"}, "node2", "", "down", false},
		{[]string{"tor", "eth1", "up"}, "tor", "eth1", "up", false},
		{[]string{"node2"}, "node2", "", "", false},
		{[]string{"tor", "eth1"}, "tor", "eth1", "", false},
		{[]string{"tor", "eth1", "sideways"}, "", "", "", true},
		{[]string{"up"}, "", "", "", true},
	} {
		node, iface, state, err := parseLinkSetArgs(c.args)
		if (err != nil) != c.err || node != c.node || iface != c.iface || state != c.want {
			t.Errorf("parseLinkSetArgs(%q) = %q %q %q %v", c.args, node, iface, state, err)
		}
	}
}

func TestImpairFlags(t *testing.T) {
	f := impairFlags{delay: "20ms", jitter: "5ms", loss: "1%", rate: "100mbit", duplicate: "2%", corrupt: "0.5%"}
	imp, err := f.impairment()
	want := config.Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1, Rate: 100_000_000, Duplicate: 2, Corrupt: 0.5}
	if err != nil || imp != want {
		t.Errorf("impairment() = %+v, %v; want %+v", imp, err, want)
	}
	for _, c := range []struct {
		f    impairFlags
		want string
	}{
		{impairFlags{delay: "5ms", jitter: "10ms"}, "more than the delay"},
		{impairFlags{loss: "150%"}, "--loss"},
		{impairFlags{rate: "100mb"}, "--rate"},
		{impairFlags{delay: "soon"}, "--delay"},
		{impairFlags{duplicate: "200%"}, "--duplicate"},
		{impairFlags{corrupt: "x"}, "--corrupt"},
		{impairFlags{clear: true, corrupt: "1%"}, "alone"},
		{impairFlags{clear: true, delay: "1ms"}, "alone"},
		{impairFlags{delay: "0s"}, "--clear"},
	} {
		if _, err := c.f.impairment(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %q", c.f, err, c.want)
		}
	}
	if imp, err := (&impairFlags{clear: true}).impairment(); err != nil || !imp.IsZero() {
		t.Errorf("--clear: %+v, %v", imp, err)
	}
}

func TestPrintLinks(t *testing.T) {
	imp := config.Impairment{Delay: 50 * time.Millisecond, Loss: 100}
	var b strings.Builder
	err := printLinks(&b, []lab.LinkState{
		{Node: "node1", Link: control.Link{Interface: "ens33", Network: "net1", Up: true}},
		{Node: "node2", Link: control.Link{Interface: "ens33", Network: "net1", Up: false, Impairment: &imp}},
		{Node: "tor", Router: true, Link: control.Link{Interface: "eth1", Network: "net2"}, Err: errors.New("gone")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `NODE    KIND     INTERFACE   NETWORK   STATE     IMPAIRMENT
node1   node     ens33       net1      UP        -
node2   node     ens33       net1      DOWN      delay 50ms loss 100%
tor     router   eth1        net2      UNKNOWN   (not running)
`
	if b.String() != want {
		t.Errorf("link show:\n%s\nwant:\n%s", b.String(), want)
	}
}

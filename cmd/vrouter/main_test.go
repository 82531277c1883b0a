package main

import (
	"bytes"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "vrouter version ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version output %q", out)
	}
}

func TestHelpListsCommands(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"deploy", "destroy", "inspect", "exec", "node", "get", "route", "workload", "link", "capture", "probe", "version", "demo", "completion"} {
		if !strings.Contains(out, "  "+c+" ") {
			t.Errorf("--help does not list %q:\n%s", c, out)
		}
	}
}

func TestCompletion(t *testing.T) {
	out, err := run(t, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "__start_vrouter") {
		t.Fatalf("bash completion script lacks its entry function:\n%.300s", out)
	}
}

// TestDemoPrintsSeedTable checks the demo against node1's table typed from
// the seed (ipipMode Never), and the lookups against what longest-prefix
// match must pick.
func TestDemoPrintsSeedTable(t *testing.T) {
	out, err := run(t, "demo")
	if err != nil {
		t.Fatal(err)
	}
	want := "10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird\n" +
		"10.244.135.0/26 via 192.168.50.12 dev ens33 proto bird\n" +
		"10.244.166.128 dev cali717821d73f3 scope link\n" +
		"blackhole 10.244.166.128/26 proto bird\n" +
		"192.168.50.0/24 dev ens33 proto kernel scope link src 192.168.50.10\n"
	if !strings.Contains(out, want) {
		t.Fatalf("demo table differs from the seed:\n%s", out)
	}
	for _, line := range []string{
		"10.244.104.7    -> 10.244.104.0/26 via 192.168.50.11 dev ens33 proto bird",
		"10.244.166.128  -> 10.244.166.128 dev cali717821d73f3 scope link",
		"10.244.166.130  -> blackhole 10.244.166.128/26 proto bird",
		"8.8.8.8         -> no route",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("demo output lacks %q", line)
		}
	}
}

func TestUnknownCommandFails(t *testing.T) {
	if _, err := run(t, "no-such-command"); err == nil {
		t.Fatal("unknown command succeeded")
	}
}

// Package netnstest holds test helpers for code that needs root and network
// namespaces: a root check that fails under CI instead of skipping, and a
// guard that the root namespace's links, addresses and routes are the same
// after a test as before it.
package netnstest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireRoot skips the test when not running as root, or fails it when the
// CI environment variable is "true": CI must run every test.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces); CI must run it as root")
	}
	t.Skip("needs root for network namespaces; run with sudo")
}

// RequireCommand fails (under CI) or skips the test when a command is missing.
func RequireCommand(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found; install the Debian package %s", name, pkg)
	}
	t.Skipf("%s not found; install the Debian package %s", name, pkg)
	return ""
}

// RootState is what the root namespace looks like: its links, addresses and
// routes as `ip` prints them. (The list of named namespaces is not part of
// it: tests of other packages running in parallel create their own; see
// GuardNamespaces.)
type RootState struct{ Links, Addrs, Routes string }

// Snapshot reads the root namespace's state.
func Snapshot(t testing.TB) RootState {
	t.Helper()
	run := func(args ...string) string {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	return RootState{
		// Counters and operational state change on their own; compare
		// names, flags and addresses only.
		Links:  run("-o", "-br", "link", "show"),
		Addrs:  run("-o", "-br", "addr", "show"),
		Routes: run("route", "show", "table", "all"),
	}
}

// GuardNamespaces fails the test if, when it ends, a named namespace whose
// name starts with prefix is left.
func GuardNamespaces(t testing.TB, prefix string) {
	t.Helper()
	t.Cleanup(func() {
		out, err := exec.Command("ip", "netns", "list").CombinedOutput()
		if err != nil {
			t.Errorf("ip netns list: %v\n%s", err, out)
			return
		}
		for _, line := range strings.Split(string(out), "\n") {
			if name, _, _ := strings.Cut(line, " "); name != "" && strings.HasPrefix(name, prefix) {
				t.Errorf("namespace %s left behind", name)
			}
		}
	})
}

// GuardRoot records the root namespace's state now and, when the test ends,
// fails it if links, addresses or routes changed.
func GuardRoot(t testing.TB) {
	t.Helper()
	before := Snapshot(t)
	t.Cleanup(func() {
		after := Snapshot(t)
		if after != before {
			t.Errorf("root namespace changed during the test\nbefore: %+v\nafter:  %+v", before, after)
		}
	})
}

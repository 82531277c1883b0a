package main

import (
	"strings"
	"testing"
)

// TestUIRefuses: ui refuses, before reading any lab, an address other
// hosts could reach, an empty one, one without a port, and a too short
// interval.
func TestUIRefuses(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ui", "--listen", "0.0.0.0:0"}, "--allow-remote"},
		{[]string{"ui", "--listen", ":50080"}, "every interface"},
		{[]string{"ui", "--listen", ""}, "--listen is empty"},
		{[]string{"ui", "--listen", "127.0.0.1"}, "want host:port"},
		{[]string{"ui", "--listen", "127.0.0.1:0", "--interval", "1ms"}, "at least 100ms"},
	} {
		if _, err := run(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("vrouter %s: %v, want an error containing %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
